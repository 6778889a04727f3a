#!/usr/bin/env bash
# The local demo: two instances (sgbackend) on 127.0.0.1:9001/9002 and scalegate on
# 127.0.0.1:8080 with config/examples/local.yaml (admin API on 127.0.0.1:9900). It sends a few
# requests, registers a third instance through the admin API, shows the pool, then keeps
# running until Ctrl-C (or SG_DEMO_SECONDS elapse).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build test
scripts/build.sh release
bin=build/release
demo=/tmp/scalegate-demo
mkdir -p "$demo"
[ -s "$demo/admin.token" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$demo/admin.token"
token=$(cat "$demo/admin.token")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
wait_http() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
"$bin/bench/sgbackend" --listen 127.0.0.1:9001 --id vm-0 --quiet & pids+=($!)
"$bin/bench/sgbackend" --listen 127.0.0.1:9002 --id vm-1 --quiet & pids+=($!)
"$bin/bench/sgbackend" --listen 127.0.0.1:9003 --id vm-2 --quiet & pids+=($!)
wait_http http://127.0.0.1:9001/health && wait_http http://127.0.0.1:9002/health
"$bin/control/scalegate" --config config/examples/local.yaml & sg=$!; pids+=($sg)
wait_http http://127.0.0.1:8080/
echo "--- 6 requests through scalegate (http://127.0.0.1:8080/):"
for _ in $(seq 6); do curl -sS http://127.0.0.1:8080/; done
echo "--- register vm-2 (127.0.0.1:9003) through the admin API:"
curl -sS -X PUT -H "Authorization: Bearer $token" -d '{"address":"127.0.0.1:9003","zone":"3"}' \
  http://127.0.0.1:9900/v1/pools/web/members/vm-2; echo
sleep 2.5  # two probe intervals: vm-2 passes `rise: 2` and starts its slow start
echo "--- the pool now:"
curl -sS -H "Authorization: Bearer $token" http://127.0.0.1:9900/v1/pools/web | head -c 1500; echo
echo "--- scalegate is running. Try:"
echo "    curl -v http://127.0.0.1:8080/echo"
echo "    curl -H \"Authorization: Bearer \$(cat $demo/admin.token)\" http://127.0.0.1:9900/v1/pools/web"
echo "    curl http://127.0.0.1:9900/metrics | grep scalegate_member_requests_total"
echo "    (Ctrl-C stops)"
if [ -n "${SG_DEMO_SECONDS:-}" ]; then sleep "$SG_DEMO_SECONDS"; else wait "$sg"; fi
