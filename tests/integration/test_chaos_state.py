"""Chaos on the control plane, all real processes (issue 8): scalegate killed in the middle of a
scale-out, and a state directory that turns read-only under it.

- Restart mid-scale-out: a pushed metric fires a rule (+2); scalegate is SIGKILLed while the
  scale_out webhook is still pending (the scaler refuses the first tries), or SIGTERMed while
  the scaler's new instances are booting and trying to register. After a restart no
  registered member is lost (state file), the pending webhook is delivered from the outbox
  with its id, and the pool reaches the capacity asked for exactly once: the desired capacity
  and the rule's cooldown come back from <state>.autoscale.json, so the still-high metric
  does not ask the scaler for the same instances a second time.
- Failed state write: the state directory becomes read-only (a read-only bind mount in a
  private mount namespace: the tests run as root, which ignores permission bits). A member
  PUT then answers 500 naming the file and the errno text, the change stays in effect (and is
  reported as not saved), scalegate logs it and keeps serving, the old state file stays intact
  and loadable, and once the directory is writable again the retry saves it."""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import unittest

from harness import (ProcessTestCase, Scalegate, Sgscaler, admin_section, free_port,
                     request, wait_until)

TOKEN = "chaos-state-token"
SECRET = "whsec_" + "Y2hhb3Mtc3RhdGUtdGVzdC1zZWNyZXQtMDEyMzQ1Njc="


