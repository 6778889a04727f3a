#include "dataplane/maglev.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dataplane/flow_table.h"
#include "dataplane/packet.h"

namespace scalegate::dataplane {
namespace {

constexpr uint32_t kM = 65537;

struct Members {
  std::vector<std::string> names;
  std::vector<MaglevBackend> backends;
  std::vector<uint16_t> ids;
};

Members makeMembers(int n, std::vector<uint32_t> weights = {}) {
  Members m;
  m.names.reserve(n);
  for (int i = 0; i < n; ++i)
    m.names.push_back("10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":80");
  for (int i = 0; i < n; ++i) {
    m.backends.push_back(MaglevBackend{m.names[i], weights.empty() ? 1 : weights[i]});
    m.ids.push_back(static_cast<uint16_t>(100 + i));  // ids differ from positions
  }
  return m;
}

std::vector<uint64_t> slotShare(const std::vector<uint16_t>& table, int n) {
  std::vector<uint64_t> c(n, 0);
  for (uint16_t id : table) {
    EXPECT_GE(id, 100);
    EXPECT_LT(id, 100 + n);
    ++c[id - 100];
  }
  return c;
}

TEST(DataplaneMaglevTest, BalancedWithinOnePercentWhenMAbove100N) {
  for (int n : {3, 10, 100, 500, 655}) {
    ASSERT_GT(kM, 100u * n);
    Members m = makeMembers(n);
    auto table = buildBackendTable(m.backends, m.ids, kM);
    ASSERT_EQ(table.size(), kM);
    const double fair = static_cast<double>(kM) / n;
    for (uint64_t c : slotShare(table, n)) EXPECT_NEAR(c, fair, fair * 0.01) << "n=" << n;
  }
}

TEST(DataplaneMaglevTest, FlowsSpreadEvenly) {
  // Real 5-tuples through the flow hash and maglevSlot, as the lcore picks on a miss.
  Members m = makeMembers(4);
  auto table = buildBackendTable(m.backends, m.ids, kM);
  std::vector<uint64_t> flows(4, 0);
  const uint32_t total = 1000000;
  for (uint32_t i = 0; i < total; ++i) {
    FlowKey k{0x0a000000u + (i >> 10),
              0x0a00000au,
              static_cast<uint16_t>(1024 + (i & 1023)),
              80,
              kProtoTcp,
              {}};
    ++flows[table[maglevSlot(FlowTable::hashKey(k), kM)] - 100];
  }
  for (uint64_t f : flows) EXPECT_NEAR(f, total / 4.0, total / 4.0 * 0.01);
}

TEST(DataplaneMaglevTest, RemovingOneOfNMovesAtMostOneNthPlusTwoPercent) {
  for (int n : {5, 20, 100, 500}) {
    Members all = makeMembers(n);
    auto before = buildBackendTable(all.backends, all.ids, kM);
    for (int removed : {0, n / 2, n - 1}) {
      Members less = all;
      less.backends.erase(less.backends.begin() + removed);
      less.ids.erase(less.ids.begin() + removed);
      auto after = buildBackendTable(less.backends, less.ids, kM);
      uint64_t moved = 0, moved_healthy = 0;
      for (uint32_t s = 0; s < kM; ++s) {
        if (before[s] != after[s]) {
          ++moved;
          if (before[s] != all.ids[removed]) ++moved_healthy;
        }
        EXPECT_NE(after[s], all.ids[removed]);
      }
      EXPECT_LE(static_cast<double>(moved) / kM, 1.0 / n + 0.02) << "n=" << n;
      // Most of what moved belonged to the removed member.
      EXPECT_LE(static_cast<double>(moved_healthy) / kM, 0.02) << "n=" << n;
    }
  }
}

TEST(DataplaneMaglevTest, WeightsAreRespected) {
  std::vector<uint32_t> w = {1, 2, 3, 4, 10};
  Members m = makeMembers(5, w);
  auto table = buildBackendTable(m.backends, m.ids, kM);
  auto share = slotShare(table, 5);
  const double total_w = 20;
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(share[i], kM * w[i] / total_w, kM * w[i] / total_w * 0.01) << i;
  }
  // Weight 0: no slots; all zero: kNoBackend everywhere.
  m.backends[4].weight = 0;
  table = buildBackendTable(m.backends, m.ids, kM);
  EXPECT_EQ(slotShare(table, 5)[4], 0u);
  for (auto& b : m.backends) b.weight = 0;
  table = buildBackendTable(m.backends, m.ids, kM);
  for (uint16_t id : table) ASSERT_EQ(id, kNoBackend);
}

TEST(DataplaneMaglevTest, SameMembersSameTableWhateverTheOrder) {
  Members m = makeMembers(50);
  auto a = buildBackendTable(m.backends, m.ids, kM);
  std::reverse(m.backends.begin(), m.backends.end());
  std::reverse(m.ids.begin(), m.ids.end());
  EXPECT_EQ(a, buildBackendTable(m.backends, m.ids, kM));
}

}  // namespace
}  // namespace scalegate::dataplane
