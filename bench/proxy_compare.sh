#!/usr/bin/env bash
# scalegate vs HAProxy vs nginx in front of the same two sgbackend processes, for each
# downstream protocol (HTTP/1.1, HTTPS/1.1, HTTP/2 over TLS; always HTTP/1.1 to the backends)
# and each worker count (1 and 2 threads/processes), driven closed-loop by sgload (or wrk).
# Prints req/s, p50, p99 and the proxy's CPU microseconds per request as medians over
# interleaved rounds, scalegate's ratios to HAProxy and nginx and each proxy's 2-worker
# scaling, and draws a PNG chart. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

SG_SGLOAD=${SG_SGLOAD:-$SG_BIN_DIR/bench/sgload}
rounds=3
duration=10
warmup=1
connections=64
h2_connections=16
h2_streams=4
only="scalegate,haproxy,nginx"
protocols="http1,tls,h2"
workers_list="1,2"
driver=sgload
out_dir=/tmp/scalegate-bench
path=/

usage() {
  cat <<EOF
usage: $0 [options]
  --rounds N          interleaved rounds; medians are reported (default $rounds)
  --duration S        seconds per measured run (default $duration)
  --warmup S          seconds of unmeasured load before each run (default $warmup)
  --protocols LIST    downstream protocols, from http1,tls,h2 (default $protocols):
                      http1 = HTTP/1.1, tls = HTTPS/1.1 terminated at the proxy,
                      h2 = HTTP/2 over TLS (ALPN h2); backends always get HTTP/1.1
  --workers LIST      proxy worker counts (default $workers_list): scalegate --workers N,
                      HAProxy nbthread N, nginx worker_processes N
  --connections N     HTTP/1.1 connections (default $connections)
  --h2-connections N  HTTP/2 connections (default $h2_connections)
  --h2-streams N      concurrent streams per HTTP/2 connection (default $h2_streams)
  --driver D          sgload (default) or wrk (http1 and tls only)
  --only LIST         targets, comma-separated (default $only). Besides the three proxies:
                      sgbackend     an sgbackend measured directly (no proxy; http1 only)
                      nginx-return  nginx answering 'return 200' by itself
                      ("--only sgbackend,nginx-return --protocols http1" compares sgbackend
                      with nginx)
  --nice N            run the proxies, backends and load generator at this nice value (default
                      0; e.g. -10, as root, to be less disturbed by other work on the machine)
  --path P            request path (default $path)
  --out DIR           where the TSV and the PNG chart go (default $out_dir)
env: SG_BIN_DIR (default build/release) holds bench/sgbackend, bench/sgload and
     control/scalegate, built with the release preset when missing there; SG_SGBACKEND,
     SG_SGLOAD and SG_SCALEGATE name a binary each.
EOF
}

while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --protocols) protocols=$2; shift 2 ;;
    --workers) workers_list=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --h2-connections) h2_connections=$2; shift 2 ;;
    --h2-streams) h2_streams=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --nice) SG_NICE=$2; shift 2 ;;
    --path) path=$2; shift 2 ;;
    --out) out_dir=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] ||
  sg_die "--rounds/--duration/--warmup want whole numbers"
[[ $SG_NICE =~ ^-?[0-9]+$ ]] || sg_die "--nice wants a whole number"
for v in "$connections" "$h2_connections" "$h2_streams"; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || sg_die "--connections/--h2-* want whole numbers > 0"
done
((duration <= 600)) || sg_die "--duration is at most 600 s"
IFS=, read -r -a targets <<<"$only"
IFS=, read -r -a protos <<<"$protocols"
IFS=, read -r -a worker_counts <<<"$workers_list"
for t in "${targets[@]}"; do
  case $t in
    scalegate | haproxy | nginx | sgbackend | nginx-return) ;;
    *) sg_die "unknown target '$t' in --only" ;;
  esac
done
for p in "${protos[@]}"; do
  case $p in
    http1 | tls) ;;
    h2) [[ $driver == wrk ]] && sg_die "wrk does not speak HTTP/2: use --driver sgload for h2" ;;
    *) sg_die "unknown protocol '$p' in --protocols (http1, tls, h2)" ;;
  esac
