"""What sgload does, whatever the machine's speed: errors by kind, request templates, `-n`,
protocol errors, and HTTP/2 and TLS against nginx (whose access log says which protocol each
request used). No timing bounds here, so this runs under the sanitizers too; sgload's timing
accuracy is tests/integration/test_sgload.py (label perf).

Every sgload run is bounded (`-d` or `-n`, plus a subprocess timeout); all on loopback.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from sgload_common import RUN_GRACE, SGLOAD, SgloadTestCase, describe, sgload


class ErrorKindsTest(SgloadTestCase):
    def test_closed_port_fails_preflight(self):
        """Nothing listening: sgload cannot run at all (exit 1, says why)."""
        port = harness.closed_port()
        cmd = [SGLOAD, "-q", "--json", "-c", "2", "-n", "10", "http://127.0.0.1:%d/" % port]
        p = subprocess.run(cmd, capture_output=True, timeout=RUN_GRACE)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(b"cannot connect", p.stderr, p)

    def test_connect_errors_after_backend_dies(self):
        b = self.backend("dies")
        cmd = [SGLOAD, "-q", "--json", "-c", "2", "-d", "2s", self.url(b)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(harness._kill, p)
        time.sleep(0.5)  # let it run against the live backend first
        b.kill()
        out, err = p.communicate(timeout=2 + RUN_GRACE)
        self.assertEqual(p.returncode, 0, err)
        s = json.loads(out)
        what = describe(cmd[3:], s)
        self.assertGreater(s["status"].get("200", 0), 0, what)
        # Reconnects back off from 1 ms to 100 ms: ~1.5 s of refusals is at least 8 each.
        self.assertGreaterEqual(s["errors"]["connect"], 2 * 8, what)
        self.assertEqual(s["errors"]["timeout"], 0, what)
        self.assertEqual(s["errors"]["protocol"], 0, what)

    def test_timeouts(self):
        b = self.backend("slow")
        args = ["-c", 2, "-d", "1s", "--timeout", "200ms", self.url(b, "/delay/1000")]
        s = sgload(args, timeout=1 + RUN_GRACE)
        what = describe(args, s)
        # Each connection: a request, 200 ms, timeout, reconnect, again: ~4-5 per second.
        self.assertGreaterEqual(s["errors"]["timeout"], 2 * 3, what)
        self.assertLessEqual(s["errors"]["timeout"], 2 * 5 + 2, what)
        self.assertEqual(s["requests"], 0, what)
        self.assertEqual(s["status"], {}, what)
        self.assertEqual(s["errors"]["reset"] + s["errors"]["protocol"], 0, what)

    def test_resets(self):
        b = self.backend("rst")
        args = ["-c", 2, "-d", "1s", self.url(b, "/reset")]
        s = sgload(args, timeout=1 + RUN_GRACE)
        what = describe(args, s)
        self.assertGreater(s["errors"]["reset"], 0, what)
        self.assertEqual(s["status"], {}, what)
        self.assertEqual(s["errors"]["timeout"] + s["errors"]["protocol"], 0, what)

    def test_status_counts(self):
        b = self.backend("s503")
        args = ["-c", 4, "-n", 200, "--path", "/status/503", "--path", "/status/200",
                self.url(b)]
        s = sgload(args, timeout=RUN_GRACE)
        what = describe(args, s)
        self.assertEqual(s["requests"], 200, what)
        self.assertEqual(s["status"], {"503": 100, "200": 100}, what)
        self.assertEqual(sum(s["errors"].values()), 0, what)


class RecordingServer:
    """An HTTP/1.1 origin in a thread that keeps every request whole (request line, headers in
    arrival order, body read by Content-Length) and answers 200 with an empty body."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (request line, [(name, value)], body bytes)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c):
        c.settimeout(0.1)
        buf = b""
        try:
            while not self.stopping.is_set():
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    lines = head.decode("latin-1").split("\r\n")
                    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
                    length = sum(int(v) for n, v in headers if n.lower() == "content-length")
                    if len(rest) < length:
                        break  # the body is still on its way
                    buf = rest[length:]
                    with self.lock:
                        self.requests.append((lines[0], headers, rest[:length]))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            return
        finally:
            c.close()

    def stop(self):
        self.stopping.set()
        self.sock.close()
        for t in self.threads:
            t.join(timeout=2)


