#include "control/pool_registry.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "control/state_file.h"

namespace scalegate::control {
namespace {

using Json = nlohmann::json;

constexpr uint32_t kMaxWeight = 1000000;
constexpr uint32_t kMaxFaultDomain = 255;
constexpr size_t kMaxIdLength = 253;
constexpr size_t kMaxZoneLength = 64;
constexpr int64_t kStateVersion = 1;
// kMaxStateMillis (state_file.h): ~2170. (Year 3000 overflowed WallTime's int64 nanoseconds.)
constexpr int64_t kMaxAddedAtMs = kMaxStateMillis;

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

bool isValidId(std::string_view s) {
  return !s.empty() && s.size() <= kMaxIdLength && std::all_of(s.begin(), s.end(), isNameChar);
}

// For error messages: ids come from URLs and files, so they are quoted and cut short.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s.substr(0, 80)) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F || c == '"' || c == '\\') {
      out += '?';
    } else {
      out += ch;
    }
  }
  if (s.size() > 80) out += "...";
  out += '"';
  return out;
}

bool isWildcard(const SocketAddress& a) {
  std::string ip = a.ipString();
  return ip == "0.0.0.0" || ip == "::";
}

Status validateMember(const std::string& id, const MemberSpec& spec) {
  if (!isValidId(id)) {
    return invalidArgument("bad member id " + quote(id) +
                           ": use 1 to 253 letters, digits, '_', '.' and '-'");
  }
  if (!spec.address.valid() || spec.address.port() == 0 || isWildcard(spec.address)) {
    return invalidArgument("bad member address " +
                           (spec.address.valid() ? spec.address.toString() : std::string("\"\"")) +
                           ": needs a specific IP address and a port other than 0");
  }
  if (spec.zone.size() > kMaxZoneLength ||
      std::any_of(spec.zone.begin(), spec.zone.end(), [](char ch) {
        auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7F;
      })) {
    return invalidArgument("bad zone " + quote(spec.zone) +
                           ": at most 64 bytes, no control characters");
  }
  if (spec.fault_domain > kMaxFaultDomain) {
    return invalidArgument("fault_domain " + std::to_string(spec.fault_domain) +
                           " is out of range (0..255)");
  }
  if (spec.weight > kMaxWeight) {
    return invalidArgument("weight " + std::to_string(spec.weight) +
                           " is out of range (0..1000000)");
  }
  if (spec.version.size() > kMaxZoneLength ||
      std::any_of(spec.version.begin(), spec.version.end(), [](char ch) {
        auto c = static_cast<unsigned char>(ch);
        return c <= 0x20 || c == 0x7F;
      })) {
    return invalidArgument("bad version " + quote(spec.version) +
                           ": at most 64 bytes, no spaces or control characters");
  }
  return Status::ok();
}

MemberSpec specOf(const config::Member& m) {
  return MemberSpec{m.address, m.zone, m.fault_domain, m.weight, m.version,
                    m.scale_in_protected};
}

bool sameSpec(const MemberSpec& a, const MemberSpec& b) {
  return a.address == b.address && a.zone == b.zone && a.fault_domain == b.fault_domain &&
         a.weight == b.weight && a.version == b.version &&
         a.scale_in_protected == b.scale_in_protected;
}

void applySpec(const MemberSpec& s, config::Member* m) {
  m->address = s.address;
  m->zone = s.zone;
  m->fault_domain = s.fault_domain;
  m->weight = s.weight;
  m->version = s.version;
  m->scale_in_protected = s.scale_in_protected;
}

// "weight 1 -> 5, address 10.0.0.1:80 -> 10.0.0.2:80"
std::string describeChange(const MemberSpec& from, const MemberSpec& to) {
  std::string out;
  auto add = [&](const char* what, const std::string& a, const std::string& b) {
    if (a == b) return;
    if (!out.empty()) out += ", ";
    out += std::string(what) + " " + a + " -> " + b;
  };
  add("address", from.address.toString(), to.address.toString());
  add("zone", "\"" + from.zone + "\"", "\"" + to.zone + "\"");
  add("fault_domain", std::to_string(from.fault_domain), std::to_string(to.fault_domain));
  add("weight", std::to_string(from.weight), std::to_string(to.weight));
  add("version", "\"" + from.version + "\"", "\"" + to.version + "\"");
  add("protected", from.scale_in_protected ? "true" : "false",
      to.scale_in_protected ? "true" : "false");
  return out;
}

