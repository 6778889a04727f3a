#pragma once
// What a run measured: per-worker totals (merged at the end) and the per-second series that
// workers hand to the main thread for the progress line and --csv.

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "bench/sgload/histogram.h"

namespace scalegate::bench {

enum class ErrorKind { kConnect, kTimeout, kReset, kProtocol };
inline constexpr int kErrorKinds = 4;

// Counters and latencies of one worker (or, merged, of the run). Worker-owned while running.
struct RunStats {
  LatencyHistogram latency;
  uint64_t requests = 0;  // responses received, any status
  std::array<uint64_t, 600> status{};
  std::array<uint64_t, kErrorKinds> errors{};
  uint64_t bytes_read = 0;

  uint64_t errorTotal() const { return errors[0] + errors[1] + errors[2] + errors[3]; }
  void add(const RunStats& other);
};

// One second of the run, merged over workers.
struct IntervalStats {
  uint64_t second = 0;  // 0 = the first second after warm-up
  uint64_t requests = 0;
  uint64_t errors = 0;
  LatencyHistogram latency;
};

// Workers submit each finished second; the main thread takes a second once every worker has
// submitted it or finished. Thread-safe.
class IntervalCollector {
 public:
  explicit IntervalCollector(int workers);

  // worker: its stats for `second` (submitted in increasing order, no gaps).
  void submit(int worker, uint64_t second, const LatencyHistogram& latency, uint64_t requests,
              uint64_t errors);
  // worker: it will submit nothing more.
  void finish(int worker);
  // main thread: the oldest second every worker is past, waiting up to wait_ms for it.
  bool take(IntervalStats* out, int wait_ms);
  // main thread, after all workers joined: whatever is left, oldest first.
  bool takeAny(IntervalStats* out);

 private:
  bool completeLocked(uint64_t second) const;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<IntervalStats> pending_;  // pending_[i] is second base_ + i
  uint64_t base_ = 0;
  std::vector<int64_t> submitted_upto_;  // last second each worker submitted, -1: none
  std::vector<bool> finished_;
};

}  // namespace scalegate::bench
