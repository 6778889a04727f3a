"""Autoscaling end to end (issue 4): the real scalegate drives the real reference scaler
(bench/sgscaler), which starts sgbackend processes and registers them through the admin API.

Load rises -> a signed scale_out -> new instances register and take traffic; load falls ->
after the cooldown a scale-in drains members before the scale_in webhook names them; a killed
instance is repaired; a rolling upgrade replaces every instance under load; a scaler that
refuses the signature makes scalegate retry and then record the failure. Zero failed client
requests where the issue asks for it."""

import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
from datetime import datetime

from harness import (BIN_DIR, ProcessTestCase, Sgscaler, SteadyLoad, admin_section, request,
                     wait_until)

TOKEN = "autoscale-token"
SECRET = "whsec_" + "c2NhbGVnYXRlLWF1dG9zY2FsZS10ZXN0LXNlY3JldA=="
SGCTL = os.path.join(BIN_DIR, "control", "sgctl")


def parse_time(text):
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class AutoscaleCase(ProcessTestCase):
    """scalegate + sgscaler (+ its instances) for one test."""

    def start_stack(self, autoscale, initial=2, scaler_secret=SECRET, scaler_args=(),
                    health_interval="300ms"):
        self.dir = tempfile.mkdtemp(prefix="sgautoscale-")
        self.admin, self.api = admin_section(self.dir, TOKEN)
        self.admin["state_file"] = os.path.join(self.dir, "scalegate.state.json")
        secret_path = os.path.join(self.dir, "scaler.secret")
        with open(secret_path, "w") as f:
            f.write(SECRET + "\n")
        self.scaler = Sgscaler(scaler_secret, self.api.port, TOKEN,
                               extra_args=["--boot-delay", "500ms", "--initial", "0"]
                               + list(scaler_args))
        self.addCleanup(self.scaler.stop)
        self.scaler.start()
        autoscale = dict(autoscale)
        autoscale["scaler"] = dict({"url": self.scaler.url, "secret_file": secret_path},
                                   **autoscale.get("scaler", {}))
        self.web_port = _free()
        self.config = {
            "log": {"level": "info"},
            "admin": self.admin,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "balance": "round_robin",
                "health": {"type": "http", "path": "/health", "interval": health_interval,
                           "timeout": "250ms", "rise": 2, "fall": 2},
                "outlier": {"enabled": False},
                "autoscale": autoscale,
            }},
        }
        self.sg = self.start_proxy(self.config)
        if initial:
            self.sgctl("scale", "web", str(initial))
            self.wait_healthy(initial)

    def sgctl(self, *args, check=True):
        p = subprocess.run([SGCTL, "--admin", "http://127.0.0.1:%d" % self.api.port,
                            "--token-file", os.path.join(self.dir, "admin.token")] + list(args),
                           capture_output=True, text=True, timeout=30)
        if check and p.returncode != 0:
            self.fail("sgctl %s: exit %d: %s%s\nscalegate log:\n%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr, self.sg.log()[-3000:]))
        return p

    def pool(self):
        return self.api.get_json("/v1/pools/web")

    def autoscale(self):
        return self.api.get_json("/v1/pools/web/autoscale")

    def events(self, type_=None):
        evs = self.api.get_json("/v1/events?limit=1000")["events"]
        return [e for e in evs if type_ is None or e["type"] == type_]

    def healthy_members(self):
        return [m for m in self.pool()["members"]
                if m["health"] == "healthy" and m["drain"] == "none"]

    def wait_healthy(self, n, timeout=30.0):
        def ok():
            return len(self.healthy_members()) == n
        try:
            wait_until(ok, timeout, interval=0.1, what="%d healthy members" % n)
        except AssertionError:
            self.fail("not %d healthy members: %s\nscaler log:\n%s\nscalegate log:\n%s" % (
                n, json.dumps(self.pool()["members"], indent=1)[-3000:],
                self.scaler.log()[-3000:], self.sg.log()[-3000:]))

    def served_by(self, n=60):
        seen = set()
        for _ in range(n):
            r = request(self.web_port, "GET", "/")
            self.assertEqual(r.status, 200)
            seen.add(r.backend)
        return seen


class ScaleOutAndInTest(AutoscaleCase):
    EVAL = 1.0
    WINDOW = 3
    OUT_THRESHOLD = 15.0

    def test_load_drives_scale_out_then_scale_in_after_cooldown_without_failed_requests(self):
        self.start_stack({
            "evaluation_interval": "1s",
            "capacity": {"min": 2, "max": 4, "default": 2},
            "rules": [
                {"metric": "requests_per_second_per_member", "statistic": "avg",
                 "window": "%ds" % self.WINDOW, "aggregation": "avg", "op": ">",
                 "threshold": self.OUT_THRESHOLD, "action": {"increase": 2}, "cooldown": "8s"},
                {"metric": "requests_per_second_per_member", "statistic": "avg",
                 "window": "%ds" % self.WINDOW, "aggregation": "avg", "op": "<",
                 "threshold": 3, "action": {"decrease": 1}, "cooldown": "8s"},
            ],
            "scale_in": {"policy": "default", "drain": "5s"},
        })
        before = {m["id"] for m in self.pool()["members"]}
        self.assertEqual(len(before), 2)

        # Load rises: a few keep-alive connections back to back (hundreds of requests/s).
        load = SteadyLoad(self.web_port, connections=4, max_seconds=60).start()
        self.addCleanup(load.stop)
        wait_until(lambda: self.autoscale()["capacity"]["desired"] == 4, 20, interval=0.2,
                   what="scale-out to 4")
        scale_out = self.events("scale_out")[0]
        # The decision came within one evaluation period after the window crossed the threshold.
        points = self.api.get_json("/v1/pools/web/metrics")["metrics"][
            "requests_per_second_per_member"]
        crossed = None
        for i, p in enumerate(points):
            window = [q[1] for q in points if p[0] - self.WINDOW < q[0] <= p[0]]
            if len(window) >= 1 and sum(window) / len(window) > self.OUT_THRESHOLD:
                crossed = p[0]
                break
        self.assertIsNotNone(crossed, points)
        at = parse_time(scale_out["at"])
        self.assertLessEqual(at, crossed + 1 + self.EVAL + 1.0,
                             "scale_out at %.3f, window crossed at second %d" % (at, crossed))
        # The signed webhook reached the scaler: it starts and registers two instances.
        self.wait_healthy(4)
        new = {m["id"] for m in self.pool()["members"]} - before
        self.assertEqual(len(new), 2, self.pool()["members"])
        seen = set()

        def new_serve():
            seen.update(self.served_by(40))
            return new <= seen
        try:
            wait_until(new_serve, 10, what="new instances take traffic")
        except AssertionError:
            self.fail("served by %s; members %s" % (seen, json.dumps(self.pool()["members"])))
        load.stop()
        self.assertEqual(load.errors, [], load.errors[:5])

        # Load falls to a trickle: after the cooldown, scale-in drains before it names members.
        trickle = SteadyLoad(self.web_port, connections=1, max_seconds=90, pause=0.2).start()
        self.addCleanup(trickle.stop)
        wait_until(lambda: self.events("scale_in"), 40, interval=0.2, what="scale_in webhook")
        first_in = self.events("scale_in_started")[0]
        self.assertGreaterEqual(parse_time(first_in["at"]) - parse_time(scale_out["at"]), 8.0 - 0.5,
                                "scale-in came before the scale-out cooldown")
        # Each scale-in drained its members first; the scaler then stopped and removed them.
        for ev in self.events("scale_in"):
            for name in ev["detail"].split(":")[1].split(" drained")[0].split(","):
                name = name.strip()
                drained = [e for e in self.events("drained") + self.events("drain_timeout")
                           if e["member"] == name]
                self.assertTrue(drained, "%s named before it drained" % name)
                self.assertLessEqual(drained[0]["seq"], ev["seq"])
        wait_until(lambda: len(self.pool()["members"]) == 2 and
                   self.autoscale()["capacity"]["desired"] == 2, 60, interval=0.2,
                   what="back to 2 members")
        trickle.stop()
        self.assertEqual(trickle.errors, [], trickle.errors[:5])
        self.assertGreater(len(trickle.results), 20)
        metrics = self.api.metrics_text()
        self.assertIn('scalegate_pool_capacity{pool="web",kind="desired"} 2', metrics)
        self.assertRegex(metrics, r'scalegate_webhook_deliveries_total\{result="delivered"\} [1-9]')


class ManualScaleTest(AutoscaleCase):
    def test_sgctl_scale_is_bounded_by_min_and_max(self):
        self.start_stack({"evaluation_interval": "30s",
                          "capacity": {"min": 1, "max": 3, "default": 1}}, initial=1)
        p = self.sgctl("scale", "web", "9")
        out = json.loads(p.stdout)
        self.assertEqual(out["new_capacity"], 3)
        self.assertTrue(out["clamped"])
        self.wait_healthy(3)
        r = self.sgctl("scale", "web", "0")
        self.assertEqual(json.loads(r.stdout)["new_capacity"], 1)
        wait_until(lambda: len(self.pool()["members"]) == 1, 30, interval=0.2,
                   what="scale-in to 1")
        # Manual scaling needs an autoscale section (a scaler to ask).
        bad = self.sgctl("scale", "nope", "2", check=False)
        self.assertEqual(bad.returncode, 1)


class RepairTest(AutoscaleCase):
    def test_killed_instance_is_repaired_after_the_grace_period(self):
        grace = 3.0
        self.start_stack({"evaluation_interval": "30s",
                          "capacity": {"min": 2, "max": 2, "default": 2},
                          "repair": {"grace": "3s", "action": "restart", "timeout": "30s"}})
        victim = sorted(self.scaler.instances().values(), key=lambda i: i["id"])[0]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: any(m["id"] == victim["id"] and m["health"] == "unhealthy"
                               for m in self.pool()["members"]), 10, interval=0.1,
                   what="victim unhealthy")
        unhealthy_at = time.time()
        wait_until(lambda: self.events("repair_started"), 20, interval=0.1, what="repair")
        started = self.events("repair_started")[0]
        self.assertEqual(started["member"], victim["id"])
        self.assertGreaterEqual(parse_time(started["at"]) - unhealthy_at, grace - 0.5)
        # The scaler restarts it; capacity is whole again and the repair is recorded.
        self.wait_healthy(2)
        wait_until(lambda: self.events("repair_succeeded"), 20, interval=0.2,
                   what="repair succeeded")
        self.assertEqual(self.served_by(20), {i for i in self.scaler.instances()})