class RestartMidScaleOutTest(ProcessTestCase):
    def start_stack(self, scaler_args):
        self.dir = tempfile.mkdtemp(prefix="sgchaos-state-")
        self.admin, self.api = admin_section(self.dir, TOKEN)
        self.state = os.path.join(self.dir, "web.state.json")
        self.admin["state_file"] = self.state
        secret_path = os.path.join(self.dir, "scaler.secret")
        with open(secret_path, "w") as f:
            f.write(SECRET + "\n")
        self.scaler = Sgscaler(SECRET, self.api.port, TOKEN,
                               extra_args=["--initial", "0"] + list(scaler_args))
        self.addCleanup(self.scaler.stop)
        self.scaler.start()
        self.web_port = free_port()
        self.static = self.start_backend("static-0")
        self.sg = Scalegate({
            "log": {"level": "info"},
            "admin": self.admin,
            "drain_timeout": "1s",
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "balance": "round_robin",
                "mode": "flexible",  # static-0 has no version label; sgscaler's say v1
                "health": {"type": "http", "path": "/health", "interval": "200ms",
                           "timeout": "150ms", "rise": 1, "fall": 2},
                "autoscale": {
                    "evaluation_interval": "1s",
                    "capacity": {"min": 0, "max": 6, "default": 0},
                    "scaler": {"url": self.scaler.url, "secret_file": secret_path,
                               "max_backoff": "1s", "timeout": "1s", "max_attempts": 20},
                    "rules": [{"metric": "queue_depth", "statistic": "max", "window": "2s",
                               "op": ">", "threshold": 10, "action": {"increase": 2},
                               "cooldown": "5m"}],
                },
            }},
        })
        self.addCleanup(self.sg.kill)
        self.sg.start()
        # A member registered through the API before the scale-out: it must survive.
        r = self.call("PUT", "/v1/pools/web/members/static-0",
                      {"address": self.static.address})
        self.assertEqual(r.status, 201, r)
        self.outbox = os.path.join(self.dir, "web.outbox.json")
        self.autoscale_state = os.path.join(self.dir, "web.autoscale.json")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        return request(self.api.port, method, path, body=data,
                       headers=[("Authorization", "Bearer " + TOKEN), ("Connection", "close"),
                                ("Content-Type", "application/json")])

    def push_metric_forever(self):
        """Keeps the rule's metric high (as an external agent would) across the restart."""
        stop = threading.Event()
        self.addCleanup(stop.set)

        def run():
            while not stop.is_set():
                try:
                    self.call("POST", "/v1/pools/web/metrics", {"metrics": {"queue_depth": 50}})
                except (OSError, AssertionError):
                    pass  # scalegate is down for a moment: so is any agent's push
                stop.wait(0.2)
        threading.Thread(target=run, daemon=True).start()

    def members(self):
        return sorted(m["id"] for m in self.api.get_json("/v1/pools/web")["members"])

    def read_json(self, path):
        with open(path) as f:
            return json.load(f)

    def finish_and_check(self, first_log):
        """After the restart: three members, exactly once, healthy and serving."""
        def three_healthy():
            ms = self.api.get_json("/v1/pools/web")["members"]
            return (sorted(m["id"] for m in ms) == ["static-0", "vm-0", "vm-1"] and
                    all(m["health"] == "healthy" for m in ms))
        try:
            wait_until(three_healthy, 20, interval=0.1, what="static-0, vm-0, vm-1 healthy")
        except AssertionError:
            self.fail("members %s\nscaler:\n%s\nfirst run:\n%s\nsecond run:\n%s" % (
                self.members(), self.scaler.log()[-3000:], first_log[-3000:],
                self.sg.log()[-3000:]))
        cap = self.api.get_json("/v1/pools/web/autoscale")["capacity"]
        self.assertEqual(cap["desired"], 3, cap)
        # The metric is still high: give a wrongly forgotten cooldown/desired the time to ask
        # again (two evaluations past the rule's window), then count instances.
        wait_until(lambda: len(self.api.get_json("/v1/pools/web/metrics")["metrics"]
                               .get("queue_depth", [])) >= 4, 10, interval=0.2,
                   what="the metric's window filled again after the restart")
        threading.Event().wait(2.5)  # nothing to wait for: this is the window a duplicate needs
        self.assertEqual(sorted(self.scaler.instances()), ["vm-0", "vm-1"],
                         "the scaler was asked for instances twice:\n" + self.scaler.log())
        self.assertEqual(self.members(), ["static-0", "vm-0", "vm-1"])
        events = self.api.get_json("/v1/events?limit=1000")["events"]
        self.assertEqual([e for e in events if e["type"] == "scale_out"], [],
                         "a second scale_out after the restart")
        self.assertTrue(any(e["type"] == "autoscale_state_restored" for e in events), events)
        served = {request(self.web_port, "GET", "/", headers=[("Connection", "close")]).backend
                  for _ in range(12)}
        self.assertEqual(served, {"static-0", "vm-0", "vm-1"})
        wait_until(lambda: self.read_json(self.outbox)["deliveries"] == [], 5,
                   what="the outbox empty")

    def test_sigkill_while_the_scale_out_webhook_is_pending(self):
        # The scaler refuses the first three deliveries (500): the webhook stays pending.
        self.start_stack(["--boot-delay", "200ms", "--fail-first", "3"])
        self.push_metric_forever()
        wait_until(lambda: os.path.exists(self.outbox) and
                   [d["attempts"] for d in self.read_json(self.outbox)["deliveries"]] == [1],
                   15, interval=0.05, what="a scale_out delivery tried once and pending")
        pending = self.read_json(self.outbox)["deliveries"][0]
        self.assertEqual(pending["event"]["type"], "scale_out")
        self.assertEqual((pending["event"]["data"]["old_capacity"],
                          pending["event"]["data"]["new_capacity"]), (1, 3))
        self.sg.kill()  # SIGKILL: nothing is flushed on the way out
        self.assertEqual(self.read_json(self.autoscale_state)["pools"]["web"]["desired"], 3)
        self.assertEqual(self.read_json(self.state)["pools"]["web"]["members"][0]["id"],
                         "static-0")
        first_log = self.sg.log()

        self.sg.start()
        self.assertEqual(self.members(), ["static-0"], "the registered member was lost")
        self.assertIn("webhook resumed from the outbox", self.sg.log())
        self.finish_and_check(first_log)
        # The resumed delivery kept its id: the scaler acted on that id once.
        self.assertIn(pending["id"], self.scaler.log())

    def test_sigterm_while_new_instances_are_registering(self):
        # Delivered at once; the instances take 1.5 s to boot, then PUT themselves (the
        # scaler retries the admin API while it is away).
        self.start_stack(["--boot-delay", "1500ms"])
        self.push_metric_forever()
        wait_until(lambda: len(self.scaler.instances()) == 2, 15, interval=0.05,
                   what="the scaler creating two instances")
        self.assertEqual(self.members(), ["static-0"])
        self.sg.stop(signal.SIGTERM)
        self.assertEqual(self.sg.returncode, 0, self.sg.log()[-2000:])
        saved = self.read_json(self.autoscale_state)["pools"]["web"]
        self.assertEqual(saved["desired"], 3)
        self.assertIn("provisioning_until_unix_ms", saved)
        first_log = self.sg.log()
        # Down while the instances finish booting: their registrations fail and are retried.
        wait_until(lambda: re.search(r"PUT member failed.*retrying", self.scaler.log()), 10,
                   interval=0.05, what="a registration refused while scalegate is down")
        self.sg.start()
        self.finish_and_check(first_log)


