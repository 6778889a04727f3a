#include "control/autoscale_policy.h"

#include <gtest/gtest.h>

#include <vector>

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using config::AutoscaleConfig;
using config::CompareOp;
using config::ScaleAction;
using config::ScaleRule;
using Kind = config::ScaleAction::Kind;

ScaleRule rule(std::string metric, CompareOp op, double threshold, Kind kind, uint32_t value,
               Duration cooldown = 5min, Duration window = 5min) {
  ScaleRule r;
  r.metric = std::move(metric);
  r.op = op;
  r.threshold = threshold;
  r.action = ScaleAction{kind, value};
  r.direction = (kind == Kind::kIncrease || kind == Kind::kIncreasePercent) ? ScaleDirection::kOut
                                                                            : ScaleDirection::kIn;
  r.cooldown = cooldown;
  r.window = window;
  return r;
}

AutoscaleConfig pool(uint32_t min, uint32_t max, uint32_t def, std::vector<ScaleRule> rules) {
  AutoscaleConfig c;
  c.enabled = true;
  c.min = min;
  c.max = max;
  c.default_capacity = def;
  c.rules = std::move(rules);
  return c;
}

// `members` identical values for every second of the last `seconds` up to `now`.
void fill(PoolMetricStore& s, const std::string& metric, WallTime now, double value, size_t members,
          int seconds = 600) {
  int64_t t = PoolMetricStore::unixSecond(now);
  std::vector<double> v(members, value);
  for (int64_t i = t - seconds + 1; i <= t; ++i) ASSERT_TRUE(s.record(metric, i, v).isOk());
}

class AutoscalePolicy : public ::testing::Test {
 protected:
  ManualClock clock;
  PoolMetricStore store;
  Autoscaler scaler;
  ScaleDecision eval(const AutoscaleConfig& c, uint32_t current,
                     std::optional<uint32_t> ready = std::nullopt) {
    return scaler.evaluate(c, store, current, clock.wallNow(), clock.now(), ready);
  }
};

// Azure autoscale-best-practices: thread count, out >= 600, in <= 600, 3 instances averaging
// 575: 575 × 3 / 2 = 862.5 would trigger the scale-out, so no scale-in.
TEST_F(AutoscalePolicy, AzureFlappingExampleThreadsAt575SkipsScaleIn) {
  auto c = pool(1, 10, 1,
                {rule("threads", CompareOp::kGe, 600, Kind::kIncrease, 1),
                 rule("threads", CompareOp::kLe, 600, Kind::kDecrease, 1)});
  fill(store, "threads", clock.wallNow(), 575, 3);
  ScaleDecision d = eval(c, 3);
  EXPECT_FALSE(d.changed);
  EXPECT_EQ(d.new_capacity, 3u);
  ASSERT_EQ(d.flapping.size(), 1u);
  EXPECT_EQ(d.flapping[0].kind, FlappingEvent::Kind::kFlapping);
  EXPECT_EQ(d.flapping[0].intended, 2u);
  EXPECT_EQ(d.flapping[0].actual, 3u);
  EXPECT_NE(d.flapping[0].detail.find("862.5"), std::string::npos) << d.flapping[0].detail;
  EXPECT_TRUE(d.rules[1].fired);
  EXPECT_FALSE(d.rules[0].fired);
}

// Azure: CPU out >= 80, in <= 60, 3 instances. At 60: 60 × 3 / 2 = 90 -> skip; at 50: 75 -> 2.
TEST_F(AutoscalePolicy, AzureFlappingExampleCpu) {
  auto c = pool(1, 10, 1,
                {rule("cpu", CompareOp::kGe, 80, Kind::kIncrease, 1),
                 rule("cpu", CompareOp::kLe, 60, Kind::kDecrease, 1)});
  fill(store, "cpu", clock.wallNow(), 60, 3);
  ScaleDecision d = eval(c, 3);
  EXPECT_FALSE(d.changed);
  ASSERT_EQ(d.flapping.size(), 1u);
  EXPECT_EQ(d.flapping[0].kind, FlappingEvent::Kind::kFlapping);

  PoolMetricStore fresh;
  fill(fresh, "cpu", clock.wallNow(), 50, 3);
  d = scaler.evaluate(c, fresh, 3, clock.wallNow(), clock.now());
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(d.new_capacity, 2u);
  EXPECT_EQ(d.direction, ScaleDirection::kIn);
  EXPECT_EQ(d.cause, DecisionCause::kRule);
  EXPECT_EQ(d.rule_index, 1);
  EXPECT_TRUE(d.flapping.empty());
}