// Another endpoint: what was learnt about the old address no longer applies.
void resetEndpointState(MemberRecord& m, MonoTime now) {
  m.health = HealthState::kUnknown;
  m.consecutive_ok = 0;
  m.consecutive_fail = 0;
  m.transitioning = false;
  m.last_probe.reset();
  m.last_probe_at = WallTime{};
  m.load.clear();
  m.app_health.clear();
  m.ejected = false;
  m.ejected_until = MonoTime{};
  m.ejections = 0;
  m.ready_since = now;
}

// A new address is another endpoint; a new version is another program on it (a rolling
// upgrade restarted it): either way the member must pass its probes again before traffic.
void setSpec(MemberRecord& m, const config::Member& spec, MonoTime now) {
  bool moved = m.spec.address != spec.address || m.spec.version != spec.version;
  m.spec = spec;
  if (moved) resetEndpointState(m, now);
}

bool parseDrain(std::string_view s, DrainState* out) {
  for (DrainState d : {DrainState::kNone, DrainState::kDraining, DrainState::kDrained}) {
    if (s == drainStateName(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

uint64_t inFlight(const MemberRecord& m) {
  if (!m.stats) return 0;
  return m.stats->sum(
      [](const l7proxy::MemberWorkerStats& s) -> const l7proxy::Counter& { return s.rq_active; });
}

Json specJson(const std::string& id, const MemberSpec& s) {
  Json j{{"id", id},
         {"address", s.address.toString()},
         {"zone", s.zone},
         {"fault_domain", s.fault_domain},
         {"weight", s.weight}};
  if (!s.version.empty()) j["version"] = s.version;
  if (s.scale_in_protected) j["protected"] = true;
  return j;
}

// Reads one state-file entry: a JSON object with known keys. Errors name the entry's path.
class StateReader {
 public:
  explicit StateReader(std::string file) : file_(std::move(file)) {}

  Status bad(const std::string& where, const std::string& what) const {
    return invalidArgument("state file " + file_ + ": " + where + ": " + what +
                           " (fix the file or move it away; it holds the members registered "
                           "through the admin API)");
  }

  Status checkKeys(const Json& obj, const std::string& where,
                   std::initializer_list<const char*> allowed) const {
    if (!obj.is_object()) return bad(where, "expected an object");
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::none_of(allowed.begin(), allowed.end(),
                       [&](const char* k) { return it.key() == k; })) {
        return bad(where, "unknown key " + quote(it.key()));
      }
    }
    return Status::ok();
  }

  Status member(const Json& obj, const std::string& where, std::string* id, MemberSpec* spec,
                std::initializer_list<const char*> allowed) const {
    SG_RETURN_IF_ERROR(checkKeys(obj, where, allowed));
    auto id_it = obj.find("id");
    if (id_it == obj.end() || !id_it->is_string()) return bad(where, "\"id\" must be a string");
    *id = id_it->get_ref<const std::string&>();
    auto addr_it = obj.find("address");
    if (addr_it == obj.end() || !addr_it->is_string()) {
      return bad(where, "\"address\" must be a string");
    }
    auto addr = SocketAddress::parse(addr_it->get_ref<const std::string&>());
    if (!addr.isOk()) return bad(where + ".address", addr.status().message());
    spec->address = *addr;
    if (auto z = obj.find("zone"); z != obj.end()) {
      if (!z->is_string()) return bad(where + ".zone", "must be a string");
      spec->zone = z->get_ref<const std::string&>();
    }
    if (auto v = obj.find("version"); v != obj.end()) {
      if (!v->is_string()) return bad(where + ".version", "must be a string");
      spec->version = v->get_ref<const std::string&>();
    }
    if (auto v = obj.find("protected"); v != obj.end()) {
      if (!v->is_boolean()) return bad(where + ".protected", "must be true or false");
      spec->scale_in_protected = v->get<bool>();
    }
    for (auto [key, field] :
         {std::pair<const char*, uint32_t*>{"fault_domain", &spec->fault_domain},
          std::pair<const char*, uint32_t*>{"weight", &spec->weight}}) {
      auto v = obj.find(key);
      if (v == obj.end()) continue;
      if (!v->is_number_unsigned() || v->get<uint64_t>() > UINT32_MAX) {
        return bad(where + "." + key, "must be a whole number");
      }
      *field = static_cast<uint32_t>(v->get<uint64_t>());
    }
    Status st = validateMember(*id, *spec);
    if (!st.isOk()) return bad(where, st.message());
    return Status::ok();
  }

 private:
  std::string file_;
};

}  // namespace

const char* healthStateName(HealthState s) {
  switch (s) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
    case HealthState::kUnknown:
      break;
  }
  return "unknown";
}

