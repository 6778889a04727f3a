#include "l7proxy/balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/hash.h"

namespace scalegate::l7proxy {
namespace {

using config::BalanceAlgorithm;
using namespace std::chrono_literals;

const MonoTime kNow = MonoTime{} + 10000s;

struct Members {
  std::vector<std::string> ids;
  std::vector<MemberView> views;
};

Members makeMembers(const std::vector<uint32_t>& weights) {
  Members m;
  m.ids.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) m.ids.push_back("vm-" + std::to_string(i));
  for (size_t i = 0; i < weights.size(); ++i) {
    m.views.push_back(MemberView{weights[i], true, MonoTime{}, m.ids[i]});
  }
  return m;
}

PickInput at(MonoTime now) {
  PickInput in;
  in.now = now;
  return in;
}

std::vector<int> countPicks(Balancer& b, size_t n, int picks, PickInput in = at(kNow)) {
  std::vector<int> counts(n, 0);
  for (int i = 0; i < picks; ++i) {
    int32_t m = b.pick(in);
    EXPECT_GE(m, 0);
    if (m >= 0) ++counts[m];
  }
  return counts;
}

// Pearson chi-square of counts against weights.
double chiSquare(const std::vector<int>& counts, const std::vector<double>& weights) {
  double total = 0;
  double weight_sum = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    total += counts[i];
    weight_sum += weights[i];
  }
  double chi2 = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (weights[i] == 0) {
      EXPECT_EQ(counts[i], 0);
      continue;
    }
    const double expected = total * weights[i] / weight_sum;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

// --- slow start --------------------------------------------------------------------------

TEST(SlowStartTest, FactorAlongTheWindow) {
  const MonoTime ready = kNow;
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready, 60s), 0.1);
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready + 30s, 60s), 0.55);
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready + 60s, 60s), 1.0);
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready + 600s, 60s), 1.0);
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready - 5s, 60s), 0.1);
  EXPECT_DOUBLE_EQ(slowStartFactor(ready, ready, 0s), 1.0);
  EXPECT_DOUBLE_EQ(slowStartFactor(MonoTime{}, kNow, 60s), 1.0);
  EXPECT_EQ(slowStartPermille(ready, ready, 60s), 100u);
  EXPECT_EQ(slowStartPermille(ready, ready + 30s, 60s), 550u);
  EXPECT_EQ(slowStartPermille(ready, ready + 60s, 60s), 1000u);
  EXPECT_EQ(slowStartPermille(ready, ready + 15s, 60s), 325u);
}

TEST(SlowStartTest, NewMemberGetsTenPercentUnderRoundRobin) {
  Members m = makeMembers({1, 1, 1});
  m.views[2].ready_since = kNow;  // just became ready
  auto b = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 60s, 1);
  std::vector<int> counts = countPicks(*b, 3, 21000);
  EXPECT_EQ(counts[0], 10000);
  EXPECT_EQ(counts[1], 10000);
  EXPECT_EQ(counts[2], 1000);  // 0.1 of a full member's share

  // Half way through the window it has 55% of a full member's weight.
  auto half = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 60s, 1);
  counts = countPicks(*half, 3, 25500, at(kNow + 30s));
  EXPECT_EQ(counts[0], 10000);
  EXPECT_EQ(counts[2], 5500);

  // After the window it is a full member.
  counts = countPicks(*half, 3, 30000, at(kNow + 61s));
  EXPECT_NEAR(counts[2], 10000, 2);
}

TEST(SlowStartTest, RampsRandomAndLeastRequest) {
  Members m = makeMembers({1, 1});
  m.views[1].ready_since = kNow;
  for (auto algo : {BalanceAlgorithm::kRandom, BalanceAlgorithm::kLeastRequest}) {
    auto b = Balancer::create(algo, m.views, nullptr, 100s, 9);
    std::vector<int> counts = countPicks(*b, 2, 110000);
    EXPECT_LT(chiSquare(counts, {1.0, 0.1}), 15.0);  // 1 dof
  }
}

// --- round robin -------------------------------------------------------------------------

TEST(RoundRobinTest, SmoothWeightedSequence) {
  Members m = makeMembers({5, 1, 1});
  auto b = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 0s, 1);
  std::vector<int32_t> seq;
  for (int i = 0; i < 14; ++i) seq.push_back(b->pick(at(kNow)));
  EXPECT_EQ(seq, (std::vector<int32_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobinTest, EqualWeightsCycle) {
  Members m = makeMembers({1, 1, 1, 1});
  auto b = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 0s, 1);
  for (int round = 0; round < 5; ++round) {
    for (int32_t i = 0; i < 4; ++i) EXPECT_EQ(b->pick(at(kNow)), i);
  }
}

