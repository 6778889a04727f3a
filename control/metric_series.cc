#include "control/metric_series.h"

#include <algorithm>
#include <cmath>

namespace scalegate::control {

PoolMetricStore::PoolMetricStore(Duration retention, size_t max_metrics)
    : retention_(static_cast<size_t>(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::seconds>(retention).count()))),
      max_metrics_(max_metrics) {}

size_t PoolMetricStore::slotOf(int64_t second) const {
  auto n = static_cast<int64_t>(retention_);
  return static_cast<size_t>(((second % n) + n) % n);
}

int64_t PoolMetricStore::unixSecond(WallTime t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

Status PoolMetricStore::record(std::string_view metric, int64_t unix_second,
                               std::span<const double> values, std::span<const double> weights) {
  if (metric.empty() || metric.size() > kMaxNameLength) {
    return invalidArgument("metric name must be 1.." + std::to_string(kMaxNameLength) +
                           " characters");
  }
  if (!weights.empty() && weights.size() != values.size()) {
    return invalidArgument("metric " + std::string(metric) + ": " + std::to_string(weights.size()) +
                           " weights for " + std::to_string(values.size()) + " values");
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]) || (!weights.empty() && !(weights[i] >= 0))) {
      return invalidArgument("metric " + std::string(metric) + ": value " + std::to_string(i) +
                             " is not a finite number (or its weight is negative)");
    }
  }
  if (values.empty()) return Status::ok();

  auto it = series_.find(std::string(metric));
  if (it == series_.end()) {
    if (series_.size() >= max_metrics_) {
      return Status(StatusCode::kOutOfRange, "pool already has " + std::to_string(max_metrics_) +
                                                 " metrics; " + std::string(metric) +
                                                 " is not stored");
    }
    auto s = std::make_unique<Series>();
    s->slots.resize(retention_);
    it = series_.emplace(std::string(metric), std::move(s)).first;
  }
  Series& s = *it->second;
  // Too old to fit in the ring behind the newest second: it would overwrite newer data.
  if (s.newest != INT64_MIN && unix_second <= s.newest - static_cast<int64_t>(retention_)) {
    return Status::ok();
  }
  s.newest = std::max(s.newest, unix_second);
  size_t index = slotOf(unix_second);
  Slot& slot = s.slots[index];
  if (slot.second != unix_second) slot = Slot{unix_second, 0, 0, 0, 0, values[0], values[0]};
  for (size_t i = 0; i < values.size(); ++i) {
    double v = values[i];
    double w = weights.empty() ? 1.0 : weights[i];
    ++slot.count;
    slot.sum += v;
    slot.wsum += w * v;
    slot.wtotal += w;
    slot.min = std::min(slot.min, v);
    slot.max = std::max(slot.max, v);
  }
  return Status::ok();
}

Status PoolMetricStore::recordValue(std::string_view metric, int64_t unix_second, double value) {
  return record(metric, unix_second, std::span<const double>(&value, 1));
}

const PoolMetricStore::Series* PoolMetricStore::find(std::string_view metric) const {
  auto it = series_.find(std::string(metric));
  return it == series_.end() ? nullptr : it->second.get();
}

double PoolMetricStore::statisticOf(const Slot& s, config::MetricStatistic statistic) {
  switch (statistic) {
    case config::MetricStatistic::kAvg:
      // All weights 0 (members that take no traffic): fall back to the plain mean.
      return s.wtotal > 0 ? s.wsum / s.wtotal : s.sum / s.count;
    case config::MetricStatistic::kMin:
      return s.min;
    case config::MetricStatistic::kMax:
      return s.max;
    case config::MetricStatistic::kSum:
      return s.sum;
    case config::MetricStatistic::kCount:
      return s.count;
  }
  return 0;
}

std::optional<double> PoolMetricStore::query(std::string_view metric,
                                             config::MetricStatistic statistic,
                                             config::TimeAggregation aggregation, Duration window,
                                             int64_t now_second) const {
  const Series* s = find(metric);
  if (s == nullptr) return std::nullopt;
  auto secs = std::chrono::ceil<std::chrono::seconds>(window).count();
  secs = std::clamp<int64_t>(secs, 1, static_cast<int64_t>(retention_));
  size_t n = 0;
  double total = 0, lo = 0, hi = 0, last = 0;
  for (int64_t t = now_second - secs + 1; t <= now_second; ++t) {
    size_t index = slotOf(t);
    const Slot& slot = s->slots[index];
    if (slot.second != t || slot.count == 0) continue;
    double v = statisticOf(slot, statistic);
    if (n == 0) {
      lo = hi = v;
    } else {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    total += v;
    last = v;
    ++n;
  }
  if (n == 0) return std::nullopt;
  switch (aggregation) {
    case config::TimeAggregation::kAvg:
      return total / static_cast<double>(n);
    case config::TimeAggregation::kMin:
      return lo;
    case config::TimeAggregation::kMax:
      return hi;
    case config::TimeAggregation::kTotal:
      return total;
    case config::TimeAggregation::kCount:
      return static_cast<double>(n);
    case config::TimeAggregation::kLast:
      return last;
  }
  return std::nullopt;
}

std::vector<MetricPoint> PoolMetricStore::points(std::string_view metric, Duration window,
                                                 int64_t now_second) const {
  std::vector<MetricPoint> out;
  const Series* s = find(metric);
  if (s == nullptr) return out;
  auto secs = std::chrono::ceil<std::chrono::seconds>(window).count();
  secs = std::clamp<int64_t>(secs, 1, static_cast<int64_t>(retention_));
  for (int64_t t = now_second - secs + 1; t <= now_second; ++t) {
    size_t index = slotOf(t);
    const Slot& slot = s->slots[index];
    if (slot.second != t || slot.count == 0) continue;
    out.push_back(MetricPoint{t, slot.count, statisticOf(slot, config::MetricStatistic::kAvg),
                              slot.min, slot.max, slot.sum});
  }
  return out;
}

std::vector<std::string> PoolMetricStore::names() const {
  std::vector<std::string> out;
  out.reserve(series_.size());
  for (const auto& [name, s] : series_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

bool PoolMetricStore::forget(std::string_view metric) {
  return series_.erase(std::string(metric)) > 0;
}

}  // namespace scalegate::control
