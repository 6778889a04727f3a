#pragma once
// Which instances a scale-in removes, and where a scale-out adds them (Azure VM Scale Sets).
//
//   instances ──► selectForScaleIn(policy, n) ──► ids to drain, then name in the scale_in
//                 one victim at a time:            webhook (in removal order)
//                  1. unprotected candidates (unhealthy ones first, if prioritize_unhealthy)
//                  2. zone with the most remaining instances (balance zones)
//                  3. default policy: fault domain with the most remaining in that zone
//                  4. default: highest id (vm-10 > vm-9); newest / oldest: by created_at
//
//   zones + per-zone counts ──► planScaleOut(add) ──► {zone: new instances}, zones end ±1
//
// Pure functions; any thread.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "config/model.h"

namespace scalegate::control {

struct InstanceInfo {
  std::string id;
  std::string zone;  // "" = zoneless
  uint32_t fault_domain = 0;
  WallTime created_at{};            // when the instance joined the pool
  bool scale_in_protected = false;  // never chosen
  bool healthy = true;
  std::string version;
};

// Natural order of instance ids: runs of digits compare as numbers ("vm-9" < "vm-10"), the
// rest byte by byte. Returns <0, 0, >0.
int compareInstanceIds(std::string_view a, std::string_view b);

// Chooses up to `count` instances to remove, in removal order. Fewer when not enough
// unprotected instances exist. Zones are balanced first for every policy (Azure); fault
// domains within the zone only for kDefault (Azure: "best effort" for Uniform). Counts of a
// zone or fault domain include protected instances: they stay, so the others there go first.
// prioritize_unhealthy: unhealthy instances are removed before any healthy one (still zone
// by zone); they take no traffic, so removing them first costs nothing.
std::vector<std::string> selectForScaleIn(std::span<const InstanceInfo> instances, uint32_t count,
                                          config::ScaleInPolicy policy,
                                          bool prioritize_unhealthy = true);

// How many of `add` new instances go to each zone so that zones end within ±1 of each other
// when possible: each new instance goes to the zone with the fewest (ties: the earlier zone in
// `zones`). `counts` may miss zones (0) and have extra keys (ignored). Empty `zones`: all to
// "". Zones with 0 new instances are left out of the result. Works for fault domains too
// (keys "0", "1", ...).
std::map<std::string, uint32_t> planScaleOut(std::span<const std::string> zones,
                                             const std::map<std::string, uint32_t>& counts,
                                             uint32_t add);

}  // namespace scalegate::control