const char* drainStateName(DrainState s) {
  switch (s) {
    case DrainState::kDraining:
      return "draining";
    case DrainState::kDrained:
      return "drained";
    case DrainState::kNone:
      break;
  }
  return "none";
}

bool MemberRecord::probeHealthy(const config::HealthCheck& hc) const {
  if (!hc.enabled) return true;
  switch (health) {
    case HealthState::kHealthy:
      return true;
    case HealthState::kUnhealthy:
      return false;
    case HealthState::kUnknown:
      break;
  }
  return hc.initially_healthy;
}

bool MemberRecord::healthEligible(const config::HealthCheck& hc) const {
  const bool joined_late =
      hc.enabled && health == HealthState::kUnknown && ready_since != MonoTime{};
  return !joined_late && probeHealthy(hc);
}

const MemberRecord* PoolRecord::indexed(const std::string& id) const {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (index_data_ != members.data() || index_size_ != members.size() || attempt == 1) {
      index_.clear();
      for (size_t i = 0; i < members.size(); ++i) {
        index_.emplace(members[i].spec.id, static_cast<uint32_t>(i));
      }
      index_data_ = members.data();
      index_size_ = members.size();
    }
    auto it = index_.find(id);
    if (it != index_.end() && it->second < members.size() &&
        members[it->second].spec.id == id) {
      return &members[it->second];
    }
    if (it == index_.end()) break;  // not indexed: checked by the scan below
  }
  for (const MemberRecord& m : members) {
    if (m.spec.id == id) return &m;
  }
  return nullptr;
}

const MemberRecord* PoolRecord::find(const std::string& id) const { return indexed(id); }

MemberRecord* PoolRecord::find(const std::string& id) {
  return const_cast<MemberRecord*>(indexed(id));
}

PoolRegistry::PoolRegistry(int workers, const Clock& clock)
    : workers_(std::max(1, workers)),
      clock_(clock),
      config_(std::make_shared<const config::Config>()) {}

