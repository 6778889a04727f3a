"""The admin API over TLS (admin.tls, optional mTLS) and its audit log (admin.audit_log), on the
real scalegate and sgctl binaries. Certificates are made here with `openssl req`.

TLS: curl --cacert reaches /metrics and /v1 on the one port; plain HTTP to that port gets no
HTTP answer; sgctl talks https:// with --cacert and refuses an unverified certificate; with
client_ca_file a client without a certificate is refused in the handshake.
Audit: every mutating /v1 call (401s included, successful metric pushes excluded) is one JSON
line with time, remote address, token identity, method, path, body and status, and neither
the token nor a wrong token ever appears in the file."""

import hashlib
import json
import os
import re
import subprocess
import tempfile
import unittest

from harness import BIN_DIR, ProcessTestCase, free_port, wait_until
from tlsutil import make_cert

SGCTL = os.path.join(BIN_DIR, "control", "sgctl")
TOKEN = "tls-admin-token-7f3a9c"
WRONG = "not-the-token-b41e"


def token_id(token):
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class AdminTlsTest(ProcessTestCase):
    def start_stack(self, mtls=False):
        self.dir = tempfile.mkdtemp(prefix="sgadmintls-")
        self.cert, self.key = make_cert(self.dir, "admin", "localhost", ["localhost"],
                                        ips=["127.0.0.1"])
        token_path = os.path.join(self.dir, "admin.token")
        with open(token_path, "w") as f:
            f.write(TOKEN + "\n")
        self.token_path = token_path
        secret = os.path.join(self.dir, "scaler.secret")
        with open(secret, "w") as f:
            f.write("whsec_c2NhbGVnYXRlLWFkbWluLXRscy10ZXN0LXNlY3JldC0wMTI=\n")
        self.admin_port = free_port()
        tls = {"cert_file": self.cert, "key_file": self.key}
        if mtls:
            self.client_cert, self.client_key = make_cert(self.dir, "client", "sgctl-operator",
                                                          ["sgctl-operator"])
            tls["client_ca_file"] = self.client_cert
        self.web_port = free_port()
        backend = self.start_backend("b1")
        self.sg = self.start_proxy({
            "log": {"level": "info"},
            "admin": {"listen": "127.0.0.1:%d" % self.admin_port, "token_file": token_path,
                      "state_file": os.path.join(self.dir, "web.state.json"), "tls": tls},
            "listeners": [{"name": "web", "listen": "127.0.0.1:%d" % self.web_port,
                           "routes": [{"path_prefix": "/", "pool": "web"}]}],
            "pools": {"web": {
                "members": [{"id": "b1", "address": backend.address}],
                "autoscale": {"capacity": {"min": 1, "max": 3, "default": 1},
                              "scaler": {"url": "http://127.0.0.1:%d/hooks" % free_port(),
                                         "secret_file": secret}}}},
        })
        # The default audit log: next to the state file, named after the config file.
        self.audit_path = os.path.join(self.dir, "scalegate.audit.log")

    def curl(self, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args),
                              capture_output=True, text=True, timeout=20)

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.admin_port, path)

    def sgctl(self, *args, admin=None):
        base = [SGCTL, "--admin", admin or "https://127.0.0.1:%d" % self.admin_port,
                "--token-file", self.token_path]
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=30)

    def audit_lines(self):
        with open(self.audit_path) as f:
            text = f.read()
        self.assertNotIn(TOKEN, text, "the token must never reach the audit log")
        self.assertNotIn(WRONG, text, "nor a wrong token")
        return [json.loads(l) for l in text.splitlines()]

    def test_tls_curl_plain_http_sgctl_and_audit(self):
        self.start_stack()
        auth = "Authorization: Bearer " + TOKEN

        # curl with the CA: /metrics and /v1 on the same port.
        p = self.curl("--cacert", self.cert, self.url("/metrics"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("scalegate_", p.stdout)
        p = self.curl("--cacert", self.cert, "-H", auth, self.url("/v1/pools"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["pools"][0]["name"], "web")
        # By name as well (the certificate names localhost and 127.0.0.1).
        p = self.curl("--cacert", self.cert, "--resolve",
                      "localhost:%d:127.0.0.1" % self.admin_port,
                      "https://localhost:%d/healthz" % self.admin_port)
        self.assertEqual(p.returncode, 0, p.stderr)

        # Without the CA the certificate does not verify (curl exit 60).
        p = self.curl(self.url("/healthz"))
        self.assertEqual(p.returncode, 60, (p.stdout, p.stderr))
        # Plain HTTP to the TLS port: no HTTP answer at all (empty reply or reset).
        p = self.curl("-o", "/dev/null", "-w", "%{http_code}",
                      "http://127.0.0.1:%d/healthz" % self.admin_port)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stdout.strip(), "000")
        self.assertTrue(self.sg.alive(), self.sg.log())

        # sgctl over https with --cacert: reads and changes.
        p = self.sgctl("--cacert", self.cert, "pools")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("web", p.stdout)
        p = self.sgctl("--cacert", self.cert, "add", "web", "m9", "127.0.0.1:9", "--zone", "1")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.sgctl("--cacert", self.cert, "drain", "web", "m9", "--timeout", "1s")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.sgctl("--cacert", self.cert, "remove", "web", "m9")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.sgctl("--cacert", self.cert, "scale", "web", "1")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.sgctl("--cacert", self.cert, "members", "web",
                       admin="https://localhost:%d" % self.admin_port)
        self.assertEqual(p.returncode, 0, p.stderr)
        # Unverifiable: exit 3 and why.
        p = self.sgctl("pools")
        self.assertEqual(p.returncode, 3, p.stdout)
        self.assertIn("certificate", p.stderr)
        # sgctl speaking plain HTTP to the TLS port fails cleanly too.
        p = self.sgctl("pools", admin="http://127.0.0.1:%d" % self.admin_port)
        self.assertEqual(p.returncode, 3, (p.stdout, p.stderr))

        # Refused mutations are audited too: a wrong token, and no token.
        p = self.curl("--cacert", self.cert, "-X", "PUT", "-H", "Authorization: Bearer " + WRONG,
                      "-d", '{"address":"127.0.0.1:7"}', "-o", "/dev/null", "-w", "%{http_code}",
                      self.url("/v1/pools/web/members/evil"))
        self.assertEqual(p.stdout, "401")
        p = self.curl("--cacert", self.cert, "-X", "DELETE", "-o", "/dev/null",
                      "-w", "%{http_code}", self.url("/v1/pools/web/members/b1"))
        self.assertEqual(p.stdout, "401")
        # A metric push is a data feed: not audited when accepted.
        p = self.curl("--cacert", self.cert, "-H", auth, "-H", "Content-Type: application/json",
                      "-d", '{"metrics":{"queue_depth":3}}', "-o", "/dev/null",
                      "-w", "%{http_code}", self.url("/v1/pools/web/metrics"))
        self.assertTrue(p.stdout.startswith("2"), p.stdout)
        # Reads are never audited.
        self.curl("--cacert", self.cert, "-H", auth, self.url("/v1/events"))

        lines = self.audit_lines()
        seen = [(l["method"], l["path"], l["status"]) for l in lines]
        self.assertEqual(seen, [
            ("PUT", "/v1/pools/web/members/m9", 201),
            ("POST", "/v1/pools/web/members/m9/drain", 202),
            ("DELETE", "/v1/pools/web/members/m9", 200),
            ("POST", "/v1/pools/web/scale", 202),
            ("PUT", "/v1/pools/web/members/evil", 401),
            ("DELETE", "/v1/pools/web/members/b1", 401),
        ], json.dumps(lines, indent=1))
        put = lines[0]
        self.assertRegex(put["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertRegex(put["remote"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(put["token"], token_id(TOKEN))
        self.assertEqual(put["body"], {"address": "127.0.0.1:9", "zone": "1"})
        self.assertEqual(put["body_bytes"], len(json.dumps(put["body"], separators=(",", ":"))))
        self.assertEqual(len(put["body_sha256"]), 64)
        self.assertNotIn("error", put)
        self.assertEqual(lines[1]["body"], {"timeout": "1s"})
        self.assertEqual(lines[3]["body"], {"capacity": 1})
        evil = lines[4]
        self.assertEqual(evil["token"], token_id(WRONG))
        self.assertEqual(evil["error"], "invalid bearer token")
        self.assertEqual(lines[5]["token"], "none")
        self.assertIn("missing Authorization", lines[5]["error"])
        self.assertEqual(os.stat(self.audit_path).st_mode & 0o777, 0o600)
        self.assertRegex(self.sg.log(), r"admin listening.*tls=on")

    def test_mtls_requires_a_client_certificate(self):
        self.start_stack(mtls=True)
        p = self.curl("--cacert", self.cert, self.url("/healthz"))
        self.assertNotEqual(p.returncode, 0, "no client certificate must fail the handshake")
        p = self.curl("--cacert", self.cert, "--cert", self.client_cert, "--key",
                      self.client_key, self.url("/healthz"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok", p.stdout)

        p = self.sgctl("--cacert", self.cert, "pools")
        self.assertEqual(p.returncode, 3, (p.stdout, p.stderr))
        p = self.sgctl("--cacert", self.cert, "--cert", self.client_cert, "--key",
                       self.client_key, "protect", "web", "b1")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = self.audit_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual((lines[0]["method"], lines[0]["status"]), ("PUT", 200))
        self.assertEqual(lines[0]["body"], {"protected": True})
        self.assertIn("CN=sgctl-operator", lines[0]["client_cert"])
        self.assertRegex(self.sg.log(), r"admin listening.*client certificates required")


if __name__ == "__main__":
    unittest.main()