TEST(RoundRobinTest, ExactProportions) {
  Members m = makeMembers({3, 7, 1, 9});
  auto b = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 0s, 1);
  std::vector<int> counts = countPicks(*b, 4, 20 * 1000);
  EXPECT_EQ(counts, (std::vector<int>{3000, 7000, 1000, 9000}));
}

TEST(RoundRobinTest, IneligibleMembersNeverPicked) {
  Members m = makeMembers({2, 1, 0, 3, 1});
  m.views[1].healthy = false;
  auto b = Balancer::create(BalanceAlgorithm::kRoundRobin, m.views, nullptr, 0s, 1);
  const int32_t exclude[] = {4};
  PickInput in = at(kNow);
  in.exclude = exclude;
  in.exclude_count = 1;
  std::vector<int> counts = countPicks(*b, 5, 5000, in);
  EXPECT_EQ(counts, (std::vector<int>{2000, 0, 0, 3000, 0}));
}

TEST(AllAlgorithmsTest, MinusOneWhenNothingEligible) {
  Members m = makeMembers({1, 0, 1, 1});
  m.views[0].healthy = false;
  const int32_t exclude[] = {2, 3};
  for (auto algo :
       {BalanceAlgorithm::kRoundRobin, BalanceAlgorithm::kLeastRequest, BalanceAlgorithm::kRandom,
        BalanceAlgorithm::kMaglev, BalanceAlgorithm::kRingHash}) {
    HashTables tables = HashTables::build(algo, m.views, 251);
    auto b = Balancer::create(algo, m.views, &tables, 0s, 1);
    PickInput in = at(kNow);
    in.exclude = exclude;
    in.exclude_count = 2;
    uint32_t active[4] = {0, 0, 0, 0};
    in.active = active;
    for (uint64_t h = 0; h < 100; ++h) {
      in.hash = mix64(h);
      EXPECT_EQ(b->pick(in), -1) << static_cast<int>(algo);
    }
    in.exclude_count = 1;  // member 3 is eligible again
    for (uint64_t h = 0; h < 100; ++h) {
      in.hash = mix64(h);
      EXPECT_EQ(b->pick(in), 3);
    }
  }
  Members empty;
  for (auto algo :
       {BalanceAlgorithm::kRoundRobin, BalanceAlgorithm::kLeastRequest, BalanceAlgorithm::kRandom,
        BalanceAlgorithm::kMaglev, BalanceAlgorithm::kRingHash}) {
    HashTables tables = HashTables::build(algo, empty.views, 65537);
    auto b = Balancer::create(algo, empty.views, &tables, 0s, 1);
    EXPECT_EQ(b->pick(at(kNow)), -1);
  }
}

// --- least request -----------------------------------------------------------------------

TEST(LeastRequestTest, BusyMemberGetsFarFewerPicks) {
  Members m = makeMembers({1, 1, 1, 1});
  auto b = Balancer::create(BalanceAlgorithm::kLeastRequest, m.views, nullptr, 0s, 3);
  uint32_t active[4] = {2, 2, 50, 2};
  PickInput in = at(kNow);
  in.active = active;
  std::vector<int> counts = countPicks(*b, 4, 40000, in);
  // Member 2 wins only when drawn twice, which P2C with distinct draws never does.
  EXPECT_EQ(counts[2], 0);
  for (int i : {0, 1, 3}) EXPECT_NEAR(counts[i], 40000 / 3.0, 600);

  // Feedback loop: picks add load, completions remove it; the loads stay close together.
  uint32_t live[4] = {0, 0, 0, 0};
  in.active = live;
  for (int i = 0; i < 20000; ++i) {
    int32_t chosen = b->pick(in);
    ASSERT_GE(chosen, 0);
    ++live[chosen];
    if (i % 4 == 3) {
      for (uint32_t& a : live) a = a > 0 ? a - 1 : 0;
    }
  }
  auto [lo, hi] = std::minmax_element(std::begin(live), std::end(live));
  EXPECT_LE(*hi - *lo, 3u);
}