const PoolRecord* PoolRegistry::findPool(const std::string& name) const {
  for (const PoolRecord& p : pools_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

PoolRecord* PoolRegistry::findPool(const std::string& name) {
  for (PoolRecord& p : pools_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void PoolRegistry::addEvent(std::string type, std::string pool, std::string member,
                            std::string detail) {
  Event e;
  e.seq = next_event_seq_++;
  e.at = clock_.wallNow();
  e.type = std::move(type);
  e.pool = std::move(pool);
  e.member = std::move(member);
  e.detail = std::move(detail);
  events_.push_back(std::move(e));
  while (events_.size() > kMaxEvents) events_.pop_front();
}

MemberRecord PoolRegistry::newRecord(const config::Member& spec, MemberOrigin origin) const {
  MemberRecord r;
  r.spec = spec;
  r.origin = origin;
  r.added_at = clock_.wallNow();
  r.ready_since = clock_.now();
  r.stats = std::make_shared<l7proxy::MemberStats>(workers_);
  return r;
}

std::vector<MemberRecord> PoolRegistry::mergeMembers(const std::string& pool,
                                                     const config::Pool& cfg,
                                                     std::vector<MemberRecord> old,
                                                     const LoadedPool* loaded,
                                                     const char* added_detail) {
  const MonoTime now = clock_.now();
  const auto overrides = config_overrides_.find(pool);
  std::vector<bool> taken(old.size(), false);
  auto take = [&](const std::string& id) -> MemberRecord* {
    for (size_t i = 0; i < old.size(); ++i) {
      if (!taken[i] && old[i].spec.id == id) {
        taken[i] = true;
        return &old[i];
      }
    }
    return nullptr;
  };

  std::vector<MemberRecord> out;
  out.reserve(cfg.members.size() + old.size());
  for (const config::Member& file_spec : cfg.members) {
    config::Member spec = file_spec;
    if (overrides != config_overrides_.end()) {
      auto ov = overrides->second.find(file_spec.id);
      if (ov != overrides->second.end()) {
        if (!ov->second.has_value()) continue;  // removed through the API
        applySpec(*ov->second, &spec);
      }
    }
    if (MemberRecord* prev = take(spec.id)) {
      if (prev->origin == MemberOrigin::kApi) {
        addEvent("member_updated", pool, spec.id,
                 "now a config member: the config file names it (file spec " +
                     spec.address.toString() + ")");
      }
      MemberRecord r = std::move(*prev);
      r.origin = MemberOrigin::kConfig;
      setSpec(r, spec, now);
      out.push_back(std::move(r));
    } else {
      out.push_back(newRecord(spec, MemberOrigin::kConfig));
      addEvent("member_added", pool, spec.id,
               std::string(added_detail) + ", " + spec.address.toString());
    }
  }
  for (size_t i = 0; i < old.size(); ++i) {
    if (taken[i]) continue;
    if (old[i].origin == MemberOrigin::kApi) {
      out.push_back(std::move(old[i]));
      continue;
    }
    const std::string& id = old[i].spec.id;
    bool in_file = std::any_of(cfg.members.begin(), cfg.members.end(),
                               [&](const config::Member& m) { return m.id == id; });
    addEvent("member_removed", pool, id,
             in_file ? "removed through the admin API" : "gone from the config file");
  }

  // One member per address: the first in the list keeps it (config members come first).
  std::vector<MemberRecord> unique;
  unique.reserve(out.size());
  for (MemberRecord& r : out) {
    auto same = std::find_if(unique.begin(), unique.end(), [&](const MemberRecord& u) {
      return u.spec.address == r.spec.address;
    });
    if (same != unique.end()) {
      addEvent("member_removed", pool, r.spec.id,
               "address " + r.spec.address.toString() + " is also used by member \"" +
                   same->spec.id + "\"");
      continue;
    }
    unique.push_back(std::move(r));
  }

  if (loaded != nullptr) {
    for (MemberRecord& r : unique) {
      auto d = loaded->drains.find(r.spec.id);
      if (d == loaded->drains.end() || d->second == DrainState::kNone) continue;
      if (r.drain != DrainState::kNone) continue;
      r.drain = d->second;
      r.drain_started = now;
      r.drain_deadline = now + cfg.drain_timeout;
    }
  }
  return unique;
}

void PoolRegistry::applyConfig(std::shared_ptr<const config::Config> cfg) {
  if (cfg == nullptr) return;
  const std::string before = stateJson();

  // Overrides of pools and members that left the file go with them.
  for (auto it = config_overrides_.begin(); it != config_overrides_.end();) {
    auto pool = cfg->pools.find(it->first);
    if (pool == cfg->pools.end()) {
      it = config_overrides_.erase(it);
      continue;
    }
    auto& by_id = it->second;
    for (auto o = by_id.begin(); o != by_id.end();) {
      const std::string& id = o->first;
      bool named = std::any_of(pool->second.members.begin(), pool->second.members.end(),
                               [&](const config::Member& m) { return m.id == id; });
      o = named ? std::next(o) : by_id.erase(o);
    }
    it = by_id.empty() ? config_overrides_.erase(it) : std::next(it);
  }

  std::vector<PoolRecord> old = std::move(pools_);
  pools_.clear();
  for (const auto& [name, pool] : cfg->pools) {
    PoolRecord rec;
    rec.name = name;
    rec.cfg = &pool;
    std::vector<MemberRecord> members;
    auto prev = std::find_if(old.begin(), old.end(),
                             [&name = name](const PoolRecord& p) { return p.name == name; });
    if (prev != old.end()) {
      rec.stats = prev->stats;
      rec.ejections_total = prev->ejections_total;
      rec.model_version = prev->model_version;
      rec.model_known = prev->model_known;
      rec.upgrade_version = prev->upgrade_version;
      members = std::move(prev->members);
      prev->name.clear();  // taken
    } else {
      rec.stats = std::make_shared<l7proxy::PoolStats>(workers_);
    }
    const LoadedPool* loaded = nullptr;
    if (auto l = loaded_.find(name); l != loaded_.end()) {
      loaded = &l->second;
      for (const MemberRecord& m : l->second.api_members) {
        bool known = std::any_of(members.begin(), members.end(),
                                 [&](const MemberRecord& r) { return r.spec.id == m.spec.id; });
        if (!known) members.push_back(m);
      }
    }
    rec.members = mergeMembers(name, pool, std::move(members), loaded, "from the config file");
    if (!rec.model_known && !pool.members.empty()) {
      rec.model_version = pool.members.front().version;
      rec.model_known = true;
    }
    pools_.push_back(std::move(rec));
  }
  for (const PoolRecord& p : old) {
    if (p.name.empty()) continue;
    addEvent(
        "pool_removed", p.name, "",
        "gone from the config file with its " + std::to_string(p.members.size()) + " member(s)");
  }
  for (const auto& [name, l] : loaded_) {
    if (cfg->pools.count(name) != 0) continue;
    addEvent("pool_removed", name, "",
             "in the state file but not in the config file: its " +
                 std::to_string(l.api_members.size()) + " API member(s) are dropped");
  }
  loaded_.clear();
  config_ = std::move(cfg);
  ++version_;
  if (stateJson() != before) ++persist_version_;
}

Result<bool> PoolRegistry::upsertMember(const std::string& pool, const std::string& id,
                                        const MemberSpec& spec) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return notFound("pool " + quote(pool) + " not found");
  SG_RETURN_IF_ERROR(validateMember(id, spec));
  SG_RETURN_IF_ERROR(checkUniform(*p, id, spec));
  if (p->cfg->mode == config::PoolMode::kUniform && !p->model_known) {
    // The pool's version is settled by its first member (or what the members loaded from the
    // state file run), so a rolling upgrade's mixed pool has one model to compare with.
    p->model_version = spec.version;
    for (const MemberRecord& m : p->members) {
      if (m.spec.id != id) {
        p->model_version = m.spec.version;
        break;
      }
    }
    p->model_known = true;
  }
  for (const MemberRecord& m : p->members) {
    if (m.spec.id != id && m.spec.address == spec.address) {
      return Status(StatusCode::kAlreadyExists, "address " + spec.address.toString() +
                                                    " is already used by member " +
                                                    quote(m.spec.id) + " of pool " + quote(pool));
    }
  }
  const config::Member* file_member = nullptr;
  for (const config::Member& m : p->cfg->members) {
    if (m.id == id) file_member = &m;
  }
  // A config member's spec from the API is an override, unless it is the file's own spec.
  auto setOverride = [&]() {
    if (sameSpec(specOf(*file_member), spec)) {
      auto it = config_overrides_.find(pool);
      if (it != config_overrides_.end()) {
        it->second.erase(id);
        if (it->second.empty()) config_overrides_.erase(it);
      }
    } else {
      config_overrides_[pool][id] = spec;
    }
  };

  if (MemberRecord* m = p->find(id)) {
    const MemberSpec current = specOf(m->spec);
    if (sameSpec(current, spec)) return false;
    if (m->origin == MemberOrigin::kConfig && file_member != nullptr) setOverride();
    config::Member next = m->spec;
    applySpec(spec, &next);
    setSpec(*m, next, clock_.now());
    addEvent("member_updated", pool, id, describeChange(current, spec));
    ++version_;
    ++persist_version_;
    return false;
  }
  if (file_member != nullptr) {
    // A config member removed through the API comes back at its place in the file order.
    setOverride();
    p->members = mergeMembers(pool, *p->cfg, std::move(p->members), nullptr,
                              "restored through the admin API");
  } else {
    config::Member m;
    m.id = id;
    applySpec(spec, &m);
    p->members.push_back(newRecord(m, MemberOrigin::kApi));
    addEvent("member_added", pool, id, "through the admin API, " + spec.address.toString());
  }
  ++version_;
  ++persist_version_;
  return true;
}

Status PoolRegistry::checkUniform(const PoolRecord& p, const std::string& id,
                                  const MemberSpec& spec) const {
  if (p.cfg->mode != config::PoolMode::kUniform) return Status::ok();
  // The pool's model: what its other members share (the loader keeps config members uniform).
  // Weight 0 takes a member out of traffic; it says nothing of its size, so it is allowed
  // and such members do not set the pool's weight.
  const MemberRecord* other = nullptr;
  const MemberRecord* sized = nullptr;
  for (const MemberRecord& m : p.members) {
    if (m.spec.id == id) continue;
    if (other == nullptr) other = &m;
    if (sized == nullptr && m.spec.weight != 0) sized = &m;
  }
  if (other == nullptr) return Status::ok();
  if (spec.weight != 0 && sized != nullptr && spec.weight != sized->spec.weight) {
    other = sized;
    return invalidArgument("pool " + quote(p.name) + " is uniform: every member has weight " +
                           std::to_string(other->spec.weight) + ", and member " + quote(id) +
                           " asks for " + std::to_string(spec.weight) +
                           " (use mode: flexible to mix instance sizes)");
  }
  const std::string& model = p.model_known ? p.model_version : other->spec.version;
  bool version_ok = spec.version == model ||
                    (!p.upgrade_version.empty() && spec.version == p.upgrade_version);
  if (!version_ok) {
    return invalidArgument("pool " + quote(p.name) + " is uniform: its members run version " +
                           quote(model) +
                           (p.upgrade_version.empty()
                                ? std::string()
                                : " (or " + quote(p.upgrade_version) + " during the upgrade)") +
                           ", and member " + quote(id) + " has version " + quote(spec.version) +
                           " (roll versions out with an upgrade, or use mode: flexible)");
  }
  return Status::ok();
}

void PoolRegistry::setUpgradeVersion(const std::string& pool, const std::string& version) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return;
  p->upgrade_version = version;
}

void PoolRegistry::finishUpgrade(const std::string& pool) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return;
  if (!p->upgrade_version.empty()) {
    p->model_version = p->upgrade_version;
    p->model_known = true;
  }
  p->upgrade_version.clear();
}

Status PoolRegistry::removeMember(const std::string& pool, const std::string& id) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return notFound("pool " + quote(pool) + " not found");
  auto it = std::find_if(p->members.begin(), p->members.end(),
                         [&](const MemberRecord& m) { return m.spec.id == id; });
  if (it == p->members.end()) {
    return notFound("member " + quote(id) + " not found in pool " + quote(pool));
  }
  if (it->origin == MemberOrigin::kConfig) config_overrides_[pool][id] = std::nullopt;
  addEvent("member_removed", pool, id,
           "through the admin API (was " + it->spec.address.toString() + ", " +
               drainStateName(it->drain) + ")");
  p->members.erase(it);
  ++version_;
  ++persist_version_;
  return Status::ok();
}

