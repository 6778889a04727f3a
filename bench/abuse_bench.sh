#!/usr/bin/env bash
# Abuse bench (issue 8): a well-behaved client's latency with and without abusive clients
# beside it, through a scalegate with listener limits in front of sgbackend.
#
#   well-behaved: sgload open loop at --rate from 127.0.0.1 (its own IP, under every limit)
#   abusers, each from its own loopback address (= its own client IP):
#     127.0.0.2  request flood: sgload closed loop, max rate       -> 429 (request rate)
#     127.0.0.3  connection flood: bench/abusers.py connflood      -> closed (connections per IP)
#     127.0.0.4  slowloris: bench/abusers.py slowloris              -> closed (request_header timeout)
#
# The abusers run at nice 19: on this bench they share the machine's cores with scalegate, and
# what is measured is how scalegate treats their traffic, not how much CPU the abusers' own
# processes take from it (on a network they run on other machines).
#
# Prints unloaded and loaded p50/p99 of the well-behaved client, their ratio, and what the
# abusers got (429s, closed connections, from scalegate's /metrics). Exits 1 when the loaded
# p99 is more than --max-ratio (2) times the unloaded p99, 2 on a setup error.
# Bounded: two runs of --duration seconds (default 8) plus start-up, well under a minute.
#
#   bench/abuse_bench.sh [--duration S] [--rate R] [--workers N] [--max-ratio X]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=8
RATE=500
WORKERS=1
MAX_RATIO=2
SLOW_CONNS=200
FLOOD_CONNS=400
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --max-ratio) MAX_RATIO=$2; shift 2 ;;
    --slow-conns) SLOW_CONNS=$2; shift 2 ;;
    --flood-conns) FLOOD_CONNS=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) sg_die "unknown argument $1" ;;
  esac
done
((DURATION >= 1 && DURATION <= 20)) || sg_die "--duration must be 1..20 seconds"

SGLOAD=${SG_SGLOAD:-$SG_BIN_DIR/bench/sgload}
sg_init
sg_ensure_built sgload "$SGLOAD"
sg_ensure_built scalegate "$SG_SCALEGATE"
sg_start_backend b1 0-1
BACKEND_PORT=$SG_LAST_PORT

PORT=$(sg_free_port)
ADMIN_PORT=$(sg_free_port)
echo "abuse-bench-token" >"$SG_TMP/admin.token"
cat >"$SG_TMP/scalegate.yaml" <<EOF
log: { level: warn }
admin: { listen: 127.0.0.1:$ADMIN_PORT, token_file: $SG_TMP/admin.token }
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:$PORT
    routes: [ { path_prefix: /, pool: web } ]
    limits:
      max_connections: 1000
      max_connections_per_ip: 32
      requests_per_second_per_ip: 1000
      request_burst_per_ip: 200
    timeouts: { request_header: 2s, send: 5s }
pools:
  web:
    members: [ { id: b1, address: 127.0.0.1:$BACKEND_PORT } ]
EOF
"$SG_SCALEGATE" --config "$SG_TMP/scalegate.yaml" --workers "$WORKERS" >"$SG_TMP/scalegate.log" 2>&1 &
sg_track $!
sg_wait_port "$PORT" || { cat "$SG_TMP/scalegate.log" >&2; sg_die "scalegate did not start"; }
sg_wait_port "$ADMIN_PORT" || sg_die "scalegate admin did not start"

metric() { # metric NAME_AND_LABELS_REGEX: the sum of matching samples in /metrics
  curl -s -H "Authorization: Bearer abuse-bench-token" "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk -v re="$1" '$0 !~ /^#/ && $1 ~ re { s += $2 } END { printf "%d\n", s }'
}

good() { # good OUT_JSON: the well-behaved client, open loop
  "$SGLOAD" -q --json -c 8 --rate "$RATE" -d "${DURATION}s" --warmup 1s \
    "http://127.0.0.1:$PORT/" >"$1"
}
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

sg_log "unloaded: sgload --rate $RATE for ${DURATION}s"
good "$SG_TMP/unloaded.json"

sg_log "loaded: the same client beside a request flood, a connection flood and a slowloris"
ABUSE_S=$((DURATION + 2))
nice -n 19 "$SGLOAD" -q --json -c 8 -d "${ABUSE_S}s" --source 127.0.0.2 --timeout 5s \
  "http://127.0.0.1:$PORT/" >"$SG_TMP/flood.json" &
