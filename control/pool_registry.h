#pragma once
// The mutable world of pools and members, owned by the control thread: membership from the
// config file plus what the admin API (the scaler, operators) changed, each member's health,
// drain and ejection state, reported load, the statistics blocks the workers write, and a
// bounded log of recent events. App turns it into an immutable Snapshot whenever it changes.
// Control thread only.
//
//   config file ─applyConfig─┐                         ┌─► buildSnapshot ─► workers
//   state file ──loadState───┼─► PoolRegistry ─────────┤
//   admin API ──upsert/remove/drain─┘   ▲  ▲            └─► metrics, GET /v1/pools
//   prober ──recordProbe────────────────┘  │
//   outlier detection ──eject/uneject──────┘

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"
#include "config/snapshot.h"
#include "l7proxy/stats.h"

namespace scalegate::control {

// Probe verdict as the rise/fall state machine sees it.
enum class HealthState { kUnknown, kHealthy, kUnhealthy };
enum class DrainState { kNone, kDraining, kDrained };
enum class MemberOrigin { kConfig, kApi };

const char* healthStateName(HealthState s);  // "unknown" | "healthy" | "unhealthy"
const char* drainStateName(DrainState s);    // "none" | "draining" | "drained"

// What one probe found (control/prober.h fills it).
struct ProbeOutcome {
  bool ok = false;      // connected / status in the expected ranges / app healthy
  int http_status = 0;  // 0 for TCP probes or when no response came
  Duration duration{};  // connect (TCP) or until the whole answer was read
  std::string error;    // "" when ok; else "connect: Connection refused", "timeout", ...
  std::map<std::string, double> load;  // reported load (cpu, mem, queue, custom names)
  std::string app_health;  // rich health body state: Initializing|Healthy|Unhealthy|Unknown
};

struct MemberRecord {
  config::Member spec;  // id, address, zone, fault_domain, weight (API weight when re-weighted)
  MemberOrigin origin = MemberOrigin::kConfig;
  WallTime added_at{};

  // Active health (rise/fall over consecutive probe results).
  HealthState health = HealthState::kUnknown;  // kUnknown acts as the configured initial state
  uint32_t consecutive_ok = 0;
  uint32_t consecutive_fail = 0;
  bool transitioning = false;  // the last result disagreed with `health`: probe at fast_interval
  std::optional<ProbeOutcome> last_probe;
  WallTime last_probe_at{};
  uint64_t probes_ok = 0, probes_failed = 0;
  std::map<std::string, double> load;  // latest reported load
  std::string app_health;

  // Drain (admin API): no new requests; in-flight ones finish until drain_deadline.
  DrainState drain = DrainState::kNone;
  MonoTime drain_started{};
  MonoTime drain_deadline{};

  // Passive outlier detection.
  bool ejected = false;
  MonoTime ejected_until{};
  uint32_t ejections = 0;             // how many times (drives the back-off)
  uint64_t outlier_signals_seen = 0;  // stats->outlier_signals sum already acted upon

  MonoTime ready_since{};  // last became able to take traffic: slow start counts from it
  std::shared_ptr<l7proxy::MemberStats> stats;

  // Healthy by probes (kUnknown counts as the configured initial state).
  bool probeHealthy(const config::HealthCheck& hc) const;
  // May take traffic as far as health goes: probeHealthy(), except that a member that joined
  // while running (scale-out, API, reload, a new version) may still be booting, so with probes
  // configured it waits for `rise` good ones. The configured initial state covers only members
  // present at process start (their ready_since is zero).
  bool healthEligible(const config::HealthCheck& hc) const;
};

struct PoolRecord {
  std::string name;
  const config::Pool* cfg = nullptr;  // into the current config
  std::vector<MemberRecord> members;  // config members in file order, then API members in
                                      // the order they were added
  std::shared_ptr<l7proxy::PoolStats> stats;
  uint64_t ejections_total = 0;
  // Uniform pools: the version every member runs (from the config members or the first member
  // registered; an upgrade's end replaces it), and the version a running rolling upgrade rolls
  // out, which members may also have until it ends.
  std::string model_version;
  bool model_known = false;  // false: the model is whatever the other members run
  std::string upgrade_version;

