#pragma once
// LatencyHistogram: a log-linear histogram of durations in nanoseconds, written for sgload.
//
// Values below 2048 ns have their own bucket each; above, every power-of-two range
// [2^k, 2^(k+1)) is split into 1024 equal sub-buckets, so a recorded value is known to within
// 1/1024 (0.1%: three significant digits) up to 2^43 ns (about 2.4 hours; larger values are
// clamped there). Exact count, sum, min and max are kept beside the buckets.
//
// Not thread-safe: one per worker thread, merged with add() by the thread that reports.
// record() does no allocation and no branch beyond the bucket index.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace scalegate::bench {

class LatencyHistogram {
 public:
  LatencyHistogram();

  void record(uint64_t value_ns) {
    if (value_ns > kMaxValue) value_ns = kMaxValue;
    counts_[indexOf(value_ns)]++;
    total_++;
    sum_ += value_ns;
    if (value_ns > max_) max_ = value_ns;
    if (value_ns < min_) min_ = value_ns;
  }
  // Adds every sample of other into this one.
  void add(const LatencyHistogram& other);
  void reset();

  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ ? max_ : 0; }
  uint64_t min() const { return total_ ? min_ : 0; }
  double mean() const { return total_ ? static_cast<double>(sum_) / total_ : 0.0; }
  // The value at percentile p (0..100): the upper edge of the bucket holding the sample of
  // rank ceil(p/100 * count), never above max(). 0 when empty.
  uint64_t percentile(double p) const;

  static constexpr uint64_t kMaxValue = (uint64_t{1} << 43) - 1;

 private:
  static constexpr int kLinearBits = 11;  // 2048 exact buckets, then 1024 per octave
  static constexpr uint64_t kLinear = uint64_t{1} << kLinearBits;
  static constexpr uint64_t kSubBuckets = kLinear / 2;
  static constexpr int kOctaves = 43 - kLinearBits;
  static constexpr size_t kBuckets = kLinear + kOctaves * kSubBuckets;

  static size_t indexOf(uint64_t v) {
    if (v < kLinear) return static_cast<size_t>(v);
    const int msb = 63 - __builtin_clzll(v);
    const int shift = msb - (kLinearBits - 1);
    return static_cast<size_t>(kLinear + (msb - kLinearBits) * kSubBuckets +
                               ((v >> shift) - kSubBuckets));
  }
  // The largest value that maps to bucket index.
  static uint64_t upperEdge(size_t index);

  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
};

}  // namespace scalegate::bench
