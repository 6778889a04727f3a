#!/usr/bin/env bash
# probe_scale.sh: what health-probing a large pool costs scalegate's control thread.
#
#   CPU 0: sgfleet, N listeners ◄── HTTP GET /health, every interval + [0, jitter] per member ──┐
#   CPU 1: scalegate --workers 1, one pool of N members, control thread = main thread (TID==PID)─┘
#
# Waits (at most --settle seconds) until every member is healthy by probes (initial_state:
# unhealthy, so each has passed `rise` probes), then measures for --duration seconds: utime+stime
# of the control thread (/proc/PID/task/PID/stat) -> percent of one core; probes/s from the admin
# API's /metrics (scalegate_health_checks_total summed) and, independently, from sgfleet's own
# counters (SIGUSR1). Exit 1 when the control thread uses --max-cpu percent of a core or more,
# when a member is not healthy at the end, when probes failed, or when /metrics did not answer.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"
SG_SGFLEET=${SG_SGFLEET:-$SG_BIN_DIR/bench/sgfleet}

members=5000
duration=30
interval=1s
timeout=500ms
jitter=200ms
max_cpu=25
base_port=0
settle=120
initial_state=unhealthy

usage() {
  cat <<EOF
usage: bench/probe_scale.sh [--members 5000] [--duration 30] [--interval 1s] [--timeout 500ms]
                            [--jitter 200ms] [--max-cpu 25] [--base-port 0] [--settle 120]
                            [--initial-state unhealthy|healthy]

Starts sgfleet with --members listeners and scalegate with one pool of that many members
(http health check on /health, the interval, timeout and jitter given), waits until all are
healthy, then measures for --duration seconds the CPU time of scalegate's control thread and
the probe rate. --base-port 0 lets the kernel pick the fleet's ports; otherwise the fleet takes
BASE..BASE+members-1. Exit 1 if the control thread uses >= --max-cpu % of one core, a member is
not healthy at the end, or a probe failed during the measurement. Binaries: \$SG_BIN_DIR
(default build/release), \$SG_SGFLEET, \$SG_SCALEGATE (see bench/README.md). --settle bounds
the wait for every member to become healthy before the measurement (it runs anyway after that,
and the run fails). --initial-state healthy (scalegate's default) counts members as healthy
before their first probe, so "all healthy" then proves less.
EOF
}

while (($#)); do
  case $1 in
    --members) members=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --jitter) jitter=$2; shift 2 ;;
    --max-cpu) max_cpu=$2; shift 2 ;;
    --base-port) base_port=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --initial-state) initial_state=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
if ! [[ $members =~ ^[1-9][0-9]*$ ]]; then sg_die "--members: want a positive integer"; fi
if ! [[ $duration =~ ^[1-9][0-9]*$ ]]; then sg_die "--duration: want whole seconds > 0"; fi
if ! [[ $settle =~ ^[0-9]+$ ]]; then sg_die "--settle: want whole seconds"; fi
case $initial_state in healthy | unhealthy) ;; *) sg_die "--initial-state: healthy or unhealthy" ;; esac
command -v curl >/dev/null || sg_die "curl is needed (scripts/packages.txt)"

# Seconds in a duration such as 1s, 500ms, 250us, 0.
to_seconds() {
  awk -v d="$1" 'BEGIN {
    if (d == "0") { print 0; exit }
    if (match(d, /^[0-9.]+(ms|us|s|m)$/) == 0) { exit 1 }
    n = d; sub(/[a-z]+$/, "", n); u = substr(d, length(n) + 1)
    f = (u == "ms") ? 0.001 : (u == "us") ? 0.000001 : (u == "m") ? 60 : 1
    printf "%.6f\n", n * f }'
}
interval_s=$(to_seconds "$interval") || sg_die "--interval '$interval': want e.g. 1s or 500ms"
jitter_s=$(to_seconds "$jitter") || sg_die "--jitter '$jitter': want e.g. 200ms or 0"
to_seconds "$timeout" >/dev/null || sg_die "--timeout '$timeout': want e.g. 500ms"

sg_init
sg_ensure_built sgfleet "$SG_SGFLEET"
sg_ensure_built scalegate "$SG_SCALEGATE"
# Each side needs a descriptor per listener / probe socket, plus slack.
ulimit -n "$(ulimit -Hn)"

