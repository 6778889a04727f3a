"""sgload, the bundled load generator, measured against backends whose behaviour is known.

The backend is sgbackend with an injected service time (`--delay-dist`, `/delay/MS`), so what
sgload should report follows from the configuration, never from sgload itself: latency
percentiles, open-loop rates, a server stall (SIGSTOP/SIGCONT) under open and closed loop,
errors by kind, per-second CSV, stages, `-n`, and HTTP/2 and TLS against nginx.

Every sgload run is bounded (`-d` or `-n`, plus a subprocess timeout); all on loopback.
"""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness

SGLOAD = os.path.join(harness.BIN_DIR, "bench", "sgload")
RUN_GRACE = 20.0  # seconds an sgload run may take beyond its own -d


def sgload(args, timeout=30.0, expect_rc=0):
    """Runs sgload -q --json ARGS; returns the parsed summary (None when expect_rc != 0)."""
    cmd = [SGLOAD, "-q", "--json"] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    if p.returncode != expect_rc:
        raise AssertionError("%s: exit %d, expected %d\nstdout: %s\nstderr: %s" %
                             (" ".join(cmd), p.returncode, expect_rc, out, err))
    if expect_rc != 0:
        return None
    try:
        return json.loads(out)
    except ValueError:
        raise AssertionError("%s: stdout is not JSON: %r (stderr %r)" % (" ".join(cmd), out, err))


def describe(cmd, summary):
    """The command and the fields a failure message needs."""
    keys = ("requests", "duration_s", "rps", "target_rate", "latency_us", "status", "errors")
    return "sgload %s -> %s" % (" ".join(str(a) for a in cmd),
                               json.dumps({k: summary.get(k) for k in keys}))


def true_quantile(dist, q):
    """The q-quantile of a service-time distribution [(percent, seconds)]: the smallest
    value whose cumulative share reaches q (the definition sgload documents: rank ceil(q*N))."""
    cumulative = 0.0
    for percent, value in sorted(dist, key=lambda pv: pv[1]):
        cumulative += percent / 100.0
        if cumulative >= q - 1e-12:
            return value
    return max(v for _, v in dist)


def dist_arg(dist):
    return ",".join("%g%%:%gms" % (p, v * 1000) for p, v in dist)


