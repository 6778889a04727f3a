#include "control/metric_series.h"

#include <gtest/gtest.h>

#include <vector>

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using config::MetricStatistic;
using config::TimeAggregation;

std::vector<double> v(std::initializer_list<double> l) { return std::vector<double>(l); }

TEST(PoolMetricStore, StatisticAcrossMembersThenAggregationOverTheWindow) {
  PoolMetricStore s;
  // Three seconds, three members each.
  ASSERT_TRUE(s.record("cpu", 100, v({10, 20, 30})).isOk());  // avg 20 min 10 max 30 sum 60
  ASSERT_TRUE(s.record("cpu", 101, v({40, 50, 60})).isOk());  // avg 50 min 40 max 60 sum 150
  ASSERT_TRUE(s.record("cpu", 102, v({5, 5})).isOk());        // avg 5 min 5 max 5 sum 10
  auto q = [&](MetricStatistic st, TimeAggregation ag, Duration w = 3s, int64_t now = 102) {
    return s.query("cpu", st, ag, w, now);
  };
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kAvg), 25);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kMax), 50);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kMax, TimeAggregation::kAvg), 95.0 / 3);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kMin, TimeAggregation::kMin), 5);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kSum, TimeAggregation::kTotal), 220);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kSum, TimeAggregation::kLast), 10);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kCount, TimeAggregation::kAvg), 8.0 / 3);
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kCount), 3);
  // The window is (now - window, now]: 2s at 102 is seconds 101 and 102.
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kAvg, 2s), 27.5);
  // 1.5s rounds up to 2 seconds.
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kAvg, 1500ms), 27.5);
  // A window with no data: nullopt, as is an unknown metric.
  EXPECT_FALSE(q(MetricStatistic::kAvg, TimeAggregation::kAvg, 10s, 200).has_value());
  EXPECT_FALSE(s.query("mem", MetricStatistic::kAvg, TimeAggregation::kAvg, 1h, 102));
  // Seconds without data inside the window are skipped, not counted as 0.
  EXPECT_DOUBLE_EQ(*q(MetricStatistic::kAvg, TimeAggregation::kAvg, 60s, 150), 25);
}

TEST(PoolMetricStore, SamplesOfTheSameSecondMergeAndPoolValuesCountOnce) {
  PoolMetricStore s;
  ASSERT_TRUE(s.record("cpu", 10, v({10})).isOk());
  ASSERT_TRUE(s.record("cpu", 10, v({30, 50})).isOk());
  EXPECT_DOUBLE_EQ(*s.query("cpu", MetricStatistic::kAvg, TimeAggregation::kLast, 1s, 10), 30);
  EXPECT_DOUBLE_EQ(*s.query("cpu", MetricStatistic::kCount, TimeAggregation::kLast, 1s, 10), 3);
  ASSERT_TRUE(s.recordValue("p95", 10, 0.25).isOk());
  EXPECT_DOUBLE_EQ(*s.query("p95", MetricStatistic::kMax, TimeAggregation::kAvg, 1s, 10), 0.25);
  EXPECT_TRUE(s.record("cpu", 11, {}).isOk());  // nothing recorded
  EXPECT_EQ(s.points("cpu", 1min, 11).size(), 1u);
}

TEST(PoolMetricStore, WeightedAverageForFlexiblePools) {
  PoolMetricStore s;
  std::vector<double> cpu{80, 20}, weights{3, 1};  // a 3-vCPU member at 80%, 1-vCPU at 20%
  ASSERT_TRUE(s.record("cpu", 5, cpu, weights).isOk());
  EXPECT_DOUBLE_EQ(*s.query("cpu", MetricStatistic::kAvg, TimeAggregation::kAvg, 1s, 5), 65);
  EXPECT_DOUBLE_EQ(*s.query("cpu", MetricStatistic::kSum, TimeAggregation::kAvg, 1s, 5), 100);
  std::vector<double> bad{1};
  EXPECT_EQ(s.record("cpu", 6, cpu, bad).code(), StatusCode::kInvalidArgument);
  std::vector<double> nan{std::numeric_limits<double>::quiet_NaN()};
  EXPECT_EQ(s.record("cpu", 6, nan).code(), StatusCode::kInvalidArgument);
}

TEST(PoolMetricStore, RingWrapsAndOldSecondsDisappear) {
  PoolMetricStore s(10s);
  EXPECT_EQ(s.retentionSeconds(), 10u);
  for (int64_t t = 0; t < 25; ++t) ASSERT_TRUE(s.recordValue("rps", t, double(t)).isOk());
  // Only 15..24 survive; a 1-hour window is capped at the retention.
  auto pts = s.points("rps", 1h, 24);
  ASSERT_EQ(pts.size(), 10u);
  EXPECT_EQ(pts.front().unix_second, 15);
  EXPECT_EQ(pts.back().unix_second, 24);
  EXPECT_DOUBLE_EQ(*s.query("rps", MetricStatistic::kAvg, TimeAggregation::kMin, 1h, 24), 15);
  // Second 14 maps to the slot of 24 but is older than the ring: ignored, 24 kept.
  ASSERT_TRUE(s.recordValue("rps", 14, 1000).isOk());
  EXPECT_DOUBLE_EQ(*s.query("rps", MetricStatistic::kAvg, TimeAggregation::kLast, 1s, 24), 24);
  // Asking about a later time: slots holding older seconds do not count.
  EXPECT_DOUBLE_EQ(*s.query("rps", MetricStatistic::kAvg, TimeAggregation::kCount, 10s, 30), 4);
  EXPECT_FALSE(s.query("rps", MetricStatistic::kAvg, TimeAggregation::kAvg, 10s, 40));
}

TEST(PoolMetricStore, TheNumberOfMetricNamesIsBounded) {
  PoolMetricStore s(60s, 3);
  ASSERT_TRUE(s.recordValue("a", 1, 1).isOk());
  ASSERT_TRUE(s.recordValue("b", 1, 1).isOk());
  ASSERT_TRUE(s.recordValue("c", 1, 1).isOk());
  Status st = s.recordValue("d", 1, 1);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("3 metrics"), std::string::npos);
  EXPECT_TRUE(s.recordValue("a", 2, 1).isOk());  // known names still record
  EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(s.forget("b"));
  EXPECT_TRUE(s.recordValue("d", 1, 1).isOk());
  EXPECT_EQ(s.record("", 1, v({1})).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.record(std::string(200, 'x'), 1, v({1})).code(), StatusCode::kInvalidArgument);
}

TEST(PoolMetricStore, UnixSecondRoundsDown) {
  WallTime t{std::chrono::milliseconds(1'700'000'000'999)};
  EXPECT_EQ(PoolMetricStore::unixSecond(t), 1'700'000'000);
}

}  // namespace
}  // namespace scalegate::control