sg_log "starting sgfleet with $members listeners (CPU 0)"
taskset -c 0 "$SG_SGFLEET" --count "$members" --base-port "$base_port" \
  --port-file "$SG_TMP/ports" --quiet >"$SG_TMP/sgfleet.log" 2>&1 &
fleet_pid=$!
sg_track "$fleet_pid"
deadline=$((SECONDS + 30))
until [[ -s $SG_TMP/ports ]]; do
  kill -0 "$fleet_pid" 2>/dev/null || { cat "$SG_TMP/sgfleet.log" >&2; sg_die "sgfleet exited"; }
  ((SECONDS > deadline)) && sg_die "sgfleet wrote no port file in 30s"
  sleep 0.05
done
mapfile -t ports <"$SG_TMP/ports"
((${#ports[@]} == members)) || sg_die "sgfleet port file lists ${#ports[@]} ports, not $members"

admin_port=$(sg_free_port)
listen_port=$(sg_free_port)
token="probe-scale-$RANDOM$RANDOM$RANDOM"
echo "$token" >"$SG_TMP/admin.token"
config=$SG_TMP/scalegate.yaml
{
  cat <<EOF
log: { level: warn }
admin: { listen: 127.0.0.1:$admin_port, token_file: $SG_TMP/admin.token, state_file: $SG_TMP/state.json }
listeners:
  - { name: web, protocol: http, listen: 127.0.0.1:$listen_port, routes: [ { path_prefix: /, pool: fleet } ] }
pools:
  fleet:
    health: { type: http, path: /health, interval: $interval, timeout: $timeout, jitter: $jitter,
              rise: 2, fall: 3, initial_state: $initial_state }
    members:
EOF
  for i in "${!ports[@]}"; do
    echo "      - { id: m$i, address: 127.0.0.1:${ports[i]} }"
  done
} >"$config"

sg_log "starting scalegate with one pool of $members members (CPU 1)"
taskset -c 1 "$SG_SCALEGATE" --config "$config" --workers 1 >"$SG_TMP/scalegate.log" 2>&1 &
sg_pid=$!
sg_track "$sg_pid"
if ! sg_wait_port "$admin_port" 30; then
  cat "$SG_TMP/scalegate.log" >&2
  sg_die "scalegate's admin API did not come up on 127.0.0.1:$admin_port"
fi

# try_scrape FILE: /metrics into FILE. The admin API runs on the control loop, so a busy loop
# answers late: allow a minute.
try_scrape() {
  curl -sSf --max-time 60 -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$admin_port/metrics" -o "$1"
}
# healthy FILE: members whose scalegate_member_healthy is 1.
healthy() { awk '$1 ~ /^scalegate_member_healthy\{/ && $2 == 1 { n++ } END { print n + 0 }' "$1"; }
# checks FILE [ok|failed]: scalegate_health_checks_total summed (over one result, if given).
checks() {
  awk -v want="${2:-}" '$1 ~ /^scalegate_health_checks_total\{/ &&
      (want == "" || index($1, "result=\"" want "\"") > 0) { s += $2 }
      END { printf "%.0f\n", s }' "$1"
}
# control_ticks: utime+stime of scalegate's main thread (the control loop), in clock ticks.
control_ticks() {
  local stat rest
  stat=$(<"/proc/$sg_pid/task/$sg_pid/stat")
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12]))
}
now() { date +%s.%N; }

sg_log "waiting (at most ${settle}s) until all $members members are healthy by probes (rise 2)"
settle_start=$SECONDS
while :; do
  kill -0 "$sg_pid" 2>/dev/null || { cat "$SG_TMP/scalegate.log" >&2; sg_die "scalegate exited"; }
  n=0
  if try_scrape "$SG_TMP/m.start"; then n=$(healthy "$SG_TMP/m.start"); fi
  if ((n == members)); then
    sg_log "all $members healthy after $((SECONDS - settle_start))s; measuring for ${duration}s"
    break
  fi
  if ((SECONDS - settle_start >= settle)); then
    # Measure anyway: the figures say why (the check at the end fails).
    sg_log "only $n of $members members healthy after ${settle}s; measuring for ${duration}s anyway"
    break
  fi
  sleep 1
done
settled_after=$((SECONDS - settle_start))
healthy_start=$n

