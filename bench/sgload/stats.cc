#include "bench/sgload/stats.h"

#include <algorithm>
#include <chrono>

namespace scalegate::bench {

void RunStats::add(const RunStats& other) {
  latency.add(other.latency);
  requests += other.requests;
  for (size_t i = 0; i < status.size(); ++i) status[i] += other.status[i];
  for (size_t i = 0; i < errors.size(); ++i) errors[i] += other.errors[i];
  bytes_read += other.bytes_read;
}

IntervalCollector::IntervalCollector(int workers)
    : submitted_upto_(static_cast<size_t>(workers), -1),
      finished_(static_cast<size_t>(workers), false) {}

void IntervalCollector::submit(int worker, uint64_t second, const LatencyHistogram& latency,
                               uint64_t requests, uint64_t errors) {
  {
    std::lock_guard lock(mu_);
    if (second < base_) return;  // the main thread already gave up on it
    while (base_ + pending_.size() <= second) {
      pending_.emplace_back();
      pending_.back().second = base_ + pending_.size() - 1;
    }
    IntervalStats& slot = pending_[second - base_];
    slot.latency.add(latency);
    slot.requests += requests;
    slot.errors += errors;
    submitted_upto_[static_cast<size_t>(worker)] = static_cast<int64_t>(second);
  }
  cv_.notify_one();
}

void IntervalCollector::finish(int worker) {
  {
    std::lock_guard lock(mu_);
    finished_[static_cast<size_t>(worker)] = true;
  }
  cv_.notify_one();
}

bool IntervalCollector::completeLocked(uint64_t second) const {
  for (size_t w = 0; w < finished_.size(); ++w)
    if (!finished_[w] && submitted_upto_[w] < static_cast<int64_t>(second)) return false;
  return true;
}

bool IntervalCollector::take(IntervalStats* out, int wait_ms) {
  std::unique_lock lock(mu_);
  auto ready = [this] {
    return !pending_.empty() && completeLocked(base_) &&
           // a finished worker does not make later seconds complete by itself
           !std::all_of(finished_.begin(), finished_.end(), [](bool f) { return f; });
  };
  if (!cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), ready)) return false;
  *out = std::move(pending_.front());
  pending_.pop_front();
  base_++;
  return true;
}

bool IntervalCollector::takeAny(IntervalStats* out) {
  std::lock_guard lock(mu_);
  if (pending_.empty()) return false;
  *out = std::move(pending_.front());
  pending_.pop_front();
  base_++;
  return true;
}

}  // namespace scalegate::bench
