"""TLS termination: SNI picks the certificate (exact, wildcard, default), versions, session
resumption and ticket key rotation, certificate reload on SIGHUP and on file change without
dropping connections, and rotation under load. Real binaries on loopback, openssl s_client,
curl and h2load as clients."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import ProcessTestCase, admin_section, free_port, request, wait_until
from tlsutil import make_cert, s_client, served_subject


def tls_request(port, host, cafile=None, path="/", sock_timeout=5):
    """One HTTP/1.1 request on a new TLS connection; returns (status, server certificate DER)."""
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=sock_timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" %
                       (path, host)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            status = int(data.split(b" ", 2)[1])
            return status, s.getpeercert(binary_form=True)


class TlsTest(ProcessTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sg-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.a_cert, self.a_key = make_cert(self.dir, "a", "a.test", ["a.test", "*.a.test"])
        self.b_cert, self.b_key = make_cert(self.dir, "b", "b.test", ["b.test"])
        self.b1 = self.start_backend("b1")
        self.port = free_port()
        admin, self.admin = admin_section(self.dir)
        self.admin_cfg = admin

    def config(self, extra_tls="", certs=None):
        certs = certs or (f"[ {{ cert: {self.a_cert}, key: {self.a_key} }},"
                          f" {{ cert: {self.b_cert}, key: {self.b_key}, default: true }} ]")
        return f"""
log: {{ level: info }}
admin: {{ listen: "{self.admin_cfg['listen']}", token_file: "{self.admin_cfg['token_file']}" }}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{self.port}
    routes: [ {{ path_prefix: /, pool: web }} ]
    tls:
      certificates: {certs}
      {extra_tls}
pools:
  web:
    members: [ {{ id: b1, address: {self.b1.address} }} ]
