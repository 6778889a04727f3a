#!/usr/bin/env bash
# scalegate vs HAProxy vs nginx: one thread/worker each, in front of the same two sgbackend
# processes, driven by wrk (HTTP/1.1 keep-alive, small responses). Prints requests/s, p50, p99
# and the proxy's CPU microseconds per request, as the median over interleaved rounds, then
# scalegate's ratios to HAProxy, and draws a PNG bar chart. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

rounds=3
duration=10
warmup=1
connections=64
only="scalegate,haproxy,nginx"
out_dir=/tmp/scalegate-bench
path=/

usage() {
  cat <<EOF
usage: $0 [options]
  --rounds N        interleaved rounds; medians are reported (default $rounds)
  --duration S      seconds per measured wrk run (default $duration)
  --warmup S        seconds of unmeasured load before each run (default $warmup)
  --connections N   wrk connections (default $connections)
  --only LIST       targets, comma-separated (default $only). Besides the three proxies:
                    sgbackend     an sgbackend measured directly (no proxy in front)
                    nginx-return  nginx answering 'return 200' by itself
                    ("--only sgbackend,nginx-return" compares sgbackend with nginx)
  --path P          request path (default $path)
  --out DIR         where the TSV and the PNG chart go (default $out_dir)
env: SG_BIN_DIR (default build/release) holds bench/sgbackend and control/scalegate, built with
     the release preset when missing there; SG_SGBACKEND / SG_SCALEGATE name either binary.
EOF
}

while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] ||
  sg_die "--rounds/--duration/--warmup want whole numbers"
((duration <= 600)) || sg_die "--duration is at most 600 s"
IFS=, read -r -a targets <<<"$only"
for t in "${targets[@]}"; do
  case $t in
    scalegate | haproxy | nginx | sgbackend | nginx-return) ;;
    *) sg_die "unknown target '$t' in --only" ;;
  esac
done
for tool in wrk taskset python3; do
  command -v "$tool" >/dev/null || sg_die "$tool is not installed"
done
[[ ,$only, == *,haproxy,* ]] && { command -v haproxy >/dev/null || sg_die "haproxy is not installed"; }
[[ ,$only, == *,nginx* ]] && { command -v nginx >/dev/null || sg_die "nginx is not installed"; }

sg_init
mkdir -p "$out_dir"
# Build (or find) the binaries before anything starts.
[[ ,$only, == *,scalegate,* ]] && sg_ensure_built scalegate "$SG_SCALEGATE"
sg_ensure_built sgbackend "$SG_SGBACKEND"
ulimit -n "$(ulimit -Hn)"

# CPU placement: the machine has two cores. The target under test gets CPU 1 to itself so its
# CPU time per request is not inflated by sharing a core; wrk and both backends share CPU 0,
# which caps throughput the same way for every target. CPU µs per request is the figure that
# survives noise from other work on the machine; requests/s and latency depend on CPU 0 too.
proxy_cpu=1
load_cpu=0

need_backends=0
for t in "${targets[@]}"; do
  [[ $t == scalegate || $t == haproxy || $t == nginx ]] && need_backends=1
done
backend_ports=()
backend_pids=()
if ((need_backends)); then
  for id in b1 b2; do
    sg_start_backend "$id" "$load_cpu" --threads 1
    backend_ports+=("$SG_LAST_PORT")
    backend_pids+=("$SG_LAST_PID")
  done
  echo "backends: b1 127.0.0.1:${backend_ports[0]} (pid ${backend_pids[0]}), b2 127.0.0.1:${backend_ports[1]} (pid ${backend_pids[1]}), $SG_SGBACKEND --threads 1, pinned to CPU $load_cpu"
fi
echo "load: wrk -t1 -c$connections -d${duration}s --latency http://127.0.0.1:PORT$path (CPU $load_cpu), targets on CPU $proxy_cpu, $rounds rounds, ${warmup}s warm-up each"

# "457.00us" / "1.20ms" / "1.01s" -> microseconds
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; else m = 1
    printf "%.1f", n * m }'
}

results=$SG_TMP/results.tsv
: >"$results"