Status PoolRegistry::drainMember(const std::string& pool, const std::string& id,
                                 std::optional<Duration> timeout) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return notFound("pool " + quote(pool) + " not found");
  MemberRecord* m = p->find(id);
  if (m == nullptr) return notFound("member " + quote(id) + " not found in pool " + quote(pool));
  if (timeout.has_value() && timeout->count() < 0) {
    return invalidArgument("drain timeout must not be negative");
  }
  if (m->drain != DrainState::kNone) return Status::ok();
  const Duration t = timeout.value_or(p->cfg->drain_timeout);
  const MonoTime now = clock_.now();
  m->drain = DrainState::kDraining;
  m->drain_started = now;
  m->drain_deadline = now + t;
  addEvent("drain_started", pool, id,
           std::to_string(inFlight(*m)) + " request(s) in flight, deadline in " +
               std::to_string(toMillis(t)) + "ms");
  ++version_;
  ++persist_version_;
  return Status::ok();
}

Status PoolRegistry::undrainMember(const std::string& pool, const std::string& id,
                                   const std::string& why) {
  PoolRecord* p = findPool(pool);
  if (p == nullptr) return notFound("pool " + quote(pool) + " not found");
  MemberRecord* m = p->find(id);
  if (m == nullptr) return notFound("member " + quote(id) + " not found in pool " + quote(pool));
  if (m->drain == DrainState::kNone) return Status::ok();
  m->drain = DrainState::kNone;
  m->ready_since = clock_.now();  // back to traffic: slow start ramps it again
  addEvent("undrained", pool, id, why);
  ++version_;
  ++persist_version_;
  return Status::ok();
}

