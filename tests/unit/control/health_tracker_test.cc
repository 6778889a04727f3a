#include "control/health_tracker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;

ProbeOutcome okProbe() {
  ProbeOutcome o;
  o.ok = true;
  o.http_status = 200;
  return o;
}

ProbeOutcome failedProbe(std::string error = "timeout") {
  ProbeOutcome o;
  o.error = std::move(error);
  return o;
}

ProbeOutcome appHealth(const std::string& state) {
  ProbeOutcome o;
  o.http_status = 200;
  o.app_health = state;
  o.ok = state == "Healthy";
  if (!o.ok) o.error = "app health " + state;
  return o;
}

// Out of line: GCC 12 reports a false maybe-uninitialized for HealthCheck's default `expect`
// initializer list when the constructor is inlined into the test bodies.
[[gnu::noinline]] config::HealthCheck check(uint32_t rise, uint32_t fall,
                                            bool initially_healthy = true) {
  config::HealthCheck hc;
  hc.enabled = true;
  hc.rise = rise;
  hc.fall = fall;
  hc.initially_healthy = initially_healthy;
  return hc;
}

class HealthTrackerTest : public ::testing::Test {
 protected:
  HealthChange apply(const ProbeOutcome& o) {
    at_ += 1s;
    return applyProbe(m_, o, hc_, at_);
  }

  MemberRecord m_;
  config::HealthCheck hc_ = check(2, 3);
  WallTime at_{std::chrono::seconds(1'700'000'000)};
};

TEST_F(HealthTrackerTest, RiseFromUnknown) {
  EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
  EXPECT_EQ(m_.health, HealthState::kUnknown);
  EXPECT_EQ(m_.consecutive_ok, 1u);
  EXPECT_TRUE(m_.transitioning);
  EXPECT_EQ(apply(okProbe()), HealthChange::kBecameHealthy);
  EXPECT_EQ(m_.health, HealthState::kHealthy);
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
  EXPECT_EQ(m_.consecutive_ok, 3u);
  EXPECT_EQ(m_.probes_ok, 3u);
  EXPECT_EQ(m_.probes_failed, 0u);
}

TEST_F(HealthTrackerTest, FallFromUnknown) {
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_EQ(m_.health, HealthState::kUnknown);
  EXPECT_TRUE(m_.transitioning);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kBecameUnhealthy);
  EXPECT_EQ(m_.health, HealthState::kUnhealthy);
  EXPECT_EQ(m_.consecutive_fail, 3u);
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(m_.probes_failed, 3u);
}

TEST_F(HealthTrackerTest, HealthyNeedsFallFailuresInARow) {
  m_.health = HealthState::kHealthy;
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_TRUE(m_.transitioning);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_EQ(apply(okProbe()), HealthChange::kNone);  // breaks the run
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(m_.consecutive_fail, 0u);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kBecameUnhealthy);
  EXPECT_EQ(m_.health, HealthState::kUnhealthy);
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);  // stays down, no second change
}

TEST_F(HealthTrackerTest, UnhealthyNeedsRiseSuccessesInARow) {
  m_.health = HealthState::kUnhealthy;
  EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
  EXPECT_TRUE(m_.transitioning);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
  EXPECT_EQ(apply(okProbe()), HealthChange::kBecameHealthy);
  EXPECT_EQ(m_.health, HealthState::kHealthy);
  EXPECT_FALSE(m_.transitioning);
}

TEST_F(HealthTrackerTest, FlappingNeverTransitions) {
  for (auto start : {HealthState::kUnknown, HealthState::kHealthy, HealthState::kUnhealthy}) {
    m_ = MemberRecord();
    m_.health = start;
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(apply(i % 2 ? okProbe() : failedProbe()), HealthChange::kNone);
      EXPECT_EQ(m_.health, start);
    }
    EXPECT_EQ(m_.probes_ok, 10u);
    EXPECT_EQ(m_.probes_failed, 10u);
  }
}

TEST_F(HealthTrackerTest, InitiallyHealthyVersusUnhealthy) {
  // kUnknown is the configured initial state: probeHealthy() (registry) reads
  // hc.initially_healthy for it. Either way, one verdict needs a full run.
  for (bool initially_healthy : {true, false}) {
    m_ = MemberRecord();
    hc_ = check(3, 2, initially_healthy);
    EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
    EXPECT_EQ(apply(okProbe()), HealthChange::kNone);
    EXPECT_EQ(apply(okProbe()), HealthChange::kBecameHealthy);

    m_ = MemberRecord();
    EXPECT_EQ(apply(failedProbe()), HealthChange::kNone);
    EXPECT_EQ(apply(failedProbe()), HealthChange::kBecameUnhealthy);
  }
}