class RollingUpgradeTest(AutoscaleCase):
    def test_five_instances_upgraded_in_20_percent_batches_without_failed_requests(self):
        self.start_stack({"evaluation_interval": "30s",
                          "capacity": {"min": 5, "max": 5, "default": 5},
                          "scale_in": {"drain": "5s"}}, initial=5)
        load = SteadyLoad(self.web_port, connections=3, max_seconds=120).start()
        self.addCleanup(load.stop)
        self.sgctl("upgrade", "web", "--version", "v2", "--batch", "20%",
                   "--max-unhealthy", "40%", "--pause", "500ms")
        wait_until(lambda: self.autoscale()["upgrade"]["state"] in ("completed", "aborted"), 90,
                   interval=0.3, what="upgrade finished")
        up = self.autoscale()["upgrade"]
        self.assertEqual(up["state"], "completed", (up, self.events()[-20:]))
        self.assertEqual(up["batches"], 5)
        self.assertEqual(up["instances_upgraded"], 5)
        self.wait_healthy(5)
        self.assertEqual({m["version"] for m in self.pool()["members"]}, {"v2"})
        load.stop()
        self.assertEqual(load.errors, [], load.errors[:5])
        self.assertGreater(len(load.results), 100)
        self.assertEqual(len(self.events("upgrade_batch_done")), 5)
        self.assertIn('scalegate_upgrade_instances{pool="web",kind="upgraded"} 5',
                      self.api.metrics_text())


