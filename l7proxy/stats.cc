#include "l7proxy/stats.h"

namespace scalegate::l7proxy {

void DurationHistogram::observe(uint64_t micros) {
  // Bucket bounds in microseconds, compared as integers on the hot path.
  static constexpr uint64_t kBoundsUs[kDurationBuckets.size()] = {
      500,    1000,   2500,   5000,    10000,   25000,   50000,
      100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
  size_t i = 0;
  while (i < kDurationBuckets.size() && micros > kBoundsUs[i]) ++i;
  buckets[i].inc();
  count.inc();
  sum_us.inc(micros);
}

}  // namespace scalegate::l7proxy