class FailedStateWriteTest(ProcessTestCase):
    def test_read_only_state_directory(self):
        base = tempfile.mkdtemp(prefix="sgchaos-ro-")
        state_dir = os.path.join(base, "state")
        os.mkdir(state_dir)
        admin, api = admin_section(base, TOKEN)
        state = os.path.join(state_dir, "web.state.json")
        admin["state_file"] = state
        admin["audit_log"] = os.path.join(base, "audit.log")
        b1 = self.start_backend("b1")
        b2 = self.start_backend("b2")
        b3 = self.start_backend("b3")
        web_port = free_port()
        config = {
            "log": {"level": "info"},
            "admin": admin,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {"balance": "round_robin",
                              "members": [{"id": "b1", "address": b1.address}]}},
        }
        # The state directory is bind-mounted onto itself in a mount namespace of scalegate's
        # own, so it can be remounted read-only for scalegate alone (root ignores 0555).
        wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" "$0" && exec "$@"', state_dir]
        sg = Scalegate(config, wrapper=wrapper)
        self.addCleanup(sg.kill)
        sg.start()

        def put(mid, address=None, **fields):
            body = dict(fields, **({"address": address} if address else {}))
            return request(api.port, "PUT", "/v1/pools/web/members/" + mid,
                           body=json.dumps(body).encode(),
                           headers=[("Authorization", "Bearer " + TOKEN),
                                    ("Connection", "close")])

        def remount(mode):
            subprocess.run(["nsenter", "-t", str(sg.proc.pid), "-m", "mount", "-o",
                            "remount,bind,%s" % mode, state_dir], check=True)

        self.assertEqual(put("m2", b2.address).status, 201)
        with open(state) as f:
            before = f.read()
        self.assertIn('"m2"', before)

        remount("ro")
        r = put("m3", b3.address)
        self.assertEqual(r.status, 500, r)
        message = json.loads(r.body)["error"]["message"]
        self.assertIn(state, message)
        self.assertIn("Read-only file system", message)
        self.assertIn("in effect but was not saved", message)
        sg.wait_log(r"state file write failed.*Read-only file system")
        # The change is in effect (and said so); the file on disk is the old one, whole.
        self.assertEqual(api.get("/v1/pools/web/members/m3").status, 200)
        with open(state) as f:
            self.assertEqual(f.read(), before)
        self.assertFalse(os.path.exists(state + ".tmp"))
        # A second change while read-only: the same clear error; no crash, still serving.
        r = put("m2", zone="2")
        self.assertEqual(r.status, 500, r)
        served = {request(web_port, "GET", "/", headers=[("Connection", "close")]).backend
                  for _ in range(12)}
        self.assertEqual(served, {"b1", "b2", "b3"})
        self.assertTrue(sg.alive())
        events = api.get_json("/v1/events?limit=1000")["events"]
        self.assertTrue(any(e["type"] == "state_write_failed" and state in e["detail"]
                            for e in events), events)
        with open(admin["audit_log"]) as f:
            audit = [json.loads(l) for l in f]
        self.assertEqual([(a["path"], a["status"]) for a in audit],
                         [("/v1/pools/web/members/m2", 201), ("/v1/pools/web/members/m3", 500),
                          ("/v1/pools/web/members/m2", 500)])
        self.assertIn("Read-only file system", audit[1]["error"])

        # Writable again: the periodic retry saves what is in effect.
        remount("rw")
        sg.wait_log(r"state file written again", timeout=10)
        with open(state) as f:
            saved = json.load(f)
        members = {m["id"]: m for m in saved["pools"]["web"]["members"]}
        self.assertIn("m3", members)
        self.assertEqual(members["m2"]["zone"], "2")

        # And the file loads: a restart (no namespace this time) has the members back.
        sg.kill()
        sg2 = Scalegate(config)
        self.addCleanup(sg2.kill)
        sg2.start()
        ids = sorted(m["id"] for m in api.get_json("/v1/pools/web")["members"])
        self.assertEqual(ids, ["b1", "m2", "m3"])


if __name__ == "__main__":
    unittest.main()
