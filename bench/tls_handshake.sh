#!/usr/bin/env bash
# TLS handshakes per second per core: scalegate vs HAProxy, one thread each, same certificate
# (RSA 2048 by default, or ECDSA P-256), same OpenSSL. sgload sends every request with
# "Connection: close", so each request is a new TCP connection and a full TLS handshake
# (sgload keeps no session to resume). Prints new connections per second and the proxy's CPU µs per handshake (utime +
# stime over the run), as medians over interleaved rounds; handshakes per CPU-second is
# 1e6 / that, the rate one core sustains. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"
# shellcheck source=tls_lib.sh source-path=SCRIPTDIR
source "$here/tls_lib.sh"

rounds=3
duration=10
connections=32
key=rsa
only="scalegate,haproxy"
SG_SGLOAD=${SG_SGLOAD:-$SG_BIN_DIR/bench/sgload}

usage() {
  cat <<USAGE
usage: $0 [options]
  --rounds N        interleaved rounds; medians are reported (default $rounds)
  --duration S      seconds per measured run (default $duration)
  --connections N   concurrent sgload connections (default $connections)
  --key rsa|ec      certificate key: RSA 2048 (the server's signature dominates, so one
                    client core saturates the server core) or ECDSA P-256 (default $key)
  --only LIST       targets, comma-separated: scalegate, haproxy, nginx (default $only)
env: SG_SGLOAD names the sgload binary (default \$SG_BIN_DIR/bench/sgload, built when missing)
USAGE
}
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ && $duration =~ ^[1-9][0-9]*$ && $connections =~ ^[1-9][0-9]*$ ]] ||
  sg_die "--rounds/--duration/--connections want whole numbers"
((duration <= 600)) || sg_die "--duration is at most 600 s"
IFS=, read -r -a targets <<<"$only"
for t in "${targets[@]}"; do
  case $t in
    scalegate | nginx) ;;
    haproxy) command -v haproxy >/dev/null || sg_die "haproxy is not installed" ;;
    *) sg_die "unknown target '$t'" ;;
  esac
done
for tool in taskset openssl; do command -v "$tool" >/dev/null || sg_die "$tool is not installed"; done

sg_init
sg_ensure_built scalegate "$SG_SCALEGATE"
sg_ensure_built sgbackend "$SG_SGBACKEND"
sg_ensure_built sgload "$SG_SGLOAD"
ulimit -n "$(ulimit -Hn)"
[[ $key == rsa || $key == ec ]] || sg_die "--key wants rsa or ec"
sg_make_named_cert "$SG_TMP" web localhost "$key"

proxy_cpu=1
load_cpu=0
sg_start_backend b1 "$load_cpu" --threads 1
backend=$SG_LAST_PORT
echo "certificate: $key; load: sgload -c$connections -d${duration}s -H 'Connection: close' https://127.0.0.1:PORT/ (a full handshake per request, CPU $load_cpu); proxy on CPU $proxy_cpu, one thread; $rounds rounds"

results=$SG_TMP/results.tsv
: >"$results"
run_one() {
  local target=$1 round=$2 port out cpu0 cpu1
  port=$(sg_free_port)
  sg_start_tls_proxy "$target" "$proxy_cpu" "$port" "$SG_TMP" "$backend"
  cpu0=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  out=$(taskset -c "$load_cpu" timeout $((duration + 30)) "$SG_SGLOAD" -q --json --insecure \
    -c "$connections" -d "${duration}s" -H "Connection: close" "https://127.0.0.1:$port/" 2>&1) || true
  cpu1=$(sg_cpu_us "${SG_PROXY_PIDS[@]}")
  sg_stop_proxy
  local fields
  fields=$(python3 -c '
import json, sys
text = sys.stdin.read()
j = json.loads(text[text.index("{"):])
ok = sum(n for code, n in j["status"].items() if code.startswith("2"))
errs = sum(j["errors"].values()) + sum(n for code, n in j["status"].items() if not code.startswith("2"))
print(ok, errs, j["duration_s"])' <<<"$out" 2>/dev/null) || {
    echo "$out" >&2
    sg_die "$target: cannot read sgload's JSON"
  }
  local ok errs elapsed
  read -r ok errs elapsed <<<"$fields"
  ((ok > 0)) || { echo "$out" >&2; sg_die "$target: no request completed"; }
  local cps cpu_hs per_core
  cps=$(awk -v n="$ok" -v s="$elapsed" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  cpu_hs=$(awk -v c=$((cpu1 - cpu0)) -v n="$ok" 'BEGIN { printf "%.1f", c / n }')
  per_core=$(awk -v c="$cpu_hs" 'BEGIN { printf "%.0f", 1e6 / c }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$round" "$cps" "$cpu_hs" "$per_core" "$errs" >>"$results"
  printf '  round %d %-10s %7s conn/s  cpu %7s us/handshake  %7s handshakes/cpu-s  errors %s\n' \
    "$round" "$target" "$cps" "$cpu_hs" "$per_core" "$errs"
}

n=${#targets[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((i = 0; i < n; i++)); do run_one "${targets[$(((i + r - 1) % n))]}" "$r"; done
done

echo
echo "median of $rounds rounds (new TLS connection per request)"
printf '%-10s %10s %14s %18s %8s\n' target conn/s cpu_us/hs handshakes/cpu-s errors
for t in "${targets[@]}"; do
  printf '%-10s %10s %14s %18s %8s\n' "$t" "$(sg_tsv_median "$results" "$t" 3)" \
    "$(sg_tsv_median "$results" "$t" 4)" "$(sg_tsv_median "$results" "$t" 5)" \
    "$(awk -F'\t' -v t="$t" '$1 == t { s += $6 } END { print s + 0 }' "$results")"
done
if [[ ,$only, == *,scalegate,* && ,$only, == *,haproxy,* ]]; then
  awk -v a="$(sg_tsv_median "$results" scalegate 5)" -v b="$(sg_tsv_median "$results" haproxy 5)" \
    'BEGIN { printf "\nscalegate / haproxy: handshakes per cpu-second ratio %.3f (at least 1 is the goal)\n", a / b }'
fi
