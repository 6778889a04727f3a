"""The scalegate process: --check, --help/--version, start-up errors, SIGHUP reload, SIGTERM
drain, and a reload storm under load."""

import glob
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (SCALEGATE, SLOWDOWN, SOURCE_DIR, Client, ConnectionClosed, HarnessError,
                     ProcessTestCase, free_port, request, wait_until)


def run_scalegate(*args, timeout=10):
    p = subprocess.run([SCALEGATE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


VALID = """\
log: { level: info }
drain_timeout: 5s
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:18080
    routes:
      - { path_prefix: /, pool: web }
pools:
  web:
    balance: round_robin
    upstream: { connect_timeout: 1s, retries: 1 }
    members:
      - { id: b1, address: 127.0.0.1:19001 }
"""


def two_pool_config(port, a, b, target, drain_timeout="5s"):
    """Pools `a` and `b` (one member each); every request goes to pool `target`."""
    return f"""\
log: {{ level: info }}
drain_timeout: {drain_timeout}
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:{port}
    routes:
      - {{ path_prefix: /, pool: {target} }}
    timeouts: {{ request_header: 5s, idle: 30s, request: 10s }}
pools:
  a:
    members: [ {{ id: a1, address: {a} }} ]
  b:
    members: [ {{ id: b1, address: {b} }} ]
"""


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgcheck-")

    def write(self, text, name="bad.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def errors(self, path):
        rc, out, err = run_scalegate("--check", path)
        self.assertNotEqual(rc, 0, "--check accepted a bad file:\n" + out + err)
        found = []
        for line in err.splitlines():
            m = re.match(r"^(.*?):(\d+): ([^:\s]+): (.+)$", line)
            if m and m.group(1) == path:
                found.append((int(m.group(2)), m.group(3), m.group(4)))
        self.assertTrue(found, "no file:line: key: message lines in:\n" + err)
        return found, err

    def assert_error(self, text, line_marker, key_part, message_part=None):
        """`line_marker`: a substring of the offending line (its 1-based number is expected)."""
        path = self.write(text)
        lines = text.splitlines()
        want = [i + 1 for i, l in enumerate(lines) if line_marker in l]
        self.assertEqual(len(want), 1, "marker must be unique")
        found, err = self.errors(path)
        hits = [e for e in found if key_part in e[1]]
        self.assertTrue(hits, "no error naming key %r:\n%s" % (key_part, err))
        self.assertIn(want[0], [h[0] for h in hits],
                      "error for %r on the wrong line (want %d):\n%s" % (key_part, want[0], err))
        if message_part is not None:
            self.assertTrue(any(message_part in h[2] for h in hits), err)

    def test_examples_pass(self):
        files = sorted(glob.glob(os.path.join(SOURCE_DIR, "config", "examples", "*.yaml")))
        self.assertTrue(files, "no config/examples/*.yaml")
        for f in files:
            with self.subTest(file=os.path.basename(f)):
                rc, out, err = run_scalegate("--check", f)
                self.assertEqual(rc, 0, out + err)
                self.assertIn("OK", out)

    def test_valid_base_passes(self):
        rc, out, err = run_scalegate("--check", self.write(VALID, "good.yaml"))
        self.assertEqual(rc, 0, out + err)

    def test_unknown_key(self):
        text = VALID.replace("    protocol: http\n", "    protocol: http\n    bogus: 1\n")
        self.assert_error(text, "bogus: 1", "bogus", "unknown key")

    def test_bad_duration(self):
        text = VALID.replace("drain_timeout: 5s", "drain_timeout: 5 parsecs")
        self.assert_error(text, "parsecs", "drain_timeout")

    def test_bad_duration_nested(self):
        text = VALID.replace("connect_timeout: 1s", "connect_timeout: fast")
        self.assert_error(text, "connect_timeout: fast", "connect_timeout")

    def test_route_to_unknown_pool(self):
        text = VALID.replace("pool: web }", "pool: nope }")
        self.assert_error(text, "pool: nope", "pool", "nope")

    def test_duplicate_listener_name(self):
        text = VALID.replace("pools:\n", """\
  - name: web
    protocol: http
    listen: 127.0.0.1:18081   # second
    routes: [ { path_prefix: /, pool: web } ]
pools:
""")
        path = self.write(text)
        lines = text.splitlines()
        second = [i + 1 for i, l in enumerate(lines) if "- name: web" in l][1]
        found, err = self.errors(path)
        hits = [e for e in found if "name" in e[1] and "duplicate" in e[2]]
        self.assertTrue(hits, err)
        self.assertIn(second, [h[0] for h in hits], err)

    def test_out_of_range_numbers(self):
        text = VALID.replace("retries: 1", "retries: 99")
        self.assert_error(text, "retries: 99", "retries")
        text = VALID.replace("    routes:\n", "    limits: { max_headers: 100000 }\n    routes:\n")
        self.assert_error(text, "max_headers: 100000", "max_headers")

    def test_several_errors_are_all_reported(self):
        text = VALID.replace("drain_timeout: 5s", "drain_timeout: soon").replace(
            "retries: 1", "retries: 99")
        found, err = self.errors(self.write(text))
        keys = " ".join(e[1] for e in found)
        self.assertIn("drain_timeout", keys, err)
        self.assertIn("retries", keys, err)

    def test_help_and_version(self):
        rc, out, err = run_scalegate("--help")
        self.assertEqual(rc, 0, err)
        for word in ("--config", "--check", "--workers", "SIGHUP"):
            self.assertIn(word, out)
        rc, out, err = run_scalegate("--version")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out.strip(), r"^scalegate \d+\.\d+")

    def test_no_arguments_is_an_error(self):
        rc, out, err = run_scalegate()
        self.assertNotEqual(rc, 0)
        self.assertIn("--config", out + err)

    def test_missing_config_at_start(self):
        missing = os.path.join(self.dir, "does-not-exist.yaml")
        rc, out, err = run_scalegate("--config", missing)
        self.assertNotEqual(rc, 0)
        self.assertIn(missing, out + err)

    def test_invalid_config_at_start(self):
        port = free_port()
        text = VALID.replace("18080", str(port)).replace("drain_timeout: 5s",
                                                         "drain_timeout: 5 parsecs")
        path = self.write(text)
        rc, out, err = run_scalegate("--config", path)
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, re.escape(path) + r":2: drain_timeout: ")
        self.assertFalse(re.search(r"\bstarted\b", err), err)


class ReloadAndDrainTest(ProcessTestCase):
    def setUp(self):
        self.a = self.start_backend("a1")
        self.b = self.start_backend("b1")
        self.port = free_port()

    def config(self, target, **kw):
        return two_pool_config(self.port, self.a.address, self.b.address, target, **kw)

    def test_reload_changes_route_and_keeps_open_connection(self):
        sg = self.start_proxy(self.config("a"))
        kept = Client(self.port)
        self.addCleanup(kept.close)
        self.assertEqual(kept.request("GET", "/before").backend, "a1")
        self.assertTrue(sg.reload(self.config("b")), sg.log())
        r = request(self.port, "GET", "/new-connection")
        self.assertEqual((r.status, r.backend), (200, "b1"), r)
        # The connection opened before the reload still works; its next request follows
        # the new routes.
        r = kept.request("GET", "/old-connection")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.backend, "b1", "new requests on old connections use the new config")
        self.assertFalse(kept.server_closed(timeout=0.2))
        # And back again.
        self.assertTrue(sg.reload(self.config("a")), sg.log())
        self.assertEqual(kept.request("GET", "/again").backend, "a1")
        self.assertEqual(request(self.port, "GET", "/").backend, "a1")

    def test_reload_during_in_flight_request(self):
        # The member of pool "a" is a PyBackend so the test knows when the request has
        # really reached it (routed under the old config) before it reloads.
        slow = self.start_py_backend("a1")
        sg = self.start_proxy(two_pool_config(self.port, slow.address, self.b.address, "a"))
        with Client(self.port) as c:
            c.send(b"GET /delay/700 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(slow.received.wait(5), "the request never reached the member")
            self.assertTrue(sg.reload(two_pool_config(self.port, slow.address, self.b.address,
                                                      "b")), sg.log())
            r = c.read_response(timeout=5)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.backend, "a1")  # routed before the reload
            self.assertEqual(r.body, b"a1\n")
            r = c.request("GET", "/next")
            self.assertEqual(r.backend, "b1")

    def test_bad_reload_keeps_serving_old_config(self):
        sg = self.start_proxy(self.config("a"))
        kept = Client(self.port)
        self.addCleanup(kept.close)
        self.assertEqual(kept.request("GET", "/").backend, "a1")
        bad = self.config("b").replace("drain_timeout: 5s", "drain_timeout: whenever")
        self.assertFalse(sg.reload(bad), "a bad file was accepted:\n" + sg.log())
        self.assertRegex(sg.log(), re.escape(sg.config_path) + r":2: drain_timeout")
        self.assertTrue(sg.alive())
        self.assertEqual(request(self.port, "GET", "/").backend, "a1")
        self.assertEqual(kept.request("GET", "/").backend, "a1")
        # A later good file is taken.
        self.assertTrue(sg.reload(self.config("b")), sg.log())
        self.assertEqual(request(self.port, "GET", "/").backend, "b1")

    def test_reload_with_unparsable_yaml_keeps_serving(self):
        sg = self.start_proxy(self.config("a"))
        self.assertFalse(sg.reload("listeners: [ { name: web, \n  : : :\n"), sg.log())
        self.assertTrue(sg.alive())
        self.assertEqual(request(self.port, "GET", "/").backend, "a1")

    def start_slow_request(self, drain_timeout, delay_ms):
        """scalegate in front of a PyBackend; a request /delay/<delay_ms> is in flight at the
        member when this returns (client, proxy, idle keep-alive client)."""
        slow = self.start_py_backend("slow")
        cfg = two_pool_config(self.port, slow.address, self.b.address, "a",
                              drain_timeout=drain_timeout)
        sg = self.start_proxy(cfg)
        idle = Client(self.port)
        self.addCleanup(idle.close)
        self.assertEqual(idle.request("GET", "/warm").backend, "slow")
        slow.received.clear()
        c = Client(self.port)
        self.addCleanup(c.close)
        c.send(b"GET /delay/%d HTTP/1.1\r\nHost: x\r\n\r\n" % delay_ms)
        self.assertTrue(slow.received.wait(5), "the request never reached the member")
        return c, sg, idle

    def test_sigterm_drains_in_flight_request(self):
        c, sg, idle = self.start_slow_request("5s", 1500)
        t0 = time.monotonic()
        sg.send_signal(signal.SIGTERM)
        sg.wait_log(r"\bdraining\b")
        # An idle keep-alive connection is closed at once.
        self.assertTrue(idle.server_closed(timeout=1.0), "idle connection kept open during drain")

        # New connections are refused (polled: the listener closes just after 'draining').
        def refused():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
            except ConnectionRefusedError:
                return True
            s.close()
            return False
        wait_until(refused, 1.0, what="new connections to be refused")
        # The in-flight request completes.
        r = c.read_response(timeout=5)
        t_resp = time.monotonic()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"slow\n")
        self.assertGreaterEqual(t_resp - t0, 1.0)  # it really was in flight
        self.assertEqual((r.header("connection") or "").lower(), "close", r)
        c.close()  # a well-behaved client closes after "connection: close"
        self.assertEqual(sg.wait_exit(timeout=10), 0, sg.log())
        self.assertLess(time.monotonic() - t_resp, 1.0,
                        "exit lagged the last response:\n" + sg.log())
        self.assertRegex(sg.log(), r"\btotals\b.*\brequests=2\b.*\bresponses_2xx=2\b")

    def test_sigterm_exit_does_not_wait_for_client_to_close(self):
        # Same as above, but the client keeps its socket open after the final response (it has
        # read "connection: close" and the server's FIN, and simply has not closed yet). All
        # in-flight requests are finished, so the process should exit promptly rather than
        # hold the half-closed connection until drain_timeout.
        c, sg, idle = self.start_slow_request("5s", 1000)
        t0 = time.monotonic()
        sg.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=5)
        t_resp = time.monotonic()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(c.server_closed(timeout=1.0 * SLOWDOWN))
        self.assertEqual(sg.wait_exit(timeout=10), 0, sg.log())
        self.assertLess(time.monotonic() - t_resp, 1.0 * SLOWDOWN,
                        "exit waited %.1fs after the last response (SIGTERM + %.1fs) for a "
                        "client that got its whole response:\n%s" %
                        (time.monotonic() - t_resp, time.monotonic() - t0, sg.log()))

    def test_drain_timeout_bounds_exit(self):
        # A request longer than drain_timeout is cut when drain_timeout passes.
        drain = 1.0
        c, sg, idle = self.start_slow_request("1s", 5000)
        t0 = time.monotonic()
        sg.send_signal(signal.SIGTERM)
        try:
            r = c.read_response(timeout=8)
            self.assertGreaterEqual(r.status, 500, r)
        except ConnectionClosed:
            pass
        t_cut = time.monotonic() - t0
        self.assertEqual(sg.wait_exit(timeout=10), 0, sg.log())
        t_exit = time.monotonic() - t0
        self.assertGreaterEqual(t_cut, drain - 0.1)
        self.assertLess(t_exit, drain + 0.5,
                        "drain_timeout %.1fs but the connection was cut after %.2fs and the "
                        "process exited after %.2fs:\n%s" % (drain, t_cut, t_exit, sg.log()))

    def test_sigterm_with_nothing_in_flight_exits_quickly(self):
        sg = self.start_proxy(self.config("a"))
        self.assertEqual(request(self.port, "GET", "/").status, 200)
        t0 = time.monotonic()
        self.assertEqual(sg.stop(timeout=5), 0, sg.log())
        self.assertLess(time.monotonic() - t0, 2.0)

    def test_reload_storm_under_load_loses_no_request(self):
        sg = self.start_proxy(self.config("a"), workers=2)
        stop = threading.Event()
        results = {"keepalive": [0, []], "fresh": [0, []]}
        max_requests = 5000

        def keepalive_load():
            c = Client(self.port, timeout=5)
            try:
                for i in range(max_requests):
                    if stop.is_set():
                        return
                    try:
                        r = c.request("GET", "/ka/%d" % i)
                        if r.status != 200 or r.backend not in ("a1", "b1"):
                            results["keepalive"][1].append("request %d: %r" % (i, r))
                    except (OSError, ConnectionClosed, AssertionError) as e:
                        results["keepalive"][1].append("request %d: %s: %s" %
                                                       (i, type(e).__name__, e))
                        c.close()
                        c = Client(self.port, timeout=5)
                    results["keepalive"][0] += 1
            finally:
                c.close()

        def fresh_load():
            for i in range(max_requests):
                if stop.is_set():
                    return
                try:
                    r = request(self.port, "GET", "/fresh/%d" % i, timeout=5)
                    if r.status != 200:
                        results["fresh"][1].append("request %d: %r" % (i, r))
                except (OSError, ConnectionClosed, AssertionError) as e:
                    results["fresh"][1].append("request %d: %s: %s" % (i, type(e).__name__, e))
                results["fresh"][0] += 1

        threads = [threading.Thread(target=keepalive_load, daemon=True),
                   threading.Thread(target=fresh_load, daemon=True)]
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        configs = [self.config("b"), self.config("a")]
        signals = 0
        end = time.monotonic() + 3.0
        while time.monotonic() < end and signals < 100:
            sg._write_config(configs[signals % 2])
            sg.send_signal(signal.SIGHUP)
            signals += 1
            time.sleep(0.05)  # pacing of the storm, not synchronisation
        stop.set()
        for t in threads:
            t.join(timeout=10)
            self.assertFalse(t.is_alive(), "load thread stuck")
        self.assertTrue(sg.alive(), sg.log())
        wait_until(lambda: sg.count(r"\breloaded\b") >= 1, 5, what="a reload")
        self.assertEqual(sg.count(r"reload failed"), 0, sg.log())
        self.assertGreater(results["keepalive"][0], 50, results)
        self.assertGreater(results["fresh"][0], 20, results)
        self.assertEqual(results["keepalive"][1], [], "keep-alive requests lost during reloads")
        self.assertEqual(results["fresh"][1], [], "new-connection requests lost during reloads")
        self.assertGreaterEqual(sg.count(r"\breloaded\b"), signals // 4,
                                "far fewer reloads than SIGHUPs (%d)" % signals)
        self.assertEqual(request(self.port, "GET", "/after").status, 200)
        self.assertEqual(sg.stop(), 0, sg.log())


if __name__ == "__main__":
    unittest.main()