// Azure autoscale-flapping: a -10 rule from 30 with a CPU out threshold of 70% scales to 27.
// At 63% average: 63 × 30 / 27 = 70 (does not exceed 70), 63 × 30 / 26 = 72.7 (would).
TEST_F(AutoscalePolicy, AzurePartialScaleInByLess) {
  auto c = pool(1, 100, 1,
                {rule("cpu", CompareOp::kGt, 70, Kind::kIncrease, 5),
                 rule("cpu", CompareOp::kLt, 65, Kind::kDecrease, 10)});
  fill(store, "cpu", clock.wallNow(), 63, 30);
  ScaleDecision d = eval(c, 30);
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(d.new_capacity, 27u);
  ASSERT_EQ(d.flapping.size(), 1u);
  EXPECT_EQ(d.flapping[0].kind, FlappingEvent::Kind::kFlappingOccurred);
  EXPECT_EQ(d.flapping[0].intended, 20u);
  EXPECT_EQ(d.flapping[0].actual, 27u);
  EXPECT_NE(d.flapping[0].detail.find("Intended new instance count: '20'. Actual new instance "
                                      "count: '27'"),
            std::string::npos);
}

TEST_F(AutoscalePolicy, AnyOutRuleFiresAndTheLargestWins) {
  auto c = pool(1, 100, 1,
                {rule("cpu", CompareOp::kGt, 70, Kind::kIncrease, 3),
                 rule("rps", CompareOp::kGt, 100, Kind::kIncreasePercent, 50),
                 rule("mem", CompareOp::kGt, 90, Kind::kIncrease, 20)});
  fill(store, "cpu", clock.wallNow(), 80, 10);
  fill(store, "rps", clock.wallNow(), 150, 10);
  fill(store, "mem", clock.wallNow(), 50, 10);  // the +20 rule does not fire
  ScaleDecision d = eval(c, 10);
  EXPECT_EQ(d.new_capacity, 15u);  // +50% of 10 beats +3
  EXPECT_EQ(d.rule_index, 1);
  ASSERT_TRUE(d.metric_value.has_value());
  EXPECT_DOUBLE_EQ(*d.metric_value, 150);
  EXPECT_DOUBLE_EQ(d.threshold, 100);
  EXPECT_NE(d.reason.find("rule 1"), std::string::npos) << d.reason;
}

TEST_F(AutoscalePolicy, ScaleInNeedsEveryInRuleAndTheSmallestReductionWins) {
  auto c = pool(1, 100, 1,
                {rule("cpu", CompareOp::kGt, 90, Kind::kIncrease, 1),
                 rule("cpu", CompareOp::kLt, 30, Kind::kDecreasePercent, 50),
                 rule("rps", CompareOp::kLt, 50, Kind::kDecrease, 3)});
  fill(store, "cpu", clock.wallNow(), 10, 10);
  fill(store, "rps", clock.wallNow(), 10, 10);
  ScaleDecision d = eval(c, 10);
  EXPECT_EQ(d.new_capacity, 7u);  // -50% -> 5 and -3 -> 7: 7 wins
  EXPECT_EQ(d.rule_index, 2);

  // One in-rule does not fire: no scale-in.
  PoolMetricStore s2;
  fill(s2, "cpu", clock.wallNow(), 10, 10);
  fill(s2, "rps", clock.wallNow(), 60, 10);
  d = scaler.evaluate(c, s2, 10, clock.wallNow(), clock.now());
  EXPECT_FALSE(d.changed);
}

TEST_F(AutoscalePolicy, AnOutConditionBlocksScaleInEvenDuringItsCooldown) {
  auto c = pool(1, 100, 1,
                {rule("mem", CompareOp::kGt, 80, Kind::kIncrease, 1, 10min),
                 rule("cpu", CompareOp::kLt, 30, Kind::kDecrease, 1, 0s)});
  fill(store, "mem", clock.wallNow(), 85, 4);
  fill(store, "cpu", clock.wallNow(), 10, 4);
  scaler.recordScaled(ScaleDirection::kOut, clock.now());
  clock.advance(1min);
  ScaleDecision d = scaler.evaluate(c, store, 4, clock.wallNow(), clock.now());
  EXPECT_FALSE(d.changed);
  EXPECT_TRUE(d.rules[0].fired);
  EXPECT_TRUE(d.rules[0].in_cooldown);
}

