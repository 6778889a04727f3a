"""Health probes and live membership (issue "health probes, live membership"): a member that
dies under load costs the clients nothing and is reported down within the probe budget; when
it comes back it is reported up within `interval x rise` and slow start ramps its share; a
member answering 503 to its probe goes down; a load report in X-Load reaches /metrics.

Timing budgets. With interval I, timeout T, fall F and rise R, the prober can need
  down: F probes, the first at most I after the kill, each failing at the latest after T
        (a connect to a killed loopback port is refused at once, so T is the worst case)
        -> I x F + T
  up:   R probes, the first at most I after the member listens again, each answering at once
        -> I x R
SLACK (below) is added to both for what the test itself adds: the 50 ms polling of /metrics,
the time a scrape takes, and the scheduling of three processes on a 2-core machine that may be
busy with other builds.
"""

import shutil
import tempfile
import time
import unittest

from harness import (HarnessError, ProcessTestCase, SteadyLoad, admin_section, free_port,
                     request, wait_until)

INTERVAL = 0.5
TIMEOUT = 0.3
RISE = 2
FALL = 2
SLOW_START = 4.0
SLACK = 0.5
POLL = 0.05

DOWN_BUDGET = INTERVAL * FALL + TIMEOUT + SLACK  # 1.8 s
UP_BUDGET = INTERVAL * RISE + SLACK              # 1.5 s


def health_section(path="/health"):
    return {"type": "http", "path": path, "interval": "500ms", "timeout": "300ms",
            "rise": RISE, "fall": FALL}


def config(port, admin, members, slow_start=None, health=None):
    pool = {"balance": "round_robin",
            "health": health or health_section(),
            "members": [{"id": mid, "address": addr} for mid, addr in members]}
    if slow_start:
        pool["slow_start"] = slow_start
    return {
        "log": {"level": "info"},
        "admin": admin,
        "listeners": [{"name": "web", "protocol": "http", "listen": "127.0.0.1:%d" % port,
                       "routes": [{"path_prefix": "/", "pool": "web"}]}],
        "pools": {"web": pool},
    }


def member_healthy(admin, member, pool="web"):
    """scalegate_member_healthy for one member: 1.0, 0.0, or None when it is not exported."""
    return admin.metrics().value("scalegate_member_healthy", pool=pool, member=member)


def find_member(doc, member_id):
    """The JSON object describing `member_id` anywhere in an admin API document."""
    if isinstance(doc, dict):
        if doc.get("id") == member_id:
            return doc
        items = doc.values()
    elif isinstance(doc, list):
        items = doc
    else:
        return None
    for v in items:
        found = find_member(v, member_id)
        if found is not None:
            return found
    return None


class HealthTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sghealth-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def wait_healthy_state(self, admin, member, want, budget, since):
        """Polls /metrics until member_healthy == want; returns the seconds since `since`.
        Fails with the elapsed time when the budget (plus a margin to report how late it
        was) runs out."""
        def reached():
            v = member_healthy(admin, member)
            return v is not None and v == want
        try:
            wait_until(reached, budget + 5.0, interval=POLL,
                       what="%s healthy=%s" % (member, want))
        except HarnessError:
            self.fail("%s not reported healthy=%d within %.1fs (budget %.1fs); metrics:\n%s" %
                      (member, want, budget + 5.0, budget,
                       "\n".join(l for l in admin.metrics_text().splitlines()
                                 if member in l and "health" in l)))
        return time.monotonic() - since

    def test_member_killed_under_load_goes_down_and_comes_back_with_slow_start(self):
        backends = [self.start_backend("b%d" % i) for i in (1, 2, 3)]
        victim = backends[2]
        admin_cfg, admin = admin_section(self.dir)
        port = free_port()
        sg = self.start_proxy(config(port, admin_cfg, [(b.id, b.address) for b in backends],
                                     slow_start="4s"))
        for b in backends:  # every member up by probes before the load starts
            wait_until(lambda b=b: member_healthy(admin, b.id) == 1.0, 10, interval=POLL,
                       what="%s healthy at start" % b.id)

        load = SteadyLoad(port, connections=3, max_requests=400000, max_seconds=60)
        self.addCleanup(load.stop)
        load.start()
        wait_until(lambda: load.count() >= 300, 10, what="load to get going")

        # Kill one member. Its in-flight and pooled connections die with it; retries of
        # these idempotent GETs must hide that from the client.
        t_kill = time.monotonic()
        victim.kill()
        down_after = self.wait_healthy_state(admin, victim.id, 0.0, DOWN_BUDGET, t_kill)
        self.assertLessEqual(down_after, DOWN_BUDGET,
                             "b3 reported down %.2fs after SIGKILL; budget interval x fall + "
                             "timeout + slack = %.1fs" % (down_after, DOWN_BUDGET))
        # The admin API says the same.
        doc = admin.get_json("/v1/pools/web")
        m = find_member(doc, victim.id)
        self.assertIsNotNone(m, "b3 not in GET /v1/pools/web: %r" % doc)
        self.assertIn("unhealthy", [v for v in m.values() if isinstance(v, str)],
                      "GET /v1/pools/web does not say b3 is unhealthy: %r" % m)

        # Traffic while it is down goes to the other two.
        t_down = time.monotonic()
        wait_until(lambda: load.share(victim.id, t_down, time.monotonic())[1] >= 200, 10,
                   what="requests while b3 is down")

        # Back on the same port.
        victim.start()
        t_listen = time.monotonic()
        up_after = self.wait_healthy_state(admin, victim.id, 1.0, UP_BUDGET, t_listen)
        t_back = time.monotonic()
        self.assertLessEqual(up_after, UP_BUDGET,
                             "b3 reported up %.2fs after it listened again; budget interval x "
                             "rise + slack = %.1fs" % (up_after, UP_BUDGET))

        # Slow start: weight ramps linearly from 10% over 4 s, so in its first second back it
        # gets at most ~0.325 / 2.325 = 14% of the requests; from 4 s on it is a full member.
        wait_until(lambda: time.monotonic() >= t_back + SLOW_START + 2.0, SLOW_START + 5.0,
                   interval=0.1, what="slow start to finish")
        load.stop()
        results, errors = load.snapshot()
        self.assertEqual(errors, [], "the client saw errors (first 5): %r" % errors[:5])

        down_share, down_total = load.share(victim.id, t_down, t_listen)
        self.assertEqual(down_share, 0, "b3 got %d of %d requests while down" %
                         (down_share, down_total))
        early, early_total = load.share(victim.id, t_back, t_back + 1.0)
        late, late_total = load.share(victim.id, t_back + SLOW_START + 0.5, t_back + SLOW_START + 2.0)
        self.assertGreater(early_total, 100, "too few requests in the first second back")
        self.assertGreater(late_total, 100, "too few requests after slow start")
        early_frac = early / early_total
        late_frac = late / late_total
        per_second = []
        for s in range(int(SLOW_START) + 2):
            n, total = load.share(victim.id, t_back + s, t_back + s + 1)
            per_second.append(round(n / total, 3) if total else None)
        detail = "b3 share per second since it was reported up: %r" % per_second
        self.assertLess(early_frac, 0.2, "first second back: %.3f; %s" % (early_frac, detail))
        self.assertGreater(late_frac, 0.25, "after slow start: %.3f; %s" % (late_frac, detail))
        self.assertLess(late_frac, 0.42, "after slow start: %.3f; %s" % (late_frac, detail))
        self.assertLess(early_frac, late_frac - 0.1, detail)
        self.assertTrue(sg.alive())

    def test_member_answering_503_to_probes_goes_down(self):
        good = [self.start_backend("good%d" % i) for i in (1, 2)]
        sick = self.start_py_backend("sick", raw={
            "/health": (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False)})
        admin_cfg, admin = admin_section(self.dir)
        port = free_port()
        t0 = time.monotonic()
        # Two good members: one sick member of three stays above the low-health threshold.
        self.start_proxy(config(port, admin_cfg, [(g.id, g.address) for g in good] +
                                [("sick", sick.address)]))
        # Initially healthy (the default initial state): `fall` failed probes, the first within
        # min(interval, 1s) of the start, take it down.
        self.wait_healthy_state(admin, "sick", 0.0, DOWN_BUDGET + 1.0, t0)
        for g in good:
            self.assertEqual(member_healthy(admin, g.id), 1.0)
        m = admin.metrics()
        self.assertGreaterEqual(
            m.sum("scalegate_health_checks_total", pool="web", member="sick", result="failed"),
            FALL)
        served = [request(port, "GET", "/x").backend for _ in range(20)]
        self.assertNotIn("sick", served)
        self.assertEqual(set(served), {"good1", "good2"})

    def test_x_load_header_on_health_answer_reaches_metrics(self):
        fleet = self.start_fleet(count=1, x_load="cpu=0.42, queue=7")
        admin_cfg, admin = admin_section(self.dir)
        port = free_port()
        self.start_proxy(config(port, admin_cfg, [("loaded", fleet.addresses()[0])]))

        def reported():
            m = admin.metrics()
            cpu = m.value("scalegate_member_load", pool="web", member="loaded", metric="cpu")
            queue = m.value("scalegate_member_load", pool="web", member="loaded", metric="queue")
            return (cpu, queue) if cpu is not None and queue is not None else None
        try:
            cpu, queue = wait_until(reported, 5.0, interval=POLL, what="member_load series")
        except HarnessError:
            self.fail("no scalegate_member_load{metric=cpu|queue} for member 'loaded'; metrics:\n"
                      + "\n".join(l for l in admin.metrics_text().splitlines() if "load" in l))
        self.assertAlmostEqual(cpu, 0.42)
        self.assertEqual(queue, 7.0)


if __name__ == "__main__":
    unittest.main()
