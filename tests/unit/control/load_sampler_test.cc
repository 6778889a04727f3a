#include "control/load_sampler.h"

#include <gtest/gtest.h>

#include "config/loader.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<const config::Config> configFrom(const std::string& yaml) {
  config::LoadResult r = config::loadConfigText(yaml, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.errorText();
  return std::make_shared<const config::Config>(std::move(r.config));
}

const std::vector<double>* metric(const PoolLoadSample& s, const std::string& name) {
  for (const auto& [n, v] : s.member_metrics)
    if (n == name) return &v;
  return nullptr;
}

double poolMetric(const PoolLoadSample& s, const std::string& name) {
  for (const auto& [n, v] : s.pool_metrics)
    if (n == name) return v;
  ADD_FAILURE() << "no pool metric " << name;
  return -1;
}

class LoadSamplerTest : public ::testing::Test {
 protected:
  void load(const std::string& mode) {
    registry_.applyConfig(configFrom(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    mode: )" + mode + R"(
    members:
      - { id: vm-0, address: 10.0.0.1:80, weight: 1 }
      - { id: vm-1, address: 10.0.0.2:80, weight: )" +
                                     (mode == "flexible" ? "3" : "1") + R"( }
      - { id: vm-2, address: 10.0.0.3:80, weight: 1 }
)"));
  }
  MemberRecord& member(const char* id) { return *registry_.findPool("web")->find(id); }
  l7proxy::MemberWorkerStats& slot(const char* id, int worker = 0) {
    return member(id).stats->per_worker[static_cast<size_t>(worker)];
  }

  ManualClock clock_;
  PoolRegistry registry_{2, clock_};
  LoadSampler sampler_;
};

TEST_F(LoadSamplerTest, FirstSampleOnlyPrimesThenRatesPerSecond) {
  load("uniform");
  auto first = sampler_.sample(registry_, clock_.now());
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(first[0].member_metrics.empty());

  slot("vm-0", 0).rq_total.inc(100);
  slot("vm-0", 1).rq_total.inc(100);
  slot("vm-1").rq_total.inc(50);
  slot("vm-0").responses_by_class[2].inc(190);
  slot("vm-0").responses_by_class[5].inc(10);
  slot("vm-1").responses_by_class[2].inc(50);
  slot("vm-0").bytes_out.inc(4000);
  clock_.advance(2s);
  auto s = sampler_.sample(registry_, clock_.now());
  const std::vector<double>* rps = metric(s[0], "requests_per_second");
  ASSERT_NE(rps, nullptr);
  ASSERT_EQ(rps->size(), 3u);
  EXPECT_DOUBLE_EQ((*rps)[0], 100.0);  // 200 over 2 s, summed over both workers
  EXPECT_DOUBLE_EQ((*rps)[1], 25.0);
  EXPECT_DOUBLE_EQ((*rps)[2], 0.0);
  EXPECT_DOUBLE_EQ((*metric(s[0], "bytes_out_per_second"))[0], 2000.0);
  EXPECT_DOUBLE_EQ(s[0].requests_per_second, 125.0);
  EXPECT_NEAR(poolMetric(s[0], "error_rate"), 100.0 * 10 / 250, 1e-9);
  EXPECT_EQ(s[0].members_in_service, 3u);
}

TEST_F(LoadSamplerTest, MembersNotInServiceAreLeftOutOfPerMemberStatistics) {
  load("uniform");
  member("vm-0").load = {{"cpu", 0.8}, {"queue", 7}};
  member("vm-1").load = {{"cpu", 40}};
  member("vm-2").load = {{"cpu", 0.99}};
  ASSERT_TRUE(registry_.drainMember("web", "vm-2", std::nullopt).isOk());
  sampler_.sample(registry_, clock_.now());
  clock_.advance(1s);
  auto s = sampler_.sample(registry_, clock_.now());
  const std::vector<double>* cpu = metric(s[0], "cpu");
  ASSERT_NE(cpu, nullptr);
  ASSERT_EQ(cpu->size(), 2u);  // vm-2 drains: not counted
  EXPECT_DOUBLE_EQ((*cpu)[0], 80.0);
  EXPECT_DOUBLE_EQ((*cpu)[1], 40.0);
  ASSERT_NE(metric(s[0], "queue"), nullptr);
  EXPECT_EQ(metric(s[0], "queue")->size(), 1u);
  EXPECT_EQ(s[0].members_in_service, 2u);
}

TEST_F(LoadSamplerTest, FlexiblePoolsNormaliseRequestRatesByWeight) {
  load("flexible");
  sampler_.sample(registry_, clock_.now());
  slot("vm-0").rq_total.inc(100);  // weight 1
  slot("vm-1").rq_total.inc(300);  // weight 3: three times the traffic, equally loaded
  slot("vm-2").rq_total.inc(100);
  clock_.advance(1s);
  auto s = sampler_.sample(registry_, clock_.now());
  const std::vector<double>* rps = metric(s[0], "requests_per_second");
  ASSERT_NE(rps, nullptr);
  ASSERT_EQ(rps->size(), 3u);
  // mean weight 5/3: each member's rate scaled by mean/weight.
  EXPECT_NEAR((*rps)[0], 100.0 * 5 / 3, 1e-9);
  EXPECT_NEAR((*rps)[1], 300.0 * 5 / 9, 1e-9);
  EXPECT_NEAR((*rps)[0], (*rps)[1], 1e-9);
}

TEST(HistogramQuantile, InterpolatesInsideTheBucket) {
  std::vector<uint64_t> counts(l7proxy::kDurationBuckets.size() + 1, 0);
  EXPECT_EQ(histogramQuantileMs(counts, 0.95), 0.0);
  counts[1] = 100;  // all in (0.5 ms, 1 ms]
  EXPECT_NEAR(histogramQuantileMs(counts, 0.5), 0.75, 1e-9);
  counts[6] = 100;  // (25 ms, 50 ms]
  EXPECT_NEAR(histogramQuantileMs(counts, 0.95), 25.0 + 25.0 * 0.9, 1e-9);
  EXPECT_NEAR(histogramQuantileMs(counts, 0.25), 0.75, 1e-9);
}

TEST(AsPercent, FractionsBecomePercents) {
  EXPECT_DOUBLE_EQ(asPercent(0.5), 50.0);
  EXPECT_DOUBLE_EQ(asPercent(1.0), 100.0);
  EXPECT_DOUBLE_EQ(asPercent(75.0), 75.0);
}

}  // namespace
}  // namespace scalegate::control
