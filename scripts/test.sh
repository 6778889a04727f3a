#!/usr/bin/env bash
# Builds scalegate and runs every test (unit, fuzz corpora, integration on loopback).
# Installs the Debian packages it needs when they are missing (run as root on Debian 12).
#
# Usage: scripts/test.sh          what CI runs (.ci/run):
#                                   1. the asan preset (ASan+UBSan, -O1, tests -O0): every test
#                                      but the perf-labelled ones;
#                                   2. the release preset: only the binaries the performance-
#                                      sensitive tests start, and those tests (label perf:
#                                      sgload's accuracy checks, the bench scripts), whose
#                                      timing figures mean nothing under a sanitizer.
#        scripts/test.sh PRESET   the whole suite under one preset (release, debug); under a
#                                 sanitizer preset (asan, tsan) every test but the perf-labelled
#                                 ones, whose assertions are timing figures
#
# Why this split (README.md "Testing"): on the 2-core CI box the release suite in full is
# ~6 min build + ~3 min tests, and an asan -O1 compile costs 1.1-2x the CPU of a release one
# per file, so both suites in full would not fit CI's 20 minutes; the asan suite is a superset
# of the release one except for timing, and the release build of the binaries the perf tests
# need keeps -O2 -Werror checked on all production code.
# ctest prints its summary for every suite; any failing suite fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build test
# Integration tests open thousands of sockets.
ulimit -n 65536 2>/dev/null || true

# Binaries the perf-labelled tests start (tests/integration/test_sgload.py and
# test_bench_scripts.py).
perf_targets=(scalegate sgbackend sgload)

suite() {  # suite PRESET [ctest args...]
  local preset=$1
  shift
  echo "== ctest --preset $preset $*"
  local start=$SECONDS rc=0
  ctest --preset "$preset" -j2 --timeout 600 "$@" || rc=$?
  echo "== $preset suite: exit $rc after $((SECONDS - start)) s"
  return $rc
}

if [ $# -gt 0 ]; then
  scripts/build.sh "$1"
  case "$1" in
    asan | tsan) suite "$1" -LE perf ;;
    *) suite "$1" ;;
  esac
  exit
fi

failed=0
start=$SECONDS
scripts/build.sh asan
echo "== asan build: $((SECONDS - start)) s"

# The release binaries build while the asan suite runs: that suite mostly waits on sockets and
# timers, so the build takes the idle CPU (at a lower priority) instead of adding its
# minutes after it.
scripts/setup.sh build
cmake --preset release >/dev/null
release_log=$(mktemp /tmp/scalegate-release-build.XXXXXX)
start=$SECONDS
nice -n 10 cmake --build --preset release -j"$(nproc)" --target "${perf_targets[@]}" >"$release_log" 2>&1 &
release_build=$!

suite asan -LE perf || failed=1

release_rc=0
wait "$release_build" || release_rc=$?
tail -n 3 "$release_log"
echo "== release build (${perf_targets[*]}): exit $release_rc, done $((SECONDS - start)) s after the asan suite started"
if [ "$release_rc" -ne 0 ]; then
  cat "$release_log" >&2
  failed=1
else
  suite release -L perf || failed=1
fi
rm -f "$release_log"

if [ "$failed" -ne 0 ]; then
  echo "test.sh: a suite failed (see its ctest summary above)" >&2
  exit 1
fi
