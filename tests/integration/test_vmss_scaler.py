"""bench/vmss_scaler.py, the example scaler for a real Azure VM Scale Set, driven by the real
scalegate: a manual scale-out and a scale-in become the az commands README.md documents (dry
run: printed, not run), and a wrongly signed delivery is refused."""

import os
import subprocess
import sys
import tempfile
import time
import unittest

from harness import (BIN_DIR, SOURCE_DIR, ProcessTestCase, admin_section, free_port, request,
                     sign_webhook, wait_until, wait_port)

SECRET = "whsec_" + "dm1zcy1zY2FsZXItZXhhbXBsZS1zZWNyZXQ="
TOKEN = "vmss-token"


class VmssScalerTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgvmss-")
        secret_path = os.path.join(self.dir, "scaler.secret")
        with open(secret_path, "w") as f:
            f.write(SECRET + "\n")
        self.scaler_port = free_port()
        self.out_path = os.path.join(self.dir, "vmss.log")
        self.out = open(self.out_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(SOURCE_DIR, "bench", "vmss_scaler.py"),
             "--listen", "127.0.0.1:%d" % self.scaler_port, "--secret-file", secret_path,
             "--resource-group", "rg-demo", "--vmss", "web-vmss"],
            stdout=self.out, stderr=subprocess.STDOUT)
        self.addCleanup(self.stop_scaler)
        wait_port(self.scaler_port, proc=self.proc)
        self.backend = self.start_backend("0")
        admin, self.api = admin_section(self.dir, TOKEN)
        admin["state_file"] = os.path.join(self.dir, "sg.state.json")
        self.config = {
            "admin": admin,
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % free_port(),
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "members": [{"id": "0", "address": "127.0.0.1:%d" % self.backend.port}],
                "autoscale": {
                    "evaluation_interval": "30s",
                    "capacity": {"min": 1, "max": 5, "default": 1},
                    "scaler": {"url": "http://127.0.0.1:%d/hooks" % self.scaler_port,
                               "secret_file": secret_path},
                    "scale_in": {"drain": "2s"},
                }}},
        }
        self.sg = self.start_proxy(self.config)

    def stop_scaler(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.out.close()

    def log(self):
        with open(self.out_path) as f:
            return f.read()

    def sgctl(self, *args):
        p = subprocess.run([os.path.join(BIN_DIR, "control", "sgctl"), "--admin",
                            "http://127.0.0.1:%d" % self.api.port, "--token-file",
                            os.path.join(self.dir, "admin.token")] + list(args),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_events_become_az_vmss_commands(self):
        self.sgctl("scale", "web", "3")
        want = ("would run: az vmss scale --resource-group rg-demo --name web-vmss "
                "--new-capacity 3")
        wait_until(lambda: want in self.log(), 10, what="az vmss scale")
        # The pool has one member (id "0"); scaling to 0 is bounded by min 1, so register a
        # second instance and scale in to 1: the drained member is deleted by instance id.
        b1 = self.start_backend("1")
        r = request(self.api.port, "PUT", "/v1/pools/web/members/1",
                    body=b'{"address": "127.0.0.1:%d"}' % b1.port,
                    headers=[("Authorization", "Bearer " + TOKEN), ("Connection", "close")])
        self.assertEqual(r.status, 201, r)
        self.sgctl("scale", "web", "1")
        wait_until(lambda: "delete-instances" in self.log(), 15, what="az vmss delete-instances")
        line = [l for l in self.log().splitlines() if "delete-instances" in l][0]
        self.assertIn("--resource-group rg-demo --name web-vmss --instance-ids 1", line)

    def test_bad_signature_is_refused(self):
        body = b'{"type":"scale_out","id":"msg_x","data":{"new_capacity":9}}'
        ts = str(int(time.time()))
        good = sign_webhook(SECRET, "msg_x", ts, body)
        bad = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
        r = request(self.scaler_port, "POST", "/hooks", body=body,
                    headers=[("webhook-id", "msg_x"), ("webhook-timestamp", ts),
                             ("webhook-signature", bad), ("Connection", "close")])
        self.assertEqual(r.status, 401)
        r = request(self.scaler_port, "POST", "/hooks", body=body + b" ",
                    headers=[("webhook-id", "msg_x"), ("webhook-timestamp", ts),
                             ("webhook-signature", good), ("Connection", "close")])
        self.assertEqual(r.status, 401)
        self.assertNotIn("would run", self.log())


if __name__ == "__main__":
    unittest.main()
