#!/usr/bin/env bash
# The DPDK L4 path against bare DPDK forwarding, measured in the same run on the same lcore:
#   1. dpdk-testpmd --forward-mode=macswap over two net_null ports, one forwarding lcore
#      (framework cost: rx, swap MACs, tx; no lookups);
#   2. sgpktgen --in-process: scalegate's lcore loop (parse, flow table, Maglev, NAT rewrite,
#      tx) over net_ring, nat mode, FLOWS active flows, 64-byte packets, one lcore.
# Prints both rates and their ratio. The two alternate ROUNDS times so that load from other
# processes on the machine hits both alike.
# Usage: bench/dataplane_bench.sh [FLOWS] [PACKETS] [ROUNDS]   (1000000 20000000 2)
# Environment: SG_BIN_DIR (build dir), SG_LCORE (CPU for both; default 1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
flows=${1:-1000000}
packets=${2:-20000000}
rounds=${3:-2}
lcore=${SG_LCORE:-1}
main_lcore=$(( lcore == 0 ? 1 : 0 ))
pktgen=$SG_BIN_DIR/bench/sgpktgen
sg_ensure_built sgpktgen "$pktgen"
command -v dpdk-testpmd >/dev/null || sg_die "dpdk-testpmd missing (bash scripts/setup.sh test)"
sg_init

testpmd_mpps() {
  local log=$SG_TMP/testpmd.log
  # Without a terminal testpmd needs --stats-period to keep running; SIGINT ends it.
  timeout -s INT 8 dpdk-testpmd -l "$main_lcore,$lcore" --main-lcore "$main_lcore" --no-huge \
    -m 512 --no-pci --no-telemetry --file-prefix "sgbench-tp-$$" \
    --vdev net_null0 --vdev net_null1 -- --forward-mode=macswap --stats-period 1 \
    --total-num-mbufs 8192 --nb-cores 1 >"$log" 2>&1 || true
  rm -rf "/var/run/dpdk/sgbench-tp-$$"  # testpmd leaves its runtime directory behind
  # Tx-pps of both ports, per stats period; the first two periods are warm-up.
  awk '/Tx-pps:/ { s += $2; n++; if (n % 2 == 0) { p[++k] = s; s = 0 } }
       END { t = 0; c = 0; for (i = 3; i <= k; i++) { t += p[i]; c++ }
             if (c == 0) { print "0"; exit } printf "%.3f\n", t / c / 1e6 }' "$log"
}

sg_log "flows=$flows packets=$packets rounds=$rounds lcore=$lcore"
for ((r = 1; r <= rounds; r++)); do
  tp=$(testpmd_mpps)
  out=$("$pktgen" --in-process --mode nat --flows "$flows" --packets "$packets" \
          --lcore "$lcore" 2>/dev/null)
  echo "$out" | grep -v '^RESULT'
  sg_mean=$(echo "$out" | sed -n 's/.*mean [0-9.]* ns (\([0-9.]*\) Mpps.*/\1/p')
  sg_median=$(echo "$out" | sed -n 's/^RESULT mpps=\([0-9.]*\).*/\1/p')
  awk -v tp="$tp" -v m="$sg_mean" -v md="$sg_median" -v r="$r" 'BEGIN {
    printf "round %d: testpmd macswap (net_null, 1 lcore) %.2f Mpps | scalegate nat %.2f Mpps " \
           "(mean, preemption included), %.2f Mpps (median burst) | ratio %.2f (mean/testpmd)\n",
           r, tp, m, md, (tp > 0 ? m / tp : 0) }'
done
