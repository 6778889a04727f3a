#include "control/rolling_upgrade.h"

#include <gtest/gtest.h>

#include <map>

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using K = UpgradeAction::Kind;
using Ids = std::vector<std::string>;

// A simulated pool: the caller's side of the protocol.
struct Pool {
  std::vector<UpgradeInstance> xs;
  UpgradeInstance& at(const std::string& id) {
    for (auto& x : xs) {
      if (x.id == id) return x;
    }
    ADD_FAILURE() << "no " << id;
    return xs.front();
  }
  void restart(const Ids& ids, const std::string& version, bool healthy) {
    for (const auto& id : ids) {
      at(id).version = version;
      at(id).healthy = healthy;
    }
  }
};

Pool fivePool(const std::string& version = "v1") {
  Pool p;
  for (int i = 1; i <= 5; ++i) p.xs.push_back({"vm-" + std::to_string(i), "", version, true});
  return p;
}

UpgradeRequest request(std::string version) {
  UpgradeRequest r;
  r.version = std::move(version);
  r.batch = {20, true};
  r.max_unhealthy = {20, true};
  r.max_unhealthy_upgraded = {20, true};
  r.pause = 10s;
  r.health_timeout = 5min;
  return r;
}

class RollingUpgradeTest : public ::testing::Test {
 protected:
  ManualClock clock;
  RollingUpgrade up;
  UpgradeAction step(Pool& p) { return up.step(p.xs, clock.now(), clock.wallNow()); }
};

TEST_F(RollingUpgradeTest, HappyPathFiveInstancesOneBatchEach) {
  Pool p = fivePool();
  p.xs[3].version = "v2";  // vm-4 is already there: 4 batches
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  EXPECT_EQ(up.progress().batch_count, 4u);
  EXPECT_EQ(up.progress().instances_total, 4u);
  Ids order;
  for (int b = 0; b < 4; ++b) {
    UpgradeAction a = step(p);
    ASSERT_EQ(a.kind, K::kDrainBatch) << b;
    ASSERT_EQ(a.ids.size(), 1u);
    EXPECT_EQ(a.batch_index, static_cast<uint32_t>(b));
    EXPECT_EQ(a.batch_count, 4u);
    order.push_back(a.ids[0]);
    EXPECT_EQ(step(p).kind, K::kNone);  // waiting for the drain
    EXPECT_EQ(up.progress().state, UpgradeState::kDraining);
    up.onDrained(clock.now());
    a = step(p);
    ASSERT_EQ(a.kind, K::kSendUpgradeBatch);
    EXPECT_EQ(a.version, "v2");
    EXPECT_EQ(a.ids, (Ids{order.back()}));
    EXPECT_EQ(step(p).kind, K::kNone);  // sent once
    up.onBatchSent(clock.now());
    p.restart(a.ids, "v1", false);  // going down
    EXPECT_EQ(step(p).kind, K::kWaitHealthy);
    clock.advance(20s);
    p.restart(a.ids, "v2", false);  // new version, not healthy yet
    EXPECT_EQ(step(p).kind, K::kWaitHealthy);
    p.restart(a.ids, "v2", true);
    a = step(p);
    ASSERT_EQ(a.kind, K::kBatchDone);
    EXPECT_EQ(a.ids, (Ids{order.back()}));
    EXPECT_EQ(up.progress().instances_upgraded, static_cast<uint32_t>(b + 1));
    if (b < 3) {
      a = step(p);
      EXPECT_EQ(a.kind, K::kPause);
      clock.advance(9s);
      EXPECT_EQ(step(p).kind, K::kPause);
      clock.advance(1s);
    }
  }
  EXPECT_EQ(order, (Ids{"vm-1", "vm-2", "vm-3", "vm-5"}));  // natural order, vm-4 skipped
  UpgradeAction a = step(p);
  EXPECT_EQ(a.kind, K::kCompleted);
  EXPECT_EQ(step(p).kind, K::kNone);  // reported once
  EXPECT_EQ(up.progress().state, UpgradeState::kCompleted);
  EXPECT_EQ(up.progress().batch_index, 4u);
  EXPECT_TRUE(up.progress().ended_at.has_value());
  EXPECT_FALSE(up.running());
}