TEST_F(HealthTrackerTest, RiseAndFallOfOne) {
  hc_ = check(1, 1);
  EXPECT_EQ(apply(okProbe()), HealthChange::kBecameHealthy);
  EXPECT_EQ(apply(failedProbe()), HealthChange::kBecameUnhealthy);
  EXPECT_EQ(apply(okProbe()), HealthChange::kBecameHealthy);
  hc_ = check(0, 0);  // acts as 1
  EXPECT_EQ(apply(failedProbe()), HealthChange::kBecameUnhealthy);
}

TEST_F(HealthTrackerTest, InitializingBeforeAnyVerdict) {
  // Neither rise nor fall progress: the member keeps its configured initial state.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kNone);
  }
  EXPECT_EQ(m_.health, HealthState::kUnknown);
  EXPECT_EQ(m_.consecutive_fail, 0u);
  EXPECT_EQ(m_.consecutive_ok, 0u);
  EXPECT_FALSE(m_.transitioning);
  EXPECT_EQ(m_.probes_failed, 10u);
  EXPECT_EQ(m_.app_health, "Initializing");

  // It breaks a run of successes.
  EXPECT_EQ(apply(appHealth("Healthy")), HealthChange::kNone);
  EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kNone);
  EXPECT_EQ(m_.consecutive_ok, 0u);
  EXPECT_EQ(apply(appHealth("Healthy")), HealthChange::kNone);
  EXPECT_EQ(apply(appHealth("Healthy")), HealthChange::kBecameHealthy);
}

TEST_F(HealthTrackerTest, InitializingAfterAVerdictIsAFailure) {
  m_.health = HealthState::kHealthy;
  EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kNone);
  EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kNone);
  EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kBecameUnhealthy);
  EXPECT_EQ(apply(appHealth("Initializing")), HealthChange::kNone);
  EXPECT_EQ(m_.health, HealthState::kUnhealthy);
}

TEST_F(HealthTrackerTest, UnknownAndUnhealthyAppStatesAreFailures) {
  for (const char* state : {"Unknown", "Unhealthy"}) {
    m_ = MemberRecord();
    EXPECT_EQ(apply(appHealth(state)), HealthChange::kNone);
    EXPECT_EQ(apply(appHealth(state)), HealthChange::kNone);
    EXPECT_EQ(apply(appHealth(state)), HealthChange::kBecameUnhealthy) << state;
  }
}

TEST_F(HealthTrackerTest, RecordsTheProbeAndLoad) {
  ProbeOutcome o = okProbe();
  o.load = {{"cpu", 0.5}};
  o.app_health = "Healthy";
  apply(o);
  ASSERT_TRUE(m_.last_probe.has_value());
  EXPECT_EQ(m_.last_probe->http_status, 200);
  EXPECT_EQ(m_.last_probe_at, at_);
  EXPECT_EQ(m_.load, o.load);
  EXPECT_EQ(m_.app_health, "Healthy");

  // No answer: the last reported load stays; rich health becomes Unknown.
  apply(failedProbe("connect: Connection refused"));
  EXPECT_EQ(m_.last_probe->error, "connect: Connection refused");
  EXPECT_EQ(m_.load, o.load);
  EXPECT_EQ(m_.app_health, "Unknown");

  // An answer without a report clears it.
  apply(okProbe());
  EXPECT_TRUE(m_.load.empty());
  EXPECT_EQ(m_.app_health, "");

  // A member that never spoke rich health stays "".
  apply(failedProbe());
  EXPECT_EQ(m_.app_health, "");
}

TEST(HealthChangeTest, Names) {
  EXPECT_STREQ(healthChangeName(HealthChange::kNone), "none");
  EXPECT_STREQ(healthChangeName(HealthChange::kBecameHealthy), "became_healthy");
  EXPECT_STREQ(healthChangeName(HealthChange::kBecameUnhealthy), "became_unhealthy");
}

}  // namespace
}  // namespace scalegate::control