# fleet_counters: "REQUESTS CONNECTIONS" served by sgfleet so far (SIGUSR1 makes it print them).
fleet_counters() {
  local before line deadline=$((SECONDS + 5))
  before=$(grep -c 'counters requests=' "$SG_TMP/sgfleet.log" || true)
  kill -USR1 "$fleet_pid"
  while (($(grep -c 'counters requests=' "$SG_TMP/sgfleet.log" || true) <= before)); do
    ((SECONDS > deadline)) && sg_die "sgfleet did not report its counters"
    sleep 0.02
  done
  line=$(grep 'counters requests=' "$SG_TMP/sgfleet.log" | tail -n 1)
  [[ $line =~ requests=([0-9]+)\ connections=([0-9]+) ]] || sg_die "bad counters line: $line"
  echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}

# The window: scrapes and counters are read outside the CPU readings (a 5,000-member scrape is
# control-thread work itself).
tck=$(getconf CLK_TCK)
scraped0=0 scraped1=0
try_scrape "$SG_TMP/m0" && scraped0=1
t_scrape0=$(now)
counters=$(fleet_counters)
read -r fleet_rq0 fleet_conn0 <<<"$counters"
ticks0=$(control_ticks)
proc_us0=$(sg_cpu_us "$sg_pid")
t0=$(now)
sleep "$duration" # the measurement window itself, not a wait for a condition
ticks1=$(control_ticks)
proc_us1=$(sg_cpu_us "$sg_pid")
t1=$(now)
counters=$(fleet_counters)
read -r fleet_rq1 fleet_conn1 <<<"$counters"
try_scrape "$SG_TMP/m1" && scraped1=1
t_scrape1=$(now)

read -r control_pct proc_pct fleet_rps fleet_cps expected_per_s < <(awk \
  -v k0="$ticks0" -v k1="$ticks1" -v tck="$tck" -v t0="$t0" -v t1="$t1" \
  -v p0="$proc_us0" -v p1="$proc_us1" -v r0="$fleet_rq0" -v r1="$fleet_rq1" \
  -v c0="$fleet_conn0" -v c1="$fleet_conn1" -v n="$members" -v iv="$interval_s" -v j="$jitter_s" \
  'BEGIN {
     wall = t1 - t0
     printf "%.2f %.2f %.1f %.1f %.1f\n", 100 * (k1 - k0) / tck / wall,
            100 * (p1 - p0) / 1e6 / wall, (r1 - r0) / wall, (c1 - c0) / wall, n / (iv + j / 2) }')

echo "members:                 $members (health: http /health, interval $interval, timeout $timeout, jitter $jitter)"
echo "healthy before window:   $healthy_start of $members, ${settled_after}s after start-up"
echo "measured for:            ${duration}s"
echo "expected probes/s:       about $expected_per_s (members / (interval + jitter/2))"
echo "probes/s at the fleet:   $fleet_rps HTTP requests, $fleet_cps connections"
status=0
if ((scraped0 && scraped1)); then
  checks0=$(checks "$SG_TMP/m0")
  checks1=$(checks "$SG_TMP/m1")
  failed=$(($(checks "$SG_TMP/m1" failed) - $(checks "$SG_TMP/m0" failed)))
  healthy_end=$(healthy "$SG_TMP/m1")
  sg_rate=$(awk -v c0="$checks0" -v c1="$checks1" -v s0="$t_scrape0" -v s1="$t_scrape1" \
    'BEGIN { printf "%.1f\n", (c1 - c0) / (s1 - s0) }')
  echo "probes/s by /metrics:    $sg_rate (scalegate_health_checks_total)"
  echo "failed probes:           $failed"
  echo "healthy at end:          $healthy_end of $members"
  echo "one /metrics scrape:     $(wc -c <"$SG_TMP/m1") bytes"
  if ((healthy_end != members)); then
    echo "FAIL: $((members - healthy_end)) members not healthy at the end" >&2
    status=1
  fi
  if ((failed > 0)); then
    echo "FAIL: $failed probes failed during the measurement" >&2
    status=1
  fi
else
  echo "probes/s by /metrics:    unknown: GET /metrics got no answer within 60s (control loop busy)"
  echo "FAIL: the admin API did not answer /metrics around the window" >&2
  status=1
fi
echo "control thread CPU:      $control_pct % of one core (limit $max_cpu %)"
echo "whole process CPU:       $proc_pct % of one core (workers idle: no client traffic)"
if awk -v c="$control_pct" -v m="$max_cpu" 'BEGIN { exit !(c >= m) }'; then
  echo "FAIL: control thread used $control_pct % of a core (limit $max_cpu %)" >&2
  status=1
fi
exit "$status"