"""

    def test_sni_picks_the_certificate(self):
        self.start_proxy(self.config())
        self.assertIn("CN = a.test", served_subject(self.port, "a.test"))
        self.assertIn("CN = a.test", served_subject(self.port, "www.a.test"))  # wildcard
        self.assertIn("CN = b.test", served_subject(self.port, "b.test"))
        self.assertIn("CN = b.test", served_subject(self.port, "deep.www.a.test"))  # one label only
        self.assertIn("CN = b.test", served_subject(self.port, "unknown.test"))  # default
        self.assertIn("CN = b.test", served_subject(self.port, None))  # no SNI: default
        # Verified end to end with curl against the right CA.
        p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                            self.a_cert, "--resolve", "x.a.test:%d:127.0.0.1" % self.port,
                            "https://x.a.test:%d/" % self.port], stdout=subprocess.PIPE,
                           timeout=20)
        self.assertEqual(p.stdout, b"200")

    def test_versions_and_ciphers(self):
        self.start_proxy(self.config())
        out = s_client(self.port, "a.test", ["-tls1_2"])
        self.assertRegex(out, r"New, TLSv1.2, Cipher is ECDHE-ECDSA-AES\d+-GCM-SHA\d+")
        out = s_client(self.port, "a.test", ["-tls1_3"])
        self.assertRegex(out, r"New, TLSv1.3, Cipher is TLS_")
        out = s_client(self.port, "a.test", ["-tls1_1"])
        self.assertNotRegex(out, r"New, TLSv1.1")
        # A CBC-only TLS 1.2 client finds no cipher in the modern default policy.
        out = s_client(self.port, "a.test", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"])
        self.assertNotRegex(out, r"New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-SHA\b")

    def test_session_resumption_and_ticket_rotation(self):
        self.start_proxy(self.config("ticket_rotation: 1s"))
        sess = os.path.join(self.dir, "sess.pem")
        out = s_client(self.port, "a.test", ["-tls1_2", "-sess_out", sess])
        self.assertIn("New, TLSv1.2", out)
        self.assertIn("Reused, TLSv1.2", s_client(self.port, "a.test", ["-tls1_2", "-sess_in", sess]))
        # Three keys are kept (the sealing key and two older ones): after a few rotations the
        # ticket can no longer be opened and the handshake is a full one.
        wait_until(lambda: "New, TLSv1.2" in s_client(self.port, "a.test",
                                                       ["-tls1_2", "-sess_in", sess]),
                   20, interval=0.5, what="the ticket key to be retired")
        m = self.admin.metrics()
        self.assertGreaterEqual(m.value("scalegate_tls_handshakes_total", listener="web",
                                        resumed="true"), 1)

    def test_tickets_off(self):
        self.start_proxy(self.config("session_tickets: false"))
        sess = os.path.join(self.dir, "sess.pem")
        s_client(self.port, "a.test", ["-tls1_2", "-sess_out", sess])
        # No ticket and no session cache: there is nothing to resume with (s_client writes no
        # session file, or one the server does not accept).
        if os.path.exists(sess):
            self.assertIn("New, TLSv1.2",
                          s_client(self.port, "a.test", ["-tls1_2", "-sess_in", sess]))
        out = s_client(self.port, "a.test", ["-tls1_2", "-status"])
        self.assertNotIn("TLS session ticket:", out)

    def test_certificate_reload_on_file_change_keeps_connections(self):
        sg = self.start_proxy(self.config())
        # A kept-alive HTTP/1.1 connection opened before the change.
        ctx = ssl._create_unverified_context()
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s = ctx.wrap_socket(raw, server_hostname="a.test")
        self.addCleanup(s.close)

        def get():
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"b1\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise AssertionError("connection closed")
                data += chunk
            return int(data.split(b" ", 2)[1])
        self.assertEqual(get(), 200)
        old_subject = served_subject(self.port, "a.test")
        self.assertIn("O = scalegate-test", old_subject)
        # Rotate a's certificate on disk (new key, new organisation): no signal needed.
        make_cert(self.dir, "a", "a.test", ["a.test", "*.a.test"], org="rotated")
        wait_until(lambda: "O = rotated" in served_subject(self.port, "a.test"), 10,
                   interval=0.2, what="the new certificate to be served")
        self.assertIn("certificates reloaded", sg.log())
        self.assertEqual(get(), 200)  # the old connection lives on

    def test_sighup_reload_and_bad_files_keep_serving(self):
        sg = self.start_proxy(self.config())
        c_cert, c_key = make_cert(self.dir, "c", "c.test", ["c.test"])
        certs = (f"[ {{ cert: {self.a_cert}, key: {self.a_key} }},"
                 f" {{ cert: {c_cert}, key: {c_key}, default: true }} ]")
        self.assertTrue(sg.reload(self.config(certs=certs)))
        self.assertIn("CN = c.test", served_subject(self.port, "unknown.test"))
        # A key that does not match its certificate: the reload fails, the old ones stay.
        bad = (f"[ {{ cert: {self.a_cert}, key: {self.b_key} }} ]")
        self.assertFalse(sg.reload(self.config(certs=bad)))
        self.assertRegex(sg.log(), r"reload failed.*key values mismatch")
        self.assertIn("CN = c.test", served_subject(self.port, "unknown.test"))
        self.assertEqual(tls_request(self.port, "a.test")[0], 200)

    def test_rotation_under_load_drops_nothing(self):
        sg = self.start_proxy(self.config(), workers=2)
        # h2load keeps connections (h2 over TLS); a second client opens a new TLS connection
        # per request, so handshakes happen while certificates change.
        h2 = subprocess.Popen(["h2load", "-D", "8", "-c", "4", "-m", "4",
                               "https://127.0.0.1:%d/" % self.port],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stop = threading.Event()
        stats = {"ok": 0, "errors": []}

        def fresh_connections():
            while not stop.is_set():
                try:
                    status, _ = tls_request(self.port, "a.test")
                    if status == 200:
                        stats["ok"] += 1
                    else:
                        stats["errors"].append(status)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    stats["errors"].append(repr(e))
        t = threading.Thread(target=fresh_connections)
        t.start()
        reloads = 0
        for i in range(6):
            make_cert(self.dir, "a", "a.test", ["a.test", "*.a.test"], org="gen%d" % i)
            make_cert(self.dir, "b", "b.test", ["b.test"], org="gen%d" % i)
            sg.send_signal(signal.SIGHUP)
            reloads += 1
            time.sleep(0.8)
        out, _ = h2.communicate(timeout=60)
        stop.set()
        t.join(timeout=20)
        out = out.decode()
        self.assertEqual(h2.returncode, 0, out)
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        self.assertIsNotNone(m, out)
        self.assertGreater(int(m.group(4)), 100, out)
        self.assertEqual((m.group(5), m.group(6), m.group(7)), ("0", "0", "0"), out)
        self.assertEqual(stats["errors"], [])
        self.assertGreater(stats["ok"], 10)
        self.assertIn("O = gen5", served_subject(self.port, "a.test"))


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's name
        body = ("tls-origin %s\n" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class UpstreamTlsTest(ProcessTestCase):
    """TLS to pool members, verified against a CA file (and a name), and HTTPS probes."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sg-uptls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.o_cert, self.o_key = make_cert(self.dir, "origin", "origin.test", ["origin.test"])
        self.other_cert, _ = make_cert(self.dir, "other", "other.test", ["other.test"])
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.o_cert, self.o_key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.origin = "127.0.0.1:%d" % self.srv.server_address[1]
        t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(self.srv.server_close)
        self.addCleanup(self.srv.shutdown)
        self.port = free_port()
        admin, self.admin = admin_section(self.dir)
        member = f"[ {{ id: o, address: {self.origin} }} ]"
        self.sg = self.start_proxy(f"""
log: {{ level: info }}
admin: {{ listen: "{admin['listen']}", token_file: "{admin['token_file']}" }}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{self.port}
    routes: [ {{ path_prefix: /good/, pool: good }}, {{ path_prefix: /badname/, pool: badname }},
              {{ path_prefix: /wrongca/, pool: wrongca }}, {{ path_prefix: /noverify/, pool: noverify }} ]
pools:
  good:
    upstream: {{ tls: {{ ca_file: {self.o_cert}, server_name: origin.test }} }}
    health: {{ type: https, path: /health, interval: 200ms, timeout: 150ms, rise: 1, fall: 1 }}
    members: {member}
  badname:
    upstream: {{ retries: 0, tls: {{ ca_file: {self.o_cert}, server_name: other.test }} }}
    members: {member}
  wrongca:
    upstream: {{ retries: 0, tls: {{ ca_file: {self.other_cert}, server_name: origin.test }} }}
    members: {member}
  noverify:
    upstream: {{ tls: {{ verify: false }} }}
    members: {member}
""")

    def test_verified_tls_to_members(self):
        for _ in range(3):
            r = request(self.port, "GET", "/good/x")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"tls-origin /good/x\n")
        # Kept alive: three requests, one connection (a TLS 1.3 session ticket arriving on the
        # idle connection does not make it look closed).
        m = self.admin.metrics()
        self.assertEqual(m.value("scalegate_member_connections_total", pool="good", member="o"), 1)

    def test_verification_failures_are_502(self):
        self.assertEqual(request(self.port, "GET", "/badname/x").status, 502)   # name mismatch
        self.assertEqual(request(self.port, "GET", "/wrongca/x").status, 502)   # untrusted chain
        self.assertEqual(request(self.port, "GET", "/noverify/x").status, 200)  # verify: false
        m = self.admin.metrics()
        self.assertEqual(m.value("scalegate_member_connect_failures_total", pool="badname",
                                 member="o"), 1)

    def test_https_probe(self):
        wait_until(lambda: self.admin.metrics().value(
            "scalegate_health_checks_total", pool="good", member="o", result="ok") or 0,
            10, interval=0.1, what="a successful https probe")


if __name__ == "__main__":
    unittest.main()