done
for w in "${worker_counts[@]}"; do
  [[ $w =~ ^[1-9][0-9]?$ ]] || sg_die "--workers wants a list of counts such as 1,2"
done
case $driver in
  sgload | wrk) ;;
  *) sg_die "--driver is sgload or wrk" ;;
esac
for tool in taskset python3 openssl; do
  command -v "$tool" >/dev/null || sg_die "$tool is not installed"
done
[[ $driver == wrk ]] && { command -v wrk >/dev/null || sg_die "wrk is not installed"; }
[[ ,$only, == *,haproxy,* ]] && { command -v haproxy >/dev/null || sg_die "haproxy is not installed"; }
[[ ,$only, == *,nginx* ]] && { command -v nginx >/dev/null || sg_die "nginx is not installed"; }

sg_init
mkdir -p "$out_dir"
# Build (or find) the binaries before anything starts.
[[ ,$only, == *,scalegate,* ]] && sg_ensure_built scalegate "$SG_SCALEGATE"
sg_ensure_built sgbackend "$SG_SGBACKEND"
[[ $driver == sgload ]] && sg_ensure_built sgload "$SG_SGLOAD"
ulimit -n "$(ulimit -Hn)"
sg_make_cert "$SG_TMP/tls"

# CPU placement on this 2-core machine. The load generator and both backends share CPU 0.
# With 1 worker the target gets CPU 1 to itself, so its CPU time per request is not inflated
# by sharing a core. With 2 workers the target runs on CPUs 0 and 1: its second worker shares
# CPU 0 with the load generator and the backends, so 2-worker req/s is bounded by that core
# and shows only whether a target uses a second core at all, not how it would scale on a
# bigger machine. CPU per request counts only the target's own time in every case.
load_cpu=0
proxy_cpus() { if (($1 == 1)); then echo 1; else echo 0,1; fi; }
ncpu=$(nproc)

# Which rows scalegate can run: TLS/h2 listeners need a build that has them.
declare -A sg_supported
for p in "${protos[@]}"; do
  sg_supported[$p]=1
  if [[ ,$only, == *,scalegate,* && $p != http1 ]]; then
    mode=$p
    if ! sg_scalegate_supports "$mode"; then
      sg_supported[$p]=0
      echo "scalegate: $p listener not supported by this build (scalegate --check: $(head -n 1 "$SG_TMP/scalegate-check-$mode.yaml.out"))"
    fi
  fi
done

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
case $driver in
  sgload) drv_desc="sgload -t1 closed loop: http1/tls -c$connections, h2 --h2 -c$h2_connections -m$h2_streams" ;;
  wrk) drv_desc="wrk -t1 -c$connections --latency" ;;
esac
echo "load: $drv_desc, ${duration}s runs, ${warmup}s warm-up each, $rounds rounds, path $path, nice $SG_NICE"
echo "pinning ($ncpu CPUs): load generator + backends on CPU $load_cpu; a 1-worker target alone on CPU 1;"
echo "  a 2-worker target on CPUs 0,1, sharing CPU 0 with the load generator and the backends"
echo "  (2-worker req/s shows use of a second core on a saturated 2-core box, not scaling)"

# "457.00us" / "1.20ms" / "1.01s" -> microseconds
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; else m = 1
    printf "%.1f", n * m }'
}

url_for() { # url_for PROTO PORT
  if [[ $1 == http1 ]]; then echo "http://127.0.0.1:$2$path"; else echo "https://127.0.0.1:$2$path"; fi
}

# drive PROTO URL SECONDS: one closed-loop run on the load CPU; output in $SG_TMP/drive.out.
drive() {
  local proto=$1 url=$2 secs=$3 rc=0
  local cmd
  if [[ $driver == wrk ]]; then
    cmd=(wrk -t1 -c"$connections" -d"${secs}s" --latency "$url")
  else
    cmd=("$SG_SGLOAD" -q --json -t1 -d "${secs}s")
    case $proto in
      http1) cmd+=(-c"$connections") ;;
      tls) cmd+=(-c"$connections" --insecure) ;;
      h2) cmd+=(--h2 -c"$h2_connections" -m"$h2_streams" --insecure) ;;
    esac
    cmd+=("$url")
  fi
  nice -n "$SG_NICE" taskset -c "$load_cpu" timeout $((secs + 30)) "${cmd[@]}" >"$SG_TMP/drive.out" 2>&1 || rc=$?
  return $rc
}

