#include "control/snapshot_builder.h"

#include "l7proxy/balancer.h"

namespace scalegate::control {

std::vector<std::shared_ptr<l7proxy::ListenerStats>> ListenerStatsTable::resolve(
    const config::Config& cfg) {
  std::map<std::string, std::shared_ptr<l7proxy::ListenerStats>> next;
  std::vector<std::shared_ptr<l7proxy::ListenerStats>> out;
  for (const config::Listener& l : cfg.listeners) {
    auto it = blocks_.find(l.name);
    auto block =
        it != blocks_.end() ? it->second : std::make_shared<l7proxy::ListenerStats>(workers_);
    if (l.client_limits.perIp()) block->ensureClients();
    next[l.name] = block;
    out.push_back(block);
  }
  blocks_ = std::move(next);
  return out;
}

std::shared_ptr<const config::Snapshot> buildSnapshot(
    const PoolRegistry& registry, uint64_t generation, std::vector<config::ListenSockets> sockets,
    std::vector<std::shared_ptr<l7proxy::ListenerStats>> listener_stats, SnapshotTls tls) {
  auto s = std::make_shared<config::Snapshot>();
  s->listener_tls = std::move(tls.listener_tls);
  s->ticket_keys = std::move(tls.ticket_keys);
  s->pool_tls = std::move(tls.pool_tls);
  s->generation = generation;
  s->config = registry.effectiveConfig();
  s->sockets = std::move(sockets);
  s->listener_stats = std::move(listener_stats);
  for (const auto& [name, pool] : s->config->pools) {
    const PoolRecord* rec = registry.findPool(name);
    config::PoolState ps;
    ps.pool = &pool;
    if (rec != nullptr) ps.stats = rec->stats;
    size_t eligible = 0;
    // effectiveConfig() lists members in the registry's order, so records match by position.
    std::vector<const MemberRecord*> recs(pool.members.size(), nullptr);
    for (size_t i = 0; rec != nullptr && i < pool.members.size(); ++i) {
      bool same = i < rec->members.size() && rec->members[i].spec.id == pool.members[i].id;
      recs[i] = same ? &rec->members[i] : rec->find(pool.members[i].id);
    }
    std::vector<bool> ok(pool.members.size(), false);
    for (size_t i = 0; i < pool.members.size(); ++i) {
      const MemberRecord* m = recs[i];
      ok[i] = m == nullptr || (m->healthEligible(pool.health) && !m->ejected);
      if (ok[i]) ++eligible;
    }
    const config::LowHealthPolicy& lh = pool.low_health;
    if (!pool.members.empty() && lh.threshold_percent > 0 &&
        eligible * 100 < static_cast<size_t>(lh.threshold_percent) * pool.members.size()) {
      if (lh.action == config::LowHealthAction::kSpreadAll) {
        ps.panic = true;
      } else {
        ps.refuse = true;
      }
    }
    std::vector<l7proxy::MemberView> views;
    for (size_t i = 0; i < pool.members.size(); ++i) {
      const config::Member& spec = pool.members[i];
      const MemberRecord* m = recs[i];
      config::MemberState st;
      st.weight = spec.weight;
      st.healthy = ps.panic || ok[i];
      if (m != nullptr) {
        st.draining = m->drain != DrainState::kNone;
        st.drain_deadline = m->drain_deadline;
        st.ready_since = m->ready_since;
        st.stats = m->stats;
      }
      ps.members.push_back(st);
      l7proxy::MemberView v;
      v.weight = st.draining ? 0 : st.weight;
      v.healthy = st.healthy;
      v.ready_since = st.ready_since;
      v.id = spec.id;
      views.push_back(v);
    }
    ps.tables = l7proxy::HashTables::build(pool.balance, views, pool.maglev_table_size);
    s->pools.push_back(std::move(ps));
  }
  return s;
}

}  // namespace scalegate::control
