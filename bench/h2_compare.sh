#!/usr/bin/env bash
# scalegate vs nginx terminating TLS and speaking HTTP/2 to clients, one worker each, in front
# of the same two sgbackend processes (HTTP/1.1 upstream, kept alive), driven by h2load (h2
# over TLS, several streams per connection). Prints requests/s and the proxy's CPU
# microseconds per request (utime+stime from /proc/PID/stat over the measured run) as medians
# over interleaved rounds, and scalegate's ratio to nginx. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"
# shellcheck source=tls_lib.sh source-path=SCRIPTDIR
source "$here/tls_lib.sh"

rounds=3
duration=10
warmup=2
clients=16
streams=10
only="scalegate,nginx"

usage() {
  cat <<USAGE
usage: $0 [options]
  --rounds N      interleaved rounds; medians are reported (default $rounds)
  --duration S    seconds per measured h2load run (default $duration)
  --warmup S      seconds of unmeasured load first (default $warmup)
  --clients N     h2load connections (default $clients)
  --streams N     concurrent streams per connection (default $streams)
  --only LIST     targets, comma-separated: scalegate, nginx (default $only)
USAGE
}
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] ||
  sg_die "--rounds/--duration/--warmup want whole numbers"
((duration <= 600)) || sg_die "--duration is at most 600 s"
IFS=, read -r -a targets <<<"$only"
for t in "${targets[@]}"; do
  case $t in scalegate | nginx) ;; *) sg_die "unknown target '$t'" ;; esac
done
for tool in h2load taskset openssl nginx; do
  command -v "$tool" >/dev/null || sg_die "$tool is not installed"
done

sg_init
sg_ensure_built scalegate "$SG_SCALEGATE"
sg_ensure_built sgbackend "$SG_SGBACKEND"
ulimit -n "$(ulimit -Hn)"
sg_make_named_cert "$SG_TMP" web localhost

# The proxy gets CPU 1 to itself; h2load and the backends share CPU 0 (see proxy_compare.sh):
# CPU µs per request is the figure that survives the noise of a shared machine.
proxy_cpu=1
load_cpu=0
backend_ports=()
for id in b1 b2; do
  sg_start_backend "$id" "$load_cpu" --threads 1
  backend_ports+=("$SG_LAST_PORT")
done
echo "load: h2load -c$clients -m$streams -D${duration}s https://127.0.0.1:PORT/ (h2 over TLS, CPU $load_cpu); proxy on CPU $proxy_cpu, one worker; $rounds rounds"

results=$SG_TMP/results.tsv
: >"$results"
run_one() {
  local target=$1 round=$2 port out cpu0 cpu1
  port=$(sg_free_port)
  sg_start_tls_proxy "$target" "$proxy_cpu" "$port" "$SG_TMP" "${backend_ports[@]}"
  if ((warmup > 0)); then
    taskset -c "$load_cpu" timeout $((warmup + 30)) \
      h2load -c"$clients" -m"$streams" -D"$warmup" "https://127.0.0.1:$port/" >/dev/null 2>&1 || true
  fi
  cpu0=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  out=$(taskset -c "$load_cpu" timeout $((duration + 30)) \
    h2load -c"$clients" -m"$streams" -D"$duration" "https://127.0.0.1:$port/" 2>&1) || true
  cpu1=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  sg_stop_proxy
  local ok failed rps proto cpu_req
  ok=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^succeeded/) print $i }' <<<"$out")
  failed=$(awk '/^requests:/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(failed|errored)/) s += $i }
                END { print s + 0 }' <<<"$out")
  rps=$(awk '/^finished in/ { gsub(",", ""); printf "%.0f", $4 }' <<<"$out")
  proto=$(awk '/^Application protocol:/ { print $3 }' <<<"$out")
  if [[ -z $ok || $ok == 0 || $proto != h2 ]]; then
    echo "$out" >&2
    sg_die "$target: h2load completed no h2 requests"
  fi
  cpu_req=$(awk -v c=$((cpu1 - cpu0)) -v r="$ok" 'BEGIN { printf "%.2f", c / r }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$rps" "$cpu_req" "$failed" >>"$results"
  printf '  round %d %-10s %8s req/s  cpu %6s us/req  failed %s\n' "$round" "$target" "$rps" \
    "$cpu_req" "$failed"
}

# Interleaved, the order rotating each round (no target always first or last).
n=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < n; i++)); do run_one "${targets[$(((i + r - 1) % n))]}" "$r"; done
done

echo
echo "median of $rounds rounds (h2load -c$clients -m$streams -D${duration}s, h2 over TLS)"
printf '%-10s %10s %12s %8s\n' target req/s cpu_us/req failed
for t in "${targets[@]}"; do
  printf '%-10s %10s %12s %8s\n' "$t" "$(sg_tsv_median "$results" "$t" 3)" \
    "$(sg_tsv_median "$results" "$t" 4)" \
    "$(awk -F'\t' -v t="$t" '$1 == t { s += $5 } END { print s + 0 }' "$results")"
done
if [[ ,$only, == *,scalegate,* && ,$only, == *,nginx,* ]]; then
  awk -v a="$(sg_tsv_median "$results" scalegate 4)" -v b="$(sg_tsv_median "$results" nginx 4)" \
    'BEGIN { printf "\nscalegate / nginx: cpu/req ratio %.3f (at most 1 is the goal)\n", a / b }'
fi
