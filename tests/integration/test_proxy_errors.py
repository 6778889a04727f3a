"""scalegate's HTTP/1.1 proxy under bad clients and failing members: every case gets the right
local reply, and the proxy keeps serving a second, well-behaved client afterwards."""

import socket
import threading
import time
import unittest

from harness import (Client, ConnectionClosed, ProcessTestCase, build_request, closed_port,
                     free_port, request, wait_until)

REQUEST_HEADER_TIMEOUT = 1.0
REQUEST_TIMEOUT = 1.0


def errors_config(port, web, mixed, pair, py, dead1, dead2):
    """web/pair: two sgbackends; mixed: an sgbackend and a PyBackend (answers any path);
    halfdead: an sgbackend and a closed port; dead: two closed ports; empty: no members."""
    return f"""
log: {{ level: info }}
drain_timeout: 2s
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes:
      - {{ host: mixed.test, pool: mixed }}
      - {{ host: pair.test, pool: pair }}
      - {{ host: py.test, pool: py }}
      - {{ host: halfdead.test, pool: halfdead }}
      - {{ host: dead.test, pool: dead }}
      - {{ host: empty.test, pool: empty }}
      - {{ path_prefix: /, pool: web }}
    limits: {{ max_request_header_bytes: 8k, max_headers: 50, max_uri_bytes: 2k, max_request_body_bytes: 1M }}
    timeouts: {{ request_header: {int(REQUEST_HEADER_TIMEOUT * 1000)}ms, idle: 10s, request: {int(REQUEST_TIMEOUT * 1000)}ms }}
pools:
  web:
    balance: round_robin
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members: [ {{ id: w1, address: {web[0]} }}, {{ id: w2, address: {web[1]} }} ]
  mixed:
    balance: round_robin
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members: [ {{ id: sg, address: {mixed[0]} }}, {{ id: py, address: {mixed[1]} }} ]
  pair:
    balance: round_robin
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members: [ {{ id: p1, address: {pair[0]} }}, {{ id: p2, address: {pair[1]} }} ]
  py:
    members: [ {{ id: py, address: {py} }} ]
  halfdead:
    balance: round_robin
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members: [ {{ id: alive, address: {web[0]} }}, {{ id: gone, address: {dead1} }} ]
  dead:
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members: [ {{ id: gone1, address: {dead1} }}, {{ id: gone2, address: {dead2} }} ]
  empty:
    members: []
"""