TEST_F(AutoscalePolicy, PercentRounding) {
  auto up = [](uint32_t p, uint32_t n) {
    return applyScaleAction(ScaleAction{Kind::kIncreasePercent, p}, n);
  };
  auto down = [](uint32_t p, uint32_t n) {
    return applyScaleAction(ScaleAction{Kind::kDecreasePercent, p}, n);
  };
  EXPECT_EQ(up(10, 3), 4u);    // 0.3 rounds up to 1
  EXPECT_EQ(up(15, 10), 12u);  // 1.5 -> 2
  EXPECT_EQ(up(20, 10), 12u);  // exact
  EXPECT_EQ(up(50, 0), 1u);    // at least one
  EXPECT_EQ(up(10, 1000), 1000u);
  EXPECT_EQ(down(25, 10), 8u);  // 2.5 rounds down to 2
  EXPECT_EQ(down(10, 3), 2u);   // 0.3 -> at least 1
  EXPECT_EQ(down(30, 10), 7u);
  EXPECT_EQ(down(100, 4), 0u);
  EXPECT_EQ(down(50, 0), 0u);
  EXPECT_EQ(applyScaleAction(ScaleAction{Kind::kDecrease, 5}, 3), 0u);
  EXPECT_EQ(applyScaleAction(ScaleAction{Kind::kSetCount, 7}, 3), 7u);
}

TEST_F(AutoscalePolicy, CooldownCountsFromTheLastScaleInEitherDirection) {
  auto c = pool(1, 100, 1,
                {rule("cpu", CompareOp::kGt, 70, Kind::kIncrease, 1, 5min),
                 rule("cpu", CompareOp::kLt, 20, Kind::kDecrease, 1, 10min)});
  fill(store, "cpu", clock.wallNow(), 90, 2);
  ScaleDecision d = eval(c, 2);
  ASSERT_EQ(d.new_capacity, 3u);
  scaler.recordScaled(d.direction, clock.now());

  clock.advance(4min);
  fill(store, "cpu", clock.wallNow(), 90, 3, 240);
  d = eval(c, 3);
  EXPECT_FALSE(d.changed) << d.reason;
  EXPECT_TRUE(d.rules[0].in_cooldown);

  clock.advance(1min);
  fill(store, "cpu", clock.wallNow(), 90, 3, 60);
  d = eval(c, 3);
  EXPECT_EQ(d.new_capacity, 4u);
  scaler.recordScaled(d.direction, clock.now());

  // Load drops right after: the in-rule waits its own 10 minutes from that scale-out.
  clock.advance(6min);
  fill(store, "cpu", clock.wallNow(), 5, 4, 360);
  d = eval(c, 4);
  EXPECT_FALSE(d.changed);
  EXPECT_TRUE(d.rules[1].fired);
  EXPECT_TRUE(d.rules[1].in_cooldown);
  clock.advance(4min);
  fill(store, "cpu", clock.wallNow(), 5, 4, 240);
  d = eval(c, 4);
  EXPECT_EQ(d.new_capacity, 3u);
}

TEST_F(AutoscalePolicy, MinMaxClamping) {
  auto c = pool(2, 10, 2, {rule("cpu", CompareOp::kGt, 70, Kind::kIncrease, 5)});
  fill(store, "cpu", clock.wallNow(), 90, 8);
  ScaleDecision d = eval(c, 8);
  EXPECT_EQ(d.new_capacity, 10u);  // +5 capped at max
  EXPECT_EQ(d.cause, DecisionCause::kRule);
  d = eval(c, 10);
  EXPECT_FALSE(d.changed);  // already at max

  PoolMetricStore quiet;
  fill(quiet, "cpu", clock.wallNow(), 50, 12);
  d = scaler.evaluate(c, quiet, 12, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 10u);  // set by hand above max: pulled back
  EXPECT_EQ(d.cause, DecisionCause::kAboveMax);
  EXPECT_EQ(d.direction, ScaleDirection::kIn);
  d = scaler.evaluate(c, quiet, 1, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 2u);
  EXPECT_EQ(d.cause, DecisionCause::kBelowMin);

  // A scale-in never goes below min.
  auto in = pool(3, 10, 3, {rule("cpu", CompareOp::kLt, 60, Kind::kDecrease, 5)});
  d = scaler.evaluate(in, quiet, 5, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 3u);
  // At min already: no change and no flapping event.
  d = scaler.evaluate(in, quiet, 3, clock.wallNow(), clock.now());
  EXPECT_FALSE(d.changed);
  EXPECT_TRUE(d.flapping.empty());
  EXPECT_EQ(d.cause, DecisionCause::kNone);
}

