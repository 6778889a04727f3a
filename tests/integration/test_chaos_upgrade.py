"""Chaos on the control plane during a rolling upgrade, all real processes: scalegate, the
reference scaler (bench/sgscaler) and its sgbackend instances.

A uniform pool of four instances is upgraded to v2, and scalegate is stopped (SIGKILL, or
SIGTERM: drain and exit) while a batch is in flight, then started again with the same state
files.
The upgrade must go on from <state>.autoscale.json where it was and complete, every instance
restarted by the scaler exactly once (its process started twice: at v1, then at v2), one
webhook-id per batch (a re-sent batch keeps its id, which the scaler de-duplicates), and the
admin API and sgctl showing the resumed upgrade.

- SIGKILL while batch 1's upgrade_batch is pending: the scaler refuses the first tries (500),
  so the delivery waits in the outbox, the batch's phase (sending) and webhook-id in the
  autoscale state. Deterministic.
- SIGTERM while batch 2 of 2 has been handed to the scaler (its instances restarting, the
  batch waiting for health, or its webhook's answer not yet seen): whichever phase the kill
  hits, the upgrade resumes and ends.

The scale-in's crash window (between queueing a scale_in and writing that it is done) lies
inside one synchronous step; tests/unit/control/autoscale_controller_test.cc covers it with
the files such a crash leaves."""

import json
import os
import re
import signal
import subprocess
import tempfile
import unittest

from harness import (BIN_DIR, SLOWDOWN, ProcessTestCase, Scalegate, Sgscaler, admin_section,
                     free_port, request, wait_until)

TOKEN = "chaos-upgrade-token"
SECRET = "whsec_" + "Y2hhb3MtdXBncmFkZS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg="
SGCTL = os.path.join(BIN_DIR, "control", "sgctl")
INSTANCES = ["vm-0", "vm-1", "vm-2", "vm-3"]
RESTART_LINE = re.compile(
    r"webhook (msg_[0-9a-z]+) \(upgrade_batch[^)]*\): upgrade_batch: restarting (\S+) at version v2")


