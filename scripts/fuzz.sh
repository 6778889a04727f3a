#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, -fsanitize=fuzzer,address,undefined)
# and runs each of them, or the ones named, for a fixed time.
#
#   scripts/fuzz.sh [--time SECS] [--parallel N] [--jobs N --workers N] [--merge] [TARGET...]
#
#   --time SECS     how long each target runs (default 60; the recorded runs use 600)
#   --parallel N    targets run N at a time (default 1)
#   --jobs/--workers  passed to libFuzzer (-jobs=N -workers=N: N fuzzing processes per target)
#   --merge         afterwards, merge the inputs that add coverage into the checked-in corpus
#                   (tests/fuzz/corpus/<target>/), only those of at most --merge-max-bytes
#                   (default 2048) so the corpus stays small enough to read and to replay in CI
#   --no-build      use the binaries already in build/fuzz
#   TARGET          http1_parser, http2_session, config, admin_json, load_report, webhook,
#                   packet (default: every tests/fuzz/*_fuzz.cc)
#   -- ARGS         extra libFuzzer flags for every target (e.g. -- -max_len=65536)
#
# Where things go (all under build/fuzz/, never in the source tree unless --merge):
#   crashes/<target>/   crash-*, leak-*, timeout-*, oom-* inputs (reproduce: build/fuzz/tests/
#                       fuzz/<target>_fuzz crashes/<target>/crash-...)
#   corpus/<target>/    the inputs this run found (the checked-in seeds are read, not written)
#   logs/<target>.log   libFuzzer's output
# Per target it prints executions, exec/s, cov (edges) and ft (features) from libFuzzer's last
# status line and final stats, corpus size and the number of crashes. Exit status 1 when any
# target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

time_s=60
parallel=1
jobs=0
workers=0
merge=0
merge_max=2048
build=1
targets=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time_s=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --merge) merge=1; shift ;;
    --merge-max-bytes) merge_max=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*_fuzz.cc; do
    n=$(basename "$f" .cc)
    targets+=("${n%_fuzz}")
  done
fi
for t in "${targets[@]}"; do
  if [ ! -f "tests/fuzz/${t}_fuzz.cc" ]; then
    echo "fuzz.sh: no target $t (tests/fuzz/${t}_fuzz.cc)" >&2
    exit 2
  fi
done

out=$root/build/fuzz
if [ "$build" = 1 ]; then
  if ! command -v clang++ >/dev/null; then
    echo "fuzz.sh: clang++ is needed (scripts/setup.sh build installs it)" >&2
    exit 2
  fi
  cmake --preset fuzz >/dev/null
  bins=()
  for t in "${targets[@]}"; do bins+=("${t}_fuzz"); done
  cmake --build "$out" -j"$(nproc)" --target "${bins[@]}"
fi

run_one() {
  local t=$1
  local bin=$out/tests/fuzz/${t}_fuzz
  local crashes=$out/crashes/$t
  local scratch=$out/corpus/$t
  local logdir=$out/logs
  mkdir -p "$crashes" "$scratch" "$logdir"
  local args=(-max_total_time="$time_s" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
              -artifact_prefix="$crashes/")
  if [ "$jobs" -gt 0 ]; then args+=(-jobs="$jobs"); fi
  if [ "$workers" -gt 0 ]; then args+=(-workers="$workers"); fi
  rm -f "$logdir/$t.log" "$logdir/$t".job-*.log
  # New inputs go to the first directory (the scratch corpus); the seeds are only read.
  # With -jobs libFuzzer writes fuzz-<n>.log into the working directory.
  (cd "$logdir" && mkdir -p "$t.jobs" && cd "$t.jobs" && rm -f fuzz-*.log &&
   "$bin" "${args[@]}" "${extra[@]}" "$scratch" "$root/tests/fuzz/corpus/$t" \
     >"$logdir/$t.log" 2>&1) || true
  if [ "$merge" = 1 ]; then
    local small
    small=$(mktemp -d)
    find "$scratch" -type f -size -"$((merge_max + 1))"c -exec cp {} "$small/" \;
    "$bin" -merge=1 "$root/tests/fuzz/corpus/$t" "$small" >>"$logdir/$t.log" 2>&1 || true
    rm -rf "$small"
  fi
}

# Figures from a libFuzzer log (several with -jobs: executions add up, cov/ft are the best).
report() {
  local t=$1
  local logs=("$out/logs/$t.log")
  for f in "$out/logs/$t.jobs"/fuzz-*.log; do [ -f "$f" ] && logs+=("$f"); done
  local execs=0 rate=0 cov=0 ft=0 status="ok"
  for f in "${logs[@]}"; do
    local e r c x
    e=$(grep -o 'stat::number_of_executed_units:[[:space:]]*[0-9]*' "$f" | tail -n 1 | awk '{print $2}')
    r=$(grep -o 'stat::average_exec_per_sec:[[:space:]]*[0-9]*' "$f" | tail -n 1 | awk '{print $2}')
    c=$(grep -o ' cov: [0-9]*' "$f" | tail -n 1 | awk '{print $2}')
    x=$(grep -o ' ft: [0-9]*' "$f" | tail -n 1 | awk '{print $2}')
    execs=$((execs + ${e:-0}))
    rate=$((rate + ${r:-0}))
    [ "${c:-0}" -gt "$cov" ] && cov=$c
    [ "${x:-0}" -gt "$ft" ] && ft=$x
    if grep -q -e '^==[0-9]*==ERROR' -e 'runtime error:' -e 'deadly signal' -e 'ERROR: libFuzzer' "$f"; then
      status="FAILED"
    fi
  done
  local corpus ncrash
  corpus=$(( $(find "$out/corpus/$t" -type f | wc -l) + $(find "tests/fuzz/corpus/$t" -type f | wc -l) ))
  ncrash=$(find "$out/crashes/$t" -type f | wc -l)
  [ "$ncrash" -gt 0 ] && status="FAILED"
  printf '%-14s %8ss %12s %8s %6s %7s %7s %8s  %s\n' "$t" "$time_s" "$execs" "$rate" "$cov" "$ft" \
    "$corpus" "$ncrash" "$status"
  [ "$status" = ok ]
}

running=0
for t in "${targets[@]}"; do
  echo "fuzz.sh: $t for ${time_s}s (log: build/fuzz/logs/$t.log)"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

printf '\n%-14s %9s %12s %8s %6s %7s %7s %8s  %s\n' target time executions exec/s cov ft corpus \
  crashes status
failed=0
for t in "${targets[@]}"; do report "$t" || failed=1; done
if [ "$failed" = 1 ]; then
  echo "fuzz.sh: a target crashed; inputs are under build/fuzz/crashes/<target>/" >&2
  exit 1
fi
