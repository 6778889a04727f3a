#include "control/health_tracker.h"

#include <algorithm>
#include <limits>

namespace scalegate::control {
namespace {

void bump(uint32_t& counter) {
  if (counter < std::numeric_limits<uint32_t>::max()) ++counter;
}

}  // namespace

const char* healthChangeName(HealthChange c) {
  switch (c) {
    case HealthChange::kNone:
      return "none";
    case HealthChange::kBecameHealthy:
      return "became_healthy";
    case HealthChange::kBecameUnhealthy:
      return "became_unhealthy";
  }
  return "none";
}

HealthChange applyProbe(MemberRecord& m, const ProbeOutcome& o, const config::HealthCheck& hc,
                        WallTime at) {
  const uint32_t rise = std::max<uint32_t>(hc.rise, 1);
  const uint32_t fall = std::max<uint32_t>(hc.fall, 1);

  if (o.ok) {
    ++m.probes_ok;
  } else {
    ++m.probes_failed;
  }
  m.last_probe = o;
  m.last_probe_at = at;
  if (o.http_status != 0) {
    m.load = o.load;
    m.app_health = o.app_health;
  } else if (!m.app_health.empty()) {
    m.app_health = "Unknown";
  }

  HealthChange change = HealthChange::kNone;
  if (o.ok) {
    bump(m.consecutive_ok);
    m.consecutive_fail = 0;
    if (m.health != HealthState::kHealthy && m.consecutive_ok >= rise) {
      m.health = HealthState::kHealthy;
      change = HealthChange::kBecameHealthy;
    }
  } else if (m.health == HealthState::kUnknown && o.app_health == "Initializing") {
    // Still starting up: no progress toward rise, none toward fall (see the header).
    m.consecutive_ok = 0;
  } else {
    bump(m.consecutive_fail);
    m.consecutive_ok = 0;
    if (m.health != HealthState::kUnhealthy && m.consecutive_fail >= fall) {
      m.health = HealthState::kUnhealthy;
      change = HealthChange::kBecameUnhealthy;
    }
  }

  switch (m.health) {
    case HealthState::kUnknown:
      m.transitioning = m.consecutive_ok > 0 || m.consecutive_fail > 0;
      break;
    case HealthState::kHealthy:
      m.transitioning = m.consecutive_fail > 0;
      break;
    case HealthState::kUnhealthy:
      m.transitioning = m.consecutive_ok > 0;
      break;
  }
  return change;
}

}  // namespace scalegate::control