  // By id. O(1) on average: an index over `members` is rebuilt lazily whenever the vector
  // was changed (its size, storage or the entry found no longer match); ids the index does
  // not know fall back to a scan, so a stale index can never hide a member.
  const MemberRecord* find(const std::string& id) const;
  MemberRecord* find(const std::string& id);

 private:
  const MemberRecord* indexed(const std::string& id) const;
  mutable std::unordered_map<std::string, uint32_t> index_;
  mutable const MemberRecord* index_data_ = nullptr;
  mutable size_t index_size_ = 0;
};

struct Event {
  uint64_t seq = 0;  // increasing from 1
  WallTime at{};
  std::string type;  // member_added, member_removed, member_updated, health_changed,
                     // drain_started, drained, drain_timeout, ejected, unejected,
                     // config_reloaded, state_write_failed, ...
  std::string pool;
  std::string member;  // "" when the event is about the pool or the process
  std::string detail;  // human-readable, e.g. "unhealthy -> healthy after 2 ok probes"
};

// What the API may set on a member.
struct MemberSpec {
  SocketAddress address;
  std::string zone;
  uint32_t fault_domain = 0;
  uint32_t weight = 1;
  std::string version;              // "" = unknown
  bool scale_in_protected = false;  // autoscale never picks it for scale-in
};

class PoolRegistry {
 public:
  static constexpr size_t kMaxEvents = 1000;

  PoolRegistry(int workers, const Clock& clock);

  // Applies a (re)loaded config. Pools come from it (pools gone from the file are dropped with
  // their API members). Config members take the file's spec unless the API re-weighted or
  // removed them (those overrides persist); API members are kept. Records that survive keep
  // their health, drain, ejection state and stats blocks. An API member whose id now appears
  // in the file becomes that config member (file spec, same record); a member whose address
  // another member earlier in the list already uses is dropped (event member_removed).
  void applyConfig(std::shared_ptr<const config::Config> cfg);
  const config::Config& config() const { return *config_; }

  // The state file (DESIGN: "a restart loses no registered member"). loadState() once at
  // start, before the first applyConfig(); a missing file is not an error, a corrupt one is
  // (kInvalidArgument naming the file and the bad entry: the process should refuse to start
  // rather than silently lose members). What it loaded takes effect at the next applyConfig().
  // saveState() writes atomically (temp file, fsync, rename, fsync of the directory); on
  // failure the old file is untouched and the error names the file and the errno text.
  //
  // Format (version 1), one entry per pool that has something to keep:
  //   {"version": 1,
  //    "pools": {
  //      "web": {
  //        "members": [    // API members, in the order they were added
  //          {"id": "vm-7", "address": "10.0.0.7:80", "zone": "1", "fault_domain": 0,
  //           "weight": 1, "drain": "none", "added_at_ms": 1700000000000}],
  //        "overrides": [  // config members whose spec the API replaced (PUT)
  //          {"id": "vm-1", "address": "10.0.0.1:80", "zone": "1", "fault_domain": 0,
  //           "weight": 5}],
  //        "removed": ["vm-3"],           // config members removed through the API (DELETE)
  //        "drains": {"vm-2": "drained"}  // config members' drain state when not "none"
  //   }}}
  // "drain" is none | draining | drained; a member that was draining when the process stopped
  // drains again from the start (its deadline is the pool's drain_timeout). Pools, overrides
  // and drains of pools or config members no longer in the config are dropped at applyConfig.
  Status loadState(const std::string& path);
  Status saveState(const std::string& path) const;
  // loadState() of text already read; `path` only names it in errors (tests, the fuzzer).
  Status loadStateText(const std::string& path, const std::string& text);
  // What saveState() writes (for tests and debugging).
  std::string stateJson() const;