# parse_drive -> "requests rps p50_us p99_us errors" from $SG_TMP/drive.out
parse_drive() {
  local out
  out=$(<"$SG_TMP/drive.out")
  if [[ $driver == wrk ]]; then
    local requests rps p50 p99 errors
    requests=$(awk '/ requests in / { print $1 }' <<<"$out")
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx/ { s += $NF } END { print s + 0 }' <<<"$out")
    echo "${requests:-0} ${rps:-0} $p50 $p99 $errors"
  else
    python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
bad = sum(s["errors"].values()) + sum(n for c, n in s["status"].items() if not c.startswith("2"))
print(s["requests"], "%.0f" % s["rps"], "%.1f" % s["latency_us"]["p50"],
      "%.1f" % s["latency_us"]["p99"], bad)' <<<"$out" 2>/dev/null || echo "0 0 0 0 0"
  fi
}

results=$SG_TMP/results.tsv
: >"$results"

# applicable PROTO TARGET: 0 when the row can run, else prints why not.
applicable() {
  case $2 in
    sgbackend) [[ $1 == http1 ]] || { echo "no TLS in sgbackend"; return 1; } ;;
    scalegate) ((sg_supported[$1])) || { echo "not supported by this build"; return 1; } ;;
  esac
  return 0
}

run_one() {
  local proto=$1 workers=$2 target=$3 round=$4 port why cpus
  if ! why=$(applicable "$proto" "$target"); then
    printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\t%s\n' "$proto" "$workers" "$target" "$round" "$why" >>"$results"
    printf '  round %d %-5s %dw %-13s %s: %s\n' "$round" "$proto" "$workers" "$target" "$target" "$why"
    return 0
  fi
  port=$(sg_free_port)
  cpus=$(proxy_cpus "$workers")
  SG_WORKERS=$workers
  SG_TLS=""
  [[ $proto != http1 ]] && SG_TLS=$proto
  sg_start_proxy "$target" "$cpus" "$port" 4096 "${backend_ports[@]}"
  local url
  url=$(url_for "$proto" "$port")
  if [[ $round == 1 && $workers == "${worker_counts[0]}" && $need_backends == 1 &&
    $target != sgbackend && $target != nginx-return ]]; then
    local seen
    seen=$(for _ in 1 2 3 4; do
      curl -sk -D - -o /dev/null "$url" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-backend" { print $2 }'
    done | tr '\n' ' ')
    echo "  $target ($proto) answers from: $seen"
  fi
  local rc=0
  if ((warmup > 0)); then drive "$proto" "$url" "$warmup" || rc=$?; fi
  local cpu0 cpu1 requests rps p50 p99 errors
  sg_proxy_pids # nginx: every worker it has by now
  cpu0=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  ((rc == 0)) && { drive "$proto" "$url" "$duration" || rc=$?; }
  cpu1=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  sg_stop_proxy
  read -r requests rps p50 p99 errors < <(parse_drive)
  if ((rc != 0)) || [[ -z $requests || $requests == 0 ]]; then
    if [[ $target == scalegate ]]; then
      # A build whose --check accepts the listener may still fail to serve it (e.g. no h2).
      printf '%s\t%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\t%s\n' "$proto" "$workers" "$target" "$round" "failed" >>"$results"
      echo "  round $round $proto ${workers}w scalegate: FAILED (driver exit $rc): $(head -c 300 "$SG_TMP/drive.out")"
      return 0
    fi
    cat "$SG_TMP/drive.out" >&2
    sg_die "$target ($proto, $workers workers): the driver completed no requests (exit $rc)"
  fi
  local cpu_req
  cpu_req=$(awk -v c=$((cpu1 - cpu0)) -v r="$requests" 'BEGIN { printf "%.2f", c / r }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\tok\n' "$proto" "$workers" "$target" "$round" \
    "$rps" "$p50" "$p99" "$cpu_req" "$errors" >>"$results"
  printf '  round %d %-5s %dw %-13s %8s req/s  p50 %8s us  p99 %8s us  cpu %6s us/req  errors %s\n' \
    "$round" "$proto" "$workers" "$target" "$rps" "$p50" "$p99" "$cpu_req" "$errors"
}

# Interleave: every round runs every target once per (protocol, workers), the order of the
# targets rotating by one each round so no target always runs first (cold caches) or last.
n=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
  for proto in "${protos[@]}"; do
    for w in "${worker_counts[@]}"; do
      for ((i = 0; i < n; i++)); do
        run_one "$proto" "$w" "${targets[$(((i + r - 1) % n))]}" "$r"
      done
    done
  done
done

# median PROTO WORKERS TARGET COLUMN (5 rps, 6 p50, 7 p99, 8 cpu/req); "NA" when never ran.
median() {
  awk -F'\t' -v p="$1" -v w="$2" -v t="$3" -v c="$4" \
    '$1 == p && $2 == w && $3 == t && $10 == "ok" { print $c }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "NA"; else if (NR % 2) print v[(NR + 1) / 2];
                              else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
why_not() {
  awk -F'\t' -v p="$1" -v w="$2" -v t="$3" '$1 == p && $2 == w && $3 == t && $10 != "ok" { print $10; exit }' "$results"
}

summary=$out_dir/proxy_compare.tsv
printf 'protocol\tworkers\ttarget\trps\tp50_us\tp99_us\tcpu_us_per_req\terrors\n' >"$summary"
echo
echo "median of $rounds rounds ($drv_desc, ${duration}s)"
printf '%-6s %-7s %-13s %10s %10s %10s %12s %8s\n' proto workers target req/s p50_us p99_us cpu_us/req errors
for proto in "${protos[@]}"; do
  for w in "${worker_counts[@]}"; do
    for t in "${targets[@]}"; do
      row=("$(median "$proto" "$w" "$t" 5)" "$(median "$proto" "$w" "$t" 6)" \
        "$(median "$proto" "$w" "$t" 7)" "$(median "$proto" "$w" "$t" 8)")
      errs=$(awk -F'\t' -v p="$proto" -v w="$w" -v t="$t" '$1 == p && $2 == w && $3 == t && $10 == "ok" { s += $9 } END { print s + 0 }' "$results")
      if [[ ${row[0]} == NA ]]; then
        printf '%-6s %-7s %-13s %s: %s\n' "$proto" "$w" "$t" "$t" "$(why_not "$proto" "$w" "$t")"
      else
        printf '%-6s %-7s %-13s %10s %10s %10s %12s %8s\n' "$proto" "$w" "$t" "${row[@]}" "$errs"
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$w" "$t" "${row[@]}" "$errs" >>"$summary"
    done
  done
done

# ratio A B PROTO WORKERS: A's figures over B's in the same run
ratio() {
  local a=$1 b=$2 p=$3 w=$4
  if [[ $(median "$p" "$w" "$a" 5) == NA || $(median "$p" "$w" "$b" 5) == NA ]]; then
    printf '%-6s %dw %s / %s: n/a (%s)\n' "$p" "$w" "$a" "$b" \
      "$( [[ $(median "$p" "$w" "$a" 5) == NA ]] && echo "$a: $(why_not "$p" "$w" "$a")" || echo "$b: $(why_not "$p" "$w" "$b")")"
    return 0
  fi
  awk -v ra="$(median "$p" "$w" "$a" 5)" -v rb="$(median "$p" "$w" "$b" 5)" \
    -v pa="$(median "$p" "$w" "$a" 6)" -v pb="$(median "$p" "$w" "$b" 6)" \
    -v qa="$(median "$p" "$w" "$a" 7)" -v qb="$(median "$p" "$w" "$b" 7)" \
    -v ca="$(median "$p" "$w" "$a" 8)" -v cb="$(median "$p" "$w" "$b" 8)" \
    -v a="$a" -v b="$b" -v p="$p" -v w="$w" \
    'BEGIN { printf "%-6s %dw %s / %s: rps %.3f  p50 %.3f  p99 %.3f  cpu/req %.3f\n", p, w, a, b,
             ra / rb, pa / pb, qa / qb, ca / cb }'
}
has() { [[ ,$only, == *,$1,* ]]; }
echo
echo "ratios (same run; rps above 1 and latency/cpu below 1 favour the first)"
for proto in "${protos[@]}"; do
  for w in "${worker_counts[@]}"; do
    if has scalegate; then
      has haproxy && ratio scalegate haproxy "$proto" "$w"
      has nginx && ratio scalegate nginx "$proto" "$w"
    fi
    if ! has scalegate && has haproxy && has nginx; then ratio haproxy nginx "$proto" "$w"; fi
    if has sgbackend && has nginx-return; then ratio sgbackend nginx-return "$proto" "$w"; fi
  done
done
if ((${#worker_counts[@]} > 1)); then
  w0=${worker_counts[0]} w1=${worker_counts[-1]}
  echo "scaling ($w1 workers / $w0, rps and cpu/req; CPU 0 is shared with the load generator at 2 workers)"
  for proto in "${protos[@]}"; do
    for t in "${targets[@]}"; do
      a=$(median "$proto" "$w1" "$t" 5) b=$(median "$proto" "$w0" "$t" 5)
      [[ $a == NA || $b == NA ]] && continue
      awk -v a="$a" -v b="$b" -v ca="$(median "$proto" "$w1" "$t" 8)" \
        -v cb="$(median "$proto" "$w0" "$t" 8)" -v p="$proto" -v t="$t" \
        'BEGIN { printf "%-6s %-13s rps %.3f  cpu/req %.3f\n", p, t, a / b, ca / cb }'
    done
  done
fi

if command -v gnuplot >/dev/null; then
  # Wide table for clustered bars: one line per (protocol, workers), a column per target.
  plot_data=$out_dir/proxy_compare.plot.tsv
  {
    printf '# group'
    for t in "${targets[@]}"; do printf '\t%s_rps' "$t"; done
    for t in "${targets[@]}"; do printf '\t%s_cpu' "$t"; done
    echo
    for proto in "${protos[@]}"; do
      for w in "${worker_counts[@]}"; do
        printf '%s %dw' "$proto" "$w"
        for t in "${targets[@]}"; do printf '\t%s' "$(median "$proto" "$w" "$t" 5)"; done
        for t in "${targets[@]}"; do printf '\t%s' "$(median "$proto" "$w" "$t" 8)"; done
        echo
      done
    done
  } | sed 's/\tNA/\tNaN/g' >"$plot_data"
  colors=("#4477aa" "#cc6677" "#228833" "#ccbb44" "#66ccee")
  rps_plot="" cpu_plot=""
  for ((i = 0; i < n; i++)); do
    sep=${rps_plot:+, }
    rps_plot+="$sep\"$plot_data\" using $((i + 2)):xtic(1) title \"${targets[$i]}\" lc rgb \"${colors[$i]}\""
    cpu_plot+="$sep\"$plot_data\" using $((i + 2 + n)):xtic(1) title \"${targets[$i]}\" lc rgb \"${colors[$i]}\""
  done
  png=$out_dir/proxy_compare.png
  gnuplot <<EOF || sg_log "gnuplot failed; the figures are in $summary"
set terminal pngcairo size 1200,480 font "sans,10"
set output "$png"
set datafile separator "\t"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set key top right
set multiplot layout 1,2 title "$driver closed loop, median of $rounds x ${duration}s; 1w: target alone on CPU 1, 2w: CPUs 0-1 shared with the load generator (missing bar: not supported)"
set title "requests per second (higher is better)"
plot $rps_plot
set title "proxy CPU microseconds per request (lower is better)"
plot $cpu_plot
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
