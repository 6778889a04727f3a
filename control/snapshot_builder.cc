#include "control/snapshot_builder.h"

#include "l7proxy/balancer.h"

namespace scalegate::control {
namespace {

const config::MemberState* findPrevious(const config::Snapshot* prev, const std::string& pool,
                                        const config::Member& m) {
  if (prev == nullptr) return nullptr;
  int pi = prev->poolIndex(pool);
  if (pi < 0) return nullptr;
  const config::PoolState& ps = prev->pools[pi];
  for (size_t i = 0; i < ps.pool->members.size(); ++i) {
    const config::Member& old = ps.pool->members[i];
    if (old.id == m.id && old.address == m.address) return &ps.members[i];
  }
  return nullptr;
}

}  // namespace

std::shared_ptr<const config::Snapshot> buildSnapshot(
    std::shared_ptr<const config::Config> cfg, uint64_t generation,
    std::vector<config::ListenSockets> sockets, const config::Snapshot* previous, MonoTime now) {
  auto s = std::make_shared<config::Snapshot>();
  s->generation = generation;
  s->config = cfg;
  s->sockets = std::move(sockets);
  for (const auto& [name, pool] : cfg->pools) {
    config::PoolState ps;
    ps.pool = &pool;
    std::vector<l7proxy::MemberView> views;
    for (const config::Member& m : pool.members) {
      config::MemberState st;
      st.weight = m.weight;
      // Until the first probe answers, a member is in its configured initial state.
      st.healthy = !pool.health.enabled || pool.health.initially_healthy;
      if (const config::MemberState* old = findPrevious(previous, name, m)) {
        st.healthy = old->healthy;
        st.draining = old->draining;
        st.ready_since = old->ready_since;
      } else if (previous != nullptr) {
        st.ready_since = now;
      }
      ps.members.push_back(st);
      l7proxy::MemberView v;
      v.weight = st.draining ? 0 : st.weight;
      v.healthy = st.healthy;
      v.ready_since = st.ready_since;
      v.id = m.id;
      views.push_back(v);
    }
    ps.tables = l7proxy::HashTables::build(pool.balance, views, pool.maglev_table_size);
    s->pools.push_back(std::move(ps));
  }
  return s;
}

}  // namespace scalegate::control
