// Outlier detection (control side) and the snapshot's low-health policy, over a real
// PoolRegistry whose stats blocks are written the way workers write them.
#include <gtest/gtest.h>

#include "config/loader.h"
#include "control/outlier.h"
#include "control/pool_registry.h"
#include "control/snapshot_builder.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const config::Config> loadCfg(const std::string& yaml) {
  config::LoadResult r = config::loadConfigText(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.errorText();
  return std::make_shared<const config::Config>(std::move(r.config));
}

std::string poolYaml(int members, const std::string& extra) {
  std::string y =
      "listeners:\n  - { name: web, listen: 127.0.0.1:18080, routes: [ { pool: web } ] }\n"
      "pools:\n  web:\n" +
      extra + "    members:\n";
  for (int i = 0; i < members; ++i) {
    y += "      - { id: m" + std::to_string(i) +
         ", address: 127.0.0.1:" + std::to_string(19000 + i) + " }\n";
  }
  return y;
}

void signal(MemberRecord& m, uint64_t n) { m.stats->per_worker[0].outlier_signals.inc(n); }

TEST(OutlierTest, SignalEjectsWithGrowingBackoffAndReturns) {
  ManualClock clock;
  PoolRegistry reg(2, clock);
  reg.applyConfig(loadCfg(poolYaml(
      10, "    outlier: { base_ejection: 10s, max_ejection: 25s, max_ejection_percent: 50 }\n")));
  PoolRecord* pool = reg.findPool("web");
  MemberRecord* m = pool->find("m3");
  ASSERT_NE(m, nullptr);
  uint64_t v0 = reg.version();
  EXPECT_FALSE(runOutlierDetection(reg, clock.now()));  // no signal, nothing happens
  signal(*m, 1);
  EXPECT_TRUE(runOutlierDetection(reg, clock.now()));
  EXPECT_TRUE(m->ejected);
  EXPECT_EQ(m->ejections, 1u);
  EXPECT_GT(reg.version(), v0);
  EXPECT_EQ(m->ejected_until, clock.now() + 10s);
  // The same signal is not acted on twice.
  EXPECT_FALSE(runOutlierDetection(reg, clock.now() + 1s));
  // Back after 10 s, with slow start from then.
  clock.advance(10s);
  EXPECT_TRUE(runOutlierDetection(reg, clock.now()));
  EXPECT_FALSE(m->ejected);
  EXPECT_EQ(m->ready_since, clock.now());
  // Second ejection: 20 s; third: capped at 25 s.
  signal(*m, 1);
  runOutlierDetection(reg, clock.now());
  EXPECT_EQ(m->ejected_until, clock.now() + 20s);
  clock.advance(20s);
  runOutlierDetection(reg, clock.now());
  signal(*m, 1);
  runOutlierDetection(reg, clock.now());
  EXPECT_EQ(m->ejected_until, clock.now() + 25s);
  bool saw_ejected = false;
  for (const Event& e : reg.events()) saw_ejected |= e.type == "ejected" && e.member == "m3";
  EXPECT_TRUE(saw_ejected);
}

TEST(OutlierTest, MaxEjectionPercentBounds) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(loadCfg(poolYaml(10, "    outlier: { max_ejection_percent: 20 }\n")));
  PoolRecord* pool = reg.findPool("web");
  for (MemberRecord& m : pool->members) signal(m, 1);
  runOutlierDetection(reg, clock.now());
  int ejected = 0;
  for (const MemberRecord& m : pool->members) ejected += m.ejected ? 1 : 0;
  EXPECT_EQ(ejected, 2);  // 20% of 10
}