class RestartMidUpgradeTest(ProcessTestCase):
    def start_stack(self, scaler_args):
        self.dir = tempfile.mkdtemp(prefix="sgchaos-upgrade-")
        self.admin, self.api = admin_section(self.dir, TOKEN)
        self.state = os.path.join(self.dir, "web.state.json")
        self.admin["state_file"] = self.state
        self.outbox = os.path.join(self.dir, "web.outbox.json")
        self.autoscale_state = os.path.join(self.dir, "web.autoscale.json")
        secret_path = os.path.join(self.dir, "scaler.secret")
        with open(secret_path, "w") as f:
            f.write(SECRET + "\n")
        # Four v1 instances registered by the scaler itself (no webhook before the upgrade).
        self.scaler = Sgscaler(SECRET, self.api.port, TOKEN,
                               extra_args=["--initial", "4"] + list(scaler_args))
        self.addCleanup(self.scaler.stop)
        self.scaler.start()
        web_port = free_port()
        self.sg = Scalegate({
            "log": {"level": "info"},
            "admin": self.admin,
            "drain_timeout": "1s",
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "balance": "round_robin",  # uniform: v2 is let in by the upgrade alone
                "health": {"type": "http", "path": "/health", "interval": "200ms",
                           "timeout": "150ms", "rise": 1, "fall": 2},
                "outlier": {"enabled": False},
                "autoscale": {
                    "evaluation_interval": "1h",
                    "capacity": {"min": 0, "max": 10, "default": 0},  # never scales by itself
                    "scale_in": {"drain": "1s"},
                    "scaler": {"url": self.scaler.url, "secret_file": secret_path,
                               "max_backoff": "1s", "timeout": "2s", "max_attempts": 20},
                },
            }},
        })
        self.addCleanup(self.sg.kill)
        self.sg.start()
        self.wait_members(lambda ms: sorted(m["id"] for m in ms if m["health"] == "healthy")
                          == INSTANCES, "four healthy v1 instances")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        return request(self.api.port, method, path, body=data,
                       headers=[("Authorization", "Bearer " + TOKEN), ("Connection", "close"),
                                ("Content-Type", "application/json")])

    def members(self):
        return self.api.get_json("/v1/pools/web")["members"]

    def upgrade(self):
        return self.api.get_json("/v1/pools/web/upgrade")

    def read_json(self, path):
        with open(path) as f:
            return json.load(f)

    def wait_members(self, ok, what, timeout=20):
        try:
            wait_until(lambda: ok(self.members()), timeout * SLOWDOWN, interval=0.05, what=what)
        except AssertionError:
            self.fail("%s: members %s\nscaler:\n%s\nscalegate:\n%s" % (
                what, json.dumps(self.members()), self.scaler.log()[-3000:],
                self.sg.log()[-3000:]))

    def start_upgrade(self, batch):
        r = self.call("POST", "/v1/pools/web/upgrade",
                      {"version": "v2", "batch": batch, "pause": "200ms", "max_unhealthy": 1,
                       "max_unhealthy_upgraded": 1})
        self.assertEqual(r.status, 202, r)

    def restart_and_finish(self, first_log, batches):
        self.sg.start()
        up = self.upgrade()
        self.assertTrue(up["resumed"], up)
        self.assertIn(up["state"], ("draining", "sending", "waiting_healthy", "pausing",
                                    "completed"), up)
        self.assertIn("rolling upgrade resumed", self.sg.log())
        p = subprocess.run([SGCTL, "--admin", "http://127.0.0.1:%d" % self.api.port,
                            "--token-file", os.path.join(self.dir, "admin.token"),
                            "upgrade", "web", "--status"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r'"resumed":\s*true')
        self.assertRegex(p.stdout, r'"version":\s*"v2"')
        try:
            wait_until(lambda: self.upgrade()["state"] in ("completed", "aborted"),
                       25 * SLOWDOWN, interval=0.1, what="the resumed upgrade to end")
        except AssertionError:
            self.fail("upgrade %s\nscaler:\n%s\nfirst run:\n%s\nsecond run:\n%s" % (
                self.upgrade(), self.scaler.log()[-3000:], first_log[-3000:],
                self.sg.log()[-3000:]))
        up = self.upgrade()
        self.assertEqual(up["state"], "completed", (up, self.sg.log()[-3000:]))
        self.assertEqual((up["batches"], up["instances_total"]), (batches, 4), up)
        # Every instance of the pool is at v2, healthy and back in traffic.
        self.wait_members(lambda ms: sorted((m["id"], m["version"], m["health"], m["drain"])
                                            for m in ms) ==
                          [(i, "v2", "healthy", "none") for i in INSTANCES],
                          "four healthy v2 instances in traffic")
        # Each instance was restarted by the scaler once: started at v1, then at v2.
        instances = self.scaler.instances()
        self.assertEqual(sorted(instances), INSTANCES)
        self.assertEqual({i: (x["version"], x["starts"]) for i, x in instances.items()},
                         {i: ("v2", 2) for i in INSTANCES}, self.scaler.log())
        # One webhook-id per batch, and each instance in one batch.
        acted = RESTART_LINE.findall(self.scaler.log())
        self.assertEqual(sorted(i for _, i in acted), INSTANCES, self.scaler.log())
        self.assertEqual(len({w for w, _ in acted}), batches, acted)
        wait_until(lambda: self.read_json(self.outbox)["deliveries"] == [], 5 * SLOWDOWN,
                   what="the outbox empty")
        return acted

    def test_sigkill_while_the_batch_webhook_is_pending(self):
        # The scaler answers 500 to the first three deliveries: batch 1's stays pending.
        self.start_stack(["--fail-first", "3"])
        self.start_upgrade(batch=1)  # four batches: vm-0, vm-1, vm-2, vm-3
        wait_until(lambda: os.path.exists(self.outbox) and
                   [d["attempts"] for d in self.read_json(self.outbox)["deliveries"]] == [1],
                   15 * SLOWDOWN, interval=0.05, what="batch 1's upgrade_batch tried once")
        pending = self.read_json(self.outbox)["deliveries"][0]
        self.assertEqual(pending["event"]["type"], "upgrade_batch")
        self.assertEqual(pending["event"]["data"]["instances"], ["vm-0"])
        self.sg.kill()  # SIGKILL: nothing is flushed on the way out
        saved = self.read_json(self.autoscale_state)["pools"]["web"]["upgrade"]
        self.assertEqual(saved["machine"]["state"], "sending")
        self.assertEqual(saved["machine"]["current_batch"], ["vm-0"])
        self.assertEqual(saved["webhook_id"], pending["id"])  # written before it was queued
        first_log = self.sg.log()

        acted = self.restart_and_finish(first_log, batches=4)
        # Batch 1 went out under the id it had before the kill, and only under it.
        self.assertIn((pending["id"], "vm-0"), acted)
        events = self.api.get_json("/v1/events?limit=1000")["events"]
        self.assertTrue(any(e["type"] == "upgrade_resumed" for e in events), events)

    def test_sigterm_while_a_batch_is_being_upgraded(self):
        self.start_stack([])
        self.start_upgrade(batch=2)  # two batches: vm-0 + vm-1, vm-2 + vm-3
        # Batch 2's webhook reached the scaler: vm-2 is restarting at v2. Stop now.
        wait_until(lambda: re.search(r"upgrade_batch: restarting vm-2 at version v2",
                                     self.scaler.log()),
                   20 * SLOWDOWN, interval=0.02, what="batch 2 handed to the scaler")
        self.assertEqual(self.sg.stop(signal.SIGTERM, timeout=10 * SLOWDOWN), 0,
                         self.sg.log()[-2000:])
        saved = self.read_json(self.autoscale_state)["pools"]["web"]["upgrade"]["machine"]
        self.assertIn(saved["state"], ("sending", "waiting_healthy", "pausing", "draining"),
                      saved)
        # Batch 2 in flight (or, if the drain let a last tick see it healthy, just done).
        self.assertIn(saved["batch_index"], (1, 2), saved)
        self.restart_and_finish(self.sg.log(), batches=2)


if __name__ == "__main__":
    unittest.main()
