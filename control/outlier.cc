#include "control/outlier.h"

#include <algorithm>
#include <string>

namespace scalegate::control {

bool runOutlierDetection(PoolRegistry& registry, MonoTime now) {
  bool changed = false;
  for (const PoolRecord& const_pool : registry.pools()) {
    PoolRecord* pool = registry.findPool(const_pool.name);
    const config::OutlierDetection& od = pool->cfg->outlier;
    size_t ejected = 0;
    for (const MemberRecord& m : pool->members) ejected += m.ejected ? 1 : 0;
    for (MemberRecord& m : pool->members) {
      // Back from ejection when the time is up.
      if (m.ejected && now >= m.ejected_until) {
        m.ejected = false;
        m.ready_since = now;
        --ejected;
        changed = true;
        registry.addEvent("unejected", pool->name, m.spec.id, "ejection time over");
      }
      if (m.stats == nullptr) continue;
      uint64_t signals =
          m.stats->sum([](const l7proxy::MemberWorkerStats& s) -> const l7proxy::Counter& {
            return s.outlier_signals;
          });
      if (signals <= m.outlier_signals_seen) continue;
      m.outlier_signals_seen = signals;
      if (!od.enabled || m.ejected) continue;
      size_t max_ejected =
          std::max<size_t>(1, pool->members.size() * od.max_ejection_percent / 100);
      if (od.max_ejection_percent == 0 || ejected >= max_ejected) {
        registry.addEvent("ejection_skipped", pool->name, m.spec.id,
                          "max_ejection_percent reached (" + std::to_string(ejected) + " ejected)");
        continue;
      }
      ++m.ejections;
      Duration t = od.base_ejection * m.ejections;
      if (t > od.max_ejection) t = od.max_ejection;
      m.ejected = true;
      m.ejected_until = now + t;
      ++ejected;
      ++pool->ejections_total;
      changed = true;
      registry.addEvent("ejected", pool->name, m.spec.id,
                        std::to_string(od.consecutive_failures) +
                            " consecutive failures; ejected for " +
                            std::to_string(toMillis(t) / 1000) + "s (ejection " +
                            std::to_string(m.ejections) + ")");
    }
  }
  if (changed) registry.markChanged();
  return changed;
}

}  // namespace scalegate::control
