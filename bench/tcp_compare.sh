#!/usr/bin/env bash
# TCP passthrough throughput: iperf3 through a scalegate `protocol: tcp` listener vs through
# HAProxy `mode tcp`, one worker/thread each, in the same run (interleaved rounds). Prints
# Gbit/s and the proxy's CPU seconds per GB as medians over the rounds, then scalegate's ratio
# to HAProxy. See bench/README.md ("tcp_compare.sh").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

rounds=3
duration=10
streams=1
reverse=0
only="scalegate,haproxy,scalegate-rw,haproxy-splice"
proxy_cpu=0
iperf_cpu=1

usage() {
  cat <<EOF
usage: $0 [options]
  --rounds N       interleaved rounds; medians are reported (default $rounds)
  --duration S     seconds per iperf3 run (default $duration)
  --streams N      parallel iperf3 streams (-P, default $streams)
  --reverse        data flows member -> client (iperf3 -R)
  --only LIST      targets, comma-separated (default $only):
                   scalegate       tcp listener, splice() (the default)
                   scalegate-rw    tcp listener with splice: false (read/write)
                   haproxy         HAProxy 2.6 mode tcp, nbthread 1 (its default: no splice)
                   haproxy-splice  the same with option splice-auto
                   direct          iperf3 without a proxy (the ceiling)
  --proxy-cpu N    CPU the proxy is pinned to (default $proxy_cpu)
  --iperf-cpu N    CPU iperf3 client and server are pinned to (default $iperf_cpu)
env: SG_BIN_DIR (default build/release) holds control/scalegate (built when missing there),
     SG_SCALEGATE names the binary.
EOF
}

while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --reverse) reverse=1; shift ;;
    --only) only=$2; shift 2 ;;
    --proxy-cpu) proxy_cpu=$2; shift 2 ;;
    --iperf-cpu) iperf_cpu=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $streams =~ ^[1-9][0-9]*$ ]] ||
  sg_die "--rounds/--duration/--streams want whole numbers"
((duration <= 600 && streams <= 64 && rounds <= 50)) || sg_die "at most 600 s, 64 streams, 50 rounds"
IFS=, read -r -a targets <<<"$only"
for t in "${targets[@]}"; do
  case $t in
    scalegate | scalegate-rw | haproxy | haproxy-splice | direct) ;;
    *) sg_die "unknown target '$t' in --only" ;;
  esac
done
command -v iperf3 >/dev/null || sg_die "iperf3 not installed (bash scripts/setup.sh test)"
command -v haproxy >/dev/null || sg_die "haproxy not installed (bash scripts/setup.sh test)"

sg_init
server_port=$(sg_free_port)
taskset -c "$iperf_cpu" iperf3 -s -p "$server_port" >"$SG_TMP/iperf3-server.log" 2>&1 &
sg_track $!
sg_wait_port "$server_port" 10 || sg_die "iperf3 server did not start"

start_target() {  # NAME PORT: starts it; sets pid (empty for direct)
  local name=$1 port=$2 dir=$SG_TMP/$1
  mkdir -p "$dir"
  pid=""
  case $name in
    scalegate | scalegate-rw)
      sg_ensure_built scalegate "$SG_SCALEGATE"
      local splice=true
      [[ $name == scalegate-rw ]] && splice=false
      cat >"$dir/scalegate.yaml" <<EOF
log: { level: warn }
admin: { listen: 127.0.0.1:$(sg_free_port) }
listeners:
  - { name: tcp, protocol: tcp, listen: 127.0.0.1:$port, pool: iperf, splice: $splice }
pools:
  iperf: { members: [ { id: s1, address: 127.0.0.1:$server_port } ] }
EOF
      taskset -c "$proxy_cpu" "$SG_SCALEGATE" --config "$dir/scalegate.yaml" --workers 1 \
        >"$dir/log" 2>&1 &
      pid=$!
      ;;
    haproxy | haproxy-splice)
      {
        cat <<EOF
global
  nbthread 1
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
EOF
        [[ $name == haproxy-splice ]] && echo "  option splice-auto"
        cat <<EOF
frontend tcp
  bind 127.0.0.1:$port
  default_backend iperf
backend iperf
  server s1 127.0.0.1:$server_port
EOF
      } >"$dir/haproxy.cfg"
      taskset -c "$proxy_cpu" haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    direct) return 0 ;;
  esac
  sg_track "$pid"
  if ! sg_wait_port "$port" 15; then
    cat "$dir/log" >&2
    sg_die "$name did not start"
  fi
}

stop_target() {
  [[ -z $pid ]] && return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 5))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# One iperf3 run through target NAME: appends "gbps cpu_s_per_gb" to $SG_TMP/NAME.res.
run_one() {
  local name=$1 port
  port=$(sg_free_port)
  [[ $name == direct ]] && port=$server_port
  start_target "$name" "$port"
  local args=(-c 127.0.0.1 -p "$port" -t "$duration" -P "$streams" -J)
  ((reverse)) && args+=(-R)
  local cpu0=0 cpu1=0
  [[ -n $pid ]] && cpu0=$(sg_cpu_us "$pid")
  taskset -c "$iperf_cpu" iperf3 "${args[@]}" >"$SG_TMP/$name.json" 2>"$SG_TMP/$name.err" ||
    { cat "$SG_TMP/$name.json" "$SG_TMP/$name.err" >&2; sg_die "iperf3 through $name failed"; }
  [[ -n $pid ]] && cpu1=$(sg_cpu_us "$pid")
  stop_target
  python3 - "$SG_TMP/$name.json" "$((cpu1 - cpu0))" >>"$SG_TMP/$name.res" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
end = r["end"]
bps = end["sum_received"]["bits_per_second"]
nbytes = end["sum_received"]["bytes"]
cpu_s = int(sys.argv[2]) / 1e6
print("%.3f %.3f" % (bps / 1e9, cpu_s / (nbytes / 1e9) if nbytes else 0.0))
EOF
  sg_log "$name: $(tail -1 "$SG_TMP/$name.res") (Gbit/s, proxy CPU s/GB)"
}

sg_log "iperf3 -t $duration -P $streams$( ((reverse)) && echo ' -R'), proxy on CPU $proxy_cpu, iperf3 on CPU $iperf_cpu, $rounds rounds"
for ((r = 1; r <= rounds; r++)); do
  for t in "${targets[@]}"; do run_one "$t"; done
done

median() {  # column N of FILE
  sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

printf '%-16s %10s %14s\n' target Gbit/s "CPU s/GB"
declare -A gbps
for t in "${targets[@]}"; do
  gbps[$t]=$(median "$SG_TMP/$t.res" 1)
  printf '%-16s %10s %14s\n' "$t" "${gbps[$t]}" "$(median "$SG_TMP/$t.res" 2)"
done
for sg in scalegate scalegate-rw; do
  for hp in haproxy haproxy-splice; do
    [[ -n ${gbps[$sg]:-} && -n ${gbps[$hp]:-} ]] || continue
    awk -v a="${gbps[$sg]}" -v b="${gbps[$hp]}" -v n="$sg/$hp" \
      'BEGIN { printf "ratio %-30s %.2f\n", n, (b > 0 ? a / b : 0) }'
  done
done