class RequestTemplateTest(SgloadTestCase):
    """Method, a list of paths, headers and a body reach the server exactly as asked."""

    def setUp(self):
        self.server = RecordingServer()
        self.addCleanup(self.server.stop)
        self.dir = tempfile.mkdtemp(prefix="sgload-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_n(self, args, n):
        args = ["-c", 2, "-n", n] + args + ["http://127.0.0.1:%d/ignored" % self.server.port]
        s = sgload(args, timeout=RUN_GRACE)
        what = describe(args, s)
        self.assertEqual(s["status"], {"200": n}, what)
        self.assertEqual(sum(s["errors"].values()), 0, what)
        # sgload has exited after N responses, so the server has recorded all N.
        with self.server.lock:
            got = list(self.server.requests)
            self.server.requests.clear()
        self.assertEqual(len(got), n, what)
        return got, what

    def test_method_paths_headers_body(self):
        got, what = self.run_n(["-X", "POST", "--path", "/a?x=1", "--path", "/b",
                                "-H", "X-Test: one two", "-H", "Host: example.test",
                                "-H", "Content-Type: application/json",
                                "--body", '{"k": 1}'], 10)
        lines = sorted(line for line, _, _ in got)
        self.assertEqual(lines, ["POST /a?x=1 HTTP/1.1"] * 5 + ["POST /b HTTP/1.1"] * 5, what)
        for line, headers, body in got:
            h = {}
            for name, value in headers:
                h.setdefault(name.lower(), []).append(value)
            self.assertEqual(h.get("host"), ["example.test"], (line, headers))  # replaced, once
            self.assertEqual(h.get("x-test"), ["one two"], (line, headers))
            self.assertEqual(h.get("content-type"), ["application/json"], (line, headers))
            self.assertEqual(h.get("content-length"), ["8"], (line, headers))
            self.assertEqual(body, b'{"k": 1}', (line, headers))

    def test_body_file_and_paths_file(self):
        body = bytes(range(256)) * 40  # binary, 10240 bytes: several segments on the wire
        body_path = os.path.join(self.dir, "body.bin")
        with open(body_path, "wb") as f:
            f.write(body)
        paths_path = os.path.join(self.dir, "paths.txt")
        with open(paths_path, "w") as f:
            f.write("/one\r\n/two\n\n/three\n")
        got, what = self.run_n(["-X", "PUT", "--body-file", body_path,
                                "--paths-file", paths_path], 9)
        self.assertEqual(sorted(line for line, _, _ in got),
                         sorted(["PUT /one HTTP/1.1", "PUT /two HTTP/1.1",
                                 "PUT /three HTTP/1.1"] * 3), what)
        for line, _, got_body in got:
            self.assertEqual(got_body, body, line)

    def test_default_get_has_no_body(self):
        got, what = self.run_n([], 4)
        for line, headers, body in got:
            self.assertEqual(line, "GET /ignored HTTP/1.1", what)
            names = [n.lower() for n, _ in headers]
            self.assertEqual(sorted(names), ["host", "user-agent"], (line, headers))
            self.assertEqual(body, b"", line)


class ProtocolErrorsTest(SgloadTestCase):
    def test_unparsable_http1_responses(self):
        b = self.start_py_backend("junk", raw={"/junk": (b"SSH-2.0-OpenSSH\r\n\r\n", False)})
        args = ["-c", 2, "-d", "1s", "http://%s/junk" % b.address]
        s = sgload(args, timeout=1 + RUN_GRACE)
        what = describe(args, s)
        # Each error closes the connection and opens a new one; a healthy loop makes many.
        self.assertGreaterEqual(s["errors"]["protocol"], 10, what)
        self.assertEqual(s["status"], {}, what)
        self.assertEqual(s["errors"]["connect"] + s["errors"]["timeout"] +
                         s["errors"]["reset"], 0, what)

    def test_h2c_against_an_http1_server(self):
        b = self.backend("h1only")
        args = ["--h2", "-c", 2, "-d", "1s", self.url(b)]
        s = sgload(args, timeout=1 + RUN_GRACE)
        what = describe(args, s)
        self.assertGreater(s["errors"]["protocol"], 0, what)
        self.assertEqual(s["status"], {}, what)
        self.assertEqual(s["errors"]["connect"] + s["errors"]["timeout"], 0, what)



class StopAtNTest(SgloadTestCase):
    def test_n_stops_at_exactly_n(self):
        b = self.start_py_backend("n")  # records every request it receives
        for n, conns, depth in ((1000, 8, 1), (1001, 3, 4)):
            before = len(b.requests)
            args = ["-c", conns, "-m", depth, "-n", n, "http://%s/" % b.address]
            s = sgload(args, timeout=RUN_GRACE)
            what = describe(args, s)
            self.assertEqual(s["requests"], n, what)
            self.assertEqual(s["status"], {"200": n}, what)
            # sgload has exited, so everything it sent is in the backend's sockets; give
            # the reader threads a moment to drain them, and never see more than N.
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                self.assertLessEqual(len(b.requests) - before, n, what)
                time.sleep(0.02)
            self.assertEqual(len(b.requests) - before, n, what)


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format proto '$server_port $server_protocol $status';
  access_log {dir}/access.log proto;
  keepalive_requests 1000000;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  ssl_certificate {dir}/cert.pem;
  ssl_certificate_key {dir}/key.pem;
  server {{ listen 127.0.0.1:{h2tls} ssl http2; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:{h2c} http2; location / {{ return 200 "ok\\n"; }} }}
  server {{ listen 127.0.0.1:{h1tls} ssl; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def stop_nginx(master):
    """SIGTERM: the master stops its workers, then exits. A SIGKILLed master would leave its
    workers running (and listening), so they are killed by pid only as a last resort."""
    if master.poll() is not None:
        return
    try:
        with open("/proc/%d/task/%d/children" % (master.pid, master.pid)) as f:
            workers = [int(p) for p in f.read().split()]
    except OSError:
        workers = []
    master.send_signal(signal.SIGTERM)
    try:
        master.wait(timeout=5)
    except subprocess.TimeoutExpired:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        harness._kill(master)


@unittest.skipUnless(shutil.which("nginx") and shutil.which("openssl"),
                     "nginx and openssl (scripts/packages.txt, group test) are not installed")
class NginxProtocolsTest(harness.ProcessTestCase):
    """HTTP/2 over TLS (ALPN), h2c (prior knowledge) and HTTP/1.1 over TLS against nginx,
    whose access log says which protocol each request really used."""

    @classmethod
    def setUpClass(cls):
        if not os.access(SGLOAD, os.X_OK):
            raise AssertionError("%s not built" % SGLOAD)
        cls.dir = tempfile.mkdtemp(prefix="sgload-nginx-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", os.path.join(cls.dir, "key.pem"),
             "-out", os.path.join(cls.dir, "cert.pem")],
            check=True, capture_output=True, timeout=30)
        cls.ports = {k: harness.free_port() for k in ("h2tls", "h2c", "h1tls")}
        with open(os.path.join(cls.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=cls.dir, **cls.ports))
        log = open(os.path.join(cls.dir, "nginx.out"), "wb")
        cls.addClassCleanup(log.close)
        cls.nginx = subprocess.Popen(
            ["nginx", "-p", cls.dir, "-e", os.path.join(cls.dir, "error.log"),
             "-c", os.path.join(cls.dir, "nginx.conf")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        cls.addClassCleanup(stop_nginx, cls.nginx)
        for port in cls.ports.values():
            harness.wait_port(port, proc=cls.nginx)

    def protocols(self, port):
        """{protocol: requests} nginx logged on this port."""
        counts = {}
        with open(os.path.join(self.dir, "access.log")) as f:
            for line in f:
                p, proto, status = line.split()
                if int(p) == port and status == "200":
                    counts[proto] = counts.get(proto, 0) + 1
        return counts

    def run_and_check(self, args, port, protocol, logged_as, n, env=None):
        before = self.protocols(port)
        cmd = [SGLOAD, "-q", "--json", "-n", str(n)] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, timeout=RUN_GRACE, env=env,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 0, p)
        s = json.loads(p.stdout)
        what = describe(cmd[3:], s)
        self.assertEqual(s["requests"], n, what)
        self.assertEqual(s["status"], {"200": n}, what)
        self.assertEqual(s["protocol"], protocol, what)
        self.assertEqual(sum(s["errors"].values()), 0, what)
        after = self.protocols(port)
        self.assertEqual(after.get(logged_as, 0) - before.get(logged_as, 0), n,
                         "nginx log %r -> %r; %s" % (before, after, what))

    def test_h2_over_tls(self):
        port = self.ports["h2tls"]
        self.run_and_check(["--h2", "--insecure", "-c", 4, "-m", 8,
                            "https://127.0.0.1:%d/" % port], port, "h2", "HTTP/2.0", 500)

    def test_h2c_prior_knowledge(self):
        port = self.ports["h2c"]
        self.run_and_check(["--h2", "-c", 4, "-m", 8, "http://127.0.0.1:%d/" % port],
                           port, "h2", "HTTP/2.0", 500)

    def test_http1_over_tls_verified(self):
        port = self.ports["h1tls"]
        env = dict(os.environ, SSL_CERT_FILE=os.path.join(self.dir, "cert.pem"))
        self.run_and_check(["-c", 4, "https://127.0.0.1:%d/" % port], port, "http/1.1",
                           "HTTP/1.1", 300, env=env)

    def test_self_signed_rejected_without_insecure(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT")}
        cmd = [SGLOAD, "-q", "--json", "-n", "10", "https://127.0.0.1:%d/" % self.ports["h1tls"]]
        p = subprocess.run(cmd, capture_output=True, timeout=RUN_GRACE, env=env)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(b"verify failed", p.stderr, p)


if __name__ == "__main__":
    unittest.main()