bool PoolRegistry::tickDrains(MonoTime now) {
  bool changed = false;
  for (PoolRecord& p : pools_) {
    for (MemberRecord& m : p.members) {
      if (m.drain != DrainState::kDraining) continue;
      uint64_t active = inFlight(m);
      if (active == 0) {
        m.drain = DrainState::kDrained;
        addEvent(
            "drained", p.name, m.spec.id,
            "no request in flight after " + std::to_string(toMillis(now - m.drain_started)) + "ms");
        changed = true;
      } else if (now >= m.drain_deadline) {
        m.drain = DrainState::kDrained;
        addEvent("drain_timeout", p.name, m.spec.id,
                 std::to_string(active) + " request(s) still in flight at the deadline");
        changed = true;
      }
    }
  }
  if (changed) {
    ++version_;
    ++persist_version_;
  }
  return changed;
}

std::shared_ptr<const config::Config> PoolRegistry::effectiveConfig() const {
  auto out = std::make_shared<config::Config>(*config_);
  for (auto& [name, pool] : out->pools) {
    pool.members.clear();
    const PoolRecord* rec = findPool(name);
    if (rec == nullptr) continue;
    pool.members.reserve(rec->members.size());
    for (const MemberRecord& m : rec->members) pool.members.push_back(m.spec);
  }
  return out;
}

