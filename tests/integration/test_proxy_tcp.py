"""TCP passthrough listeners (protocol: tcp): byte-exact relaying (splice and read/write),
balancing and health, connect retry, half-close both ways, idle timeout, PROXY protocol v2,
drain on SIGTERM, member drain, reload, and the per-listener/pool/member counters."""

import hashlib
import os
import signal
import socket
import struct
import tempfile
import threading
import time
import unittest

from harness import (HarnessError, ProcessTestCase, admin_section, closed_port, free_port,
                     request, wait_until)

IO_TIMEOUT = 10.0
PP2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_proxy_v2(sock):
    """Reads one PROXY v2 header from `sock`; returns (command, src, dst) with src/dst as
    (ip, port), or raises ValueError."""
    head = recv_exact(sock, 16)
    if head[:12] != PP2_SIGNATURE:
        raise ValueError("no PROXY v2 signature: %r" % head)
    ver_cmd, fam, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    body = recv_exact(sock, length)
    if ver_cmd >> 4 != 2:
        raise ValueError("version %d" % (ver_cmd >> 4))
    command = "PROXY" if ver_cmd & 0xF == 1 else "LOCAL"
    if fam == 0x11:
        src = socket.inet_ntop(socket.AF_INET, body[0:4])
        dst = socket.inet_ntop(socket.AF_INET, body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    elif fam == 0x21:
        src = socket.inet_ntop(socket.AF_INET6, body[0:16])
        dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
    else:
        return command, None, None
    return command, (src, sport), (dst, dport)


def recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ValueError("EOF after %d of %d bytes" % (len(out), n))
        out += data
    return bytes(out)


def recv_all(sock, limit=64 << 20):
    """Everything until EOF (raises on a reset)."""
    out = bytearray()
    while len(out) <= limit:
        data = sock.recv(1 << 20)
        if not data:
            return bytes(out)
        out += data
    raise AssertionError("more than %d bytes" % limit)


def connect(port, timeout=IO_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def closed_within(sock, timeout):
    """True when the peer closes (EOF or reset) within `timeout` with nothing unread."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    if data:
        raise AssertionError("unexpected byte %r" % data)
    return True


class TcpMember:
    """A pool member speaking raw TCP in threads. Modes:
      echo     echo every byte; on EOF shut down writing and close
      greet    send "<id>\\n" first, then echo
      whoami   wait for the client's first bytes, answer "<id>\\n", then echo
      collect  read until EOF, then send back sha256(received) and `reply` bytes, then close
      hangup   send "bye\\n", shut down writing, count what arrives until EOF (`received_after`)
    `proxy_v2`: parse a PROXY v2 header first (kept in `headers`). HTTP health probes
    (`GET /health`) are answered 200, or 503 when `healthy` is false."""

    def __init__(self, member_id, mode="echo", proxy_v2=False, reply=b"", healthy=True):
        self.id = member_id
        self.mode = mode
        self.proxy_v2 = proxy_v2
        self.reply = reply
        self.healthy = healthy
        self.headers = []
        self.connections = 0
        self.received_after = []
        self.errors = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self._thread = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(IO_TIMEOUT)
        try:
            first = b""
            if self.proxy_v2:
                with self._lock:
                    self.headers.append(parse_proxy_v2(c))
            else:
                # Health probes send first; relayed clients in these tests do too, except for
                # greet/hangup members, which speak first.
                if self.mode not in ("greet", "hangup"):
                    first = c.recv(65536)
                    if first.startswith(b"GET /health"):
                        status = b"200 OK" if self.healthy else b"503 Service Unavailable"
                        c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n"
                                  b"Connection: close\r\n\r\n")
                        return
            with self._lock:
                self.connections += 1
            if self.mode == "greet":
                c.sendall(self.id.encode() + b"\n")
            if self.mode == "whoami":
                c.sendall(self.id.encode() + b"\n")
                first = b""
            if self.mode in ("echo", "greet", "whoami"):
                data = first
                while True:
                    if data:
                        c.sendall(data)
                    data = c.recv(1 << 20)
                    if not data:
                        break
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "collect":
                got = first + recv_all(c)
                c.sendall(hashlib.sha256(got).digest() + self.reply)
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "hangup":
                c.sendall(b"bye\n")
                c.shutdown(socket.SHUT_WR)
                n = len(recv_all(c))
                with self._lock:
                    self.received_after.append(n)
        except (OSError, ValueError) as e:
            with self._lock:
                self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)


def bulk_echo(port, size, chunk=256 << 10):
    """Sends `size` random bytes through an echo member while reading the echo concurrently;
    returns (sent digest, received digest, received length)."""
    data = os.urandom(size)
    s = connect(port)
    got = []
    err = []

    def reader():
        try:
            got.append(recv_all(s))
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=reader)
    t.start()
    for i in range(0, size, chunk):
        s.sendall(data[i:i + chunk])
    s.shutdown(socket.SHUT_WR)
    t.join(timeout=60)
    s.close()
    if err:
        raise err[0]
    received = got[0] if got else b""
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(received).hexdigest(), len(received)


class TcpProxyTest(ProcessTestCase):
    def member(self, member_id, **kw):
        m = TcpMember(member_id, **kw)
        self.addCleanup(m.stop)
        return m.start()

    def tcp_config(self, members, listener_extra=None, pool_extra=None, admin=None,
                   drain_timeout=None, extra_listeners=()):
        port = free_port()
        listener = {"name": "tcp", "protocol": "tcp", "listen": "127.0.0.1:%d" % port,
                    "pool": "p"}
        listener.update(listener_extra or {})
        pool = {"members": [{"id": m.id, "address": m.address} if isinstance(m, TcpMember)
                            else m for m in members]}
        pool.update(pool_extra or {})
        cfg = {"listeners": [listener] + list(extra_listeners), "pools": {"p": pool}}
        if admin is not None:
            cfg["admin"] = admin
        if drain_timeout is not None:
            cfg["drain_timeout"] = drain_timeout
        return port, cfg

    def settled(self, admin):
        """Metrics once no tcp connection is open (the harness's readiness check opens one
        at start): counts are compared against this."""
        def settled():
            mt = admin.metrics()
            done = (mt.value("scalegate_pool_connections_total", pool="p") >= 1.0 and
                    mt.value("scalegate_pool_connections_active", pool="p") == 0.0)
            return mt if done else None
        return wait_until(settled, 5, what="the readiness check's connection over")

    def start_with_admin(self, members, **kw):
        admin_cfg, admin = admin_section(tempfile.mkdtemp(prefix="sgtcp-"))
        port, cfg = self.tcp_config(members, admin=admin_cfg, **kw)
        return port, self.start_proxy(cfg), admin, cfg

    # --- relaying -------------------------------------------------------------------------

    def test_bulk_transfer_is_byte_exact_with_splice_and_read_write(self):
        for splice in (True, False):
            with self.subTest(splice=splice):
                m = self.member("m-%s" % splice)
                port, sg, admin, _ = self.start_with_admin(
                    [m], listener_extra={"splice": splice})
                base = self.settled(admin)
                sent, received, n = bulk_echo(port, 8 << 20)
                self.assertEqual(n, 8 << 20)
                self.assertEqual(sent, received)
                # Small exchanges after the bulk one: pipes and buffers are reused cleanly.
                for i in range(20):
                    s = connect(port)
                    msg = b"ping %d" % i
                    s.sendall(msg)
                    self.assertEqual(recv_exact(s, len(msg)), msg)
                    s.close()
                mt = admin.metrics()

                def delta(name, **labels):
                    return mt.value(name, **labels) - base.value(name, **labels)
                self.assertEqual(delta("scalegate_downstream_connections_total",
                                       listener="tcp"), 21.0)
                self.assertGreaterEqual(mt.value("scalegate_downstream_bytes_received_total",
                                                 listener="tcp"), 8 << 20)
                self.assertGreaterEqual(mt.value("scalegate_downstream_bytes_sent_total",
                                                 listener="tcp"), 8 << 20)
                self.assertGreaterEqual(mt.value("scalegate_member_bytes_sent_total",
                                                 pool="p", member=m.id), 8 << 20)
                self.assertGreaterEqual(mt.value("scalegate_member_bytes_received_total",
                                                 pool="p", member=m.id), 8 << 20)
                self.assertGreaterEqual(mt.value("scalegate_pool_bytes_sent_total", pool="p"),
                                        8 << 20)
                self.assertEqual(delta("scalegate_pool_connections_total", pool="p"), 21.0)
                self.assertEqual(delta("scalegate_member_connections_total",
                                       pool="p", member=m.id), 21.0)
                wait_until(lambda: admin.metrics().value(
                    "scalegate_pool_connections_active", pool="p") == 0.0, 5,
                    what="connections closed")
                self.assertEqual(m.errors, [])
                sg.stop()

    def test_many_concurrent_connections(self):
        m = self.member("m")
        port, _ = self.tcp_config([m])
        self.start_proxy(_)
        results = []

        def one(i):
            sent, received, n = bulk_echo(port, 512 << 10)
            results.append(sent == received and n == 512 << 10)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        self.assertEqual(results, [True] * 16)

    def test_spread_across_members_and_unhealthy_member_skipped(self):
        a = self.member("a", mode="whoami")
        b = self.member("b", mode="whoami")
        c = self.member("c", mode="whoami", healthy=False)
        health = {"type": "http", "path": "/health", "interval": "200ms",
                  "timeout": "100ms", "rise": 1, "fall": 1}
        port, sg, admin, _ = self.start_with_admin(
            [a, b, c], pool_extra={"balance": "round_robin", "health": health})
        def states():
            mt = admin.metrics()
            return [mt.value("scalegate_member_healthy", pool="p", member=x) for x in "abc"]
        wait_until(lambda: states() == [1.0, 1.0, 0.0], 5, what="a, b healthy; c not")
        seen = {}
        for _ in range(30):
            s = connect(port)
            s.sendall(b"?")
            name = s.recv(16).decode().strip()
            s.sendall(b"x")
            self.assertEqual(recv_exact(s, 1), b"x")
            s.close()
            seen[name] = seen.get(name, 0) + 1
        self.assertEqual(set(seen), {"a", "b"}, seen)
        self.assertEqual(seen["a"], 15, seen)  # round robin over the healthy two

    def test_least_request_counts_open_connections(self):
        a = self.member("a", mode="greet")
        b = self.member("b", mode="greet")
        port, cfg = self.tcp_config([a, b], pool_extra={"balance": "least_request"})
        self.start_proxy(cfg)
        held = []
        names = []
        for _ in range(6):  # each new connection goes where fewer are open
            s = connect(port)
            names.append(s.recv(16).decode().strip())
            held.append(s)
        self.assertEqual(sorted(names), ["a", "a", "a", "b", "b", "b"], names)
        for s in held:
            s.close()

    def test_maglev_on_client_ip_is_sticky(self):
        ms = [self.member("m%d" % i, mode="greet") for i in range(3)]
        port, cfg = self.tcp_config(ms, pool_extra={"balance": "maglev"})
        self.start_proxy(cfg)
        names = set()
        for _ in range(10):
            s = connect(port)
            names.add(s.recv(16).decode().strip())
            s.close()
        self.assertEqual(len(names), 1, names)

    def test_connect_failure_retries_another_member(self):
        live = self.member("live", mode="greet")
        dead = {"id": "dead", "address": "127.0.0.1:%d" % closed_port()}
        port, sg, admin, _ = self.start_with_admin(
            [dead, live], pool_extra={"balance": "round_robin",
                                      "outlier": {"enabled": False}})
        base = self.settled(admin)
        for _ in range(6):
            s = connect(port)
            self.assertEqual(s.recv(16), b"live\n")
            s.close()
        mt = admin.metrics()

        def delta(name, **labels):
            return mt.value(name, **labels) - base.value(name, **labels)
        self.assertEqual(delta("scalegate_member_connect_failures_total", pool="p",
                               member="dead"), 3.0)
        self.assertEqual(delta("scalegate_pool_connect_failures_total", pool="p"), 3.0)
        self.assertEqual(delta("scalegate_pool_retries_total", pool="p"), 3.0)
        self.assertEqual(delta("scalegate_member_connections_total", pool="p",
                               member="live"), 6.0)

    def test_no_member_left_closes_the_client(self):
        dead = [{"id": "d%d" % i, "address": "127.0.0.1:%d" % closed_port()} for i in range(2)]
        port, sg, admin, _ = self.start_with_admin(dead, pool_extra={"upstream": {"retries": 1}})
        before = self.settled(admin).value("scalegate_pool_connect_failures_total", pool="p")
        s = connect(port)
        self.assertTrue(closed_within(s, 5))
        self.assertEqual(admin.metrics().value("scalegate_pool_connect_failures_total",
                                               pool="p") - before, 2.0)

    def test_connect_timeout_then_retry(self):
        # A listener whose accept queue is full drops further SYNs: a connect to it hangs
        # until the listener's connect timeout, then another member is tried.
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(hole.close)
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        fillers = []
        for _ in range(3):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(hole.getsockname())
            fillers.append(f)
        self.addCleanup(lambda: [f.close() for f in fillers])
        live = self.member("live", mode="greet")
        port, sg, admin, _ = self.start_with_admin(
            [{"id": "hole", "address": "127.0.0.1:%d" % hole.getsockname()[1]}, live],
            listener_extra={"timeouts": {"connect": "300ms"}},
            pool_extra={"balance": "round_robin", "outlier": {"enabled": False}})
        before = self.settled(admin).value("scalegate_member_connect_failures_total",
                                           pool="p", member="hole")
        t0 = time.monotonic()
        for _ in range(2):  # round robin: at least one of the two goes to the hole first
            s = connect(port)
            self.assertEqual(s.recv(16), b"live\n")
            s.close()
        failed = admin.metrics().value("scalegate_member_connect_failures_total",
                                       pool="p", member="hole") - before
        self.assertGreaterEqual(failed, 1.0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.28)  # waited for the 300ms timeout

    # --- half-close -----------------------------------------------------------------------

    def test_client_half_close_still_reads_the_reply(self):
        reply = os.urandom(3 << 20)
        m = self.member("m", mode="collect", reply=reply)
        port, cfg = self.tcp_config([m])
        self.start_proxy(cfg)
        data = os.urandom(2 << 20)
        s = connect(port)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # the member sees EOF only if the FIN is passed on
        got = recv_all(s)
        s.close()
        self.assertEqual(len(got), 32 + len(reply))
        self.assertEqual(got[:32], hashlib.sha256(data).digest())
        self.assertEqual(hashlib.sha256(got[32:]).digest(), hashlib.sha256(reply).digest())

    def test_member_half_close_still_receives(self):
        m = self.member("m", mode="hangup")
        port, cfg = self.tcp_config([m])
        self.start_proxy(cfg)
        s = connect(port)
        self.assertEqual(recv_all(s), b"bye\n")  # EOF from the member, passed on
        data = os.urandom(1 << 20)
        s.sendall(data)  # the other direction still works
        s.shutdown(socket.SHUT_WR)
        # (The harness's readiness check was a connection too: it sent nothing.)
        wait_until(lambda: len(data) in m.received_after, 5, what="member got all, then EOF")
        self.assertTrue(closed_within(s, 5))

    # --- timeouts, PROXY protocol -----------------------------------------------------------

    def test_idle_timeout_closes(self):
        m = self.member("m")
        port, cfg = self.tcp_config([m], listener_extra={"timeouts": {"idle": "1s"}})
        self.start_proxy(cfg)
        s = connect(port)
        # Activity keeps it open past the timeout.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.6:
            s.sendall(b"k")
            self.assertEqual(recv_exact(s, 1), b"k")
            time.sleep(0.2)
        t1 = time.monotonic()
        self.assertTrue(closed_within(s, 5), "idle connection not closed")
        elapsed = time.monotonic() - t1
        self.assertGreaterEqual(elapsed, 0.7)
        self.assertLess(elapsed, 3.0)

    def test_proxy_protocol_v2_per_listener_and_per_pool(self):
        a = self.member("a", proxy_v2=True)
        b = self.member("b", proxy_v2=True)
        port2 = free_port()
        port, cfg = self.tcp_config(
            [a], listener_extra={"proxy_protocol": "v2"},
            extra_listeners=[{"name": "other", "protocol": "tcp",
                              "listen": "127.0.0.1:%d" % port2, "pool": "q"}])
        cfg["pools"]["q"] = {"proxy_protocol": "v2",
                             "members": [{"id": "b", "address": b.address}]}
        self.start_proxy(cfg)
        for p, m in ((port, a), (port2, b)):
            s = connect(p)
            s.sendall(b"after the header")
            self.assertEqual(recv_exact(s, 16), b"after the header")
            client = s.getsockname()
            s.close()
            # The harness's readiness check connected first: find this client's header.
            mine = wait_until(lambda: [h for h in m.headers if h[1] == client], 5,
                              what="PROXY header naming %r" % (client,))
            self.assertEqual(mine, [("PROXY", client, ("127.0.0.1", p))])
            self.assertTrue(all(h[0] == "PROXY" and h[2] == ("127.0.0.1", p)
                                for h in m.headers), m.headers)

    # --- drain and reload -------------------------------------------------------------------

    def test_sigterm_lets_in_flight_connection_finish(self):
        m = self.member("m")
        port, cfg = self.tcp_config([m], drain_timeout="10s")
        sg = self.start_proxy(cfg)
        s = connect(port)
        s.sendall(b"one")
        self.assertEqual(recv_exact(s, 3), b"one")
        t0 = time.monotonic()
        sg.send_signal(signal.SIGTERM)
        sg.wait_log(r"\bdraining\b")
        wait_until(lambda: not port_open(port), 5, what="listener closed")
        s.sendall(b"two")  # still relayed during the drain
        self.assertEqual(recv_exact(s, 3), b"two")
        self.assertTrue(sg.alive())
        s.close()
        self.assertEqual(sg.wait_exit(10), 0)
        self.assertLess(time.monotonic() - t0, 5.0)  # exits when it ends, not at the deadline

    def test_drain_deadline_closes_connections_left_open(self):
        m = self.member("m")
        port, cfg = self.tcp_config([m], drain_timeout="1s")
        sg = self.start_proxy(cfg)
        s = connect(port)
        s.sendall(b"x")
        self.assertEqual(recv_exact(s, 1), b"x")
        sg.send_signal(signal.SIGTERM)
        self.assertTrue(closed_within(s, 5))
        self.assertEqual(sg.wait_exit(10), 0)

    def test_member_drain_ends_its_connections_at_the_deadline(self):
        a = self.member("a", mode="greet")
        b = self.member("b", mode="greet")
        port, sg, admin, _ = self.start_with_admin([a, b],
                                                   pool_extra={"balance": "round_robin"})
        held = {}
        for _ in range(2):
            s = connect(port)
            held[s.recv(16).decode().strip()] = s
        self.assertEqual(set(held), {"a", "b"})
        r = request(admin.port, "POST", "/v1/pools/p/members/a/drain",
                    headers=[("Authorization", "Bearer " + admin.token)],
                    body=b'{"timeout":"1s"}')
        self.assertEqual(r.status, 202, r)
        # New connections avoid a; its open connection keeps going until the deadline.
        wait_until(lambda: admin.metrics().value("scalegate_member_draining", pool="p",
                                                 member="a") == 1.0, 5, what="a draining")
        for _ in range(4):
            s = connect(port)
            self.assertEqual(s.recv(16), b"b\n")
            s.close()
        held["a"].sendall(b"z")
        self.assertEqual(recv_exact(held["a"], 1), b"z")
        self.assertTrue(closed_within(held["a"], 5), "drained member's connection kept open")
        held["b"].sendall(b"y")
        self.assertEqual(recv_exact(held["b"], 1), b"y")
        for s in held.values():
            s.close()

    def test_reload_keeps_existing_connections(self):
        a = self.member("a", mode="greet")
        b = self.member("b", mode="greet")
        port, cfg = self.tcp_config([a], drain_timeout="1s")
        sg = self.start_proxy(cfg)
        s = connect(port)
        self.assertEqual(s.recv(16), b"a\n")
        # Same listener, new member list and idle timeout: the open connection goes on.
        cfg2 = dict(cfg)
        cfg2["listeners"] = [dict(cfg["listeners"][0], timeouts={"idle": "30m"})]
        cfg2["pools"] = {"p": {"members": [{"id": "a", "address": a.address},
                                           {"id": "b", "address": b.address}]}}
        self.assertTrue(sg.reload(cfg2))
        for i in range(3):
            s.sendall(b"still %d" % i)
            self.assertEqual(recv_exact(s, 7), b"still %d" % i)
        names = set()
        for _ in range(4):
            c = connect(port)
            names.add(c.recv(16).decode().strip())
            c.close()
        self.assertEqual(names, {"a", "b"})
        self.assertFalse(closed_within(s, 1.5), "connection closed by a reload")
        s.sendall(b"end")
        self.assertEqual(recv_exact(s, 3), b"end")
        # A reload that removes the listener: its connections get drain_timeout (1s).
        port3 = free_port()
        cfg3 = dict(cfg2)
        cfg3["listeners"] = [{"name": "new", "protocol": "tcp",
                              "listen": "127.0.0.1:%d" % port3, "pool": "p"}]
        self.assertTrue(sg.reload(cfg3))
        t0 = time.monotonic()
        self.assertTrue(closed_within(s, 5))
        self.assertGreater(time.monotonic() - t0, 0.5)
        s.close()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    unittest.main()
