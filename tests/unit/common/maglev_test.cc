#include "common/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace scalegate {
namespace {

constexpr uint32_t kM = 65537;

struct Pool {
  std::vector<std::string> names;
  std::vector<MaglevBackend> backends;
};

// Names are kept in `names` so the string_views in `backends` stay valid.
Pool makePool(int n, const std::string& prefix = "vm-") {
  Pool pool;
  pool.names.reserve(n);
  for (int i = 0; i < n; ++i) pool.names.push_back(prefix + std::to_string(i));
  for (const auto& name : pool.names) pool.backends.push_back(MaglevBackend{name, 1});
  return pool;
}

std::vector<int> slotCounts(const std::vector<int32_t>& table, size_t n) {
  std::vector<int> counts(n, 0);
  for (int32_t e : table) {
    EXPECT_GE(e, 0);
    EXPECT_LT(e, static_cast<int32_t>(n));
    if (e >= 0 && e < static_cast<int32_t>(n)) ++counts[e];
  }
  return counts;
}

TEST(MaglevTest, IsPrime) {
  for (uint32_t p : {2u, 3u, 5u, 7u, 13u, 251u, 4093u, 16381u, 65521u, 65537u, 655373u, 5000011u,
                     2147483647u, 4294967291u}) {
    EXPECT_TRUE(isPrime(p)) << p;
  }
  for (uint32_t c : {0u, 1u, 4u, 9u, 15u, 25u, 49u, 65535u, 65536u, 4294967295u, 65537u * 3u,
                     2147483647u - 2u, 4294967291u - 2u}) {
    EXPECT_FALSE(isPrime(c)) << c;
  }
  // Agrees with a sieve below 10000.
  std::vector<bool> composite(10000, false);
  for (uint32_t i = 2; i < 10000; ++i) {
    if (!composite[i]) {
      for (uint32_t j = i * i; j < 10000; j += i) composite[j] = true;
    }
    EXPECT_EQ(isPrime(i), !composite[i]) << i;
  }
}

TEST(MaglevTest, NextPrime) {
  EXPECT_EQ(nextPrime(0), 2u);
  EXPECT_EQ(nextPrime(2), 2u);
  EXPECT_EQ(nextPrime(8), 11u);
  EXPECT_EQ(nextPrime(65536), 65537u);
  EXPECT_EQ(nextPrime(65537), 65537u);
  EXPECT_EQ(nextPrime(4294967291u), 4294967291u);
  EXPECT_EQ(nextPrime(4294967292u), 0u);
}

TEST(MaglevTest, PreconditionsAndEdgeCases) {
  Pool pool = makePool(3);
  EXPECT_TRUE(buildMaglevTable(pool.backends, 65536).empty());  // not prime
  EXPECT_TRUE(buildMaglevTable(pool.backends, 3).empty());      // not > N
  EXPECT_TRUE(buildMaglevTable(pool.backends, 0).empty());

  std::vector<int32_t> none = buildMaglevTable({}, 251);
  ASSERT_EQ(none.size(), 251u);
  EXPECT_TRUE(std::all_of(none.begin(), none.end(), [](int32_t e) { return e == -1; }));

  for (auto& b : pool.backends) b.weight = 0;
  std::vector<int32_t> zero = buildMaglevTable(pool.backends, 251);
  ASSERT_EQ(zero.size(), 251u);
  EXPECT_TRUE(std::all_of(zero.begin(), zero.end(), [](int32_t e) { return e == -1; }));

  pool.backends[1].weight = 5;
  std::vector<int32_t> one = buildMaglevTable(pool.backends, 251);
  EXPECT_TRUE(std::all_of(one.begin(), one.end(), [](int32_t e) { return e == 1; }));
}

TEST(MaglevTest, BalancedWithinOnePercent) {
  for (int n : {10, 37, 100, 500}) {
    Pool pool = makePool(n);
    std::vector<int32_t> table = buildMaglevTable(pool.backends, kM);
    ASSERT_EQ(table.size(), kM);
    std::vector<int> counts = slotCounts(table, n);
    const double mean = static_cast<double>(kM) / n;
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    if (n <= 100) {  // M > 100 * N
      EXPECT_LE(*hi, mean * 1.01) << "n=" << n;
      EXPECT_GE(*lo, mean * 0.99) << "n=" << n;
    }
    // Equal weights: every backend gets floor(M/N) or ceil(M/N) slots.
    EXPECT_LE(*hi - *lo, 1) << "n=" << n;
  }
}

int movedSlots(const std::vector<int32_t>& before, const std::vector<std::string>& names_before,
               const std::vector<int32_t>& after, const std::vector<std::string>& names_after) {
  int moved = 0;
  for (size_t s = 0; s < before.size(); ++s) {
    if (names_before[before[s]] != names_after[after[s]]) ++moved;
  }
  return moved;
}

TEST(MaglevTest, RemovingOneMemberMovesLittleMoreThanItsSlots) {
  for (int n : {10, 25, 100}) {
    Pool pool = makePool(n);
    std::vector<int32_t> before = buildMaglevTable(pool.backends, kM);
    for (int removed : {0, n / 2, n - 1}) {
      Pool smaller = pool;
      smaller.names.erase(smaller.names.begin() + removed);
      smaller.backends.clear();
      for (const auto& name : smaller.names) smaller.backends.push_back(MaglevBackend{name, 1});
      std::vector<int32_t> after = buildMaglevTable(smaller.backends, kM);

      const int moved = movedSlots(before, pool.names, after, smaller.names);
      EXPECT_LE(moved, kM * (1.0 / n + 0.02)) << "n=" << n << " removed=" << removed;
      // Slots that belonged to members that stay: very few change owner.
      int others_moved = 0;
      for (size_t s = 0; s < before.size(); ++s) {
        if (before[s] != removed && pool.names[before[s]] != smaller.names[after[s]]) {
          ++others_moved;
        }
      }
      EXPECT_LE(others_moved, kM * 0.02) << "n=" << n << " removed=" << removed;
      EXPECT_EQ(moved - others_moved, std::count(before.begin(), before.end(), removed));
    }
  }
}

TEST(MaglevTest, AddingOneMemberMovesAboutItsShare) {
  const int n = 20;
  Pool pool = makePool(n);
  Pool bigger = makePool(n + 1);
  std::vector<int32_t> before = buildMaglevTable(pool.backends, kM);
  std::vector<int32_t> after = buildMaglevTable(bigger.backends, kM);
  const int moved = movedSlots(before, pool.names, after, bigger.names);
  EXPECT_LE(moved, kM * (1.0 / (n + 1) + 0.02));
}

TEST(MaglevTest, WeightsRespected) {
  Pool pool = makePool(10);
  pool.backends[3].weight = 2;
  pool.backends[7].weight = 4;
  std::vector<int32_t> table = buildMaglevTable(pool.backends, kM);
  std::vector<int> counts = slotCounts(table, 10);
  const double unit = static_cast<double>(kM) / (8 + 2 + 4);
  for (int i = 0; i < 10; ++i) {
    const double expected = unit * pool.backends[i].weight;
    EXPECT_NEAR(counts[i], expected, expected * 0.03) << "backend " << i;
  }
  EXPECT_NEAR(static_cast<double>(counts[3]) / counts[0], 2.0, 0.06);
  EXPECT_NEAR(static_cast<double>(counts[7]) / counts[0], 4.0, 0.12);
}

TEST(MaglevTest, ZeroWeightGetsNoSlots) {
  Pool pool = makePool(5);
  pool.backends[2].weight = 0;
  std::vector<int32_t> table = buildMaglevTable(pool.backends, 1009);
  EXPECT_EQ(std::count(table.begin(), table.end(), 2), 0);
  EXPECT_EQ(std::count(table.begin(), table.end(), -1), 0);
}

TEST(MaglevTest, DeterministicAndIndependentOfInputOrder) {
  Pool pool = makePool(30);
  pool.backends[4].weight = 3;
  std::vector<int32_t> a = buildMaglevTable(pool.backends, kM);
  std::vector<int32_t> b = buildMaglevTable(pool.backends, kM);
  EXPECT_EQ(a, b);

  std::vector<MaglevBackend> reversed(pool.backends.rbegin(), pool.backends.rend());
  std::vector<int32_t> c = buildMaglevTable(reversed, kM);
  ASSERT_EQ(c.size(), a.size());
  for (size_t s = 0; s < a.size(); ++s) {
    ASSERT_EQ(pool.backends[a[s]].name, reversed[c[s]].name) << "slot " << s;
  }
}

TEST(MaglevTest, DifferentNamesGiveDifferentTables) {
  Pool a = makePool(10, "a-");
  Pool b = makePool(10, "b-");
  EXPECT_NE(buildMaglevTable(a.backends, 1009), buildMaglevTable(b.backends, 1009));
}

}  // namespace
}  // namespace scalegate
