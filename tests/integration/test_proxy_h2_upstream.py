"""HTTP/2 towards pool members (`upstream.protocol: h2`): real nginx origins speaking h2c
(prior knowledge) and h2 over TLS (ALPN), HTTP/1.1 and HTTP/2 clients, 1 MiB bodies both ways
(nginx WebDAV PUT, then GET), many requests over few member connections, a member that does
not offer h2, and a member killed in the middle of a response. Real binaries on loopback."""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (Client, ConnectionClosed, ProcessTestCase, admin_section, free_port,
                     wait_port, wait_until)
from tlsutil import make_cert

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """One nginx (single process, foreground) serving `root` over h2c on `port`, and, when
    given, h2 over TLS on `tls_port` and TLS without h2 on `h1_tls_port`. The access log has
    one line per request: connection serial, protocol, method, uri, status, body bytes."""

    def __init__(self, directory, name, root, cert=None, key=None, tls_port=None,
                 h1_tls_port=None, keepalive_requests=100000):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.tls_port = tls_port
        self.h1_tls_port = h1_tls_port
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        listens = ["listen 127.0.0.1:%d http2;" % self.port]
        tls = ""
        if tls_port:
            listens.append("listen 127.0.0.1:%d ssl http2;" % tls_port)
        if h1_tls_port:
            listens.append("listen 127.0.0.1:%d ssl;" % h1_tls_port)
        if cert:
            tls = "ssl_certificate %s; ssl_certificate_key %s;" % (cert, key)
        d = self.dir
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 1024; }}
http {{
  log_format h2up '$connection $server_protocol $request_method $uri $status $body_bytes_sent';
  access_log {self.access_log} h2up;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  types {{ application/octet-stream bin; }}
  server {{
    {' '.join(listens)}
    {tls}
    root {root};
    client_max_body_size 16m;
    keepalive_requests {keepalive_requests};
    location /files/ {{ dav_methods PUT DELETE; create_full_put_path on; }}
    location /slow/ {{ limit_rate 256k; }}
  }}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([NGINX, "-c", self.conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        for p in (self.port, self.tls_port, self.h1_tls_port):
            if p:
                wait_port(p, proc=self.proc)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def lines(self):
        """Access log entries: (connection, protocol, method, uri, status, bytes)."""
        try:
            with open(self.access_log) as f:
                return [tuple(l.split()) for l in f if l.strip()]
        except FileNotFoundError:
            return []


def established(port):
    """Established TCP connections to 127.0.0.1:port (as the server side sees them)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    return len([l for l in out.splitlines() if l.strip()])


def curl(args, timeout=30):
    """curl -s with the status code and HTTP version appended; returns (rc, body, code, ver)."""
    p = subprocess.run(["curl", "-s", "-S", "-o", "-", "-w", "\n@@%{http_code} %{http_version}"]
                       + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    out = p.stdout
    i = out.rfind(b"\n@@")
    body, tail = out[:i], out[i + 3:].decode()
    code, ver = tail.split()
    return p.returncode, body, int(code), ver


class H2UpstreamTest(ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sg-h2up-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.root = os.path.join(cls.dir, "www")
        os.makedirs(os.path.join(cls.root, "files"))
        os.makedirs(os.path.join(cls.root, "slow"))
        with open(os.path.join(cls.root, "index.html"), "w") as f:
            f.write("hello from nginx\n")
        cls.big = os.urandom(1 << 20)
        with open(os.path.join(cls.root, "big.bin"), "wb") as f:
            f.write(cls.big)
        with open(os.path.join(cls.root, "slow", "huge.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
        cls.cert, cls.key = make_cert(cls.dir, "origin", "origin.test", ["origin.test"])
        cls.origin = Nginx(cls.dir, "origin", cls.root, cls.cert, cls.key, tls_port=free_port(),
                           h1_tls_port=free_port()).start()
        cls.addClassCleanup(cls.origin.stop)
        cls.port = free_port()
        admin, cls.admin = admin_section(cls.dir)
        o = cls.origin
        cls.sg = cls.class_proxy(f"""
log: {{ level: info }}
admin: {{ listen: "{admin['listen']}", token_file: "{admin['token_file']}" }}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{cls.port}
    routes: [ {{ path_prefix: /tls/, pool: tls }}, {{ path_prefix: /h1tls/, pool: h1tls }},
              {{ path_prefix: /, pool: h2c }} ]
pools:
  h2c:
    upstream: {{ protocol: h2, h2_max_connections_per_member: 2, retries: 1 }}
    members: [ {{ id: n1, address: 127.0.0.1:{o.port} }} ]
  tls:
    upstream:
      protocol: h2
      tls: {{ ca_file: {cls.cert}, server_name: origin.test }}
    members: [ {{ id: t1, address: 127.0.0.1:{o.tls_port} }} ]
  h1tls:
    upstream:
      protocol: h2
      tls: {{ ca_file: {cls.cert}, server_name: origin.test }}
    members: [ {{ id: x1, address: 127.0.0.1:{o.h1_tls_port} }} ]
""")

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def origin_since(self, n):
        return self.origin.lines()[n:]

    def test_http11_client_keep_alive_and_1mib_bodies(self):
        mark = len(self.origin.lines())
        body = os.urandom(1 << 20)
        with Client(self.port, timeout=20) as c:
            r = c.request("GET", "/index.html")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"hello from nginx\n")
            # 1 MiB up (content-length), then back down, on the same client connection.
            r = c.request("PUT", "/files/cl.bin", body=body)
            self.assertIn(r.status, (201, 204), r)
            r = c.request("GET", "/files/cl.bin")
            self.assertEqual(r.status, 200)
            self.assertEqual(hashlib.sha1(r.body).hexdigest(), hashlib.sha1(body).hexdigest())
            # A chunked request body reaches the member as DATA without the chunk framing.
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 70000]), body[i:i + 70000])
                              for i in range(0, len(body), 70000)) + b"0\r\n\r\n"
            c.send(b"PUT /files/chunked.bin HTTP/1.1\r\nHost: localhost\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
            r = c.read_response("PUT")
            self.assertIn(r.status, (201, 204), r)
            r = c.request("GET", "/files/chunked.bin")
            self.assertEqual(r.body, body)
            r = c.request("GET", "/big.bin")
            self.assertEqual(r.body, self.big)
            r = c.request("GET", "/missing")
            self.assertEqual(r.status, 404)
            self.assertFalse(c.eof)  # one client connection throughout
        lines = self.origin_since(mark)
        self.assertGreaterEqual(len(lines), 7, lines)
        self.assertTrue(all(l[1] == "HTTP/2.0" for l in lines), lines)
        self.assertLessEqual(len({l[0] for l in lines}), 2, lines)

    def test_http2_client_prior_knowledge(self):
        mark = len(self.origin.lines())
        path = os.path.join(self.dir, "up.bin")
        body = os.urandom((1 << 20) + 7)
        with open(path, "wb") as f:
            f.write(body)
        rc, _, code, ver = curl(["--http2-prior-knowledge", "-T", path, self.url("/files/h2.bin")])
        self.assertEqual(rc, 0)
        self.assertIn(code, (201, 204))
        self.assertEqual(ver, "2")
        rc, got, code, ver = curl(["--http2-prior-knowledge", self.url("/files/h2.bin")])
        self.assertEqual((rc, code, ver), (0, 200, "2"))
        self.assertEqual(got, body)
        # An upload without content-length (chunked on the way in, DATA on the way out).
        rc, _, code, _ = curl(["--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked",
                               "-T", path, self.url("/files/h2c.bin")])
        self.assertIn(code, (201, 204))
        rc, got, code, _ = curl(["--http2-prior-knowledge", self.url("/files/h2c.bin")])
        self.assertEqual(got, body)
        lines = self.origin_since(mark)
        self.assertTrue(lines and all(l[1] == "HTTP/2.0" for l in lines), lines)

    def test_many_concurrent_requests_share_few_connections(self):
        mark = len(self.origin.lines())
        before = self.admin.metrics().value("scalegate_member_connections_total", pool="h2c",
                                            member="n1") or 0
        p = subprocess.run(["h2load", "--h1", "-n", "600", "-c", "40", self.url("/index.html")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode()
        self.assertIn("600 succeeded", out, out)
        p = subprocess.run(["h2load", "-n", "600", "-c", "4", "-m", "30", self.url("/index.html")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode()
        self.assertIn("600 succeeded", out, out)
        lines = [l for l in self.origin_since(mark) if l[3] == "/index.html"]
        self.assertEqual(len(lines), 1200)
        conns = {l[0] for l in lines}
        # h2_max_connections_per_member: 2, one worker.
        self.assertLessEqual(len(conns), 2, conns)
        after = self.admin.metrics().value("scalegate_member_connections_total", pool="h2c",
                                           member="n1")
        self.assertLessEqual(after - before, 2)

    def test_tls_alpn_h2(self):
        mark = len(self.origin.lines())
        with Client(self.port, timeout=10) as c:
            for _ in range(3):
                r = c.request("GET", "/tls/../index.html")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"hello from nginx\n")
        rc, got, code, ver = curl(["--http2-prior-knowledge", self.url("/tls/../big.bin"),
                                   "--path-as-is"])
        self.assertEqual((code, ver), (200, "2"))
        self.assertEqual(got, self.big)
        lines = self.origin_since(mark)
        self.assertEqual(len(lines), 4, lines)
        self.assertTrue(all(l[1] == "HTTP/2.0" for l in lines), lines)

    def test_member_without_h2_fails_clearly(self):
        r = Client(self.port, timeout=10).request("GET", "/h1tls/index.html")
        self.assertEqual(r.status, 502)
        self.sg.wait_log(r"TLS ALPN did not select h2")
        r = Client(self.port, timeout=10).request("GET", "/h1tls/index.html")
        self.assertEqual(r.status, 502)
        self.assertEqual(self.sg.count(r"TLS ALPN did not select h2"), 1)  # said once
        m = self.admin.metrics()
        self.assertGreaterEqual(m.value("scalegate_member_connect_failures_total", pool="h1tls",
                                        member="x1") or 0, 2)


class H2UpstreamFailureTest(ProcessTestCase):
    def test_goaway_from_the_member(self):
        """nginx ends an HTTP/2 connection with GOAWAY after keepalive_requests streams: the
        streams it did not take are sent again on a new connection, whatever the method."""
        d = tempfile.mkdtemp(prefix="sg-h2up-goaway-")
        self.addCleanup(shutil.rmtree, d, True)
        root = os.path.join(d, "www")
        os.makedirs(os.path.join(root, "files"))
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello\n")
        n = Nginx(d, "n", root, keepalive_requests=50).start()
        self.addCleanup(n.stop)
        port = free_port()
        self.start_proxy(f"""
log: {{ level: info }}
listeners:
  - {{ name: web, protocol: http, listen: 127.0.0.1:{port}, routes: [ {{ pool: p }} ] }}
pools:
  p:
    upstream: {{ protocol: h2, retries: 2, h2_max_connections_per_member: 1 }}
    members: [ {{ id: n, address: 127.0.0.1:{n.port} }} ]
""")
        # At most 20 streams in flight, 50 per member connection: a refused stream gets in on
        # the next connection (the retry budget is 2).
        p = subprocess.run(["h2load", "-n", "500", "-c", "5", "-m", "4",
                            "http://127.0.0.1:%d/index.html" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode()
        self.assertIn("500 succeeded", out, out)
        # Uploads (not idempotent) over connections that keep going away.
        errors = []

        def upload(i):
            try:
                with Client(port, timeout=10) as c:
                    for j in range(10):
                        body = (b"%d-%d|" % (i, j)) * 100
                        method = "POST" if j % 2 else "PUT"
                        r = c.request(method, "/files/u%d-%d" % (i, j), body=body)
                        # nginx answers POST to a static path itself (404); PUT stores it.
                        if r.status not in ((404, 405) if method == "POST" else (201, 204)):
                            errors.append(r)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        conns = {l[0] for l in n.lines()}
        self.assertGreaterEqual(len(conns), 500 // 50)  # the member really did go away


    def test_reload_removing_the_member_closes_its_connection_after_the_last_stream(self):
        d = tempfile.mkdtemp(prefix="sg-h2up-reload-")
        self.addCleanup(shutil.rmtree, d, True)
        root = os.path.join(d, "www")
        os.makedirs(os.path.join(root, "slow"))
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello\n")
        blob = os.urandom(384 << 10)  # 1.5 s at nginx's limit_rate of 256k
        with open(os.path.join(root, "slow", "blob.bin"), "wb") as f:
            f.write(blob)
        a = Nginx(d, "a", root).start()
        self.addCleanup(a.stop)
        b = Nginx(d, "b", root).start()
        self.addCleanup(b.stop)
        port = free_port()
        config = """
log: {{ level: info }}
listeners:
  - {{ name: web, protocol: http, listen: 127.0.0.1:{port}, routes: [ {{ pool: p }} ] }}
pools:
  p:
    upstream: {{ protocol: h2 }}
    members: [ {{ id: {id}, address: 127.0.0.1:{member} }} ]
"""
        sg = self.start_proxy(config.format(port=port, id="a", member=a.port))
        c = Client(port, timeout=20)
        self.addCleanup(c.close)
        c.send(b"GET /slow/blob.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_until(lambda: established(a.port) == 1, 5, what="a connection to member a")
        self.assertTrue(sg.reload(config.format(port=port, id="b", member=b.port)))
        # New requests go to b while the download from a goes on, on a's connection.
        with Client(port, timeout=10) as k:
            self.assertEqual(k.request("GET", "/index.html").status, 200)
        self.assertEqual(len(b.lines()), 1)
        self.assertEqual(established(a.port), 1)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, blob)
        # The stream is over: the connection to the removed member closes.
        wait_until(lambda: established(a.port) == 0, 5, what="the connection to a to close")

    def test_silent_member_gets_the_request_timeout(self):
        """A member that takes the connection and never answers: 504 at the request timeout,
        for HTTP/1.1 and HTTP/2 clients, and the proxy stays healthy."""
        import socket
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        self.addCleanup(lsock.close)
        held = []

        def swallow():
            while True:
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    return
                held.append(conn)  # read nothing, answer nothing
        threading.Thread(target=swallow, daemon=True).start()
        self.addCleanup(lambda: [c.close() for c in held])
        port = free_port()
        sg = self.start_proxy(f"""
log: {{ level: info }}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes: [ {{ pool: p }} ]
    timeouts: {{ request: 1s }}
pools:
  p:
    upstream: {{ protocol: h2 }}
    members: [ {{ id: s, address: 127.0.0.1:{lsock.getsockname()[1]} }} ]
""")
        t0 = time.monotonic()
        with Client(port, timeout=10) as c:
            self.assertEqual(c.request("GET", "/").status, 504)
        rc, _, code, ver = curl(["--http2-prior-knowledge", "http://127.0.0.1:%d/" % port])
        self.assertEqual((code, ver), (504, "2"))
        self.assertLess(time.monotonic() - t0, 6)
        self.assertTrue(sg.alive())

    def test_member_killed_mid_stream_then_retry_on_the_other(self):
        d = tempfile.mkdtemp(prefix="sg-h2up-kill-")
        self.addCleanup(shutil.rmtree, d, True)
        root = os.path.join(d, "www")
        os.makedirs(os.path.join(root, "slow"))
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello\n")
        with open(os.path.join(root, "slow", "huge.bin"), "wb") as f:
            f.write(os.urandom(8 << 20))
        a = Nginx(d, "a", root).start()
        self.addCleanup(a.stop)
        b = Nginx(d, "b", root).start()
        self.addCleanup(b.stop)
        port = free_port()
        # /slow/ goes to member a only; everything else to a or b.
        sg = self.start_proxy(f"""
log: {{ level: info }}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes: [ {{ path_prefix: /slow/, pool: only_a }}, {{ path_prefix: /, pool: both }} ]
pools:
  only_a:
    upstream: {{ protocol: h2, connect_timeout: 1s }}
    members: [ {{ id: a, address: 127.0.0.1:{a.port} }} ]
  both:
    balance: round_robin
    upstream: {{ protocol: h2, retries: 2, connect_timeout: 1s }}
    members: [ {{ id: a, address: 127.0.0.1:{a.port} }}, {{ id: b, address: 127.0.0.1:{b.port} }} ]
""")
        for _ in range(4):  # both members have live h2 connections from scalegate
            with Client(port, timeout=10) as k:
                self.assertEqual(k.request("GET", "/index.html").status, 200)
        c = Client(port, timeout=10)
        self.addCleanup(c.close)
        c.send(b"GET /slow/huge.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            data = c.sock.recv(65536)
            self.assertTrue(data, "closed before the response head")
            head += data
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        a.proc.kill()
        a.proc.wait(5)
        # The client sees the end of the connection quickly, short of the 8 MiB: no hang.
        t0 = time.monotonic()
        got = len(head)
        c.sock.settimeout(10)
        while True:
            try:
                data = c.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            got += len(data)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertLess(got, 8 << 20)
        # The only member of /slow/ is gone: 502 at once, not a hang.
        t0 = time.monotonic()
        with Client(port, timeout=10) as k:
            self.assertEqual(k.request("GET", "/slow/huge.bin").status, 502)
        self.assertLess(time.monotonic() - t0, 3)
        # Requests for the other pool all succeed: connect failures to a are retried on b.
        for _ in range(6):
            with Client(port, timeout=10) as k:
                r = k.request("GET", "/index.html")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, b"hello\n")
        self.assertTrue(sg.alive())


if __name__ == "__main__":
    unittest.main()