TEST(LeastRequestTest, EqualLoadSplitsEvenly) {
  Members m = makeMembers({1, 1, 1, 1, 1});
  auto b = Balancer::create(BalanceAlgorithm::kLeastRequest, m.views, nullptr, 0s, 5);
  uint32_t active[5] = {4, 4, 4, 4, 4};
  PickInput in = at(kNow);
  in.active = active;
  std::vector<int> counts = countPicks(*b, 5, 100000, in);
  EXPECT_LT(chiSquare(counts, {1, 1, 1, 1, 1}), 25.0);  // 4 dof, p ~ 5e-5
}

TEST(LeastRequestTest, UsesLoadPerWeight) {
  Members m = makeMembers({4, 1});
  auto b = Balancer::create(BalanceAlgorithm::kLeastRequest, m.views, nullptr, 0s, 5);
  uint32_t active[2] = {6, 2};  // 1.5 per weight vs 2 per weight: member 0 is less loaded
  PickInput in = at(kNow);
  in.active = active;
  std::vector<int> counts = countPicks(*b, 2, 1000, in);
  EXPECT_EQ(counts[0], 1000);
}

TEST(LeastRequestTest, WithoutActiveCountsIsWeightedRandom) {
  Members m = makeMembers({1, 2, 3});
  auto b = Balancer::create(BalanceAlgorithm::kLeastRequest, m.views, nullptr, 0s, 5);
  std::vector<int> counts = countPicks(*b, 3, 60000);
  EXPECT_LT(chiSquare(counts, {1, 2, 3}), 20.0);
}

TEST(LeastRequestTest, ExcludedAndUnhealthyNeverPicked) {
  Members m = makeMembers({1, 1, 1, 1});
  m.views[0].healthy = false;
  auto b = Balancer::create(BalanceAlgorithm::kLeastRequest, m.views, nullptr, 0s, 5);
  uint32_t active[4] = {0, 9, 9, 0};
  const int32_t exclude[] = {3};
  PickInput in = at(kNow);
  in.active = active;
  in.exclude = exclude;
  in.exclude_count = 1;
  std::vector<int> counts = countPicks(*b, 4, 10000, in);
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[3], 0);
  EXPECT_NEAR(counts[1], 5000, 300);
}

// --- random ------------------------------------------------------------------------------

TEST(RandomTest, WeightedProportionsChiSquare) {
  Members m = makeMembers({1, 2, 3, 4, 0, 10});
  m.views[3].healthy = false;
  auto b = Balancer::create(BalanceAlgorithm::kRandom, m.views, nullptr, 0s, 77);
  std::vector<int> counts = countPicks(*b, 6, 200000);
  EXPECT_EQ(counts[3], 0);
  EXPECT_EQ(counts[4], 0);
  // 3 degrees of freedom (4 nonzero buckets); 25 is p < 2e-5.
  EXPECT_LT(chiSquare(counts, {1, 2, 3, 0, 0, 10}), 25.0);
}

TEST(RandomTest, ReproducibleFromSeed) {
  Members m = makeMembers({1, 1, 1, 1, 1, 1, 1, 1});
  auto a = Balancer::create(BalanceAlgorithm::kRandom, m.views, nullptr, 0s, 1234);
  auto b = Balancer::create(BalanceAlgorithm::kRandom, m.views, nullptr, 0s, 1234);
  auto c = Balancer::create(BalanceAlgorithm::kRandom, m.views, nullptr, 0s, 4321);
  int differ = 0;
  for (int i = 0; i < 1000; ++i) {
    int32_t x = a->pick(at(kNow));
    EXPECT_EQ(x, b->pick(at(kNow)));
    differ += x != c->pick(at(kNow));
  }
  EXPECT_GT(differ, 500);
}

// --- maglev ------------------------------------------------------------------------------

TEST(MaglevBalancerTest, TableMapsToMemberIndexesAndSpreadsKeys) {
  Members m = makeMembers({1, 1, 0, 1, 2});
  m.views[1].healthy = false;
  HashTables tables = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 65537);
  ASSERT_EQ(tables.maglev.size(), 65537u);
  EXPECT_TRUE(tables.ring.empty());
  std::vector<int> slots(5, 0);
  for (int32_t e : tables.maglev) ++slots[e];
  EXPECT_EQ(slots[1], 0);
  EXPECT_EQ(slots[2], 0);
  EXPECT_NEAR(slots[4], 2.0 * slots[0], slots[0] * 0.05);

  auto b = Balancer::create(BalanceAlgorithm::kMaglev, m.views, &tables, 0s, 1);
  std::vector<int> counts(5, 0);
  PickInput in = at(kNow);
  for (uint64_t k = 0; k < 100000; ++k) {
    in.hash = hashString("client-" + std::to_string(k));
    ++counts[b->pick(in)];
  }
  EXPECT_LT(chiSquare(counts, {1, 0, 0, 1, 2}), 20.0);
}

