#include "bench/sgload/histogram.h"

#include <algorithm>
#include <cmath>

namespace scalegate::bench {

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

void LatencyHistogram::add(const LatencyHistogram& other) {
  if (other.total_ == 0) return;
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

void LatencyHistogram::reset() {
  if (total_ == 0) return;
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  sum_ = 0;
  max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t LatencyHistogram::upperEdge(size_t index) {
  if (index < kLinear) return index;
  const size_t octave = (index - kLinear) / kSubBuckets;  // 0 for [2^11, 2^12)
  const uint64_t sub = (index - kLinear) % kSubBuckets + kSubBuckets;
  const int shift = static_cast<int>(octave) + 1;
  return ((sub + 1) << shift) - 1;
}

uint64_t LatencyHistogram::percentile(double p) const {
  if (total_ == 0) return 0;
  if (p >= 100.0) return max_;
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(upperEdge(i), min(), max_);
  }
  return max_;
}

}  // namespace scalegate::bench
