"""bench/sgscaler, the local reference scaler, against a real scalegate: it registers its
instances through the admin API, acts on correctly signed webhooks (scale_out, scale_in,
repair, upgrade_batch), refuses tampered or stale ones with 401, and never acts twice on one
webhook-id. The webhooks are signed here, in Python, the Standard Webhooks way."""
import json
import os
import tempfile
import time
import unittest

from harness import (ProcessTestCase, Sgscaler, admin_section, free_port, request, wait_until)

SECRET = "whsec_" + "c2dzY2FsZXItaW50ZWdyYXRpb24tdGVzdC1zZWNyZXQ="  # base64 of 32 bytes
TOKEN = "scaler-admin-token"
WAIT = 15.0
POLL = 0.05


def event(kind, old, new, instances=(), zones=None, **extra):
    data = {"pool": "web", "old_capacity": old, "new_capacity": new,
            "reason": {"kind": "manual"}, "zones": zones or {}, "instances": list(instances)}
    data.update(extra)
    return {"type": kind, "id": "ignored-by-the-scaler",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "data": data}


class SgscalerTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgscaler-test-")
        admin, self.api = admin_section(self.dir, TOKEN)
        self.web_port = free_port()
        self.sg = self.start_proxy({
            "log": {"level": "info"},
            "admin": admin,
            "listeners": [{"name": "web", "protocol": "http",
                           "listen": "127.0.0.1:%d" % self.web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            # Flexible: this test sends upgrade_batch by hand, outside a rolling upgrade, so
            # versions mix (a uniform pool refuses a second version unless scalegate's own
            # rolling upgrade rolls it out).
            "pools": {"web": {"balance": "round_robin", "mode": "flexible",
                              "health": {"type": "http", "path": "/health", "interval": "250ms",
                                         "timeout": "200ms", "rise": 1, "fall": 2}}},
        })

    def start_scaler(self, *extra):
        scaler = Sgscaler(SECRET, self.api.port, TOKEN,
                          extra_args=["--initial", "2", "--boot-delay", "300ms", "--zones", "1,2",
                                      "--stop-timeout", "2s"] + list(extra))
        self.addCleanup(scaler.stop)
        scaler.start()
        self.addCleanup(lambda: self._dump(scaler))
        return scaler

    def _dump(self, scaler):
        if hasattr(self, "_outcome") and any(e for _, e in getattr(self._outcome, "errors", [])):
            print("---- sgscaler log ----\n" + scaler.log())

    def member(self, mid):
        r = self.api.get("/v1/pools/web/members/" + mid)
        return json.loads(r.body) if r.status == 200 else None

    def wait_member(self, mid, present=True, healthy=False, what=None):
        def ok():
            m = self.member(mid)
            if not present:
                return m is None
            return m is not None and (not healthy or m.get("probe_healthy") is True)
        wait_until(ok, WAIT, interval=POLL, what=what or "member %s present=%s" % (mid, present))

    def wait_instance(self, scaler, mid, pred, what):
        return wait_until(lambda: (lambda i: i if i is not None and pred(i) else None)(
            scaler.instances().get(mid)), WAIT, interval=POLL, what=what)

    def served_by(self, n=60):
        seen = {}
        for _ in range(n):
            r = request(self.web_port, "GET", "/", headers=[("Connection", "close")])
            self.assertEqual(r.status, 200, r)
            seen[r.backend] = seen.get(r.backend, 0) + 1
        return seen

    def test_scale_out_and_in(self):
        scaler = self.start_scaler()
        for mid, zone in (("vm-0", "1"), ("vm-1", "2")):
            self.wait_member(mid, healthy=True)
            self.assertEqual(self.member(mid)["zone"], zone)
        # The proxy picks up health changes on its next snapshot (within ~100 ms).
        wait_until(lambda: set(self.served_by(20)) == {"vm-0", "vm-1"}, WAIT,
                   what="both initial instances taking traffic")

        # scale_out 2 -> 3 in zone 1: vm-2 boots (300 ms), starts, registers, takes traffic.
        t0 = time.monotonic()
        r = scaler.post(event("scale_out", 2, 3, zones={"1": 1}), msg_id="msg_out1")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(json.loads(r.body)["id"], "msg_out1")
        self.assertLess(time.monotonic() - t0, 1.0, "the scaler must answer before acting")
        self.wait_member("vm-2", healthy=True)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3, "boot delay not applied")
        m = self.member("vm-2")
        self.assertEqual(m["zone"], "1")
        inst = scaler.instances()["vm-2"]
        self.assertEqual(inst["state"], "running")
        self.assertEqual(m["address"], "127.0.0.1:%d" % inst["port"])
        wait_until(lambda: "vm-2" in self.served_by(30), WAIT, what="vm-2 taking traffic")

        # The same webhook-id again: 200 "duplicate", no second instance.
        r = scaler.post(event("scale_out", 2, 3, zones={"1": 1}), msg_id="msg_out1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body)["status"], "duplicate")
        time.sleep(0.6)  # longer than the boot delay: a wrongly accepted duplicate would show
        self.assertEqual(sorted(scaler.instances()), ["vm-0", "vm-1", "vm-2"])
        self.assertIn("already handled", scaler.log())

        # scale_in 3 -> 2 naming vm-2: deregistered and stopped.
        pid = inst["pid"]
        r = scaler.post(event("scale_in", 3, 2, instances=["vm-2"], zones={"1": 1}))
        self.assertEqual(r.status, 202, r)
        self.wait_member("vm-2", present=False)
        wait_until(lambda: "vm-2" not in scaler.instances(), WAIT, what="vm-2 forgotten")
        wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
                   open("/proc/%d/stat" % pid).read().split()[2] == "Z", WAIT,
                   what="vm-2's process gone")
        self.assertEqual(set(self.served_by()), {"vm-0", "vm-1"})  # deregistered before stopped

        # A new scale_out continues the numbering after the highest id ever used.
        scaler.post(event("scale_out", 2, 3))
        self.wait_member("vm-3", healthy=True)

    def test_repair_and_upgrade(self):
        scaler = self.start_scaler()
        self.wait_member("vm-0", healthy=True)
        self.wait_member("vm-1", healthy=True)
        before = scaler.instances()

        # repair restart: same id and port, a new process, registered again.
        r = scaler.post(event("repair", 2, 2, instances=["vm-1"], zones={"2": 1},
                              repair={"action": "restart"}))
        self.assertEqual(r.status, 202, r)
        after = self.wait_instance(scaler, "vm-1",
                                   lambda i: i["starts"] == 2 and i["state"] == "running",
                                   "vm-1 restarted")
        self.assertNotEqual(after["pid"], before["vm-1"]["pid"])
        self.assertEqual(after["port"], before["vm-1"]["port"])
        self.wait_member("vm-1", healthy=True)

        # upgrade_batch: vm-0 comes back at version v2.
        r = scaler.post(event("upgrade_batch", 2, 2, instances=["vm-0"], zones={"1": 1},
                              upgrade={"version": "v2", "batch_index": 0, "batch_count": 2}))
        self.assertEqual(r.status, 202, r)
        up = self.wait_instance(scaler, "vm-0",
                                lambda i: i["version"] == "v2" and i["state"] == "running" and
                                i["registered"], "vm-0 upgraded")
        direct = request(up["port"], "GET", "/", headers=[("Connection", "close")])
        self.assertEqual(direct.header("x-version"), "v2")
        self.assertEqual(request(before["vm-1"]["port"], "GET", "/",
                                 headers=[("Connection", "close")]).header("x-version"), "v1")
        self.wait_member("vm-0", healthy=True)
        wait_until(lambda: self.member("vm-0")["version"] == "v2", WAIT,
                   what="scalegate lists vm-0 at version v2")
        self.assertEqual(self.member("vm-1")["version"], "v1")
        health = request(up["port"], "GET", "/health", headers=[("Connection", "close")])
        self.assertIn("inflight=", health.header("x-load"))

        # repair replace: vm-0 is deleted, a new instance (vm-2, same zone) replaces it.
        r = scaler.post(event("repair", 2, 2, instances=["vm-0"], zones={"1": 1},
                              repair={"action": "replace"}))
        self.assertEqual(r.status, 202, r)
        self.wait_member("vm-2", healthy=True)
        self.wait_member("vm-0", present=False)
        self.assertEqual(self.member("vm-2")["zone"], "1")
        wait_until(lambda: sorted(scaler.instances()) == ["vm-1", "vm-2"], WAIT,
                   what="vm-0 forgotten")

    def test_refuses_bad_and_stale_signatures(self):
        scaler = self.start_scaler()
        wait_until(lambda: len(scaler.instances()) == 2, WAIT, what="initial instances")
        body = json.dumps(event("scale_out", 2, 3)).encode()
        ts = str(int(time.time()))
        good = __import__("harness").sign_webhook(SECRET, "msg_t1", ts, body)

        tampered_body = body.replace(b'"new_capacity": 3', b'"new_capacity": 9')
        self.assertNotEqual(tampered_body, body)
        r = scaler.post(tampered_body, msg_id="msg_t1", timestamp=ts, signature=good)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(json.loads(r.body)["error"], "no matching signature")

        flipped = good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:]
        r = scaler.post(body, msg_id="msg_t1", timestamp=ts, signature=flipped)
        self.assertEqual(r.status, 401, r)

        r = scaler.post(body, msg_id="msg_t1", timestamp=ts, secret="whsec_d3Jvbmcgc2VjcmV0")
        self.assertEqual(r.status, 401, r)

        stale = int(time.time()) - 600
        r = scaler.post(body, msg_id="msg_t2", timestamp=stale)
        self.assertEqual(r.status, 401, r)
        self.assertIn("too old", json.loads(r.body)["error"])
        r = scaler.post(body, msg_id="msg_t3", timestamp=int(time.time()) + 600)
        self.assertEqual(r.status, 401, r)
        self.assertIn("too new", json.loads(r.body)["error"])

        r = request(scaler.port, "POST", "/hooks", body=body,
                    headers=[("webhook-id", "msg_t4"), ("Connection", "close")])
        self.assertEqual(r.status, 401, r)
        self.assertIn("missing", json.loads(r.body)["error"])

        # None of those acted, and a refused id is not remembered: the genuine one still works.
        time.sleep(0.6)
        self.assertEqual(sorted(scaler.instances()), ["vm-0", "vm-1"])
        r = scaler.post(body, msg_id="msg_t1", timestamp=ts, signature=good)
        self.assertEqual(r.status, 202, r)
        self.wait_member("vm-2")

    def test_fail_first_then_retry_acts_once(self):
        scaler = self.start_scaler("--fail-first", "1")
        wait_until(lambda: len(scaler.instances()) == 2, WAIT, what="initial instances")
        body = event("scale_out", 2, 3)
        r = scaler.post(body, msg_id="msg_retry")
        self.assertEqual(r.status, 500, r)
        r = scaler.post(body, msg_id="msg_retry")  # the sender's retry: same id
        self.assertEqual(r.status, 202, r)
        r = scaler.post(body, msg_id="msg_retry")
        self.assertEqual(r.status, 200, r)
        self.wait_member("vm-2")
        time.sleep(0.6)
        self.assertEqual(sorted(scaler.instances()), ["vm-0", "vm-1", "vm-2"])

    def test_azure_format_deaths_and_shutdown(self):
        scaler = self.start_scaler()
        self.wait_member("vm-1", healthy=True)

        def azure(op, old, new, props=None):
            return {"version": "1.0", "status": "Activated", "operation": op,
                    "context": {"timestamp": "2026-11-28T16:20:00.1230000Z", "name": "web-autoscale",
                                "resourceName": "web", "oldCapacity": str(old),
                                "newCapacity": str(new)},
                    "properties": props or {}}
        r = scaler.post(azure("Scale Out", 2, 4, {"scalegate.zones": "2=2"}))
        self.assertEqual(r.status, 202, r)
        self.wait_member("vm-2", healthy=True)
        self.wait_member("vm-3", healthy=True)
        self.assertEqual(self.member("vm-3")["zone"], "2")
        # A receiver that only knows Azure's fields gets no names: the highest ids go.
        r = scaler.post(azure("Scale In", 4, 3))
        self.assertEqual(r.status, 202, r)
        self.wait_member("vm-3", present=False)
        # Deregistered first, then stopped and forgotten.
        wait_until(lambda: sorted(scaler.instances()) == ["vm-0", "vm-1", "vm-2"], WAIT,
                   what="vm-3 forgotten")

        # An instance that dies on its own is noticed (SIGCHLD) and left for scalegate to repair.
        victim = scaler.instances()["vm-2"]
        os.kill(victim["pid"], 9)
        self.wait_instance(scaler, "vm-2", lambda i: i["state"] == "dead", "vm-2 dead")
        self.assertIn("vm-2: pid %d died by signal 9" % victim["pid"], scaler.log())

        # SIGTERM: every instance stops with the scaler.
        pids = [i["pid"] for i in scaler.instances().values() if i["pid"] > 0]
        self.assertEqual(len(pids), 2)
        scaler.stop()
        self.assertEqual(scaler.proc.returncode, 0)
        for pid in pids:
            self.assertFalse(os.path.exists("/proc/%d" % pid), "instance pid %d survived" % pid)


if __name__ == "__main__":
    unittest.main()
