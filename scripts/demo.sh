#!/usr/bin/env bash
# The local demo: scalegate on 127.0.0.1:8080 with config/examples/local.yaml (autoscaling on,
# admin API on 127.0.0.1:9900) and the reference scaler bench/sgscaler on 127.0.0.1:9800, which
# starts sgbackend instances as processes. Autoscale brings the pool to 2 instances; then a
# load ramp (bench/sgload: low, high, low) drives a scale-out and, once the load drops, a
# scale-in with drained instances. A live line each second shows capacity, healthy members,
# requests/s and p99; at the end a timeline plot is written to /tmp/scalegate-demo/timeline.png.
# Then it keeps running until Ctrl-C, or for SG_DEMO_SECONDS more seconds when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build test
scripts/build.sh release
bin=build/release
demo=/tmp/scalegate-demo
mkdir -p "$demo"
[ -s "$demo/admin.token" ] || head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$demo/admin.token"
[ -s "$demo/scaler.secret" ] || echo "whsec_$(head -c 24 /dev/urandom | base64)" > "$demo/scaler.secret"
rm -f "$demo/local.state.json" "$demo/local.outbox.json"  # each demo starts from an empty pool
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
wait_http() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
for port in 8080 9800 9900; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: 127.0.0.1:$port is already in use (another demo running?)" >&2; exit 1
  fi
done
"$bin/bench/sgscaler" --listen 127.0.0.1:9800 --secret-file "$demo/scaler.secret" \
  --admin http://127.0.0.1:9900 --admin-token-file "$demo/admin.token" --pool web \
  --backend-bin "$bin/bench/sgbackend" --backend-args "--cpu-work 300us --quiet" \
  --boot-delay 3s --initial 0 --zones 1,2,3 --state-dir "$demo/scaler" > "$demo/sgscaler.log" 2>&1 &
pids+=($!)
"$bin/control/scalegate" --config config/examples/local.yaml > "$demo/scalegate.log" 2>&1 & sg=$!
pids+=($sg)
wait_http http://127.0.0.1:9900/healthz
echo "--- scalegate on http://127.0.0.1:8080/ (logs: $demo/scalegate.log, $demo/sgscaler.log)"
echo "--- autoscale asks the scaler for the pool's minimum of 2 instances:"
auth=(-H "Authorization: Bearer $(cat "$demo/admin.token")")
for _ in $(seq 300); do
  healthy=$(curl -fsS "${auth[@]}" http://127.0.0.1:9900/v1/pools/web | grep -o '"health":"healthy"' | wc -l || true)
  [ "${healthy:-0}" -ge 2 ] && break
  sleep 0.1
done
"$bin/control/sgctl" --admin http://127.0.0.1:9900 --token-file "$demo/admin.token" pool web
stages="20s:100,50s:1400,50s:80"
echo "--- load ramp with sgload (open loop, requests/s): $stages"
"$bin/bench/sgload" -q -c 64 --stages "$stages" --json http://127.0.0.1:8080/ > "$demo/sgload.json" 2> "$demo/sgload.err" &
load=$!; pids+=($load)
python3 scripts/demo_monitor.py http://127.0.0.1:9900 "$demo/admin.token" web 122 \
  "$demo/timeline.tsv" "$demo/timeline.png"
wait "$load" || true
echo "--- sgload summary:"
python3 - "$demo/sgload.json" <<'PY' || tail -c 600 "$demo/sgload.json"
import json, sys
s = json.load(open(sys.argv[1]))
non2xx = sum(n for code, n in s["status"].items() if not code.startswith("2"))
print("  %d requests, %d errors (%s), %d non-2xx; p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (
    s["requests"], sum(s["errors"].values()), s["errors"], non2xx,
    s["latency_us"]["p50"] / 1000, s["latency_us"]["p99"] / 1000, s["latency_us"]["max"] / 1000))
PY
echo "--- what autoscale did:"
"$bin/control/sgctl" --admin http://127.0.0.1:9900 --token-file "$demo/admin.token" events \
  | grep -E 'scale_out|scale_in|Flapping|webhook_failed|repair' || true
"$bin/control/sgctl" --admin http://127.0.0.1:9900 --token-file "$demo/admin.token" pool web
echo "--- scalegate is still running. Try:"
echo "    curl -v http://127.0.0.1:8080/echo"
echo "    $bin/control/sgctl -t $demo/admin.token scale web 4      # manual scaling"
echo "    $bin/control/sgctl -t $demo/admin.token upgrade web --version v2 --batch 50%"
echo "    curl -s http://127.0.0.1:9900/metrics | grep scalegate_pool_capacity"
echo "    (Ctrl-C stops)"
if [ -n "${SG_DEMO_SECONDS:-}" ]; then sleep "$SG_DEMO_SECONDS"; else wait "$sg"; fi
