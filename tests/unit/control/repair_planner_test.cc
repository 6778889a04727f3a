#include "control/repair_planner.h"

#include <gtest/gtest.h>

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using Ids = std::vector<std::string>;

config::RepairPolicy policy() {
  config::RepairPolicy p;
  p.enabled = true;
  p.grace = 10min;
  p.max_percent = 5;
  p.suspend_after_failures = 3;
  p.suspend_for = 30min;
  p.timeout = 10min;
  return p;
}

std::vector<RepairMemberView> pool(size_t n, std::initializer_list<size_t> unhealthy = {}) {
  std::vector<RepairMemberView> v;
  for (size_t i = 0; i < n; ++i) v.push_back(RepairMemberView{"vm-" + std::to_string(i), true});
  for (size_t i : unhealthy) v[i].healthy = false;
  return v;
}

TEST(RepairPlanner, UnhealthyPastGraceAfterTheFirstGracePeriod) {
  ManualClock clock;
  RepairPlanner r(policy());
  auto members = pool(5, {1});
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
  clock.advance(9min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());  // first grace still running
  clock.advance(1min);
  RepairPlan p = r.tick(members, clock.now());
  EXPECT_EQ(p.start, (Ids{"vm-1"}));
  EXPECT_EQ(r.inRepair(), (Ids{"vm-1"}));
  // A member that only just turned unhealthy waits for its own grace.
  members[3].healthy = false;
  clock.advance(1min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());  // vm-1 in repair: one at a time
  // Healthy again: the repair succeeded.
  members[1].healthy = true;
  p = r.tick(members, clock.now());
  ASSERT_EQ(p.succeeded.size(), 1u);
  EXPECT_EQ(p.succeeded[0].id, "vm-1");
  EXPECT_TRUE(p.start.empty());  // vm-3 unhealthy for 1 minute only
  clock.advance(9min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
  clock.advance(1min);
  EXPECT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-3"}));
}

TEST(RepairPlanner, HealthFlapResetsTheGrace) {
  ManualClock clock;
  RepairPlanner r(policy());
  auto members = pool(3);
  r.tick(members, clock.now());
  clock.advance(20min);
  members[0].healthy = false;
  r.tick(members, clock.now());
  clock.advance(8min);
  members[0].healthy = true;
  r.tick(members, clock.now());
  members[0].healthy = false;
  clock.advance(1s);
  r.tick(members, clock.now());
  clock.advance(9min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
  clock.advance(1min);
  EXPECT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-0"}));
}

TEST(RepairPlanner, AtMostFivePercentAndOneAtATimeBelowTwenty) {
  RepairPlanner r(policy());
  EXPECT_EQ(r.budget(1), 1u);
  EXPECT_EQ(r.budget(19), 1u);
  EXPECT_EQ(r.budget(20), 1u);
  EXPECT_EQ(r.budget(39), 1u);
  EXPECT_EQ(r.budget(40), 2u);
  EXPECT_EQ(r.budget(100), 5u);
  config::RepairPolicy wide = policy();
  wide.max_percent = 50;
  EXPECT_EQ(RepairPlanner(wide).budget(10), 1u);  // below 20: one at a time regardless
  EXPECT_EQ(RepairPlanner(wide).budget(20), 10u);

  ManualClock clock;
  auto members = pool(60, {0, 1, 2, 3, 4});
  r.tick(members, clock.now());
  clock.advance(10min);
  RepairPlan p = r.tick(members, clock.now());
  EXPECT_EQ(p.start, (Ids{"vm-0", "vm-1", "vm-2"}));  // 5% of 60 = 3
  clock.advance(1min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
  members[1].healthy = true;
  p = r.tick(members, clock.now());
  EXPECT_EQ(p.start, (Ids{"vm-3"}));
}

TEST(RepairPlanner, TimeoutsAndFailuresSuspendRepairs) {
  ManualClock clock;
  RepairPlanner r(policy());
  auto members = pool(4, {0});
  r.tick(members, clock.now());
  clock.advance(10min);
  ASSERT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-0"}));
  // Failure 1: the webhook failed for good.
  EXPECT_FALSE(r.onRepairFailed("vm-0", clock.now(), "webhook: 500").has_value());
  RepairPlan p = r.tick(members, clock.now());
  ASSERT_EQ(p.failed.size(), 1u);
  EXPECT_EQ(p.failed[0].reason, "webhook: 500");
  EXPECT_TRUE(p.start.empty());  // unhealthy again needs a new grace period
  clock.advance(10min);
  ASSERT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-0"}));
  // Failure 2: not healthy within the timeout.
  clock.advance(10min);
  p = r.tick(members, clock.now());
  ASSERT_EQ(p.failed.size(), 1u);
  EXPECT_NE(p.failed[0].reason.find("600s"), std::string::npos) << p.failed[0].reason;
  EXPECT_EQ(r.consecutiveFailures(), 2u);
  clock.advance(10min);
  ASSERT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-0"}));
  // Failure 3: suspended for 30 minutes, reported once.
  clock.advance(10min);
  p = r.tick(members, clock.now());
  ASSERT_TRUE(p.suspended.has_value());
  EXPECT_EQ(p.suspended->failures, 3u);
  EXPECT_NE(p.suspended->reason.find("suspended for 1800s"), std::string::npos);
  EXPECT_TRUE(r.suspended(clock.now()));
  clock.advance(20min);
  p = r.tick(members, clock.now());
  EXPECT_FALSE(p.suspended.has_value());
  EXPECT_TRUE(p.start.empty());  // grace has passed, but suspended
  clock.advance(10min);
  p = r.tick(members, clock.now());
  EXPECT_TRUE(p.resumed);
  EXPECT_EQ(p.start, (Ids{"vm-0"}));
  EXPECT_EQ(r.consecutiveFailures(), 0u);
}

TEST(RepairPlanner, ReplacedMemberSucceedsAndSuccessResetsFailures) {
  ManualClock clock;
  RepairPlanner r(policy());
  auto members = pool(3, {2});
  r.tick(members, clock.now());
  clock.advance(10min);
  ASSERT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-2"}));
  (void)r.onRepairFailed("vm-2", clock.now(), "x");
  r.tick(members, clock.now());
  EXPECT_EQ(r.consecutiveFailures(), 1u);
  clock.advance(10min);
  ASSERT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-2"}));
  // The scaler replaced it: vm-2 left, vm-9 joined (and gets its own first grace).
  members.pop_back();
  members.push_back(RepairMemberView{"vm-9", false});
  RepairPlan p = r.tick(members, clock.now());
  ASSERT_EQ(p.succeeded.size(), 1u);
  EXPECT_EQ(p.succeeded[0].id, "vm-2");
  EXPECT_EQ(r.consecutiveFailures(), 0u);
  clock.advance(9min);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
}

TEST(RepairPlanner, DisabledOrDrainingNeverRepairs) {
  ManualClock clock;
  config::RepairPolicy off = policy();
  off.enabled = false;
  RepairPlanner r(off);
  auto members = pool(3, {0});
  members[1].healthy = false;
  members[1].draining = true;
  r.tick(members, clock.now());
  clock.advance(1h);
  EXPECT_TRUE(r.tick(members, clock.now()).start.empty());
  r.setPolicy(policy());
  EXPECT_EQ(r.tick(members, clock.now()).start, (Ids{"vm-0"}));
}

}  // namespace
}  // namespace scalegate::control
