"""What the sgload tests share: the binary, a bounded run returning its JSON summary, and a
test case with sgbackend members (test_sgload.py: timing accuracy, label perf;
test_sgload_functions.py: everything else sgload promises, also run under the sanitizers)."""

import json
import os
import subprocess

import harness

SGLOAD = os.path.join(harness.BIN_DIR, "bench", "sgload")
# Seconds an sgload run may take beyond its own -d (startup, the last requests, exit).
RUN_GRACE = 20.0 * harness.SLOWDOWN


def sgload(args, timeout=RUN_GRACE, expect_rc=0):
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
