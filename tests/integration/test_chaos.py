"""Chaos on the data path, all real processes (issue 8): a SIGHUP storm under steady load, and a
backend process SIGKILLed with requests in flight.

- Reload storm: SIGHUP every 100 ms for 20 s, alternating between two configs that both keep
  the pool serving, under keep-alive and new-connection load: zero failed requests.
- Killed backend: sgbackend processes (separate processes, so SIGKILL is real) hold requests
  (/delay/MS); one is killed. In-flight GETs (idempotent) are retried on the other member
  (upstream.retries) and succeed; in-flight POSTs get 502 at once, never a hang.

The control-plane chaos tests (restart mid-scale-out, failed state write) are in
test_chaos_state.py, to keep each file's run time under 40 s."""

import signal
import sys
import threading
import time
import unittest

import tempfile

from harness import (Client, ConnectionClosed, ProcessTestCase, SteadyLoad, admin_section,
                     free_port, request, wait_until)

TOKEN = "chaos-token"


class ReloadStormTest(ProcessTestCase):
    STORM_SECONDS = 20.0
    PERIOD = 0.1

    def config(self, variant):
        # Both variants keep both members serving; they differ in what a reload rebuilds
        # (balance algorithm, weights, timeouts, a second route).
        routes = [{"path_prefix": "/", "pool": "web"}]
        if variant == "b":
            routes.insert(0, {"path_prefix": "/other/", "pool": "web"})
        return {
            "log": {"level": "info"},
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.port,
                           "routes": routes,
                           "timeouts": {"idle": "60s" if variant == "a" else "45s"}}],
            "pools": {"web": {
                "balance": "round_robin" if variant == "a" else "least_request",
                "mode": "flexible",
                "members": [{"id": "a1", "address": self.a1.address,
                             "weight": 1 if variant == "a" else 2},
                            {"id": "a2", "address": self.a2.address}],
            }},
        }

    def test_sighup_every_100ms_for_20s_under_load_fails_no_request(self):
        self.port = free_port()
        self.a1 = self.start_backend("a1")
        self.a2 = self.start_backend("a2")
        sg = self.start_proxy(self.config("a"), workers=2)
        keepalive = SteadyLoad(self.port, connections=3, max_seconds=40).start()
        self.addCleanup(keepalive.stop)
        fresh = {"n": 0, "errors": []}
        stop = threading.Event()
        self.addCleanup(stop.set)

        def fresh_load():
            # A new connection per request: accept queues across socket hand-overs.
            for i in range(100000):
                if stop.is_set():
                    return
                try:
                    r = request(self.port, "GET", "/fresh/%d" % i, timeout=5)
                    if r.status != 200:
                        fresh["errors"].append("request %d: %r" % (i, r))
                except (OSError, ConnectionClosed, AssertionError) as e:
                    fresh["errors"].append("request %d: %s: %s" % (i, type(e).__name__, e))
                fresh["n"] += 1
        t = threading.Thread(target=fresh_load, daemon=True)
        t.start()

        configs = [self.config("b"), self.config("a")]
        signals = 0
        start = time.monotonic()
        end = start + self.STORM_SECONDS
        next_at = start
        while time.monotonic() < end:
            sg._write_config(configs[signals % 2])
            sg.send_signal(signal.SIGHUP)
            signals += 1
            next_at += self.PERIOD
            # The storm's cadence, not synchronisation: nothing below waits on it.
            time.sleep(max(0.0, next_at - time.monotonic()))
        storm = time.monotonic() - start
        stop.set()
        keepalive.stop()
        t.join(timeout=10)
        self.assertFalse(t.is_alive(), "new-connection load stuck")
        self.assertTrue(sg.alive(), sg.log()[-3000:])
        results, errors = keepalive.snapshot()

        self.assertGreaterEqual(signals, int(self.STORM_SECONDS / self.PERIOD) - 5)
        self.assertLess(storm, self.STORM_SECONDS + 1.0)
        self.assertEqual(errors, [], "keep-alive requests failed during the storm")
        self.assertEqual(fresh["errors"], [], "new-connection requests failed during the storm")
        self.assertGreater(len(results), 500, "too little load to mean anything")
        self.assertGreater(fresh["n"], 200)
        self.assertEqual({b for _, _, b in results}, {"a1", "a2"})
        self.assertEqual(sg.count(r"reload failed"), 0, sg.log()[-3000:])
        # Signals that arrive while a reload runs coalesce; most must still have reloaded.
        wait_until(lambda: sg.count(r"\breloaded\b") >= signals // 2, 5,
                   what="reloads for half of the %d SIGHUPs" % signals)
        self.assertEqual(request(self.port, "GET", "/after").status, 200)
        sys.stderr.write("reload storm: %d SIGHUPs in %.1fs, %d reloads, %d keep-alive and %d "
                         "new-connection requests, none failed\n" % (
                             signals, storm, sg.count(r"\breloaded\b"), len(results), fresh["n"]))
        self.assertEqual(sg.stop(), 0, sg.log()[-3000:])