TEST(MaglevBalancerTest, SameHashSameMemberAcrossBalancers) {
  Members m = makeMembers({1, 1, 1, 1, 1, 1});
  HashTables t1 = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 65537);
  HashTables t2 = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 65537);
  EXPECT_EQ(t1.maglev, t2.maglev);
  auto a = Balancer::create(BalanceAlgorithm::kMaglev, m.views, &t1, 0s, 1);
  auto b = Balancer::create(BalanceAlgorithm::kMaglev, m.views, &t2, 0s, 2);
  PickInput in = at(kNow);
  for (uint64_t k = 0; k < 5000; ++k) {
    in.hash = mix64(k);
    EXPECT_EQ(a->pick(in), b->pick(in));
    EXPECT_EQ(a->pick(in), t1.maglev[in.hash % t1.maglev.size()]);
  }
}

TEST(MaglevBalancerTest, IneligibleMemberKeysSpreadAndOthersStay) {
  const int n = 8;
  Members m = makeMembers(std::vector<uint32_t>(n, 1));
  HashTables tables = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 65537);
  auto b = Balancer::create(BalanceAlgorithm::kMaglev, m.views, &tables, 0s, 1);
  const int32_t exclude[] = {5};
  std::vector<int> spread(n, 0);
  for (uint64_t k = 0; k < 80000; ++k) {
    PickInput in = at(kNow);
    in.hash = mix64(k);
    const int32_t first = b->pick(in);
    in.exclude = exclude;
    in.exclude_count = 1;
    const int32_t retry = b->pick(in);
    ASSERT_NE(retry, 5);
    if (first != 5) {
      ASSERT_EQ(retry, first);  // keys of other members do not move
    } else {
      ++spread[retry];
      EXPECT_EQ(b->pick(in), retry);  // the fallback is deterministic
    }
  }
  // The excluded member's ~10000 keys are spread over the other 7, not piled onto one.
  for (int i = 0; i < n; ++i) {
    if (i == 5) continue;
    EXPECT_NEAR(spread[i], 10000 / 7.0, 300) << i;
  }
}

TEST(MaglevBalancerTest, BadTableSizeIsRaisedToAPrime) {
  Members m = makeMembers({1, 1, 1});
  HashTables tables = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 1000);
  EXPECT_EQ(tables.maglev.size(), 1009u);
  tables = HashTables::build(BalanceAlgorithm::kMaglev, m.views, 2);
  EXPECT_EQ(tables.maglev.size(), 5u);
}

TEST(MaglevBalancerTest, WithoutTablesFallsBackToHashOverMembers) {
  Members m = makeMembers({1, 1, 1});
  auto b = Balancer::create(BalanceAlgorithm::kMaglev, m.views, nullptr, 0s, 1);
  PickInput in = at(kNow);
  std::vector<int> counts(3, 0);
  for (uint64_t k = 0; k < 30000; ++k) {
    in.hash = k;
    int32_t chosen = b->pick(in);
    ASSERT_GE(chosen, 0);
    EXPECT_EQ(chosen, b->pick(in));
    ++counts[chosen];
  }
  EXPECT_LT(chiSquare(counts, {1, 1, 1}), 20.0);
}

// --- ring hash ---------------------------------------------------------------------------

// Share of the 64-bit hash space owned by each member: exact arc lengths.
std::vector<double> ringShares(const HashTables& t, size_t n) {
  std::vector<double> share(n, 0);
  const auto& ring = t.ring;
  for (size_t i = 0; i < ring.size(); ++i) {
    const uint64_t prev = i == 0 ? ring.back().first : ring[i - 1].first;
    const uint64_t arc = ring[i].first - prev;  // wraps correctly for i == 0
    share[ring[i].second] += static_cast<double>(arc) / 18446744073709551616.0;
  }
  return share;
}

