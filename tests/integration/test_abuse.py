"""Abuse limits and access control per listener (issue 8): per-IP and total connection caps,
request rate per client IP (429 + Retry-After, HTTP/1.1 and HTTP/2), slowloris heads, slow
readers, allow/deny CIDRs, and their counters in /metrics.

Client IPs are loopback source addresses: a socket bound to 127.0.0.2 before connecting is
"client 127.0.0.2" to scalegate (Linux routes all of 127.0.0.0/8 to lo).
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (Client, ConnectionClosed, ProcessTestCase, admin_section, free_port,
                     wait_until)


def closed_at_once(port, source, timeout=3.0):
    """Connects from `source`; True when the server closes without sending anything."""
    c = Client(port, source=source, timeout=timeout)
    try:
        return c.server_closed(timeout)
    finally:
        c.close()


def get_ok(port, source, path="/"):
    with Client(port, source=source) as c:
        r = c.request("GET", path, headers=[("Connection", "close")])
        return r.status


class AbuseTest(ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sg-abuse-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.backend = cls.class_backend("b1")
        cls.admin_cfg, cls.admin = admin_section(cls.dir)
        cls.p = {k: free_port() for k in ("conn", "rate", "slow", "acl", "tcp")}
        route = [{"path_prefix": "/", "pool": "web"}]

        def http(name, **extra):
            d = {"name": name, "protocol": "http", "listen": "127.0.0.1:%d" % cls.p[name],
                 "routes": route}
            d.update(extra)
            return d

        cls.sg = cls.class_proxy({
            "log": {"level": "warn"},
            "admin": cls.admin_cfg,
            "listeners": [
                http("conn", limits={"max_connections": 4, "max_connections_per_ip": 2}),
                http("rate", limits={"requests_per_second_per_ip": 1,
                                     "request_burst_per_ip": 5}),
                http("slow", timeouts={"request_header": "1s", "send": "1s"}),
                http("acl", access={"allow": ["127.0.0.0/8", "::1"],
                                    "deny": ["127.0.0.9/32"]}),
                {"name": "tcp", "protocol": "tcp", "listen": "127.0.0.1:%d" % cls.p["tcp"],
                 "pool": "web", "limits": {"max_connections_per_ip": 1},
                 "access": {"deny": ["127.0.0.10"]}, "timeouts": {"send": "1s"}},
            ],
            "pools": {"web": {"members": [{"id": "b1", "address": cls.backend.address}]}},
        }, workers=2)

    def metric(self, name, **labels):
        return self.admin.metrics().sum(name, **labels)

    def wait_metric(self, name, at_least, **labels):
        wait_until(lambda: self.metric(name, **labels) >= at_least, 5.0,
                   what="%s%r >= %s" % (name, labels, at_least))

    def test_per_ip_and_total_connection_caps(self):
        port = self.p["conn"]
        held = []
        try:
            for src in ("127.0.0.2", "127.0.0.2"):
                c = Client(port, source=src)
                held.append(c)
                self.assertEqual(c.request("GET", "/").status, 200)
            # A third connection from the same IP: accepted and closed with nothing sent.
            self.assertTrue(closed_at_once(port, "127.0.0.2"))
            self.wait_metric("scalegate_listener_limited_total", 1, listener="conn",
                             reason="max_connections_per_ip")
            # Another IP is not affected by the first one's cap...
            for src in ("127.0.0.3", "127.0.0.3"):
                c = Client(port, source=src)
                held.append(c)
                self.assertEqual(c.request("GET", "/").status, 200)
            # ...but the listener now has max_connections (4) open: everyone is refused.
            self.assertTrue(closed_at_once(port, "127.0.0.4"))
            self.wait_metric("scalegate_listener_limited_total", 1, listener="conn",
                             reason="max_connections")
            # Connections on the held ones still work.
            self.assertEqual(held[0].request("GET", "/").status, 200)
        finally:
            for c in held:
                c.close()
        # Once they close, new connections are admitted again.
        wait_until(lambda: self.metric("scalegate_downstream_connections_active",
                                       listener="conn") == 0, 5.0, what="conn listener idle")
        self.assertEqual(get_ok(port, "127.0.0.2"), 200)
        self.assertEqual(get_ok(port, "127.0.0.4"), 200)

    def test_request_rate_answers_429_with_retry_after(self):
        port = self.p["rate"]
        statuses = []
        retry_after = None
        start = time.monotonic()
        with Client(port, source="127.0.0.5") as c:
            for _ in range(12):
                r = c.request("GET", "/")
                statuses.append(r.status)
                if r.status == 429:
                    retry_after = r.header("retry-after")
        elapsed = time.monotonic() - start
        # Burst 5, refilled at 1 per second: at most 5 + elapsed seconds' worth get through.
        ok = statuses.count(200)
        self.assertGreaterEqual(ok, 5, statuses)
        self.assertLessEqual(ok, 5 + int(elapsed) + 1, statuses)
        self.assertEqual(statuses[:5], [200] * 5)
        self.assertIn(429, statuses)
        self.assertIsNotNone(retry_after)
        self.assertGreaterEqual(int(retry_after), 1)
        # The 429 keeps the connection usable, and other clients have their own bucket.
        self.assertEqual(get_ok(port, "127.0.0.6"), 200)
        self.wait_metric("scalegate_listener_limited_total", statuses.count(429), listener="rate",
                         reason="request_rate")
        self.wait_metric("scalegate_http_local_replies_total", statuses.count(429),
                         listener="rate", reason="too_many_requests")

    @unittest.skipIf(shutil.which("nghttp") is None, "nghttp not installed (nghttp2-client)")
    def test_request_rate_applies_to_http2_streams(self):
        # nghttp (h2c prior knowledge) cannot bind a source address: it is client 127.0.0.1,
        # which no other test sends to this listener from. Ten streams on one connection.
        port = self.p["rate"]
        urls = ["http://127.0.0.1:%d/s%d" % (port, i) for i in range(10)]
        start = time.monotonic()
        out = subprocess.run(["nghttp", "-n", "-v"] + urls, capture_output=True, timeout=20)
        elapsed = time.monotonic() - start
        text = out.stdout.decode("latin-1")
        statuses = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", text)
        self.assertEqual(len(statuses), 10, text[-3000:])
        ok = statuses.count("200")
        self.assertGreaterEqual(ok, 5, statuses)
        self.assertLessEqual(ok, 5 + int(elapsed) + 1, statuses)
        self.assertEqual(statuses.count("429"), 10 - ok, statuses)
        self.assertEqual(len(re.findall(r"\) retry-after: [1-9]\d*", text)), 10 - ok, text[-3000:])

    def test_slowloris_closed_after_request_header_timeout(self):
        port = self.p["slow"]
        c = Client(port, source="127.0.0.8", timeout=5.0)
        try:
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            start = time.monotonic()
            closed_after = None
            # One header byte every 100 ms: progress must not restart the 1 s head timeout.
            for i in range(40):
                try:
                    c.sock.sendall(b"X-%d: y\r\n" % i)
                except OSError:
                    closed_after = time.monotonic() - start
                    break
                c.sock.settimeout(0.1)
                try:
                    data = c.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                closed_after = time.monotonic() - start
                if data:
                    self.assertIn(b"408", data.split(b"\r\n")[0])
                break
            self.assertIsNotNone(closed_after, "still open after 4 s of a trickled head")
            self.assertLess(closed_after, 3.0)
        finally:
            c.close()
        self.wait_metric("scalegate_listener_limited_total", 1, listener="slow",
                         reason="request_header_timeout")
        self.wait_metric("scalegate_http_local_replies_total", 1, listener="slow",
                         reason="request_header_timeout")

    def download_socket(self, listener, source, rcvbuf):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind((source, 0))
        s.settimeout(5.0)
        s.connect(("127.0.0.1", self.p[listener]))
        return s

    def expect_slow_reader_cut(self, listener, source):
        """Asks for 64 MiB and reads nothing: the proxy's writes stall and it gives up after
        timeouts.send; what did arrive is less than the whole."""
        size = 64 << 20
        s = self.download_socket(listener, source, 4096)
        try:
            s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
            self.wait_metric("scalegate_listener_limited_total", 1, listener=listener,
                             reason="send_timeout")
            got = 0
            while True:
                try:
                    b = s.recv(1 << 20)
                except ConnectionResetError:
                    break
                if not b:
                    break
                got += len(b)
                self.assertLess(got, size, "the whole response arrived: nothing was cut")
            self.assertLess(got, size)
        finally:
            s.close()

    def test_slow_reader_closed_after_send_timeout(self):
        self.expect_slow_reader_cut("slow", "127.0.0.12")

    def test_tcp_slow_reader_closed_after_send_timeout_steady_reader_not(self):
        """TCP passthrough: the member's bytes wait for a client that takes none of them for
        timeouts.send (1 s): both sides are closed. A client that takes a little every
        0.1 s keeps its (slower than the member) download to the end."""
        self.expect_slow_reader_cut("tcp", "127.0.0.13")

        # ~5 s at 64 KiB per 0.1 s: scalegate's writes to this client stall again and again,
        # never for as long as the send timeout.
        size = 3 << 20
        s = self.download_socket("tcp", "127.0.0.14", 64 << 10)
        before = self.metric("scalegate_listener_limited_total", listener="tcp",
                             reason="send_timeout")
        try:
            s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" %
                      size)
            data = bytearray()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                b = s.recv(64 << 10)
                if not b:
                    break
                data += b
                time.sleep(0.1)
            head, _, body = bytes(data).partition(b"\r\n\r\n")
            self.assertIn(b" 200 ", head.split(b"\r\n")[0], head)
            self.assertEqual(len(body), size, "the steady reader was cut")
        finally:
            s.close()
        self.assertEqual(self.metric("scalegate_listener_limited_total", listener="tcp",
                                     reason="send_timeout"), before)

    def test_access_deny_and_allow(self):
        port = self.p["acl"]
        self.assertTrue(closed_at_once(port, "127.0.0.9"))
        self.assertEqual(get_ok(port, "127.0.0.11"), 200)
        self.wait_metric("scalegate_access_denied_total", 1, listener="acl")
        # tcp listener: denied address closed at once, others relayed; one connection per IP.
        tport = self.p["tcp"]
        self.assertTrue(closed_at_once(tport, "127.0.0.10"))
        with Client(tport, source="127.0.0.13") as c:
            self.assertEqual(c.request("GET", "/").status, 200)
            self.assertTrue(closed_at_once(tport, "127.0.0.13"))  # its second connection
        self.wait_metric("scalegate_access_denied_total", 1, listener="tcp")
        self.wait_metric("scalegate_listener_limited_total", 1, listener="tcp",
                         reason="max_connections_per_ip")


if __name__ == "__main__":
    unittest.main()
