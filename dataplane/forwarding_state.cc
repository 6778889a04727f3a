#include "dataplane/forwarding_state.h"

#include <netinet/in.h>

#include <algorithm>
#include <set>

#include "dataplane/packet.h"

namespace scalegate::dataplane {

uint16_t ForwardingStateBuilder::backendId(const std::string& pool, const std::string& member) {
  auto key = std::make_pair(pool, member);
  auto it = backend_ids_.find(key);
  if (it != backend_ids_.end()) return it->second;
  uint16_t id = kNoBackend;
  if (next_backend_ < kMaxBackends) {
    id = static_cast<uint16_t>(next_backend_++);
  } else if (!free_backends_.empty()) {
    id = free_backends_.front();
    free_backends_.erase(free_backends_.begin());
  } else {
    return kNoBackend;
  }
  backend_ids_.emplace(key, id);
  backend_names_[id] = BackendName{pool, member};
  return id;
}

uint8_t ForwardingStateBuilder::vipId(const std::string& listener) {
  auto it = vip_ids_.find(listener);
  if (it != vip_ids_.end()) return it->second;
  uint8_t id;
  if (next_vip_ < kMaxVips - 1) {
    id = static_cast<uint8_t>(next_vip_++);
  } else if (!free_vips_.empty()) {
    id = free_vips_.front();
    free_vips_.erase(free_vips_.begin());
  } else {
    return 0xff;
  }
  vip_ids_.emplace(listener, id);
  vip_names_[id] = listener;
  return id;
}

const BackendName* ForwardingStateBuilder::backendName(uint16_t id) const {
  if (id >= kMaxBackends || backend_names_[id].member.empty()) return nullptr;
  return &backend_names_[id];
}

std::unique_ptr<ForwardingState> ForwardingStateBuilder::build(const config::Snapshot& snap) {
  auto st = std::make_unique<ForwardingState>();
  st->generation = ++generation_;
  skipped_ = 0;
  const config::Config& cfg = *snap.config;
  std::set<std::pair<std::string, std::string>> live_backends;
  std::set<std::string> live_vips;
  std::map<std::string, uint32_t> pool_index;  // snapshot pool name -> st->pools index

  for (const config::Listener& l : cfg.listeners) {
    if (l.protocol != config::ListenerProtocol::kL4 || !l.vip.isV4()) continue;
    int p = snap.poolIndex(l.pool);
    if (p < 0) continue;
    const config::PoolState& ps = snap.pools[static_cast<size_t>(p)];
    auto [it, inserted] = pool_index.emplace(l.pool, static_cast<uint32_t>(st->pools.size()));
    if (inserted) {
      std::vector<MaglevBackend> backends;
      std::vector<uint16_t> ids;
      for (size_t i = 0; i < ps.pool->members.size(); ++i) {
        const config::Member& m = ps.pool->members[i];
        const config::MemberState& ms = ps.members[i];
        if (!m.address.isV4()) {
          ++skipped_;
          continue;
        }
        uint16_t id = backendId(l.pool, m.id);
        if (id == kNoBackend) {
          ++skipped_;
          continue;
        }
        live_backends.emplace(l.pool, m.id);
        const auto* sin = reinterpret_cast<const sockaddr_in*>(m.address.sockaddrPtr());
        Backend& b = st->backends[id];
        b.ip = sin->sin_addr.s_addr;
        b.port = sin->sin_port;
        // A refusing pool (too few healthy members, action refuse) takes no traffic at all.
        b.usable = ms.healthy && !ps.refuse ? 1 : 0;
        // New flows: usable, not draining, weight > 0. Existing flows stay while usable.
        uint32_t weight = b.usable && !ms.draining ? ms.weight : 0;
        backends.push_back(MaglevBackend{m.id, weight});
        ids.push_back(id);
      }
      uint32_t m_size = ps.pool->maglev_table_size;
      if (m_size <= backends.size()) m_size = nextPrime(static_cast<uint32_t>(backends.size()) + 1);
      PoolTable table;
      table.slots = buildBackendTable(backends, ids, m_size);
      st->pools.push_back(std::move(table));
    }
    Vip v;
    const auto* sin = reinterpret_cast<const sockaddr_in*>(l.vip.sockaddrPtr());
    v.ip = sin->sin_addr.s_addr;
    v.port = sin->sin_port;
    v.proto = l.vip_proto == config::IpProto::kTcp ? kProtoTcp : kProtoUdp;
    v.dsr = l.mode == config::L4Mode::kDsr;
    v.pool = it->second;
    if (l.access.enabled()) {
      v.access = static_cast<uint16_t>(st->access.size());
      st->access.push_back(l.access);
    }
    v.id = vipId(l.name);
    if (v.id == 0xff) {
      ++skipped_;
      continue;
    }
    live_vips.insert(l.name);
    st->vips.push_back(v);
  }

  // Forget what is gone; its ids become reusable.
  for (auto it = backend_ids_.begin(); it != backend_ids_.end();) {
    if (live_backends.count(it->first) == 0) {
      free_backends_.push_back(it->second);
      backend_names_[it->second] = BackendName{};
      it = backend_ids_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = vip_ids_.begin(); it != vip_ids_.end();) {
    if (live_vips.count(it->first) == 0) {
      free_vips_.push_back(it->second);
      vip_names_[it->second].clear();
      it = vip_ids_.erase(it);
    } else {
      ++it;
    }
  }
  return st;
}

}  // namespace scalegate::dataplane
