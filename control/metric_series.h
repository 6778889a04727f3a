#pragma once
// PoolMetricStore: the metric pipeline's store for one pool. One time series per metric name at
// a 1-second grain, each in a bounded ring buffer (retention seconds long, allocated on the
// metric's first sample). Each second keeps the across-member statistics of the values recorded
// for it — count, sum, min, max and a (weighted) mean — so a rule's `statistic` (across members)
// and `aggregation` (over the window) are applied at query time, as in Azure Monitor:
//
//   record(cpu, t, [member values])            query(cpu, avg, max, 5m, now)
//        │                                         │
//        ▼                                         ▼
//   slot[t % retention] = {t, n, Σv, Σwv, Σw,   per second in (now-5m, now]: statistic (avg)
//                          min, max}  ──────►   over the seconds that have data: aggregation
//                                               (max) ──► value, or nullopt when none
//
// The number of metric names is bounded (custom metrics are pushed by clients), so memory is
// at most max_metrics × retention × sizeof(slot). Samples for a second that already has data
// merge into it (two pushes in one second count as two members). Samples older than the
// retention behind the newest second are dropped.
//
// Thread: control thread only (not synchronised). The caller leaves out members that are still
// warming up (not yet healthy) before recording per-member values.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"

namespace scalegate::control {

// One second of one metric, as shown by the API and the UI.
struct MetricPoint {
  int64_t unix_second = 0;
  uint32_t count = 0;  // member values merged into this second
  double avg = 0, min = 0, max = 0, sum = 0;
};

class PoolMetricStore {
 public:
  static constexpr Duration kDefaultRetention = std::chrono::hours(1);
  static constexpr size_t kDefaultMaxMetrics = 64;
  static constexpr size_t kMaxNameLength = 128;

  explicit PoolMetricStore(Duration retention = kDefaultRetention,
                           size_t max_metrics = kDefaultMaxMetrics);

  // Records the values of the members measured at `unix_second`. `weights` (flexible pools)
  // is empty or parallel to `values`: avg becomes Σ(w·v)/Σw; min/max/sum stay unweighted.
  // An empty `values` records nothing. Errors: kInvalidArgument for a bad name, weights of the
  // wrong size or a non-finite value; kOutOfRange when the store already holds max_metrics
  // names and this is a new one.
  Status record(std::string_view metric, int64_t unix_second, std::span<const double> values,
                std::span<const double> weights = {});
  // A single pool-level value (p95 latency, error rate): one sample with count 1.
  Status recordValue(std::string_view metric, int64_t unix_second, double value);

  // The metric over the window (now_second - window, now_second]: `statistic` of each second,
  // then `aggregation` over the seconds that have data. nullopt when no second in the window
  // has data (or the metric is unknown). kCount statistic = members recorded in the second;
  // kCount aggregation = seconds with data. The window is rounded up to whole seconds and
  // capped at the retention.
  std::optional<double> query(std::string_view metric, config::MetricStatistic statistic,
                              config::TimeAggregation aggregation, Duration window,
                              int64_t now_second) const;

  // The seconds with data in (now_second - window, now_second], oldest first.
  std::vector<MetricPoint> points(std::string_view metric, Duration window,
                                  int64_t now_second) const;

  // Metric names with at least one sample, sorted.
  std::vector<std::string> names() const;

  // Forgets one metric (a custom metric nobody pushes any more). Returns whether it existed.
  bool forget(std::string_view metric);

  size_t retentionSeconds() const { return retention_; }
  size_t maxMetrics() const { return max_metrics_; }

  // The unix second of a wall time (rounded down).
  static int64_t unixSecond(WallTime t);

 private:
  struct Slot {
    int64_t second = INT64_MIN;  // which second this slot holds; stale when it does not match
    uint32_t count = 0;
    double sum = 0, wsum = 0, wtotal = 0, min = 0, max = 0;
  };
  struct Series {
    std::vector<Slot> slots;  // retention_ entries
    int64_t newest = INT64_MIN;
  };

  const Series* find(std::string_view metric) const;
  size_t slotOf(int64_t second) const;
  static double statisticOf(const Slot& s, config::MetricStatistic statistic);

  size_t retention_;
  size_t max_metrics_;
  std::unordered_map<std::string, std::unique_ptr<Series>> series_;
};

}  // namespace scalegate::control