  // Admin API. Names and addresses are validated here (id charset as config names; a literal
  // ip:port; weight 0..1000000). Errors: kNotFound (no such pool/member), kInvalidArgument,
  // kAlreadyExists (another member of the pool has that address).
  // upsertMember returns true when it created the member, false when it updated it.
  Result<bool> upsertMember(const std::string& pool, const std::string& id, const MemberSpec& spec);
  Status removeMember(const std::string& pool, const std::string& id);
  // Rolling upgrades of uniform pools: while one runs, members may also run `version`;
  // finishUpgrade() makes it the pool's version. An aborted upgrade leaves `version` allowed:
  // the members it already upgraded run it and must be able to re-register (a repair, a
  // restart); the next upgrade's version replaces it.
  void setUpgradeVersion(const std::string& pool, const std::string& version);
  void finishUpgrade(const std::string& pool);
  // A PUT of a config member stores the spec as an override (kept across reloads and
  // restarts); a PUT that gives it back exactly the file's spec clears the override. A PUT of a
  // config member removed earlier brings it back at its place in the file order. A new address
  // resets the member's health, ejection and load (it is another endpoint); stats stay.
  //
  // Starts draining (no new requests). timeout = pool drain_timeout when absent. Draining a
  // member that is already draining or drained changes nothing. A drain ends only by removing
  // the member (DELETE, then PUT to bring it back).
  Status drainMember(const std::string& pool, const std::string& id,
                     std::optional<Duration> timeout);
  // Ends a drain (a rolling upgrade returns a batch to traffic; an aborted scale-in). `why`
  // goes into the "undrained" event. A member that is not draining is left as it is.
  Status undrainMember(const std::string& pool, const std::string& id, const std::string& why);
  // Advances drains: a draining member with no request in flight (stats rq_active == 0) or past
  // its deadline becomes kDrained (events "drained" / "drain_timeout"). True if anything changed.
  bool tickDrains(MonoTime now);

  const std::vector<PoolRecord>& pools() const { return pools_; }
  const PoolRecord* findPool(const std::string& name) const;
  PoolRecord* findPool(const std::string& name);

  // Recent events, oldest first, at most kMaxEvents.
  const std::deque<Event>& events() const { return events_; }
  void addEvent(std::string type, std::string pool, std::string member, std::string detail);

  // Bumped on every change that the data paths must see (membership, weight, health, drain,
  // ejection). App rebuilds the snapshot when it moves.
  uint64_t version() const { return version_; }
  void markChanged() { ++version_; }
  // Bumped on membership changes that must be persisted (a subset of version()).
  uint64_t persistVersion() const { return persist_version_; }

  // The config the data paths run: the file's config with each pool's member list replaced by
  // the registry's (API members included, removed ones left out).
  std::shared_ptr<const config::Config> effectiveConfig() const;

  int workers() const { return workers_; }
  const Clock& clock() const { return clock_; }

 private:
  // What loadState() read, consumed by the next applyConfig().
  struct LoadedPool {
    std::vector<MemberRecord> api_members;
    std::map<std::string, DrainState> drains;  // API and config members
  };

  MemberRecord newRecord(const config::Member& spec, MemberOrigin origin) const;
  // The pool's member list from its config, the overrides and the `old` records (which keep
  // their state); old API members not named by the file are appended in their order.
  std::vector<MemberRecord> mergeMembers(const std::string& pool, const config::Pool& cfg,
                                         std::vector<MemberRecord> old, const LoadedPool* loaded,
                                         const char* added_detail);
  Status parseState(const std::string& path, const std::string& text);
  // Uniform pools refuse a member whose weight or version differs from the others'
  // (kInvalidArgument naming both).
  Status checkUniform(const PoolRecord& p, const std::string& id, const MemberSpec& spec) const;

  int workers_;
  const Clock& clock_;
  std::map<std::string, LoadedPool> loaded_;
  std::shared_ptr<const config::Config> config_;
  std::vector<PoolRecord> pools_;
  // API overrides of config members, by pool then member id: re-weighted specs and removals.
  std::map<std::string, std::map<std::string, std::optional<MemberSpec>>> config_overrides_;
  std::deque<Event> events_;
  uint64_t next_event_seq_ = 1;
  uint64_t version_ = 1;
  uint64_t persist_version_ = 1;
};

}  // namespace scalegate::control