std::string PoolRegistry::stateJson() const {
  Json pools = Json::object();
  auto poolEntry = [&](const std::string& name) -> Json& {
    Json& e = pools[name];
    if (e.is_null()) {
      e = Json{{"members", Json::array()},
               {"overrides", Json::array()},
               {"removed", Json::array()},
               {"drains", Json::object()}};
    }
    return e;
  };
  for (const PoolRecord& p : pools_) {
    for (const MemberRecord& m : p.members) {
      if (m.origin == MemberOrigin::kApi) {
        Json j = specJson(m.spec.id, specOf(m.spec));
        j["drain"] = drainStateName(m.drain);
        j["added_at_ms"] =
            std::chrono::duration_cast<std::chrono::milliseconds>(m.added_at.time_since_epoch())
                .count();
        poolEntry(p.name)["members"].push_back(std::move(j));
      } else if (m.drain != DrainState::kNone) {
        poolEntry(p.name)["drains"][m.spec.id] = drainStateName(m.drain);
      }
    }
  }
  for (const auto& [pool, by_id] : config_overrides_) {
    for (const auto& [id, spec] : by_id) {
      if (spec.has_value()) {
        poolEntry(pool)["overrides"].push_back(specJson(id, *spec));
      } else {
        poolEntry(pool)["removed"].push_back(id);
      }
    }
  }
  Json doc{{"version", kStateVersion}, {"pools", std::move(pools)}};
  return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

Status PoolRegistry::saveState(const std::string& path) const {
  std::string text;
  try {
    text = stateJson();
  } catch (const std::exception& e) {
    return internalError("cannot write state file " + path + ": " + e.what());
  }
  Status st = replaceFileAtomically(path, text);
  if (!st.isOk()) return Status(st.code(), "cannot write state file " + path + ": " + st.message());
  return Status::ok();
}

Status PoolRegistry::loadState(const std::string& path) {
  Result<std::string> text = readWholeFile(path);
  if (!text.isOk()) {
    if (text.status().code() == StatusCode::kNotFound) return Status::ok();
    return Status(text.status().code(), "cannot read state file: " + text.status().message());
  }
  return loadStateText(path, *text);
}

Status PoolRegistry::loadStateText(const std::string& path, const std::string& text) {
  try {
    return parseState(path, text);
  } catch (const std::exception& e) {
    return invalidArgument("state file " + path + ": " + e.what());
  }
}

Status PoolRegistry::parseState(const std::string& path, const std::string& text) {
  StateReader r(path);
  Json doc = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return r.bad("(top level)", "not valid JSON");
  SG_RETURN_IF_ERROR(r.checkKeys(doc, "(top level)", {"version", "pools"}));
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer() ||
      version->get<int64_t>() != kStateVersion) {
    return r.bad("version", "expected 1 (a file from another scalegate version?)");
  }
  auto pools = doc.find("pools");
  if (pools == doc.end() || !pools->is_object()) return r.bad("pools", "expected an object");

  std::map<std::string, LoadedPool> loaded;
  std::map<std::string, std::map<std::string, std::optional<MemberSpec>>> overrides;
  size_t members_total = 0;
  for (auto pit = pools->begin(); pit != pools->end(); ++pit) {
    const std::string& name = pit.key();
    const std::string where = "pools." + name;
    if (!isValidId(name)) return r.bad(where, "bad pool name");
    SG_RETURN_IF_ERROR(r.checkKeys(*pit, where, {"members", "overrides", "removed", "drains"}));
    LoadedPool& lp = loaded[name];
    auto& ov = overrides[name];
    std::set<std::string> ids;
    std::set<std::string> addresses;
    auto arrayOf = [&](const char* key, const Json** out) -> Status {
      *out = nullptr;
      auto it = pit->find(key);
      if (it == pit->end()) return Status::ok();
      if (!it->is_array()) return r.bad(where + "." + key, "expected an array");
      *out = &*it;
      return Status::ok();
    };
    const Json* members = nullptr;
    SG_RETURN_IF_ERROR(arrayOf("members", &members));
    for (size_t i = 0; members != nullptr && i < members->size(); ++i) {
      const Json& m = (*members)[i];
      const std::string mw = where + ".members[" + std::to_string(i) + "]";
      std::string id;
      MemberSpec spec;
      SG_RETURN_IF_ERROR(
          r.member(m, mw, &id, &spec,
                   {"id", "address", "zone", "fault_domain", "weight", "version", "protected",
                    "drain", "added_at_ms"}));
      if (!ids.insert(id).second) return r.bad(mw, "duplicate member id " + quote(id));
      if (!addresses.insert(spec.address.toString()).second) {
        return r.bad(mw, "duplicate address " + spec.address.toString());
      }
      config::Member cm;
      cm.id = id;
      applySpec(spec, &cm);
      MemberRecord rec = newRecord(cm, MemberOrigin::kApi);
      if (auto d = m.find("drain"); d != m.end()) {
        DrainState state = DrainState::kNone;
        if (!d->is_string() || !parseDrain(d->get_ref<const std::string&>(), &state)) {
          return r.bad(mw + ".drain", "expected \"none\", \"draining\" or \"drained\"");
        }
        lp.drains[id] = state;
      }
      if (auto a = m.find("added_at_ms"); a != m.end()) {
        if (!a->is_number_integer() || a->get<int64_t>() < 0 || a->get<int64_t>() > kMaxAddedAtMs) {
          return r.bad(mw + ".added_at_ms", "expected milliseconds since 1970");
        }
        rec.added_at = WallTime(std::chrono::duration_cast<WallTime::duration>(
            std::chrono::milliseconds(a->get<int64_t>())));
      }
      lp.api_members.push_back(std::move(rec));
    }
    const Json* overrides_json = nullptr;
    SG_RETURN_IF_ERROR(arrayOf("overrides", &overrides_json));
    for (size_t i = 0; overrides_json != nullptr && i < overrides_json->size(); ++i) {
      const std::string ow = where + ".overrides[" + std::to_string(i) + "]";
      std::string id;
      MemberSpec spec;
      SG_RETURN_IF_ERROR(r.member((*overrides_json)[i], ow, &id, &spec,
                                  {"id", "address", "zone", "fault_domain", "weight", "version",
                                   "protected"}));
      if (ids.count(id) != 0 || !ov.emplace(id, spec).second) {
        return r.bad(ow, "member " + quote(id) + " appears twice");
      }
    }
    const Json* removed = nullptr;
    SG_RETURN_IF_ERROR(arrayOf("removed", &removed));
    for (size_t i = 0; removed != nullptr && i < removed->size(); ++i) {
      const Json& id = (*removed)[i];
      const std::string rw = where + ".removed[" + std::to_string(i) + "]";
      if (!id.is_string() || !isValidId(id.get_ref<const std::string&>())) {
        return r.bad(rw, "expected a member id");
      }
      const std::string& s = id.get_ref<const std::string&>();
      if (ids.count(s) != 0 || !ov.emplace(s, std::nullopt).second) {
        return r.bad(rw, "member " + quote(s) + " appears twice");
      }
    }
    if (auto d = pit->find("drains"); d != pit->end()) {
      if (!d->is_object()) return r.bad(where + ".drains", "expected an object");
      for (auto dit = d->begin(); dit != d->end(); ++dit) {
        DrainState state = DrainState::kNone;
        if (!isValidId(dit.key())) return r.bad(where + ".drains", "bad member id");
        if (!dit->is_string() || !parseDrain(dit->get_ref<const std::string&>(), &state)) {
          return r.bad(where + ".drains." + dit.key(),
                       "expected \"none\", \"draining\" or \"drained\"");
        }
        lp.drains[dit.key()] = state;
      }
    }
    members_total += lp.api_members.size();
    if (ov.empty()) overrides.erase(name);
  }

  size_t override_count = 0;
  for (const auto& [pool, by_id] : overrides) override_count += by_id.size();
  loaded_ = std::move(loaded);
  config_overrides_ = std::move(overrides);
  addEvent("state_loaded", "", "",
           path + ": " + std::to_string(members_total) + " API member(s), " +
               std::to_string(override_count) + " override(s) of config members");
  // Normally loadState() precedes the first applyConfig(); if not, apply what was read now.
  if (!pools_.empty()) applyConfig(config_);
  return Status::ok();
}

}  // namespace scalegate::control