sg_track $!
FLOOD_PID=$!
nice -n 19 python3 "$SG_REPO/bench/abusers.py" connflood --port "$PORT" --source 127.0.0.3 \
  --conns "$FLOOD_CONNS" --duration "$ABUSE_S" >"$SG_TMP/connflood.json" &
sg_track $!
CONN_PID=$!
nice -n 19 python3 "$SG_REPO/bench/abusers.py" slowloris --port "$PORT" --source 127.0.0.4 \
  --conns "$SLOW_CONNS" --duration "$ABUSE_S" --interval 0.5 >"$SG_TMP/slowloris.json" &
sg_track $!
SLOW_PID=$!
sleep 0.5 # let the abusers reach their limits first
good "$SG_TMP/loaded.json"
wait "$FLOOD_PID" "$CONN_PID" "$SLOW_PID"

U50=$(field "$SG_TMP/unloaded.json" 'd["latency_us"]["p50"]')
U99=$(field "$SG_TMP/unloaded.json" 'd["latency_us"]["p99"]')
L50=$(field "$SG_TMP/loaded.json" 'd["latency_us"]["p50"]')
L99=$(field "$SG_TMP/loaded.json" 'd["latency_us"]["p99"]')
UOK=$(field "$SG_TMP/unloaded.json" 'd["status"].get("200", 0)')
LOK=$(field "$SG_TMP/loaded.json" 'd["status"].get("200", 0)')
LBAD=$(field "$SG_TMP/loaded.json" 'sum(v for k, v in d["status"].items() if k != "200") + sum(d["errors"].values())')
F200=$(field "$SG_TMP/flood.json" 'd["status"].get("200", 0)')
F429=$(field "$SG_TMP/flood.json" 'd["status"].get("429", 0)')
C_OPEN=$(field "$SG_TMP/connflood.json" 'd["opened"]')
C_CLOSED=$(field "$SG_TMP/connflood.json" 'd["closed_by_server"]')
S_OPEN=$(field "$SG_TMP/slowloris.json" 'd["opened"]')
S_CLOSED=$(field "$SG_TMP/slowloris.json" 'd["closed_by_server"]')
M_RATE=$(metric 'scalegate_listener_limited_total.*reason="request_rate"')
M_PERIP=$(metric 'scalegate_listener_limited_total.*reason="max_connections_per_ip"')
M_TOTAL=$(metric 'scalegate_listener_limited_total.*reason="max_connections"')
M_HEAD=$(metric 'scalegate_listener_limited_total.*reason="request_header_timeout"')
RATIO=$(python3 -c "print('%.2f' % ($L99 / $U99 if $U99 > 0 else float('inf')))")

printf '\nwell-behaved client: sgload --rate %s -c 8, %ss, scalegate --workers %s\n' "$RATE" "$DURATION" "$WORKERS"
printf '%-10s %10s %10s %8s %8s\n' run p50_us p99_us ok failed
printf '%-10s %10.0f %10.0f %8d %8d\n' unloaded "$U50" "$U99" "$UOK" 0
printf '%-10s %10.0f %10.0f %8d %8d\n' loaded "$L50" "$L99" "$LOK" "$LBAD"
printf 'p99 ratio loaded/unloaded: %s (limit %s)\n\n' "$RATIO" "$MAX_RATIO"
printf '%-28s %s\n' abuser result
printf '%-28s %s\n' "request flood 127.0.0.2" "$F200 answered 200, $F429 answered 429"
printf '%-28s %s\n' "connection flood 127.0.0.3" "$C_OPEN connections opened, $C_CLOSED closed by scalegate"
printf '%-28s %s\n' "slowloris 127.0.0.4" "$S_OPEN connections opened, $S_CLOSED closed by scalegate"
printf 'scalegate_listener_limited_total: request_rate=%s max_connections_per_ip=%s max_connections=%s request_header_timeout=%s\n' \
  "$M_RATE" "$M_PERIP" "$M_TOTAL" "$M_HEAD"

if ((UOK == 0 || LOK == 0)); then
  echo "FAIL: the well-behaved client got no answers" >&2
  exit 1
fi
if python3 -c "import sys; sys.exit(0 if $L99 <= $MAX_RATIO * $U99 else 1)"; then
  echo "PASS: loaded p99 within ${MAX_RATIO}x of unloaded"
else
  echo "FAIL: loaded p99 ${L99}us > ${MAX_RATIO}x unloaded ${U99}us" >&2
  exit 1
fi