TEST_F(AutoscalePolicy, DefaultCapacityWhenMetricsAreMissingOnlyRaises) {
  auto c = pool(1, 10, 4,
                {rule("cpu", CompareOp::kGt, 70, Kind::kIncrease, 1),
                 rule("cpu", CompareOp::kLt, 20, Kind::kDecrease, 1)});
  ScaleDecision d = eval(c, 2);  // no data at all
  EXPECT_TRUE(d.metrics_missing);
  EXPECT_EQ(d.new_capacity, 4u);
  EXPECT_EQ(d.cause, DecisionCause::kDefaultCapacity);
  d = eval(c, 6);
  EXPECT_FALSE(d.changed);  // above default: not lowered
  EXPECT_TRUE(d.metrics_missing);

  // Data older than the window counts as missing.
  fill(store, "cpu", clock.wallNow(), 5, 2);
  clock.advance(10min);
  d = eval(c, 2);
  EXPECT_TRUE(d.metrics_missing);
  EXPECT_EQ(d.new_capacity, 4u);

  // One metric missing blocks scale-in even when the other's in-rule fires.
  auto two = pool(1, 10, 1,
                  {rule("cpu", CompareOp::kLt, 20, Kind::kDecrease, 1),
                   rule("rps", CompareOp::kGt, 500, Kind::kIncrease, 1)});
  fill(store, "cpu", clock.wallNow(), 5, 6);
  d = eval(two, 6);
  EXPECT_TRUE(d.metrics_missing);
  EXPECT_FALSE(d.changed);
}

TEST_F(AutoscalePolicy, TargetTrackingToleranceAndReadyMultiplier) {
  AutoscaleConfig c = pool(1, 20, 1, {});
  c.target = config::TargetTracking{"rps", 100, 0.1, 5min};
  fill(store, "rps", clock.wallNow(), 109, 4);
  ScaleDecision d = eval(c, 4);
  EXPECT_FALSE(d.changed);  // |1 - 1.09| <= 0.1
  PoolMetricStore hot;
  fill(hot, "rps", clock.wallNow(), 150, 4);
  d = scaler.evaluate(c, hot, 4, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 6u);  // ceil(4 × 1.5)
  EXPECT_EQ(d.cause, DecisionCause::kTarget);
  // Two of six still booting: ceil(4 × 1.5) = 6 is what is already coming.
  d = scaler.evaluate(c, hot, 6, clock.wallNow(), clock.now(), 4);
  EXPECT_FALSE(d.changed);
  PoolMetricStore hotter;
  fill(hotter, "rps", clock.wallNow(), 111, 4);
  d = scaler.evaluate(c, hotter, 4, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 5u);  // 1.11 is outside the tolerance: ceil(4.44)
}

TEST_F(AutoscalePolicy, TargetTrackingScaleDownStabilization) {
  AutoscaleConfig c = pool(1, 20, 1, {});
  c.target = config::TargetTracking{"rps", 100, 0.1, 5min};
  fill(store, "rps", clock.wallNow(), 100, 8, 60);
  ScaleDecision d = eval(c, 8);
  EXPECT_FALSE(d.changed);  // recommendation 8 at t0

  clock.advance(2min);
  fill(store, "rps", clock.wallNow(), 50, 8, 120);
  d = eval(c, 8);
  EXPECT_FALSE(d.changed) << d.reason;  // wants 4, but 8 was recommended 2 minutes ago
  ASSERT_TRUE(d.target_desired.has_value());
  EXPECT_EQ(*d.target_desired, 8u);

  clock.advance(2min);
  fill(store, "rps", clock.wallNow(), 75, 8, 120);
  d = eval(c, 8);
  EXPECT_FALSE(d.changed);  // recommends 6, but 8 (t0) is still in the window

  clock.advance(1min + 1s);  // t0 left the window; highest left: 6 (from t0 + 4m)
  fill(store, "rps", clock.wallNow(), 50, 8, 61);
  d = eval(c, 8);
  EXPECT_EQ(d.new_capacity, 6u);
  EXPECT_EQ(d.direction, ScaleDirection::kIn);
}

