#!/usr/bin/env bash
# Builds scalegate and runs every test (unit, fuzz corpora, integration on loopback).
# Installs the Debian packages it needs when they are missing (run as root on Debian 12).
# Usage: scripts/test.sh [PRESET]   (release by default; asan and tsan work too)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
scripts/setup.sh build test
scripts/build.sh "$preset"
# Integration tests open thousands of sockets.
ulimit -n 65536 2>/dev/null || true
ctest --preset "$preset" -j2 --timeout 600