TEST(RingHashTest, SharesFollowWeights) {
  for (const std::vector<uint32_t>& weights :
       {std::vector<uint32_t>{1, 1, 1, 1}, std::vector<uint32_t>{1, 2, 3, 4},
        std::vector<uint32_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        std::vector<uint32_t>(40, 1), std::vector<uint32_t>{10, 10, 30}}) {
    Members m = makeMembers(weights);
    HashTables t = HashTables::build(BalanceAlgorithm::kRingHash, m.views, 0);
    EXPECT_TRUE(t.maglev.empty());
    ASSERT_GE(t.ring.size(), kRingMinPoints);
    EXPECT_TRUE(std::is_sorted(t.ring.begin(), t.ring.end()));
    double total = 0;
    for (uint32_t w : weights) total += w;
    std::vector<double> share = ringShares(t, weights.size());

    auto b = Balancer::create(BalanceAlgorithm::kRingHash, m.views, &t, 0s, 1);
    std::vector<int> picks(weights.size(), 0);
    PickInput in = at(kNow);
    const int keys = 200000;
    for (int k = 0; k < keys; ++k) {
      in.hash = mix64(static_cast<uint64_t>(k));
      ++picks[b->pick(in)];
    }
    for (size_t i = 0; i < weights.size(); ++i) {
      const double expected = weights[i] / total;
      EXPECT_NEAR(share[i], expected, expected * 0.15) << "member " << i;
      EXPECT_NEAR(static_cast<double>(picks[i]) / keys, expected, expected * 0.15)
          << "member " << i;
    }
  }
}

TEST(RingHashTest, PointCountsScaleWithWeight) {
  Members m = makeMembers({1, 3, 0, 1});
  m.views[3].healthy = false;
  HashTables t = HashTables::build(BalanceAlgorithm::kRingHash, m.views, 0);
  std::vector<int> points(4, 0);
  for (const auto& [point, member] : t.ring) ++points[member];
  EXPECT_EQ(points[2], 0);
  EXPECT_EQ(points[3], 0);
  EXPECT_EQ(points[1], 3 * points[0]);
  EXPECT_GE(points[0], 100);
  EXPECT_GE(t.ring.size(), kRingMinPoints);
}

TEST(RingHashTest, RemovingAMemberMovesOnlyItsKeys) {
  const int n = 10;
  Members all = makeMembers(std::vector<uint32_t>(n, 1));
  Members fewer = all;
  fewer.views.clear();
  for (int i = 0; i < n; ++i) {
    fewer.views.push_back(MemberView{1, i != 6, MonoTime{}, fewer.ids[i]});
  }
  HashTables before = HashTables::build(BalanceAlgorithm::kRingHash, all.views, 0);
  HashTables after = HashTables::build(BalanceAlgorithm::kRingHash, fewer.views, 0);
  auto b1 = Balancer::create(BalanceAlgorithm::kRingHash, all.views, &before, 0s, 1);
  auto b2 = Balancer::create(BalanceAlgorithm::kRingHash, fewer.views, &after, 0s, 1);
  int moved = 0;
  PickInput in = at(kNow);
  for (uint64_t k = 0; k < 100000; ++k) {
    in.hash = mix64(k);
    const int32_t x = b1->pick(in);
    const int32_t y = b2->pick(in);
    ASSERT_NE(y, 6);
    if (x != 6) {
      ASSERT_EQ(x, y) << "key " << k;
    } else {
      ++moved;
    }
  }
  EXPECT_NEAR(moved, 10000, 1500);

  // Excluding the member at pick time moves exactly the same keys to the same places.
  const int32_t exclude[] = {6};
  in.exclude = exclude;
  in.exclude_count = 1;
  for (uint64_t k = 0; k < 100000; ++k) {
    in.hash = mix64(k);
    ASSERT_EQ(b1->pick(in), b2->pick(in));
  }
}

TEST(RingHashTest, WrapsAroundPastTheLastPoint) {
  Members m = makeMembers({1, 1, 1});
  HashTables t = HashTables::build(BalanceAlgorithm::kRingHash, m.views, 0);
  auto b = Balancer::create(BalanceAlgorithm::kRingHash, m.views, &t, 0s, 1);
  PickInput in = at(kNow);
  in.hash = ~uint64_t{0};
  if (t.ring.back().first != in.hash) {
    EXPECT_EQ(b->pick(in), t.ring.front().second);
  }
  in.hash = t.ring.back().first + 1;  // between the last point and the end of the space
  if (in.hash != 0) {
    EXPECT_EQ(b->pick(in), t.ring.front().second);
  }
  in.hash = 0;
  EXPECT_EQ(b->pick(in), t.ring.front().second);
}

}  // namespace
}  // namespace scalegate::l7proxy
