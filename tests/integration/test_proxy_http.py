"""scalegate's HTTP/1.1 reverse proxy, well-behaved traffic, through the real binaries."""

import hashlib
import os
import socket
import threading
import unittest

from harness import (Client, ProcessTestCase, build_request, echo_header, free_port,
                     parse_echo, request)


class ProxyHttpTest(ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        cls.b1 = cls.class_backend("b1")
        cls.b2 = cls.class_backend("b2")
        cls.api = cls.class_backend("api1")
        cls.static = cls.class_backend("static1")
        cls.m = [cls.class_backend("m%d" % i) for i in range(1, 5)]
        cls.port = free_port()
        cls.strict_port = free_port()
        maglev_members = "\n".join(
            "      - { id: m%d, address: %s }" % (i + 1, b.address) for i, b in enumerate(cls.m))
        cls.config = f"""
log: {{ level: info }}
drain_timeout: 5s
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{cls.port}
    routes:
      - {{ host: api.example.com, path_prefix: /, pool: api }}
      - {{ host: "*.wild.test", pool: static }}
      - {{ path_prefix: /static/, pool: static }}
      - {{ path_prefix: /mg/, pool: sticky }}
      - {{ path_prefix: /, pool: web }}
    limits: {{ max_request_header_bytes: 16k, max_headers: 100, max_uri_bytes: 4k }}
    timeouts: {{ request_header: 5s, idle: 30s, request: 20s }}
  - name: strict
    protocol: http
    listen: 127.0.0.1:{cls.strict_port}
    routes:
      - {{ path_prefix: /only/, pool: web }}
pools:
  web:
    balance: round_robin
    upstream: {{ connect_timeout: 1s, retries: 1 }}
    members:
      - {{ id: b1, address: {cls.b1.address} }}
      - {{ id: b2, address: {cls.b2.address} }}
  api:
    members: [ {{ id: api1, address: {cls.api.address} }} ]
  static:
    members: [ {{ id: static1, address: {cls.static.address} }} ]
  sticky:
    balance: maglev
    hash: {{ source: header, name: x-user }}
    members:
{maglev_members}
"""
        cls.sg = cls.class_proxy(cls.config, workers=1)

    def setUp(self):
        self.assertTrue(self.sg.alive(), "scalegate died earlier:\n" + self.sg.log())

    # --- basics ---------------------------------------------------------------------------

    def test_get_ok(self):
        r = request(self.port, "GET", "/hello")
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.backend, ("b1", "b2"))
        self.assertEqual(r.body, (r.backend + "\n").encode())

    def test_keep_alive_several_requests_on_one_connection(self):
        with Client(self.port) as c:
            for i in range(10):
                r = c.request("GET", "/ka/%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body, (r.backend + "\n").encode())
                self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
            self.assertFalse(c.server_closed(timeout=0.3), "proxy closed a keep-alive connection")

    def test_round_robin_alternates_between_two_members(self):
        seen = []
        with Client(self.port) as c:
            for _ in range(8):
                r = c.request("GET", "/rr")
                self.assertEqual(r.status, 200, r)
                seen.append(r.backend)
        self.assertEqual(set(seen), {"b1", "b2"}, seen)
        for a, b in zip(seen, seen[1:]):
            self.assertNotEqual(a, b, "round_robin over 2 equal members must alternate: %s" % seen)
        # Fresh connections alternate as well (the balancer is per pool, not per connection).
        fresh = [request(self.port, "GET", "/rr").backend for _ in range(4)]
        for a, b in zip(fresh, fresh[1:]):
            self.assertNotEqual(a, b, fresh)

    # --- request rewriting ----------------------------------------------------------------

    def test_forwarded_headers_and_request_id_are_added(self):
        r = request(self.port, "GET", "/echo?x=1")
        self.assertEqual(r.status, 200, r)
        line, headers, nbytes, _ = parse_echo(r.body)
        self.assertEqual(line, "GET /echo?x=1 HTTP/1.1")
        self.assertEqual(echo_header(headers, "x-forwarded-for"), ["127.0.0.1"], headers)
        self.assertEqual(echo_header(headers, "x-forwarded-proto"), ["http"], headers)
        rid = echo_header(headers, "x-request-id")
        self.assertEqual(len(rid), 1, headers)
        self.assertRegex(rid[0], r"^[0-9a-f]{16,}$")
        self.assertEqual(echo_header(headers, "host"), ["localhost"], headers)
        self.assertEqual(nbytes, 0)
        # Two requests get two different ids.
        r2 = request(self.port, "GET", "/echo")
        rid2 = echo_header(parse_echo(r2.body)[1], "x-request-id")
        self.assertEqual(len(rid2), 1)
        self.assertNotEqual(rid[0], rid2[0])

    def test_incoming_request_id_is_kept_and_xff_appended(self):
        r = request(self.port, "GET", "/echo", headers=[
            ("X-Request-Id", "abc-123"), ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https")])
        self.assertEqual(r.status, 200, r)
        _, headers, _, _ = parse_echo(r.body)
        self.assertEqual(echo_header(headers, "x-request-id"), ["abc-123"], headers)
        self.assertEqual(echo_header(headers, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"],
                         headers)
        # The client's claim about the scheme is not trusted: the listener is plain http.
        self.assertEqual(echo_header(headers, "x-forwarded-proto"), ["http"], headers)

    def test_hop_by_hop_headers_are_removed_upstream(self):
        r = request(self.port, "GET", "/echo", headers=[
            ("Connection", "keep-alive, Foo"), ("Foo", "secret"), ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"), ("Proxy-Connection", "keep-alive"), ("X-Kept", "yes")])
        self.assertEqual(r.status, 200, r)
        _, headers, _, _ = parse_echo(r.body)
        names = {k.lower() for k, _ in headers}
        for hop in ("foo", "keep-alive", "te", "proxy-connection"):
            self.assertNotIn(hop, names, "hop-by-hop %r forwarded: %s" % (hop, headers))
        for v in echo_header(headers, "connection"):
            self.assertNotIn("foo", v.lower(), headers)
        self.assertEqual(echo_header(headers, "x-kept"), ["yes"], headers)

    # --- bodies ---------------------------------------------------------------------------

    def test_large_post_body_content_length_arrives_intact(self):
        body = os.urandom(5 * 1024 * 1024)
        with Client(self.port, timeout=30) as c:
            r = c.request("POST", "/echo", headers=[("Content-Type", "application/octet-stream")],
                          body=body)
            self.assertEqual(r.status, 200, r)
            _, headers, nbytes, sha1 = parse_echo(r.body)
            self.assertEqual(nbytes, len(body))
            self.assertEqual(sha1, hashlib.sha1(body).hexdigest())
            self.assertEqual(echo_header(headers, "content-length"), [str(len(body))])
            # The connection is still usable afterwards.
            r2 = c.request("GET", "/after-post")
            self.assertEqual(r2.status, 200, r2)

    def test_chunked_request_body_arrives_intact(self):
        pieces = [os.urandom(n) for n in (1, 100, 4096, 65536, 200000, 7)]
        payload = b"".join(pieces)
        framed = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
        with Client(self.port, timeout=30) as c:
            c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]))
            # In several writes, so the proxy sees chunk framing split across reads.
            for i in range(0, len(framed), 50000):
                c.send(framed[i:i + 50000])
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            _, headers, nbytes, sha1 = parse_echo(r.body)
            self.assertEqual(nbytes, len(payload))
            self.assertEqual(sha1, hashlib.sha1(payload).hexdigest())
            self.assertEqual([v.lower() for v in echo_header(headers, "transfer-encoding")],
                             ["chunked"], headers)
            r2 = c.request("GET", "/after-chunked")
            self.assertEqual(r2.status, 200, r2)

    def test_chunked_response_arrives_intact(self):
        with Client(self.port) as c:
            r = c.request("GET", "/chunked")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.complete)
            self.assertIn("chunked", (r.header("transfer-encoding") or "").lower())
            expected = b""
            for i in range(1, 5):
                expected += ("chunk %d from %s\n" % (i, r.backend)).encode()
                expected += str(i).encode() * (i * 100) + b"\n"
            self.assertEqual(r.body, expected)
            r2 = c.request("GET", "/after-chunked-response")
            self.assertEqual(r2.status, 200, r2)

    def test_big_response_arrives_intact(self):
        n = 20 * 1024 * 1024
        with Client(self.port, timeout=30) as c:
            r = c.request("GET", "/big/%d" % n)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("content-length"), str(n))
            self.assertTrue(r.complete, "got %d of %d bytes" % (len(r.body), n))
            self.assertEqual(len(r.body), n)
            # sgbackend streams a-z pattern bytes (and newlines).
            self.assertEqual(r.body.translate(None, b"abcdefghijklmnopqrstuvwxyz\n"), b"")
            r2 = c.request("GET", "/after-big")
            self.assertEqual(r2.status, 200, r2)

    def test_pipelined_requests_come_back_in_order(self):
        with Client(self.port) as c:
            c.send(b"".join(build_request("GET", "/echo?n=%d" % i) for i in range(1, 4)))
            for i in range(1, 4):
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                line = parse_echo(r.body)[0]
                self.assertEqual(line, "GET /echo?n=%d HTTP/1.1" % i)
            self.assertFalse(c.server_closed(timeout=0.2))

    def test_head_has_no_body(self):
        with Client(self.port) as c:
            r = c.request("HEAD", "/head")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"")
            self.assertEqual(r.header("content-length"), "3")  # of the GET body "bN\n"
            # Any body bytes after the HEAD response would corrupt this next response.
            r2 = c.request("GET", "/after-head")
            self.assertEqual(r2.status, 200, r2)
            self.assertEqual(r2.body, (r2.backend + "\n").encode())

    # --- routing --------------------------------------------------------------------------

    def test_route_by_host(self):
        for host in ("api.example.com", "API.Example.com", "api.example.com:%d" % self.port):
            r = request(self.port, "GET", "/x", host=host)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.backend, "api1", "Host %s" % host)
        r = request(self.port, "GET", "/x", host="other.example.com")
        self.assertIn(r.backend, ("b1", "b2"))
        # absolute-form: the authority is the host.
        with Client(self.port) as c:
            c.send(b"GET http://api.example.com/abs HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.backend, "api1")

    def test_route_by_path_prefix(self):
        r = request(self.port, "GET", "/static/logo.png")
        self.assertEqual(r.backend, "static1", r)
        r = request(self.port, "GET", "/staticx")  # not under /static/
        self.assertIn(r.backend, ("b1", "b2"), r)
        r = request(self.port, "GET", "/only/a", host="x")
        self.assertIn(r.backend, ("b1", "b2"))
        r = request(self.strict_port, "GET", "/only/thing")
        self.assertEqual(r.status, 200, r)

    def test_no_route_is_404_and_connection_stays_usable(self):
        with Client(self.strict_port) as c:
            r = c.request("GET", "/elsewhere")
            self.assertEqual(r.status, 404, r)
            self.assertIsNone(r.backend)
            r = c.request("GET", "/only/ok")
            self.assertEqual(r.status, 200, r)

    def test_maglev_same_key_same_backend_and_keys_spread(self):
        chosen = {}
        for k in range(40):
            key = "user-%d" % k
            with Client(self.port) as c:
                r = c.request("GET", "/mg/a", headers=[("X-User", key)])
                self.assertEqual(r.status, 200, r)
                first = r.backend
                for _ in range(3):
                    r = c.request("GET", "/mg/b", headers=[("x-user", key)])
                    self.assertEqual(r.backend, first, "key %s moved" % key)
            r = request(self.port, "GET", "/mg/c", headers=[("X-USER", key)])
            self.assertEqual(r.backend, first, "key %s moved across connections" % key)
            chosen[key] = first
        used = set(chosen.values())
        self.assertGreaterEqual(len(used), 3, "40 keys over 4 members landed on %s" % used)
        self.assertTrue(used <= {"m1", "m2", "m3", "m4"})


    def test_wildcard_host_route(self):
        self.assertEqual(request(self.port, "GET", "/", host="a.wild.test").backend, "static1")
        self.assertEqual(request(self.port, "GET", "/", host="x.y.wild.test:80").backend,
                         "static1")
        self.assertIn(request(self.port, "GET", "/", host="wild.test").backend, ("b1", "b2"))
        self.assertIn(request(self.port, "GET", "/", host="notwild.test").backend, ("b1", "b2"))

    def test_absolute_form_is_sent_upstream_in_origin_form(self):
        with Client(self.port) as c:
            c.send(b"GET http://api.example.com/echo?q=1 HTTP/1.1\r\nHost: api.example.com\r\n"
                   b"\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            line, headers, _, _ = parse_echo(r.body)
            self.assertEqual(line, "GET /echo?q=1 HTTP/1.1")
            self.assertEqual([v.lower() for v in echo_header(headers, "host")],
                             ["api.example.com"], headers)

    # --- more framing ------------------------------------------------------------------------

    def test_expect_100_continue(self):
        body = os.urandom(300000)
        with Client(self.port, timeout=10) as c:
            c.send(build_request("POST", "/echo", [("Expect", "100-continue"),
                                                   ("Content-Length", str(len(body)))]))
            interim = c.read_response(skip_interim=False)
            self.assertEqual(interim.status, 100, interim)
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            _, _, nbytes, sha1 = parse_echo(r.body)
            self.assertEqual((nbytes, sha1), (len(body), hashlib.sha1(body).hexdigest()))
            self.assertEqual(c.request("GET", "/after-continue").status, 200)

    def test_http10_client_gets_response_and_close(self):
        with Client(self.port) as c:
            c.send(b"GET /old HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, (r.backend + "\n").encode())
            self.assertTrue(c.server_closed(timeout=2.0), "HTTP/1.0 without keep-alive")

    def test_http10_chunked_response_is_close_delimited(self):
        # A 1.0 client cannot read chunked coding.
        with Client(self.port) as c:
            c.send(b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertNotIn("chunked", (r.header("transfer-encoding") or "").lower(), r)
            self.assertIn(b"chunk 4 from", r.body)
            self.assertNotIn(b"\r\n0\r\n", r.body)

    def test_status_without_body_keeps_connection(self):
        with Client(self.port) as c:
            for code in (204, 304, 404, 500, 201):
                r = c.request("GET", "/status/%d" % code)
                self.assertEqual(r.status, code, r)
                self.assertEqual(r.body, b"")
            self.assertEqual(c.request("GET", "/after-status").status, 200)

    def test_pipelined_post_then_get(self):
        body = b"x" * 100000
        with Client(self.port) as c:
            c.send(build_request("POST", "/echo?first", body=body) +
                   build_request("GET", "/echo?second"))
            r1 = c.read_response()
            self.assertEqual(parse_echo(r1.body)[0], "POST /echo?first HTTP/1.1")
            self.assertEqual(parse_echo(r1.body)[2], len(body))
            r2 = c.read_response()
            self.assertEqual(parse_echo(r2.body)[0], "GET /echo?second HTTP/1.1")
            self.assertEqual(parse_echo(r2.body)[2], 0)

    def test_client_half_close_after_request_still_gets_response(self):
        with Client(self.port) as c:
            c.send(build_request("GET", "/half"))
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertTrue(c.server_closed(timeout=2.0))

    def test_slow_chunked_response_body(self):
        with Client(self.port) as c:
            r = c.request("GET", "/slow-body/100")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.complete)
            self.assertEqual(r.body, b"".join(b"slow chunk %d/5\n" % i for i in range(1, 6)))
            self.assertEqual(c.request("GET", "/after-slow").status, 200)

    def test_client_abort_during_big_response_does_not_leak_into_later_responses(self):
        for _ in range(3):
            c = Client(self.port)
            c.send(build_request("GET", "/big/50M"))
            got = 0
            while got < 300000:
                data = c.sock.recv(65536)
                self.assertTrue(data)
                got += len(data)
            c.close()
        # Later requests to the same members get exactly their own responses.
        with Client(self.port) as c:
            for i in range(10):
                r = c.request("GET", "/echo?after-abort=%d" % i)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(parse_echo(r.body)[0], "GET /echo?after-abort=%d HTTP/1.1" % i)

    def test_concurrent_keep_alive_clients(self):
        errors = []
        counts = []

        def worker(k):
            try:
                with Client(self.port, timeout=10) as c:
                    n = 0
                    for i in range(10):
                        r = c.request("GET", "/echo?c=%d&i=%d" % (k, i))
                        if r.status != 200 or parse_echo(r.body)[0] != \
                                "GET /echo?c=%d&i=%d HTTP/1.1" % (k, i):
                            errors.append((k, i, r))
                        n += 1
                    counts.append(n)
            except Exception as e:  # reported below
                errors.append((k, repr(e)))
        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(errors, [])
        self.assertEqual(sum(counts), 500)


if __name__ == "__main__":
    unittest.main()