TEST_F(AutoscalePolicy, RulesAndTargetCombine) {
  AutoscaleConfig c = pool(1, 20, 1,
                           {rule("cpu", CompareOp::kGt, 80, Kind::kIncrease, 1),
                            rule("cpu", CompareOp::kLt, 30, Kind::kDecrease, 1)});
  c.target = config::TargetTracking{"rps", 100, 0.1, 0s};
  // Out: the larger of the two.
  fill(store, "cpu", clock.wallNow(), 90, 4);
  fill(store, "rps", clock.wallNow(), 200, 4);
  ScaleDecision d = eval(c, 4);
  EXPECT_EQ(d.new_capacity, 8u);
  EXPECT_EQ(d.cause, DecisionCause::kTarget);

  // In-rules fire but the target is content: no scale-in. (Stabilization 0s: only the
  // current recommendation counts, so each case below runs a second later.)
  clock.advance(1s);
  PoolMetricStore s2;
  fill(s2, "cpu", clock.wallNow(), 10, 4);
  fill(s2, "rps", clock.wallNow(), 100, 4);
  d = scaler.evaluate(c, s2, 4, clock.wallNow(), clock.now());
  EXPECT_FALSE(d.changed);

  // Both want in: the smaller reduction (rule: 3; target: ceil(4 × 0.25) = 1).
  clock.advance(1s);
  PoolMetricStore s3;
  fill(s3, "cpu", clock.wallNow(), 10, 4);
  fill(s3, "rps", clock.wallNow(), 25, 4);
  d = scaler.evaluate(c, s3, 4, clock.wallNow(), clock.now());
  EXPECT_EQ(d.new_capacity, 3u);
  EXPECT_EQ(d.cause, DecisionCause::kRulesAndTarget);

  // Target wants in, the in-rule does not fire: no scale-in.
  clock.advance(1s);
  PoolMetricStore s4;
  fill(s4, "cpu", clock.wallNow(), 50, 4);
  fill(s4, "rps", clock.wallNow(), 25, 4);
  d = scaler.evaluate(c, s4, 4, clock.wallNow(), clock.now());
  EXPECT_FALSE(d.changed);
}

WallTime at(int y, unsigned m, unsigned d, int hh, int mm) {
  using namespace std::chrono;
  return WallTime{duration_cast<WallTime::duration>(
      (sys_days{year{y} / month{m} / day{d}} + hours{hh} + minutes{mm}).time_since_epoch())};
}

TEST(AutoscaleProfiles, FixedBeatsWeeklyBeatsDefaultWithUtcOffset) {
  AutoscaleConfig c = pool(1, 10, 2, {});
  config::AutoscaleProfile weekly;
  weekly.name = "business";
  weekly.min = 4;
  weekly.max = 20;
  weekly.default_capacity = 4;
  weekly.schedule.kind = config::ProfileSchedule::Kind::kWeekly;
  weekly.schedule.days = 0b0111110;  // Mon..Fri
  weekly.schedule.start_minute = 9 * 60;
  weekly.schedule.end_minute = 17 * 60;
  weekly.schedule.utc_offset_minutes = 60;  // +01:00
  config::AutoscaleProfile fixed;
  fixed.name = "launch";
  fixed.min = 8;
  fixed.max = 30;
  fixed.default_capacity = 8;
  fixed.schedule.kind = config::ProfileSchedule::Kind::kFixed;
  fixed.schedule.start = at(2026, 12, 1, 10, 0);
  fixed.schedule.end = at(2026, 12, 1, 12, 0);
  c.profiles = {weekly, fixed};  // the fixed one is listed last and still wins

  // 2026-11-30 is a Monday. 08:30 UTC = 09:30 at +01:00: business hours.
  EXPECT_EQ(activeProfile(c, at(2026, 11, 30, 8, 30)).name, "business");
  EXPECT_EQ(activeProfile(c, at(2026, 11, 30, 7, 59)).name, "default");  // 08:59 local
  EXPECT_EQ(activeProfile(c, at(2026, 11, 30, 8, 0)).name, "business");  // 09:00 local
  EXPECT_EQ(activeProfile(c, at(2026, 11, 30, 15, 59)).name, "business");
  EXPECT_EQ(activeProfile(c, at(2026, 11, 30, 16, 0)).name, "default");  // 17:00 local
  EXPECT_EQ(activeProfile(c, at(2026, 11, 29, 10, 0)).name, "default");  // Sunday
  EXPECT_EQ(activeProfile(c, at(2026, 12, 1, 10, 30)).name, "launch");   // Tuesday, fixed
  EXPECT_EQ(activeProfile(c, at(2026, 12, 1, 12, 0)).name, "business");  // fixed ended
  EXPECT_EQ(activeProfile(c, at(2026, 12, 1, 12, 0)).index, 0);

  // The profile's capacity is what evaluate() holds the pool to.
  PoolMetricStore store;
  Autoscaler a;
  ManualClock clock;
  ScaleDecision d = a.evaluate(c, store, 2, at(2026, 12, 1, 10, 30), clock.now());
  EXPECT_EQ(d.profile, "launch");
  EXPECT_EQ(d.new_capacity, 8u);
  EXPECT_EQ(d.cause, DecisionCause::kBelowMin);
  d = a.evaluate(c, store, 2, at(2026, 11, 30, 8, 30), clock.now());
  EXPECT_EQ(d.profile, "business");
  EXPECT_EQ(d.new_capacity, 4u);
}