class KilledBackendTest(ProcessTestCase):
    HOLD_MS = 1500

    def start_stack(self):
        self.dir = tempfile.mkdtemp(prefix="sgchaos-")
        admin, self.api = admin_section(self.dir, TOKEN)
        self.port = free_port()
        self.victim = self.start_backend("victim")
        self.survivor = self.start_backend("survivor")
        self.sg = self.start_proxy({
            "log": {"level": "info"},
            "admin": admin,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "balance": "round_robin",
                "upstream": {"retries": 1},
                "outlier": {"enabled": False},
                "members": [{"id": "victim", "address": self.victim.address},
                            {"id": "survivor", "address": self.survivor.address}],
            }},
        })

    def in_flight(self, member):
        return self.api.get_json("/v1/pools/web/members/" + member)["in_flight"]

    def fire(self, method, n):
        """n concurrent requests that the members hold HOLD_MS; returns (threads, results)
        with results[i] = (status or exception text, X-Backend, monotonic time answered)."""
        results = [None] * n

        def one(i):
            c = Client(self.port, timeout=10)
            try:
                body = b'{"order": %d}' % i if method == "POST" else None
                headers = [("Content-Type", "application/json")] if body else []
                r = c.request(method, "/delay/%d?i=%d" % (self.HOLD_MS, i), headers=headers,
                              body=body)
                results[i] = (r.status, r.backend, time.monotonic())
            except (OSError, ConnectionClosed, AssertionError) as e:
                results[i] = ("%s: %s" % (type(e).__name__, e), None, time.monotonic())
            finally:
                c.close()
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        return threads, results

    def kill_victim_mid_request(self, method, n=4):
        threads, results = self.fire(method, n)
        # Round robin over two members: half the requests are being held by the victim.
        wait_until(lambda: self.in_flight("victim") >= n // 2 and
                   self.in_flight("survivor") >= n // 2, 5, interval=0.02,
                   what="requests in flight on both members")
        killed_at = time.monotonic()
        self.victim.kill()
        for t in threads:
            t.join(timeout=15)
            self.assertFalse(t.is_alive(), "a client hung after the member was killed")
        return results, killed_at

    def test_get_in_flight_on_a_killed_member_is_retried_on_another(self):
        self.start_stack()
        retries_before = self.api.metrics().sum("scalegate_pool_retries_total", pool="web")
        results, killed_at = self.kill_victim_mid_request("GET")
        self.assertEqual([r[0] for r in results], [200] * 4, results)
        # Every answer came from the survivor: the victim's two were retried there.
        self.assertEqual([r[1] for r in results], ["survivor"] * 4, results)
        # The victim's two were re-sent (its connections died mid-request).
        retries = self.api.metrics().sum("scalegate_pool_retries_total", pool="web")
        self.assertEqual(retries - retries_before, 2)
        self.assertTrue(self.sg.alive())
        # The dead member refuses connections now: GETs go to the survivor all the same.
        for _ in range(4):
            self.assertEqual(request(self.port, "GET", "/").backend, "survivor")

    def test_post_in_flight_on_a_killed_member_gets_502_without_a_hang(self):
        self.start_stack()
        results, killed_at = self.kill_victim_mid_request("POST")
        statuses = sorted(str(r[0]) for r in results)
        self.assertEqual(statuses, ["200", "200", "502", "502"], results)
        for status, backend, at in results:
            if status == 502:
                # Answered as soon as the member's connection died, not after a timeout.
                self.assertLess(at - killed_at, 1.0, results)
            else:
                self.assertEqual(backend, "survivor", results)
        self.assertTrue(self.sg.alive())
        # New POSTs: round robin still picks the dead member (no health checks here) half the
        # time; its connection is refused before any byte of the request is sent, so the POST
        # goes to the survivor instead of failing (a refused connect is safe to retry).
        for i in range(4):
            r = request(self.port, "POST", "/after/%d" % i, body=b"{}")
            self.assertEqual((r.status, r.backend), (200, "survivor"), r)


if __name__ == "__main__":
    unittest.main()