TEST(OutlierTest, AtLeastOneMayBeEjectedAndDisabledMeansNever) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(loadCfg(poolYaml(3, "    outlier: { max_ejection_percent: 10 }\n")));
  for (MemberRecord& m : reg.findPool("web")->members) signal(m, 1);
  runOutlierDetection(reg, clock.now());
  int ejected = 0;
  for (const MemberRecord& m : reg.findPool("web")->members) ejected += m.ejected ? 1 : 0;
  EXPECT_EQ(ejected, 1);

  PoolRegistry off(1, clock);
  off.applyConfig(loadCfg(poolYaml(3, "    outlier: { enabled: false }\n")));
  for (MemberRecord& m : off.findPool("web")->members) signal(m, 5);
  runOutlierDetection(off, clock.now());
  for (const MemberRecord& m : off.findPool("web")->members) EXPECT_FALSE(m.ejected);
}

TEST(SnapshotBuilderTest, EjectedAndUnhealthyMembersTakeNoTraffic) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(loadCfg(poolYaml(4, "    low_health: { threshold_percent: 25 }\n")));
  PoolRecord* pool = reg.findPool("web");
  pool->find("m0")->ejected = true;
  auto snap = buildSnapshot(reg, 1, {}, {});
  ASSERT_EQ(snap->pools.size(), 1u);
  const config::PoolState& ps = snap->pools[0];
  EXPECT_FALSE(ps.panic);
  EXPECT_FALSE(ps.members[0].healthy);
  EXPECT_TRUE(ps.members[1].healthy);
  EXPECT_NE(ps.members[1].stats, nullptr);
  EXPECT_EQ(ps.stats, pool->stats);
}

TEST(SnapshotBuilderTest, BelowThresholdSpreadsOverAllByDefault) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(loadCfg(poolYaml(4, "")));  // default: 50%, spread_all
  PoolRecord* pool = reg.findPool("web");
  pool->find("m0")->ejected = true;
  pool->find("m1")->ejected = true;
  auto ok = buildSnapshot(reg, 1, {}, {});  // 2 of 4 = 50%: not below
  EXPECT_FALSE(ok->pools[0].panic);
  EXPECT_FALSE(ok->pools[0].members[0].healthy);
  pool->find("m2")->ejected = true;  // 1 of 4 = 25% < 50%
  auto panic = buildSnapshot(reg, 2, {}, {});
  EXPECT_TRUE(panic->pools[0].panic);
  EXPECT_FALSE(panic->pools[0].refuse);
  for (const auto& m : panic->pools[0].members) EXPECT_TRUE(m.healthy);
}

TEST(SnapshotBuilderTest, BelowThresholdRefusesWhenConfigured) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(
      loadCfg(poolYaml(2, "    low_health: { threshold_percent: 100, action: refuse }\n")));
  reg.findPool("web")->find("m1")->ejected = true;
  auto snap = buildSnapshot(reg, 1, {}, {});
  EXPECT_TRUE(snap->pools[0].refuse);
  EXPECT_FALSE(snap->pools[0].panic);
}

TEST(SnapshotBuilderTest, MemberJoiningWhileRunningWaitsForItsProbes) {
  ManualClock clock;
  PoolRegistry reg(1, clock);
  reg.applyConfig(loadCfg(poolYaml(2, "    health: { type: http, path: /health }\n")));
  PoolRecord* pool = reg.findPool("web");
  // Present at start (ready_since zero): the configured initial state (healthy) applies.
  pool->find("m0")->ready_since = MonoTime{};
  // Joined later and not probed yet: no traffic until its probes say healthy.
  pool->find("m1")->ready_since = clock.now();
  auto snap = buildSnapshot(reg, 1, {}, {});
  EXPECT_TRUE(snap->pools[0].members[0].healthy);
  EXPECT_FALSE(snap->pools[0].members[1].healthy);
  pool->find("m1")->health = HealthState::kHealthy;
  snap = buildSnapshot(reg, 2, {}, {});
  EXPECT_TRUE(snap->pools[0].members[1].healthy);
}

TEST(SnapshotBuilderTest, ListenerStatsSurviveReload) {
  ListenerStatsTable t(2);
  auto cfg = loadCfg(poolYaml(1, ""));
  auto a = t.resolve(*cfg);
  auto b = t.resolve(*cfg);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[0]->per_worker.size(), 2u);
}

}  // namespace
}  // namespace scalegate::control
