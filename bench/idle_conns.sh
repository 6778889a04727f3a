#!/usr/bin/env bash
# Memory per idle keep-alive client connection: starts one sgbackend and a proxy (scalegate by
# default, --workers 1), opens N client connections that each send one keep-alive GET, read the
# whole response and then stay open and idle, and compares the proxy's VmRSS before and after.
# Exits 1 when the cost is above --max-kb. See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

count=10000
max_kb=10
proxy=scalegate
timeout_s=120

usage() {
  cat <<EOF
usage: $0 [options]
  --connections N   idle client connections to open (default $count)
  --max-kb K        fail (exit 1) when the proxy's RSS grows by more than K kB per connection
                    (default $max_kb)
  --proxy NAME      scalegate | haproxy | nginx (default $proxy)
  --timeout S       seconds allowed for opening all connections (default $timeout_s)
env: SG_BIN_DIR (default build/release) holds bench/sgbackend and control/scalegate, built with
     the release preset when missing there; SG_SGBACKEND / SG_SCALEGATE name either binary.
EOF
}

while (($#)); do
  case $1 in
    --connections | -n) count=$2; shift 2 ;;
    --max-kb) max_kb=$2; shift 2 ;;
    --proxy) proxy=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $count =~ ^[1-9][0-9]*$ ]] || sg_die "--connections wants a positive number"
[[ $max_kb =~ ^[0-9]+(\.[0-9]+)?$ ]] || sg_die "--max-kb wants a number"
case $proxy in scalegate | haproxy | nginx) ;; *) sg_die "--proxy: scalegate, haproxy or nginx" ;; esac
command -v "$proxy" >/dev/null || [[ $proxy == scalegate ]] || sg_die "$proxy is not installed"

# The client holds N sockets and the proxy N client sockets plus its upstream ones: every
# process started from here inherits the raised limit.
ulimit -n "$(ulimit -Hn)"
fd_limit=$(ulimit -n)
((count + 64 <= fd_limit)) || sg_die "--connections $count needs more descriptors than ulimit -n ($fd_limit) allows"

sg_init
[[ $proxy == scalegate ]] && sg_ensure_built scalegate "$SG_SCALEGATE"
sg_start_backend b1 0
backend_port=$SG_LAST_PORT
echo "backend: b1 127.0.0.1:$backend_port (pid $SG_LAST_PID)"

port=$(sg_free_port)
sg_start_proxy "$proxy" 1 "$port" $((count + 100)) "$backend_port"
echo "$proxy: 127.0.0.1:$port (pids ${SG_PROXY_PIDS[*]})"

rss_total() {
  local pid sum=0
  for pid in "${SG_PROXY_PIDS[@]}"; do sum=$((sum + $(sg_rss_kb "$pid"))); done
  echo "$sum"
}

# One request first so lazily built state (upstream connection, buffers, pools) is in the
# baseline and the difference is the connections alone.
curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$port/" || sg_die "$proxy does not answer"
sleep 0.5
rss_before=$(rss_total)

coproc CLIENT { exec python3 "$here/idle_clients.py" --port "$port" --count "$count" \
  --timeout "$timeout_s" --hold $((timeout_s + 60)); }
# shellcheck disable=SC2153  # CLIENT_PID is set by coproc
client_pid=$CLIENT_PID
sg_track "$client_pid"
line=""
read -r -t $((timeout_s + 30)) line <&"${CLIENT[0]}" || true
[[ $line == idle* ]] || sg_die "the client reported nothing within $((timeout_s + 30))s"
read -r _ ok _ failed _ elapsed <<<"$line"
echo "clients: $ok idle, $failed failed, set up in ${elapsed}s"
sleep 1 # let the proxy finish whatever follows the last response
rss_after=$(rss_total)
# Count what the proxy still holds: an idle connection it had closed would cost nothing.
held=$(ss -Htn state established "( sport = :$port )" | wc -l)
echo "connections established at $proxy's port: $held"
eval "exec ${CLIENT[1]}>&-" # EOF on the client's stdin: it closes everything and exits
wait "$client_pid" 2>/dev/null || true

((ok > 0)) || sg_die "no connection became idle"
kb=$(awk -v a="$rss_after" -v b="$rss_before" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')
echo "$proxy VmRSS: ${rss_before} kB before, ${rss_after} kB with $ok idle connections"
echo "$proxy memory per idle connection: $kb kB (limit $max_kb kB)"
if ((failed > 0 || held < ok)); then
  echo "FAIL: $failed connections did not complete, $((ok - held)) were closed while idle"
  exit 1
fi
if awk -v k="$kb" -v m="$max_kb" 'BEGIN { exit !(k > m) }'; then
  echo "FAIL: above the limit"
  exit 1
fi
echo "PASS"