def get_seconds(client, path):
    t0 = time.perf_counter()
    r = client.request("GET", path)
    elapsed = time.perf_counter() - t0
    if r.status != 200:
        raise AssertionError("GET %s: %s" % (path, r))
    return elapsed


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class SgloadTestCase(harness.ProcessTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(SGLOAD, os.X_OK):
            raise AssertionError("%s not built (cmake --build ... --target sgload)" % SGLOAD)

    def backend(self, backend_id, *args):
        b = harness.Backend(backend_id, list(args))
        self.addCleanup(b.stop)
        return b.start()

    def url(self, backend, path="/"):
        return "http://127.0.0.1:%d%s" % (backend.port, path)


class LatencyAccuracyTest(SgloadTestCase):
    # 90% of requests take 20 ms, 10% take 200 ms: p50 = 20 ms, p99 = 200 ms. Loopback RTT
    # (~50 us) and the wake-up latency of a timer on this VM (0.1-0.3 ms after an idle wait,
    # on either side) stay well under 5% of both.
    DIST = [(90, 0.020), (10, 0.200)]
    TOLERANCE = 0.05

    def test_backend_delays_are_accurate(self):
        """The yardstick first: sgbackend's own /delay/MS, seen by a plain client."""
        b = self.backend("acc")
        with harness.Client(b.port) as c:
            get_seconds(c, "/")  # connection warm
            rtt = sorted(get_seconds(c, "/") for _ in range(20))[10]
            for ms, n in ((20, 25), (200, 5)):
                samples = sorted(get_seconds(c, "/delay/%d" % ms) for _ in range(n))
                median = samples[n // 2]
                want = ms / 1000.0
                # The timer's own error (this client's round trip, slow in Python, taken
                # off) within half of the budget sgload gets, so a failure below is sgload's.
                self.assertLess(abs(median - rtt - want), want * self.TOLERANCE / 2,
                                "sgbackend /delay/%d: median %.3f ms over %d requests "
                                "(round trip of / %.3f ms)" % (ms, median * 1e3, n, rtt * 1e3))
                self.assertGreaterEqual(samples[0], want, "a response came early")

    def test_closed_loop_percentiles(self):
        b = self.backend("acc", "--delay-dist", dist_arg(self.DIST))
        args = ["-c", 40, "-d", "5s", self.url(b)]
        s = sgload(args, timeout=5 + RUN_GRACE)
        what = describe(args, s)
        # 40 connections / 38 ms mean service time ~ 1050 req/s: ~5000 samples, ~500 slow
        # ones, so the 1% tail lies well inside the 200 ms group and the median in the 20 ms.
        self.assertGreater(s["requests"], 2000, what)
        self.assertEqual(s["status"], {"200": s["requests"]}, what)
        for key, q in (("p50", 0.50), ("p99", 0.99)):
            true_us = true_quantile(self.DIST, q) * 1e6
            got = s["latency_us"][key]
            self.assertLess(abs(got - true_us), true_us * self.TOLERANCE,
                            "%s: expected %.0f us +-%d%%, got %.1f us; %s" %
                            (key, true_us, self.TOLERANCE * 100, got, what))
        # Nothing is faster than the shortest service time.
        self.assertGreaterEqual(s["latency_us"]["min"], 20000, what)


class OpenLoopTest(SgloadTestCase):
    def test_rate_is_delivered(self):
        b = self.backend("open")
        rate, seconds = 2000, 10
        args = ["-c", 50, "--rate", rate, "-d", "%ds" % seconds, self.url(b)]
        s = sgload(args, timeout=seconds + RUN_GRACE)
        what = describe(args, s)
        self.assertEqual(s["target_rate"], rate, what)
        self.assertAlmostEqual(s["duration_s"], seconds, delta=seconds * 0.01, msg=what)
        delivered = s["requests"] / s["duration_s"]
        self.assertLess(abs(delivered - rate), rate * 0.01,
                        "expected %d/s +-1%%, got %.1f/s; %s" % (rate, delivered, what))
        self.assertEqual(s["status"], {"200": s["requests"]}, what)
        self.assertEqual(sum(s["errors"].values()), 0, what)

    def stalled_run(self, args, seconds, stall_at=2.0, stall=1.0):
        """Runs sgload for `seconds` while the backend (args' target) is SIGSTOPped for
        `stall` seconds from `stall_at`; returns (summary, measured stall in seconds)."""
        b = self.backend("stall")
        cmd = [SGLOAD, "-q", "--json"] + [str(a) for a in args] + [self.url(b)]
        out = tempfile.TemporaryFile()
        self.addCleanup(out.close)
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(harness._kill, p)
        started = time.monotonic()
        # Stall only once the run is under way (a few seconds in, far from either end).
        while time.monotonic() - started < stall_at:
            self.assertIsNone(p.poll(), "sgload exited early")
            time.sleep(0.02)
        t0 = time.monotonic()
        os.kill(b.proc.pid, signal.SIGSTOP)
        try:
            while time.monotonic() - t0 < stall:
                time.sleep(0.005)
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        measured = time.monotonic() - t0
        p.wait(timeout=seconds + RUN_GRACE)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "%s: %s" % (" ".join(cmd), text))
        return json.loads(text), measured

    def test_stall_shows_in_open_loop_not_in_closed_loop(self):
        """Coordinated omission. Open loop at R/s for D s with a stall of S s: the R*S
        requests due during the stall wait from their intended send time until the backend
        resumes, i.e. S - u for one due u seconds into the stall, evenly spread over (0, S].
        They are S/D of all requests; the slowest 1% are those due in the stall's first
        0.01*D seconds, so p99 ~ S - 0.01*D (0.94 s for S = 1, D = 6)."""
        rate, seconds = 1000, 6
        args = ["-c", 50, "--rate", rate, "-d", "%ds" % seconds]
        s, stall = self.stalled_run(args, seconds)
        what = describe(args, s) + " (stall %.3f s)" % stall
        self.assertGreater(stall / seconds, 0.01, "the stall must cover > 1% of the run")
        expected_p99 = stall - 0.01 * seconds
        p99 = s["latency_us"]["p99"] / 1e6
        self.assertGreater(p99, 0.9 * expected_p99,
                           "open loop: expected p99 ~%.3f s, got %.3f s; %s" %
                           (expected_p99, p99, what))
        self.assertLess(p99, stall + 0.2, "open loop p99 beyond the stall; " + what)
        self.assertGreater(s["latency_us"]["max"] / 1e6, 0.9 * stall, what)
        # Late sends are caught up, never dropped.
        delivered = s["requests"] / s["duration_s"]
        self.assertLess(abs(delivered - rate), rate * 0.02, what)
        self.assertEqual(sum(s["errors"].values()), 0, what)

        # The same stall under a closed loop: only the 50 requests in flight wait, and
        # sgload sends nothing meanwhile, so the stall hides below p99 once the run holds
        # more than 100 * 50 requests.
        closed = ["-c", 50, "-d", "%ds" % seconds]
        c, stall = self.stalled_run(closed, seconds)
        what = describe(closed, c) + " (stall %.3f s)" % stall
        self.assertGreater(c["requests"], 100 * 50, "too few requests to hide 50; " + what)
        self.assertGreater(c["latency_us"]["max"] / 1e6, 0.9 * stall, what)
        self.assertLess(c["latency_us"]["p99"] / 1e6, 0.1 * stall,
                        "closed loop should hide the stall below p99; " + what)


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


class TextOutputTest(SgloadTestCase):
    def test_threads_progress_and_every_percentile(self):
        """Without --json: a live progress line each second on stderr, and the summary's
        fixed lines with p50 ... p99.99 and max; -t 2 runs two event loops."""
        b = self.backend("text")
        # Every response takes 20 ms (and a little more on a busy machine): the median is
        # within 5% of it, every percentile and the max at or above it, in order.
        cmd = [SGLOAD, "-t", "2", "-c", "4", "-d", "3s", self.url(b, "/delay/20")]
        p = subprocess.run(cmd, capture_output=True, timeout=3 + RUN_GRACE,
                           stdin=subprocess.DEVNULL)
        out, err = p.stdout.decode(), p.stderr.decode()
        what = "%s\nstdout:\n%s\nstderr:\n%s" % (" ".join(cmd), out, err)
        self.assertEqual(p.returncode, 0, what)
        self.assertIn("4 connections, 2 threads, HTTP/1.1", out, what)
        progress = re.findall(r"^\[\s*(\d+)s\]\s+(\d+) req/s .* total (\d+)$", err, re.M)
        self.assertGreaterEqual(len(progress), 2, what)
        self.assertEqual([int(sec) for sec, _, _ in progress[:2]], [1, 2], what)
        for _, rps, _ in progress:  # 4 connections x 1 / 20 ms = 200/s at most
            self.assertTrue(50 <= int(rps) <= 200, what)
        m = re.search(r"^latency p50 ([\d.]+) us p90 ([\d.]+) us p99 ([\d.]+) us p99\.9 "
                      r"([\d.]+) us p99\.99 ([\d.]+) us max ([\d.]+) us$", out, re.M)
        self.assertIsNotNone(m, what)
        values = [float(v) for v in m.groups()]
        self.assertEqual(values, sorted(values), what)
        self.assertGreaterEqual(values[0], 20000, what)
        self.assertLessEqual(values[0], 21000, what)
        self.assertLessEqual(values[-1], 100000, what)
        requests = int(re.search(r"^requests: (\d+)$", out, re.M).group(1))
        self.assertIn("status 200: %d\n" % requests, out, what)
        self.assertIn("errors connect 0 timeout 0 reset 0 protocol 0", out, what)
        self.assertGreater(requests, 150, what)
        # The last progress line's running total never exceeds what the summary counts
        # plus what was in flight at the end.
        self.assertLessEqual(int(progress[-1][2]), requests + 4, what)


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


class OutputAndStopTest(SgloadTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sgload-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_csv_has_one_row_per_second(self):
        b = self.backend("csv")
        path = os.path.join(self.dir, "run.csv")
        args = ["-c", 10, "--rate", 500, "-d", "3s", "--csv", path, self.url(b)]
        s = sgload(args, timeout=3 + RUN_GRACE)
        what = describe(args, s)
        rows = read_csv(path)
        self.assertEqual([int(r["second"]) for r in rows], [1, 2, 3], what)
        for r in rows:
            self.assertAlmostEqual(float(r["rps"]), 500, delta=25, msg="%r; %s" % (r, what))
            self.assertEqual(int(r["errors"]), 0, r)
            self.assertLessEqual(float(r["p50_us"]), float(r["p99_us"]), r)
            self.assertLessEqual(float(r["p99_us"]), float(r["max_us"]), r)
        self.assertEqual(sum(int(r["requests"]) for r in rows), s["requests"], what)

    def test_stages_change_the_rate(self):
        b = self.backend("stages")
        path = os.path.join(self.dir, "stages.csv")
        args = ["-c", 20, "--stages", "2s:200,2s:1000", "--csv", path, self.url(b)]
        s = sgload(args, timeout=4 + RUN_GRACE)
        what = describe(args, s)
        rows = read_csv(path)
        self.assertEqual(len(rows), 4, what)
        for r, want in zip(rows, (200, 200, 1000, 1000)):
            self.assertAlmostEqual(float(r["rps"]), want, delta=want * 0.05,
                                   msg="second %s: expected %d/s; %r; %s" %
                                   (r["second"], want, r, what))
        self.assertAlmostEqual(s["requests"], 2 * 200 + 2 * 1000, delta=24, msg=what)
        self.assertAlmostEqual(s["target_rate"], 600, delta=0.5, msg=what)

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
