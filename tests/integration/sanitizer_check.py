#!/usr/bin/env python3
"""Runs one integration test module under a sanitizer build and fails it when any process it
started reported a sanitizer error.

Integration tests start real binaries (scalegate, sgbackend, sgscaler, ...) and usually stop
them with SIGKILL, so an ASan/UBSan/TSan report in a child would otherwise only show as an odd
test failure, or not at all. Each sanitizer runtime is told to write its reports to
<report dir>/<sanitizer>.<pid> (log_path); after the test module ends, any report there fails
the test and is printed. SG_SANITIZED=1 tells the harness to allow for the slower binaries
(harness.py: SLOWDOWN).

Usage (tests/CMakeLists.txt registers it for sanitizer builds):
  sanitizer_check.py REPORT_DIR -- COMMAND...
"""
import glob
import os
import shutil
import subprocess
import sys


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    report_dir = argv[1]
    shutil.rmtree(report_dir, ignore_errors=True)
    os.makedirs(report_dir)
    env = dict(os.environ)
    env["SG_SANITIZED"] = "1"

    def opts(var, base, name):
        # Options already in the environment (the test preset's) come first; log_path is ours.
        current = env.get(var, "")
        parts = [p for p in (current, base) if p]
        parts.append("log_path=" + os.path.join(report_dir, name))
        env[var] = ":".join(parts)

    opts("ASAN_OPTIONS", "halt_on_error=1:detect_leaks=1", "asan")
    opts("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1", "ubsan")
    opts("TSAN_OPTIONS", "halt_on_error=0:second_deadlock_stack=1", "tsan")
    rc = subprocess.call(argv[3:], env=env)
    reports = sorted(glob.glob(os.path.join(report_dir, "*")))
    for path in reports:
        with open(path, errors="replace") as f:
            text = f.read()
        print("==== sanitizer report %s ====\n%s" % (path, text), file=sys.stderr)
    if reports:
        print("sanitizer_check: %d sanitizer report(s) from processes of this test" %
              len(reports), file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