TEST(AutoscaleProfiles, WeeklyWindowPastMidnight) {
  config::ProfileSchedule s;
  s.kind = config::ProfileSchedule::Kind::kWeekly;
  s.days = 1u << 5;  // Friday
  s.start_minute = 22 * 60;
  s.end_minute = 6 * 60;
  s.utc_offset_minutes = -5 * 60;  // -05:00
  // Friday 2026-12-04 22:30 local = Saturday 03:30 UTC.
  EXPECT_TRUE(scheduleHolds(s, at(2026, 12, 5, 3, 30)));
  // Saturday 05:59 local = 10:59 UTC: still in; 06:00 local: out.
  EXPECT_TRUE(scheduleHolds(s, at(2026, 12, 5, 10, 59)));
  EXPECT_FALSE(scheduleHolds(s, at(2026, 12, 5, 11, 0)));
  // Friday 21:59 local: not yet.
  EXPECT_FALSE(scheduleHolds(s, at(2026, 12, 5, 2, 59)));
  // Thursday night is not listed.
  EXPECT_FALSE(scheduleHolds(s, at(2026, 12, 4, 3, 30)));
}

TEST(AutoscaleManual, ClampsToTheActiveProfile) {
  AutoscaleConfig c = pool(2, 10, 2, {});
  WallTime now{std::chrono::seconds(1'700'000'000)};
  ManualScale m = clampManualScale(c, 5, now);
  EXPECT_FALSE(m.clamped);
  EXPECT_EQ(m.capacity, 5u);
  m = clampManualScale(c, 50, now);
  EXPECT_TRUE(m.clamped);
  EXPECT_EQ(m.capacity, 10u);
  EXPECT_NE(m.reason.find("above the maximum 10"), std::string::npos) << m.reason;
  m = clampManualScale(c, 0, now);
  EXPECT_TRUE(m.clamped);
  EXPECT_EQ(m.capacity, 2u);
  AutoscaleConfig off;
  m = clampManualScale(off, 50, now);
  EXPECT_FALSE(m.clamped);
  EXPECT_EQ(m.capacity, 50u);
}

TEST(AutoscaleRules, DividePerInstanceAndDescribe) {
  AutoscaleConfig c = pool(1, 10, 1, {rule("queue", CompareOp::kGt, 50, Kind::kIncrease, 1)});
  c.rules[0].statistic = config::MetricStatistic::kSum;
  c.rules[0].divide_per_instance = true;
  c.rules[0].aggregation = config::TimeAggregation::kLast;
  PoolMetricStore store;
  WallTime now{std::chrono::seconds(1'700'000'000)};
  ASSERT_TRUE(store.recordValue("queue", PoolMetricStore::unixSecond(now), 100).isOk());
  Autoscaler a;
  ManualClock clock;
  EXPECT_FALSE(a.evaluate(c, store, 2, now, clock.now()).changed);  // 100 / 2 = 50: not > 50
  EXPECT_EQ(a.evaluate(c, store, 1, now, clock.now()).new_capacity, 2u);
  EXPECT_EQ(describeRule(c.rules[0]),
            "sum queue over 5m (last) per instance > 50: +1, cooldown 5m");
}

}  // namespace
}  // namespace scalegate::control
