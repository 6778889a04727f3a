#include "control/rolling_upgrade.h"

#include <gtest/gtest.h>

#include <map>

#include "control/state_file.h"

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

// Restarts: the machine saved by toJson() and loaded into a fresh RollingUpgrade (as the
// next process does from <state>.autoscale.json) goes on where it was.

// The saved machine through its text form, as written to and read from the file.
RollingUpgrade reload(const RollingUpgrade& up, MonoTime now, WallTime wall) {
  nlohmann::json j = nlohmann::json::parse(up.toJson(now, wall).dump());
  RollingUpgrade fresh;
  Status st = fresh.restore(j, now, wall);
  EXPECT_TRUE(st.isOk()) << st.message();
  return fresh;
}

TEST_F(RollingUpgradeTest, RestartAfterEveryStepUpgradesEachInstanceOnce) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  std::map<std::string, int> sent;  // instance -> upgrade_batch requests for it
  Ids done;
  UpgradeAction last;
  for (int i = 0; i < 200 && up.progress().state != UpgradeState::kCompleted; ++i) {
    up = reload(up, clock.now(), clock.wallNow());  // a restart before every step
    UpgradeAction a = step(p);
    switch (a.kind) {
      case K::kDrainBatch:
        up = reload(up, clock.now(), clock.wallNow());  // and between the action and its result
        up.onDrained(clock.now());
        break;
      case K::kSendUpgradeBatch:
        for (const auto& id : a.ids) ++sent[id];
        up = reload(up, clock.now(), clock.wallNow());
        up.onBatchSent(clock.now());
        p.restart(a.ids, "v2", true);
        break;
      case K::kBatchDone:
        done.insert(done.end(), a.ids.begin(), a.ids.end());
        break;
      case K::kPause:
        clock.advance(10s);
        break;
      default:
        break;
    }
    last = a;
  }
  EXPECT_EQ(last.kind, K::kCompleted);
  EXPECT_EQ(done, (Ids{"vm-1", "vm-2", "vm-3", "vm-4", "vm-5"}));
  EXPECT_EQ(sent, (std::map<std::string, int>{
                      {"vm-1", 1}, {"vm-2", 1}, {"vm-3", 1}, {"vm-4", 1}, {"vm-5", 1}}));
  EXPECT_EQ(up.progress().instances_upgraded, 5u);
  up = reload(up, clock.now(), clock.wallNow());
  EXPECT_EQ(step(p).kind, K::kNone);  // a completed upgrade is not reported nor restarted
  EXPECT_EQ(up.progress().state, UpgradeState::kCompleted);
  EXPECT_FALSE(up.running());
}

TEST_F(RollingUpgradeTest, RestoredDrainingBatchWaitsForTheSameDrain) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  ASSERT_EQ(step(p).kind, K::kDrainBatch);
  up = reload(up, clock.now(), clock.wallNow());
  EXPECT_EQ(up.progress().state, UpgradeState::kDraining);
  EXPECT_EQ(up.progress().current_batch, (Ids{"vm-1"}));
  EXPECT_EQ(step(p).kind, K::kNone);  // still the caller's drain; no second batch
  up.onDrained(clock.now());
  UpgradeAction a = step(p);
  EXPECT_EQ(a.kind, K::kSendUpgradeBatch);
  EXPECT_EQ(a.ids, (Ids{"vm-1"}));
}

TEST_F(RollingUpgradeTest, RestoredSendingPhaseAsksForTheWebhookOnlyIfNotYetAsked) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  step(p);
  up.onDrained(clock.now());
  // Saved before the caller got SendUpgradeBatch: the restored machine asks for it.
  RollingUpgrade before = reload(up, clock.now(), clock.wallNow());
  EXPECT_FALSE(before.batchSendRequested());
  EXPECT_EQ(before.step(p.xs, clock.now(), clock.wallNow()).kind, K::kSendUpgradeBatch);
  // Saved after: the webhook is the caller's (its outbox); no second request for the batch.
  ASSERT_EQ(step(p).kind, K::kSendUpgradeBatch);
  up = reload(up, clock.now(), clock.wallNow());
  EXPECT_TRUE(up.batchSendRequested());
  EXPECT_EQ(up.progress().state, UpgradeState::kSending);
  EXPECT_EQ(step(p).kind, K::kNone);
  up.onBatchSent(clock.now());
  EXPECT_EQ(up.progress().state, UpgradeState::kWaitingHealthy);
}

TEST_F(RollingUpgradeTest, RestoredWaitKeepsItsDeadlineAcrossAnotherMonotonicClock) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  step(p);
  up.onDrained(clock.now());
  step(p);
  up.onBatchSent(clock.now());
  p.restart({"vm-1"}, "v2", false);
  clock.advance(4min);
  nlohmann::json saved = up.toJson(clock.now(), clock.wallNow());
  // Down for 30 s; the next process's monotonic clock starts near zero.
  clock.advance(30s);
  const MonoTime restarted = clock.now();
  auto mono = [&] { return MonoTime{} + 7s + (clock.now() - restarted); };
  RollingUpgrade r;
  ASSERT_TRUE(r.restore(saved, mono(), clock.wallNow()).isOk());
  EXPECT_EQ(r.step(p.xs, mono(), clock.wallNow()).kind, K::kWaitHealthy);
  clock.advance(30s);  // 5 min since the batch was sent
  EXPECT_EQ(r.step(p.xs, mono(), clock.wallNow()).kind, K::kWaitHealthy);
  clock.advance(1s);
  UpgradeAction a = r.step(p.xs, mono(), clock.wallNow());
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_NE(a.reason.find("batch 1 of 5 not healthy at version v2 within 300s"), std::string::npos)
      << a.reason;
  EXPECT_EQ(a.ids, (Ids{"vm-1"}));
}