# (name, raw request, whether the head itself is bad: nothing may reach the member)
SMUGGLING = [
    ("cl_and_te", b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length: 6\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", True),
    ("te_and_cl", b"POST / HTTP/1.1\r\nHost: py.test\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 6\r\n\r\n0\r\n\r\nG", True),
    ("duplicate_differing_cl", b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length: 5\r\n"
                               b"Content-Length: 6\r\n\r\nhello!", True),
    ("cl_list_differing", b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length: 5, 6\r\n\r\n"
                          b"hello!", True),
    ("cl_with_sign", b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length: +5\r\n\r\nhello", True),
    ("te_not_chunked_last", b"POST / HTTP/1.1\r\nHost: py.test\r\n"
                            b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", True),
    ("bad_chunk_size", b"POST / HTTP/1.1\r\nHost: py.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n", False),
    ("negative_chunk_size", b"POST / HTTP/1.1\r\nHost: py.test\r\nTransfer-Encoding: chunked\r\n"
                            b"\r\n-5\r\nhello\r\n0\r\n\r\n", False),
    ("chunk_missing_crlf", b"POST / HTTP/1.1\r\nHost: py.test\r\nTransfer-Encoding: chunked\r\n"
                           b"\r\n5\r\nhelloXX0\r\n\r\n", False),
    ("bare_lf", b"GET / HTTP/1.1\nHost: py.test\n\n", True),
    ("bare_lf_in_one_field", b"GET / HTTP/1.1\r\nHost: py.test\r\nX-A: 1\nX-B: 2\r\n\r\n", True),
    ("bare_cr", b"GET / HTTP/1.1\r\nHost: py.test\r\nX-A: 1\rX-B: 2\r\n\r\n", True),
    ("obs_fold", b"GET / HTTP/1.1\r\nHost: py.test\r\nX-A: 1\r\n continued\r\n\r\n", True),
    ("space_before_colon", b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length : 5\r\n\r\n"
                           b"hello", True),
    ("two_hosts", b"GET / HTTP/1.1\r\nHost: py.test\r\nHost: other.test\r\n\r\n", True),
    ("no_host_http11", b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", True),
]


class ProxyErrorsTest(ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.w1 = cls.class_backend("w1")
        cls.w2 = cls.class_backend("w2")
        cls.pyb = cls.class_py_backend("py")
        cls.port = free_port()
        cls.dead1 = "127.0.0.1:%d" % closed_port()
        cls.dead2 = "127.0.0.1:%d" % closed_port()
        cls.sg = cls.class_proxy(errors_config(
            cls.port, web=(cls.w1.address, cls.w2.address),
            mixed=(cls.w1.address, cls.pyb.address), pair=(cls.w1.address, cls.w2.address),
            py=cls.pyb.address, dead1=cls.dead1, dead2=cls.dead2))

    def setUp(self):
        self.assertTrue(self.sg.alive(), "scalegate died earlier:\n" + self.sg.log())

    def tearDown(self):
        # After every case the proxy must still be up and serve a well-behaved client.
        self.assertTrue(self.sg.alive(), "scalegate died:\n" + self.sg.log())
        self.assert_served(self.port, "/still-ok", ("w1", "w2"))

    def expect_local_reply_and_close(self, raw, status, send_timeout=5.0):
        with Client(self.port) as c:
            try:
                c.send(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the proxy may answer and close before reading everything
            r = c.read_response(timeout=send_timeout)
            self.assertEqual(r.status, status, r)
            self.assertIsNone(r.backend, "a local reply must not come from a member: %r" % r)
            self.assertEqual((r.header("connection") or "").lower(), "close", r)
            self.assertTrue(c.server_closed(timeout=3.0),
                            "connection left open after a %d" % status)
        return r

    # --- request smuggling and malformed heads ---------------------------------------------

    def test_smuggling_and_malformed_requests_get_400_and_close(self):
        for name, raw, head_is_bad in SMUGGLING:
            with self.subTest(case=name):
                before = len(self.pyb.requests)
                self.expect_local_reply_and_close(raw, 400)
                if head_is_bad:
                    self.assertEqual(len(self.pyb.requests), before,
                                     "a rejected request reached the member: %s" %
                                     self.pyb.requests[before:])
                self.assert_served(self.port, "/between", ("w1", "w2"))

    def test_smuggled_second_request_is_not_served(self):
        # CL.TE desync attempt: if the proxy used Content-Length and the member chunked (or
        # the other way round), "GET /smuggled" would become a second request.
        before = len(self.pyb.requests)
        raw = (b"POST / HTTP/1.1\r\nHost: py.test\r\nContent-Length: 35\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n")
        self.expect_local_reply_and_close(raw, 400)
        self.assertFalse(any("/smuggled" in r for r in self.pyb.requests[before:]),
                         self.pyb.requests[before:])

    # --- limits ----------------------------------------------------------------------------

    def test_header_over_max_request_header_bytes_is_431(self):
        raw = build_request("GET", "/", [("X-Big", "a" * 10000)])
        self.expect_local_reply_and_close(raw, 431)

    def test_header_over_limit_without_end_of_head_is_431(self):
        # The limit applies as bytes arrive, not only once the blank line is seen.
        raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000
        self.expect_local_reply_and_close(raw, 431)

    def test_too_many_headers_is_431(self):
        raw = build_request("GET", "/", [("X-H%d" % i, "v") for i in range(60)])
        self.expect_local_reply_and_close(raw, 431)

    def test_headers_at_the_limit_are_served(self):
        # 49 fields + Host = 50 = max_headers.
        r = request(self.port, "GET", "/", headers=[("X-H%d" % i, "v") for i in range(49)])
        self.assertEqual(r.status, 200, r)

    def test_uri_over_limit_is_414(self):
        raw = build_request("GET", "/" + "a" * 3000)
        self.expect_local_reply_and_close(raw, 414)

    def test_body_over_limit_content_length_is_413(self):
        raw = build_request("POST", "/echo", [("Content-Length", str(2 * 1024 * 1024))])
        self.expect_local_reply_and_close(raw, 413)

    def test_body_over_limit_chunked_is_413(self):
        chunk = b"a" * 65536
        body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 24 + b"0\r\n\r\n"  # 1.5 MB
        raw = build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + body
        self.expect_local_reply_and_close(raw, 413)

    def test_body_at_limit_is_served(self):
        body = b"z" * (1024 * 1024)
        r = request(self.port, "POST", "/echo", body=body)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b"body-bytes: %d" % len(body), r.body)

    # --- slow clients ----------------------------------------------------------------------

    def test_slow_header_client_gets_408_while_others_are_served(self):
        slow = Client(self.port)
        self.addCleanup(slow.close)
        stop = threading.Event()
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200

        def trickle():  # one byte every 200 ms: never a complete head
            for b in head:
                if stop.wait(0.2):
                    return
                try:
                    slow.sock.send(bytes([b]))
                except OSError:
                    return
        t = threading.Thread(target=trickle, daemon=True)
        started = time.monotonic()
        slow.sock.send(head[:1])
        t.start()
        self.addCleanup(t.join, 2)
        self.addCleanup(stop.set)
        # Meanwhile another client is served at once, several times.
        for _ in range(5):
            t0 = time.monotonic()
            self.assert_served(self.port, "/fast", ("w1", "w2"))
            self.assertLess(time.monotonic() - t0, 0.5)
        try:
            r = slow.read_response(timeout=REQUEST_HEADER_TIMEOUT + 3)
            self.assertEqual(r.status, 408, r)
        except ConnectionClosed:
            pass  # closing without a reply is acceptable too
        elapsed = time.monotonic() - started
        stop.set()
        self.assertGreaterEqual(elapsed, REQUEST_HEADER_TIMEOUT - 0.1)
        self.assertLess(elapsed, REQUEST_HEADER_TIMEOUT + 1.5,
                        "a trickling client must not extend request_header")
        self.assertTrue(slow.server_closed(timeout=3.0))

    def test_idle_connection_without_request_is_closed_silently(self):
        with Client(self.port) as c:
            t0 = time.monotonic()
            self.assertTrue(c.server_closed(timeout=REQUEST_HEADER_TIMEOUT + 3))
            self.assertGreaterEqual(time.monotonic() - t0, REQUEST_HEADER_TIMEOUT - 0.1)

    # --- failing members -------------------------------------------------------------------

    def test_member_closing_mid_response_truncates_and_closes(self):
        with Client(self.port) as c:
            r = c.request("GET", "/close-mid")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("content-length"), "1000")
            self.assertFalse(r.complete, "body should be cut short")
            self.assertEqual(r.body, b"m" * 100)
            self.assertTrue(c.server_closed(timeout=3.0))
        self.assert_served(self.port, "/next", ("w1", "w2"))

    def test_close_before_response_on_get_is_retried_on_other_member(self):
        for _ in range(4):
            r = request(self.port, "GET", "/close-before", host="mixed.test")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.backend, "py", r)

    def test_close_before_response_on_post_is_502(self):
        with Client(self.port) as c:
            r = c.request("POST", "/close-before", body=b"data", host="pair.test")
            self.assertEqual(r.status, 502, r)
            self.assertIsNone(r.backend)

    def test_close_before_on_every_member_is_502(self):
        r = request(self.port, "GET", "/close-before", host="pair.test")
        self.assertEqual(r.status, 502, r)

    def test_reset_before_response_on_get_is_retried(self):
        for _ in range(4):
            r = request(self.port, "GET", "/reset", host="mixed.test")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.backend, "py", r)

    def test_member_with_closed_port_is_skipped_by_retry(self):
        with Client(self.port) as c:
            for _ in range(6):
                r = c.request("GET", "/x", host="halfdead.test")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.backend, "w1")

    def test_all_members_down_is_502(self):
        with Client(self.port) as c:
            r = c.request("GET", "/x", host="dead.test")
            self.assertEqual(r.status, 502, r)
            self.assertIsNone(r.backend)

    def test_empty_pool_is_503(self):
        with Client(self.port) as c:
            r = c.request("GET", "/x", host="empty.test")
            self.assertEqual(r.status, 503, r)
            self.assertIsNone(r.backend)
            # A whole request was read: the connection may stay open for the next one.
            if not c.eof and (r.header("connection") or "").lower() != "close":
                r2 = c.request("GET", "/x")
                self.assertEqual(r2.status, 200, r2)

    def test_slow_member_beyond_request_timeout_is_504(self):
        t0 = time.monotonic()
        with Client(self.port) as c:
            r = c.request("GET", "/delay/4000", timeout=6)
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 504, r)
            self.assertIsNone(r.backend)
            self.assertGreaterEqual(elapsed, REQUEST_TIMEOUT - 0.1)
            self.assertLess(elapsed, REQUEST_TIMEOUT + 1.5)

    # --- other bad requests ----------------------------------------------------------------

    def test_unsupported_transfer_coding_is_501(self):
        raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
               b"0\r\n\r\n")
        self.expect_local_reply_and_close(raw, 501)

    def test_unknown_http_version_is_505(self):
        self.expect_local_reply_and_close(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505)

    def test_http2_preface_starts_http2(self):
        # h2c with prior knowledge (tests/integration/test_proxy_h2.py covers HTTP/2 itself):
        # the answer to the preface is the server's SETTINGS frame, not an HTTP/1.1 reply.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            head = b""
            while len(head) < 9:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
            self.assertEqual(len(head), 9)
            self.assertEqual(head[3], 0x4)  # SETTINGS
            self.assertEqual(head[5:9], b"\x00\x00\x00\x00")  # on stream 0
        finally:
            s.close()

    def test_garbage_request_line_is_400(self):
        self.expect_local_reply_and_close(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                                          400)

    # --- clients that go away --------------------------------------------------------------

    def test_client_gone_mid_request_body(self):
        for _ in range(3):
            c = Client(self.port)
            c.send(build_request("POST", "/echo", [("Content-Length", "500000")]) + b"a" * 100000)
            c.close()
        with Client(self.port) as c:
            for i in range(5):
                r = c.request("GET", "/echo?i=%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertIn(b"GET /echo?i=%d HTTP/1.1" % i, r.body)

    def test_client_gone_while_waiting_for_response(self):
        for _ in range(3):
            c = Client(self.port)
            c.send(build_request("GET", "/delay/300"))
            c.close()
        with Client(self.port) as c:
            for i in range(6):
                r = c.request("GET", "/echo?j=%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertIn(b"GET /echo?j=%d HTTP/1.1" % i, r.body)

    def test_client_reset_while_waiting_for_response(self):
        c = Client(self.port)
        c.send(build_request("GET", "/delay/200"))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()  # RST
        self.assert_served(self.port, "/after-reset", ("w1", "w2"))


# Responses a broken member might send, and what the client must see.
BAD_RESPONSES = {
    "/cl-te": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\n", True),
    "/two-cl": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello", True),
    "/space-colon": (b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", True),
    "/bad-status": (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", True),
    "/not-http": (b"SSH-2.0-OpenSSH_9.0\r\n\r\n", True),
    "/bad-chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                   b"\r\n", True),
    "/until-close": (b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\n\r\nbody until close", True),
    "/http10": (b"HTTP/1.0 200 OK\r\nX-Backend: raw\r\nContent-Length: 4\r\n\r\nold!", True),
    "/no-content": (b"HTTP/1.1 204 No Content\r\nX-Backend: raw\r\n\r\n", False),
    "/early-hints": (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\nContent-Length: 2\r\n\r\nok", False),
}


class BadMemberResponsesTest(ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.raw = cls.class_py_backend("raw", raw=BAD_RESPONSES)
        cls.ok = cls.class_backend("ok")
        cls.port = free_port()
        cls.sg = cls.class_proxy(f"""
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{cls.port}
    routes:
      - {{ host: raw.test, pool: raw }}
      - {{ path_prefix: /, pool: ok }}
    timeouts: {{ request_header: 2s, idle: 10s, request: 3s }}
pools:
  raw:
    upstream: {{ retries: 0 }}
    members: [ {{ id: raw, address: {cls.raw.address} }} ]
  ok:
    members: [ {{ id: ok, address: {cls.ok.address} }} ]
""")

    def tearDown(self):
        self.assertTrue(self.sg.alive(), "scalegate died:\n" + self.sg.log())
        self.assert_served(self.port, "/still-ok", ("ok",))

    def test_malformed_responses_become_502(self):
        for path in ("/cl-te", "/two-cl", "/space-colon", "/bad-status", "/not-http",
                     "/bad-chunk"):
            with self.subTest(path=path):
                with Client(self.port) as c:
                    r = c.request("GET", path, host="raw.test")
                    if path == "/bad-chunk":
                        # The head was fine and went out; the framing error can only cut the
                        # response short.
                        self.assertEqual(r.status, 200, r)
                        self.assertFalse(r.complete, r)
                        self.assertTrue(c.eof or c.server_closed(timeout=2.0))
                    else:
                        self.assertEqual(r.status, 502, r)
                        self.assertNotIn(b"hello", r.body)

    def test_close_delimited_response_is_passed_and_closed(self):
        with Client(self.port) as c:
            r = c.request("GET", "/until-close", host="raw.test")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"body until close")
            self.assertTrue(c.eof or c.server_closed(timeout=2.0))

    def test_http10_member_response(self):
        with Client(self.port) as c:
            r = c.request("GET", "/http10", host="raw.test")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"old!")
            self.assertTrue(r.raw_head.startswith(b"HTTP/1.1 "), r.raw_head)
            # The member closes; the client connection may stay open for the next request.
            if not c.eof and (r.header("connection") or "").lower() != "close":
                self.assertEqual(c.request("GET", "/x").status, 200)

    def test_204_and_interim_responses(self):
        with Client(self.port) as c:
            r = c.request("GET", "/no-content", host="raw.test")
            self.assertEqual(r.status, 204, r)
            c.send(build_request("GET", "/early-hints", host="raw.test"))
            interim = c.read_response(skip_interim=False)
            self.assertEqual(interim.status, 103, interim)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"ok"), r)
            r = c.request("GET", "/plain", host="raw.test")
            self.assertEqual((r.status, r.body), (200, b"raw\n"), r)


class StalePooledConnectionTest(ProcessTestCase):
    def test_post_after_member_closed_idle_connection(self):
        # The member closes idle keep-alive connections quickly; a POST (not retryable) sent
        # after that must not be written to the dead pooled connection.
        py = self.start_py_backend("py", idle_close=0.2)
        port = free_port()
        self.start_proxy(f"""
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes: [ {{ path_prefix: /, pool: p }} ]
pools:
  p:
    members: [ {{ id: py, address: {py.address} }} ]
""")
        with Client(port) as c:
            for i in range(3):
                py.idle_closed.clear()
                r = c.request("POST", "/p%d" % i, body=b"payload")
                self.assertEqual(r.status, 200, r)
                self.assertTrue(py.idle_closed.wait(5), "member did not close the idle conn")
            r = c.request("POST", "/last", body=b"payload")
            self.assertEqual(r.status, 200, r)


class IdleTimeoutTest(ProcessTestCase):
    def test_idle_keep_alive_connection_is_closed_after_idle_timeout(self):
        b = self.start_backend("b")
        port = free_port()
        self.start_proxy(f"""
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes: [ {{ path_prefix: /, pool: p }} ]
    timeouts: {{ request_header: 5s, idle: 500ms, request: 5s }}
pools:
  p:
    members: [ {{ id: b, address: {b.address} }} ]
""")
        with Client(port) as c:
            self.assertEqual(c.request("GET", "/").status, 200)
            t0 = time.monotonic()
            self.assertTrue(c.server_closed(timeout=3.0), "idle connection never closed")
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 0.4)
            self.assertLess(elapsed, 1.5)


class LocalReplyTotalsTest(ProcessTestCase):
    """The `totals` line logged at exit counts the local replies and retries."""

    def test_totals_count_local_replies(self):
        w1 = self.start_backend("w1")
        w2 = self.start_backend("w2")
        pyb = self.start_py_backend("py")
        port = free_port()
        dead1 = "127.0.0.1:%d" % closed_port()
        dead2 = "127.0.0.1:%d" % closed_port()
        sg = self.start_proxy(errors_config(
            port, web=(w1.address, w2.address), mixed=(w1.address, pyb.address),
            pair=(w1.address, w2.address), py=pyb.address, dead1=dead1, dead2=dead2))

        def one(raw):
            with Client(port) as c:
                c.send(raw)
                return c.read_response(timeout=5)
        self.assertEqual(one(SMUGGLING[0][1]).status, 400)
        self.assertEqual(one(build_request("GET", "/", [("X-Big", "a" * 10000)])).status, 431)
        self.assertEqual(one(build_request("GET", "/" + "b" * 3000)).status, 414)
        self.assertEqual(one(build_request("POST", "/", [("Content-Length", "9999999")])).status,
                         413)
        self.assertEqual(one(build_request("GET", "/x", host="empty.test")).status, 503)
        self.assertEqual(one(build_request("GET", "/x", host="dead.test")).status, 502)
        self.assertEqual(one(build_request("GET", "/delay/3000")).status, 504)
        for _ in range(2):
            self.assertEqual(one(build_request("GET", "/close-before", host="mixed.test")).status,
                             200)
        self.assertEqual(one(build_request("GET", "/ok")).status, 200)

        self.assertEqual(sg.stop(), 0, sg.log())
        t = sg.totals()
        for key in ("local_bad_request", "local_header_too_large", "local_uri_too_long",
                    "local_body_too_large", "local_no_healthy_member", "local_upstream_failed",
                    "local_upstream_timeout", "retries", "responses_5xx", "responses_4xx",
                    "responses_2xx"):
            self.assertIn(key, t, "totals line lacks %s: %s" % (key, t))
        self.assertEqual(t["local_bad_request"], 1, t)
        self.assertEqual(t["local_header_too_large"], 1, t)
        self.assertEqual(t["local_uri_too_long"], 1, t)
        self.assertEqual(t["local_body_too_large"], 1, t)
        self.assertEqual(t["local_no_healthy_member"], 1, t)
        self.assertEqual(t["local_upstream_failed"], 1, t)
        self.assertEqual(t["local_upstream_timeout"], 1, t)
        self.assertGreaterEqual(t["retries"], 2, t)  # dead.test (1) + close-before (>= 1)
        self.assertEqual(t["responses_5xx"], 3, t)
        self.assertEqual(t["responses_4xx"], 4, t)
        self.assertEqual(t["responses_2xx"], 3, t)


if __name__ == "__main__":
    unittest.main()
