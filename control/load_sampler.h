#pragma once
// Turns the workers' cumulative counters and the members' load reports into per-second figures
// for the autoscale metric pipeline (issue 4). Control thread; called about once a second.
//
//   MemberStats / PoolStats (workers' counters) ──┐
//   MemberRecord::load (probe load reports)  ─────┼─► LoadSampler::sample ─► PoolLoadSample
//                                                 │      (deltas / elapsed)     per pool
//
// Metric names (what autoscale rules and targets may name):
//   per member (one value per member that takes traffic: probe-healthy, not ejected, not
//   draining; members still warming up are left out, as the issue asks):
//     requests_per_second        requests sent to the member per second
//     active_connections         upstream connections open to the member (all workers)
//     in_flight                  requests in flight at the member
//     bytes_in_per_second        request bytes sent to it per second
//     bytes_out_per_second       response bytes received from it per second
//     cpu, memory                from its load report, as percent: a reported value ≤ 1 is a
//                                fraction (cpu=0.82 → 82), a larger one is already a percent
//     <name>                     any other value in its load report (queue, sessions, ...)
//   per pool (one value):
//     latency_p95_ms, latency_p99_ms   request duration percentiles over the last second
//                                      (pool histogram, interpolated in the bucket)
//     error_rate                 percent of the pool's member answers that were 5xx or failed
//     requests_per_second_total  all requests of the pool per second
//     members_in_service         members counted above
// Flexible pools: per-member request rates are divided by the member's weight relative to the
// pool's mean weight, so a member twice as big serving twice the traffic counts as equally
// loaded (a weight-normalised load); uniform pools are unaffected (all weights equal).

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "control/pool_registry.h"

namespace scalegate::control {

struct PoolLoadSample {
  std::string pool;
  std::vector<std::pair<std::string, std::vector<double>>> member_metrics;
  std::vector<std::pair<std::string, double>> pool_metrics;
  // Figures for the live view (also in pool_metrics).
  double requests_per_second = 0;
  double p95_ms = 0, p99_ms = 0;
  double error_rate = 0;
  uint32_t members_in_service = 0;
};

class LoadSampler {
 public:
  // Samples every pool. The first call (and the first for a new member) only records the
  // counters: rates need two readings. `now` is monotonic.
  std::vector<PoolLoadSample> sample(const PoolRegistry& registry, MonoTime now);

 private:
  struct MemberPrev {
    const l7proxy::MemberStats* stats = nullptr;
    uint64_t rq = 0, bytes_in = 0, bytes_out = 0, answers = 0, errors = 0;
  };
  struct PoolPrev {
    const l7proxy::PoolStats* stats = nullptr;
    std::vector<uint64_t> buckets;
  };
  std::unordered_map<std::string, MemberPrev> members_;  // key: pool + '\n' + member id
  std::unordered_map<std::string, PoolPrev> pools_;
  MonoTime last_{};
  bool primed_ = false;
};

// The q-quantile (0..1) of a histogram over l7proxy::kDurationBuckets given as per-bucket counts
// (the last one is +Inf), in milliseconds, interpolated linearly inside the bucket; 0 when empty.
double histogramQuantileMs(const std::vector<uint64_t>& counts, double q);

// A load-report value as a percent (≤ 1 is a fraction).
double asPercent(double reported);

}  // namespace scalegate::control
