#include "control/scale_in_selector.h"

#include <gtest/gtest.h>

namespace scalegate::control {
namespace {

using config::ScaleInPolicy;
using Ids = std::vector<std::string>;

InstanceInfo inst(std::string id, std::string zone = "", uint32_t fd = 0, int64_t created = 0,
                  bool prot = false, bool healthy = true) {
  InstanceInfo x;
  x.id = std::move(id);
  x.zone = std::move(zone);
  x.fault_domain = fd;
  x.created_at = WallTime{std::chrono::seconds(created)};
  x.scale_in_protected = prot;
  x.healthy = healthy;
  return x;
}

TEST(InstanceIds, NaturalOrder) {
  EXPECT_GT(compareInstanceIds("vm-10", "vm-9"), 0);
  EXPECT_LT(compareInstanceIds("vm-2", "vm-10"), 0);
  EXPECT_EQ(compareInstanceIds("vm-3", "vm-3"), 0);
  EXPECT_GT(compareInstanceIds("web-b-1", "web-a-9"), 0);
  EXPECT_LT(compareInstanceIds("vm", "vm-1"), 0);
  EXPECT_NE(compareInstanceIds("vm-01", "vm-1"), 0);  // a total order: distinct ids differ
}

TEST(ScaleInSelector, DefaultRemovesTheHighestIdNumerically) {
  std::vector<InstanceInfo> xs{inst("vm-9"), inst("vm-10"), inst("vm-2"), inst("vm-11")};
  EXPECT_EQ(selectForScaleIn(xs, 2, ScaleInPolicy::kDefault), (Ids{"vm-11", "vm-10"}));
}

TEST(ScaleInSelector, DefaultBalancesZonesThenFaultDomains) {
  // Zone 1 has 3, zone 2 has 2: the first victim comes from zone 1 even though vm-5 (zone 2)
  // has the highest id. Within zone 1, fault domain 0 holds two: one of those goes.
  std::vector<InstanceInfo> xs{inst("vm-1", "1", 0), inst("vm-2", "1", 0), inst("vm-3", "1", 1),
                               inst("vm-4", "2", 0), inst("vm-5", "2", 1)};
  Ids one = selectForScaleIn(xs, 1, ScaleInPolicy::kDefault);
  EXPECT_EQ(one, (Ids{"vm-2"}));
  // Then zones are 2/2: the highest id of the tie goes (vm-5), then zone 1 again (2 vs 1).
  EXPECT_EQ(selectForScaleIn(xs, 3, ScaleInPolicy::kDefault), (Ids{"vm-2", "vm-5", "vm-3"}));
}

TEST(ScaleInSelector, NewestAndOldestStillBalanceZones) {
  std::vector<InstanceInfo> xs{inst("a", "1", 0, 100), inst("b", "1", 0, 300),
                               inst("c", "1", 0, 200), inst("d", "2", 0, 400)};
  // Newest overall is d (zone 2), but zone 1 holds more.
  EXPECT_EQ(selectForScaleIn(xs, 1, ScaleInPolicy::kNewest), (Ids{"b"}));
  EXPECT_EQ(selectForScaleIn(xs, 1, ScaleInPolicy::kOldest), (Ids{"a"}));
  // Zones 2/1 after b; zone 1 again (c, the newest left there), then 1/1: d is newest.
  EXPECT_EQ(selectForScaleIn(xs, 3, ScaleInPolicy::kNewest), (Ids{"b", "c", "d"}));
  EXPECT_EQ(selectForScaleIn(xs, 3, ScaleInPolicy::kOldest), (Ids{"a", "c", "b"}));
}

TEST(ScaleInSelector, ProtectedInstancesAreNeverChosenButCountForBalance) {
  std::vector<InstanceInfo> xs{inst("vm-1", "1"), inst("vm-2", "1", 0, 0, true),
                               inst("vm-3", "1", 0, 0, true), inst("vm-4", "2"),
                               inst("vm-5", "2", 0, 0, true)};
  // Zone 1 has 3 (two protected): vm-1 goes first, then zones are 2/2 and vm-4 goes.
  EXPECT_EQ(selectForScaleIn(xs, 5, ScaleInPolicy::kDefault), (Ids{"vm-1", "vm-4"}));
}

TEST(ScaleInSelector, UnhealthyFirstUnlessDisabled) {
  std::vector<InstanceInfo> xs{inst("vm-1", "", 0, 0, false, false), inst("vm-2"), inst("vm-3")};
  EXPECT_EQ(selectForScaleIn(xs, 2, ScaleInPolicy::kDefault), (Ids{"vm-1", "vm-3"}));
  EXPECT_EQ(selectForScaleIn(xs, 1, ScaleInPolicy::kDefault, false), (Ids{"vm-3"}));
}

TEST(PlanScaleOut, ZonesEndWithinOne) {
  std::vector<std::string> zones{"1", "2", "3"};
  auto plan = planScaleOut(zones, {{"1", 2}, {"2", 1}, {"3", 1}}, 4);
  // 2/1/1 + 4 = 3/3/2 (zone 2 first on the tie, then 3, then 2/3 again...).
  std::map<std::string, uint32_t> after{{"1", 2}, {"2", 1}, {"3", 1}};
  for (auto& [z, n] : plan) after[z] += n;
  uint32_t lo = UINT32_MAX, hi = 0;
  for (auto& [z, n] : after) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  EXPECT_LE(hi - lo, 1u);
  EXPECT_EQ(plan, (std::map<std::string, uint32_t>{{"1", 1}, {"2", 2}, {"3", 1}}));
  // Unknown zones in counts are ignored; zones missing from counts start at 0.
  EXPECT_EQ(planScaleOut(zones, {{"9", 5}, {"1", 1}}, 2),
            (std::map<std::string, uint32_t>{{"2", 1}, {"3", 1}}));
  // Zoneless.
  EXPECT_EQ(planScaleOut({}, {}, 3), (std::map<std::string, uint32_t>{{"", 3}}));
  EXPECT_TRUE(planScaleOut(zones, {}, 0).empty());
  // Fault domains use the same plan with "0".."2" keys.
  std::vector<std::string> fds{"0", "1", "2"};
  EXPECT_EQ(planScaleOut(fds, {{"0", 1}}, 2),
            (std::map<std::string, uint32_t>{{"1", 1}, {"2", 1}}));
}

}  // namespace
}  // namespace scalegate::control
