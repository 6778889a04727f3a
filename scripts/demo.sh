#!/usr/bin/env bash
# The local demo: two instances (sgbackend) on 127.0.0.1:9001/9002 and scalegate on
# 127.0.0.1:8080 with config/examples/local.yaml. Sends a few requests to show the spread,
# then keeps running until Ctrl-C (or SG_DEMO_SECONDS elapse).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build test
scripts/build.sh release
bin=build/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/bench/sgbackend" --listen 127.0.0.1:9001 --id vm-0 --quiet & pids+=($!)
"$bin/bench/sgbackend" --listen 127.0.0.1:9002 --id vm-1 --quiet & pids+=($!)
"$bin/control/scalegate" --config config/examples/local.yaml & pids+=($!)
for _ in $(seq 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8080/ 2>/dev/null && break
  sleep 0.1
done
echo "--- 6 requests through scalegate (http://127.0.0.1:8080/):"
for _ in $(seq 6); do curl -sS http://127.0.0.1:8080/; done
echo "--- scalegate is running; try: curl -v http://127.0.0.1:8080/echo   (Ctrl-C stops)"
if [ -n "${SG_DEMO_SECONDS:-}" ]; then sleep "$SG_DEMO_SECONDS"; else wait "${pids[2]}"; fi