TEST_F(RollingUpgradeTest, BatchesFollowZonesAndPercentOfThePool) {
  Pool p;
  for (int i = 1; i <= 10; ++i) {
    p.xs.push_back({"vm-" + std::to_string(i), i % 2 == 0 ? "2" : "1", "v1", true});
  }
  UpgradeRequest r = request("v2");
  r.batch = {30, true};  // 3 of 10
  ASSERT_TRUE(up.start(r, p.xs, clock.now(), clock.wallNow()).isOk());
  // Zone 1: vm-1 3 5 | 7 9; zone 2: vm-2 4 6 | 8 10.
  EXPECT_EQ(up.progress().batch_count, 4u);
  UpgradeAction a = step(p);
  EXPECT_EQ(a.ids, (Ids{"vm-1", "vm-3", "vm-5"}));
  EXPECT_FALSE(up.start(r, p.xs, clock.now(), clock.wallNow()).isOk());  // one at a time
}

TEST_F(RollingUpgradeTest, AbortsWhenTooManyUnhealthyBeforeABatch) {
  Pool p = fivePool();
  p.xs[1].healthy = false;
  p.xs[2].healthy = false;  // 2 of 5 > 20% (1)
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  UpgradeAction a = step(p);
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_NE(a.reason.find("2 of 5 instances unhealthy before batch 1"), std::string::npos)
      << a.reason;
  EXPECT_EQ(up.progress().state, UpgradeState::kAborted);
  EXPECT_EQ(step(p).kind, K::kNone);
}

TEST_F(RollingUpgradeTest, AbortsWhenUpgradedInstancesTurnUnhealthy) {
  Pool p = fivePool();
  UpgradeRequest r = request("v2");
  r.max_unhealthy_upgraded = {0, false};  // no upgraded instance may be unhealthy
  r.max_unhealthy = {5, false};
  ASSERT_TRUE(up.start(r, p.xs, clock.now(), clock.wallNow()).isOk());
  auto runBatch = [&]() {
    UpgradeAction a = step(p);
    EXPECT_EQ(a.kind, K::kDrainBatch);
    up.onDrained(clock.now());
    a = step(p);
    up.onBatchSent(clock.now());
    p.restart(a.ids, "v2", true);
    return a.ids;
  };
  Ids first = runBatch();
  EXPECT_EQ(step(p).kind, K::kBatchDone);
  clock.advance(10s);
  Ids second = runBatch();
  p.at(first[0]).healthy = false;  // the first upgraded instance breaks while batch 2 runs
  p.at(second[0]).healthy = false;
  UpgradeAction a = step(p);
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_NE(a.reason.find("upgraded instances unhealthy during batch 2"), std::string::npos)
      << a.reason;
  EXPECT_EQ(a.ids, second);  // the batch in flight: the caller returns it to traffic
}

TEST_F(RollingUpgradeTest, AbortsWhenABatchIsNotHealthyInTime) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  UpgradeAction a = step(p);
  up.onDrained(clock.now());
  a = step(p);
  up.onBatchSent(clock.now());
  p.restart(a.ids, "v2", false);
  clock.advance(5min);
  EXPECT_EQ(step(p).kind, K::kWaitHealthy);  // exactly at the timeout: still waiting
  clock.advance(1s);
  a = step(p);
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_NE(a.reason.find("batch 1 of 5 not healthy at version v2 within 300s: vm-1 (unhealthy)"),
            std::string::npos)
      << a.reason;
  EXPECT_EQ(up.progress().reason, a.reason);
}

TEST_F(RollingUpgradeTest, WebhookFailureAndCancelAbort) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  UpgradeAction a = step(p);
  up.onDrained(clock.now());
  step(p);
  up.onBatchFailed("scaler answered 500 eight times", clock.now(), clock.wallNow());
  a = step(p);
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_EQ(a.ids, (Ids{"vm-1"}));
  EXPECT_NE(a.reason.find("500"), std::string::npos);

  RollingUpgrade other;
  ASSERT_TRUE(other.start(request("v3"), p.xs, clock.now(), clock.wallNow()).isOk());
  other.cancel("operator", clock.wallNow());
  EXPECT_EQ(other.step(p.xs, clock.now(), clock.wallNow()).kind, K::kAborted);
  EXPECT_EQ(other.progress().reason, "cancelled: operator");
  EXPECT_FALSE(other.start(UpgradeRequest{}, p.xs, clock.now(), clock.wallNow()).isOk());
}

TEST_F(RollingUpgradeTest, NothingToUpgradeCompletesAtOnce) {
  Pool p = fivePool("v2");
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  EXPECT_EQ(step(p).kind, K::kCompleted);
}

}  // namespace
}  // namespace scalegate::control