TEST_F(RollingUpgradeTest, RestoredPauseEndsWhenItWouldHave) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  step(p);
  up.onDrained(clock.now());
  UpgradeAction a = step(p);
  up.onBatchSent(clock.now());
  p.restart(a.ids, "v2", true);
  ASSERT_EQ(step(p).kind, K::kBatchDone);
  clock.advance(4s);
  up = reload(up, clock.now(), clock.wallNow());
  a = step(p);
  EXPECT_EQ(a.kind, K::kPause);
  EXPECT_EQ(a.until, clock.now() + 6s);
  clock.advance(6s);
  a = step(p);
  EXPECT_EQ(a.kind, K::kDrainBatch);
  EXPECT_EQ(a.ids, (Ids{"vm-2"}));
  EXPECT_EQ(a.batch_index, 1u);
  EXPECT_EQ(up.progress().instances_upgraded, 1u);
}

TEST_F(RollingUpgradeTest, RestoredUpgradeStillAbortsOnItsUpgradedInstances) {
  Pool p = fivePool();
  UpgradeRequest r = request("v2");
  r.max_unhealthy_upgraded = {0, false};
  r.max_unhealthy = {5, false};
  ASSERT_TRUE(up.start(r, p.xs, clock.now(), clock.wallNow()).isOk());
  for (int b = 0; b < 2; ++b) {
    UpgradeAction a = step(p);
    up.onDrained(clock.now());
    a = step(p);
    up.onBatchSent(clock.now());
    p.restart(a.ids, "v2", true);
    if (b == 0) {
      ASSERT_EQ(step(p).kind, K::kBatchDone);
      clock.advance(10s);
    }
  }
  up = reload(up, clock.now(), clock.wallNow());  // batch 2 in flight, vm-1 upgraded
  p.at("vm-1").healthy = false;
  p.at("vm-2").healthy = false;
  UpgradeAction a = step(p);
  ASSERT_EQ(a.kind, K::kAborted);
  EXPECT_NE(a.reason.find("upgraded instances unhealthy during batch 2"), std::string::npos)
      << a.reason;
  up = reload(up, clock.now(), clock.wallNow());
  EXPECT_EQ(step(p).kind, K::kNone);  // an aborted upgrade is not reported again
  EXPECT_EQ(up.progress().state, UpgradeState::kAborted);
  EXPECT_EQ(up.progress().reason, a.reason);
  EXPECT_TRUE(up.start(request("v3"), p.xs, clock.now(), clock.wallNow()).isOk());
}

TEST_F(RollingUpgradeTest, RestoreRefusesWhatIsNotASavedMachine) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  step(p);
  nlohmann::json good = up.toJson(clock.now(), clock.wallNow());
  auto refused = [&](nlohmann::json j, const std::string& what) {
    RollingUpgrade r = reload(up, clock.now(), clock.wallNow());
    Status st = r.restore(j, clock.now(), clock.wallNow());
    EXPECT_FALSE(st.isOk()) << j.dump();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
    EXPECT_EQ(r.progress().state, UpgradeState::kDraining);  // left as it was
  };
  nlohmann::json j = good;
  j["state"] = "exploding";
  refused(j, "unknown state");
  j = good;
  j["batch_count"] = 9;
  refused(j, "batch_count");
  j = good;
  j["batch_index"] = 5;
  j["batch_count"] = 5;
  refused(j, "batch_index");
  j = good;
  j.erase("upgraded");
  refused(j, "upgraded");
  j = good;
  j["current_batch"] = 3;
  refused(j, "");
  refused(nlohmann::json::array(), "not a JSON object");
}

// Found by tests/fuzz autoscale_state: a float where an integer belongs was converted with
// undefined behaviour (1e20 into uint32_t), and milliseconds far from now overflowed the
// nanosecond clocks. Both are refused now, naming what is wrong.
TEST_F(RollingUpgradeTest, RestoreRefusesNumbersOutOfRange) {
  Pool p = fivePool();
  ASSERT_TRUE(up.start(request("v2"), p.xs, clock.now(), clock.wallNow()).isOk());
  step(p);
  const nlohmann::json good = up.toJson(clock.now(), clock.wallNow());
  auto refused = [&](nlohmann::json j, const std::string& what) {
    RollingUpgrade r = reload(up, clock.now(), clock.wallNow());
    Status st = r.restore(j, clock.now(), clock.wallNow());
    ASSERT_FALSE(st.isOk()) << j.dump();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
    EXPECT_EQ(r.progress().state, UpgradeState::kDraining);  // left as it was
  };
  nlohmann::json j = good;
  j["instances_total"] = 1e20;
  refused(j, "expected an integer, but is number");
  j = good;
  j["batch_index"] = -1;
  refused(j, "-1 is outside 0..4294967295");
  j = good;
  j["request"]["batch"]["value"] = 4294967296;
  refused(j, "4294967296 is outside");
  j = good;
  j["request"]["pause_ms"] = -9.5e30;
  refused(j, "expected an integer");
  j = good;
  j["phase_started_unix_ms"] = INT64_MAX;
  refused(j, "is outside");
  j = good;
  j["started_at_unix_ms"] = UINT64_MAX;
  refused(j, "is outside");
  j = good;
  j["ended_at_unix_ms"] = -kMaxStateMillis - 1;
  refused(j, "is outside");
  // The limits themselves load (about 200 years either side of 1970).
  j = good;
  j["request"]["health_timeout_ms"] = kMaxStateMillis;
  j["ended_at_unix_ms"] = -kMaxStateMillis;
  RollingUpgrade r;
  EXPECT_TRUE(r.restore(j, clock.now(), clock.wallNow()).isOk());
}

}  // namespace
}  // namespace scalegate::control