class TamperedWebhookTest(AutoscaleCase):
    def test_refused_signature_is_retried_then_recorded(self):
        # The scaler holds another secret: every signature scalegate sends is refused (401).
        self.start_stack({"evaluation_interval": "30s",
                          "capacity": {"min": 0, "max": 3, "default": 0},
                          "scaler": {"max_attempts": 3, "max_backoff": "1s", "timeout": "2s"}},
                         initial=0, scaler_secret="whsec_" + "b3RoZXItc2VjcmV0LW9mLXRoZS1zY2FsZXI=")
        self.sgctl("scale", "web", "2")
        wait_until(lambda: self.events("webhook_failed"), 30, interval=0.2,
                   what="webhook recorded as failed")
        failed = self.events("webhook_failed")[0]
        self.assertIn("scale_out", failed["detail"])
        self.assertIn("401", failed["detail"])
        m = self.api.metrics_text()
        self.assertIn('scalegate_webhook_deliveries_total{result="given_up"} 1', m)
        self.assertIn('scalegate_webhook_failed_attempts_total{reason="http_4xx"} 3', m)
        self.assertIn("signature", self.scaler.log())
        self.assertEqual(self.scaler.instances(), {})
        # Nobody provisions: capacity comes back to what is there.
        wait_until(lambda: self.autoscale()["capacity"]["desired"] == 0, 10, interval=0.2,
                   what="desired back to 0")


def _free():
    from harness import free_port
    return free_port()


if __name__ == "__main__":
    unittest.main()
