"""sgload's timing accuracy, measured against backends whose behaviour is known (label perf:
run on the release build, alone; tests/integration/test_sgload_functions.py has the rest).

The backend is sgbackend with an injected service time (`--delay-dist`, `/delay/MS`), so what
sgload should report follows from the configuration, never from sgload itself: latency
percentiles, open-loop rates, a server stall (SIGSTOP/SIGCONT) under open and closed loop,
per-second CSV, stages and the text output's figures.

Every sgload run is bounded (`-d` or `-n`, plus a subprocess timeout); all on loopback.
"""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness
from sgload_common import RUN_GRACE, SGLOAD, SgloadTestCase, describe, sgload


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


if __name__ == "__main__":
    unittest.main()
