#include "control/scale_in_selector.h"

#include <algorithm>
#include <cctype>

namespace scalegate::control {

namespace {

bool isDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

// True when a should be removed before b under the policy (within one zone / fault domain).
bool removeFirst(const InstanceInfo& a, const InstanceInfo& b, config::ScaleInPolicy policy) {
  switch (policy) {
    case config::ScaleInPolicy::kDefault:
      return compareInstanceIds(a.id, b.id) > 0;  // highest id first
    case config::ScaleInPolicy::kNewest:
      if (a.created_at != b.created_at) return a.created_at > b.created_at;
      return compareInstanceIds(a.id, b.id) > 0;
    case config::ScaleInPolicy::kOldest:
      if (a.created_at != b.created_at) return a.created_at < b.created_at;
      return compareInstanceIds(a.id, b.id) < 0;
  }
  return false;
}

}  // namespace

int compareInstanceIds(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isDigit(a[i]) && isDigit(b[j])) {
      size_t i0 = i, j0 = j;
      while (i < a.size() && isDigit(a[i])) ++i;
      while (j < b.size() && isDigit(b[j])) ++j;
      std::string_view da = a.substr(i0, i - i0), db = b.substr(j0, j - j0);
      while (da.size() > 1 && da.front() == '0') da.remove_prefix(1);
      while (db.size() > 1 && db.front() == '0') db.remove_prefix(1);
      if (da.size() != db.size()) return da.size() < db.size() ? -1 : 1;
      if (int c = da.compare(db); c != 0) return c < 0 ? -1 : 1;
      continue;
    }
    if (a[i] != b[j])
      return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]) ? -1 : 1;
    ++i;
    ++j;
  }
  if (i < a.size()) return 1;
  if (j < b.size()) return -1;
  return a.compare(b) < 0 ? -1 : (a.compare(b) > 0 ? 1 : 0);  // "vm-01" vs "vm-1"
}

std::vector<std::string> selectForScaleIn(std::span<const InstanceInfo> instances, uint32_t count,
                                          config::ScaleInPolicy policy, bool prioritize_unhealthy) {
  std::vector<std::string> out;
  std::vector<bool> removed(instances.size(), false);
  const bool balance_fd = policy == config::ScaleInPolicy::kDefault;
  while (out.size() < count) {
    // Remaining instances per zone and per (zone, fault domain), protected ones included.
    std::map<std::string, uint32_t> zone_count;
    std::map<std::pair<std::string, uint32_t>, uint32_t> fd_count;
    bool any_unhealthy = false;
    for (size_t i = 0; i < instances.size(); ++i) {
      if (removed[i]) continue;
      const InstanceInfo& x = instances[i];
      ++zone_count[x.zone];
      ++fd_count[{x.zone, x.fault_domain}];
      if (!x.scale_in_protected && !x.healthy) any_unhealthy = true;
    }
    const bool only_unhealthy = prioritize_unhealthy && any_unhealthy;
    // The best candidate: fullest zone, then (default) fullest fault domain, then the policy.
    int best = -1;
    for (size_t i = 0; i < instances.size(); ++i) {
      const InstanceInfo& x = instances[i];
      if (removed[i] || x.scale_in_protected || (only_unhealthy && x.healthy)) continue;
      if (best < 0) {
        best = static_cast<int>(i);
        continue;
      }
      const InstanceInfo& b = instances[static_cast<size_t>(best)];
      uint32_t zx = zone_count[x.zone], zb = zone_count[b.zone];
      if (zx != zb) {
        if (zx > zb) best = static_cast<int>(i);
        continue;
      }
      if (balance_fd && x.zone == b.zone) {
        uint32_t fx = fd_count[{x.zone, x.fault_domain}], fb = fd_count[{b.zone, b.fault_domain}];
        if (fx != fb) {
          if (fx > fb) best = static_cast<int>(i);
          continue;
        }
      }
      if (removeFirst(x, b, policy)) best = static_cast<int>(i);
    }
    if (best < 0) break;
    removed[static_cast<size_t>(best)] = true;
    out.push_back(instances[static_cast<size_t>(best)].id);
  }
  return out;
}

std::map<std::string, uint32_t> planScaleOut(std::span<const std::string> zones,
                                             const std::map<std::string, uint32_t>& counts,
                                             uint32_t add) {
  std::map<std::string, uint32_t> plan;
  if (add == 0) return plan;
  if (zones.empty()) {
    plan[""] = add;
    return plan;
  }
  std::vector<uint64_t> now(zones.size(), 0);
  for (size_t z = 0; z < zones.size(); ++z) {
    auto it = counts.find(zones[z]);
    if (it != counts.end()) now[z] = it->second;
  }
  for (uint32_t k = 0; k < add; ++k) {
    size_t lowest = 0;
    for (size_t z = 1; z < zones.size(); ++z) {
      if (now[z] < now[lowest]) lowest = z;
    }
    ++now[lowest];
    ++plan[zones[lowest]];
  }
  return plan;
}

}  // namespace scalegate::control