run_one() {
  local target=$1 round=$2 port
  port=$(sg_free_port)
  sg_start_proxy "$target" "$proxy_cpu" "$port" 4096 "${backend_ports[@]}"
  if [[ $round == 1 && $need_backends == 1 && $target != sgbackend && $target != nginx-return ]]; then
    local seen
    seen=$(for _ in 1 2 3 4; do
      curl -s -D - -o /dev/null "http://127.0.0.1:$port$path" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-backend" { print $2 }'
    done | tr '\n' ' ')
    echo "  $target answers from: $seen"
  fi
  if ((warmup > 0)); then
    taskset -c "$load_cpu" timeout $((warmup + 30)) \
      wrk -t1 -c"$connections" -d"${warmup}s" "http://127.0.0.1:$port$path" >/dev/null
  fi
  local cpu0 cpu1 out
  cpu0=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  out=$(taskset -c "$load_cpu" timeout $((duration + 30)) \
    wrk -t1 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port$path")
  cpu1=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  sg_stop_proxy

  local requests rps p50 p99 errors cpu_req
  requests=$(awk '/ requests in / { print $1 }' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  errors=$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
                /Non-2xx or 3xx/ { s += $NF } END { print s + 0 }' <<<"$out")
  if [[ -z $requests || $requests == 0 ]]; then
    echo "$out" >&2
    sg_die "$target: wrk completed no requests"
  fi
  cpu_req=$(awk -v c=$((cpu1 - cpu0)) -v r="$requests" 'BEGIN { printf "%.2f", c / r }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$rps" "$p50" "$p99" "$cpu_req" \
    "$errors" >>"$results"
  printf '  round %d %-13s %8s req/s  p50 %8s us  p99 %8s us  cpu %6s us/req  errors %s\n' \
    "$round" "$target" "$rps" "$p50" "$p99" "$cpu_req" "$errors"
}

# Interleave: every round runs every target once, the order rotating by one each round so no
# target always runs first (cold caches) or last (warm machine).
n=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < n; i++)); do
    run_one "${targets[$(((i + r - 1) % n))]}" "$r"
  done
done

median() {  # median <target> <column>
  awk -F'\t' -v t="$1" -v c="$2" '$1 == t { print $c }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

summary=$out_dir/proxy_compare.tsv
printf 'target\trps\tp50_us\tp99_us\tcpu_us_per_req\terrors\n' >"$summary"
echo
echo "median of $rounds rounds (wrk -t1 -c$connections -d${duration}s, keep-alive, path $path)"
printf '%-13s %10s %10s %10s %12s %8s\n' target req/s p50_us p99_us cpu_us/req errors
for t in "${targets[@]}"; do
  row=("$(median "$t" 3)" "$(median "$t" 4)" "$(median "$t" 5)" "$(median "$t" 6)")
  errs=$(awk -F'\t' -v t="$t" '$1 == t { s += $7 } END { print s + 0 }' "$results")
  printf '%-13s %10s %10s %10s %12s %8s\n' "$t" "${row[@]}" "$errs"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${row[@]}" "$errs" >>"$summary"
done

ratio_line() {  # ratio_line A B: A's figures over B's
  local a=$1 b=$2
  awk -v ca="$(median "$a" 6)" -v cb="$(median "$b" 6)" -v pa="$(median "$a" 5)" \
    -v pb="$(median "$b" 5)" -v ra="$(median "$a" 3)" -v rb="$(median "$b" 3)" -v a="$a" -v b="$b" \
    'BEGIN { printf "%s / %s: cpu/req ratio %.3f, p99 ratio %.3f, rps ratio %.3f\n", a, b, ca / cb, pa / pb, ra / rb }'
}
echo
if [[ ,$only, == *,scalegate,* && ,$only, == *,haproxy,* ]]; then
  ratio_line scalegate haproxy
fi
if [[ ,$only, == *,sgbackend,* && ,$only, == *,nginx-return,* ]]; then
  ratio_line sgbackend nginx-return
fi

if command -v gnuplot >/dev/null; then
  png=$out_dir/proxy_compare.png
  gnuplot <<EOF || sg_log "gnuplot failed; the figures are in $summary"
set terminal pngcairo size 1000,420 font "sans,10"
set output "$png"
set datafile separator "\t"
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set key off
set multiplot layout 1,2 title "wrk -t1 -c$connections keep-alive, target on 1 core, median of $rounds x ${duration}s"
set title "requests per second (higher is better)"
plot "$summary" every ::1 using 0:2:xtic(1) with boxes lc rgb "#4477aa", \
     "" every ::1 using 0:2:(sprintf("%.0f", \$2)) with labels offset 0,0.8
set title "proxy CPU microseconds per request (lower is better)"
plot "$summary" every ::1 using 0:5:xtic(1) with boxes lc rgb "#cc6677", \
     "" every ::1 using 0:5:(sprintf("%.2f", \$5)) with labels offset 0,0.8
unset multiplot
EOF
  [[ -s $png ]] && echo "chart: $png"
fi
echo "table: $summary"

# Each backend reports how many requests it served when it stops (round-robin check).
if ((need_backends)); then
  for pid in "${backend_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${backend_pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done
  cat "$SG_TMP"/b1.log "$SG_TMP"/b2.log | grep exiting || true
fi
exit 0
