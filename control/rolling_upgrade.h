#pragma once
// Rolling upgrade of a pool to a version (Azure rollingUpgradePolicy), as a state machine the
// control thread drives; the caller performs each action and reports back.
//
//  start() ─► step() ─► DrainBatch{ids} ─► caller drains ─► onDrained()
//     ▲                                                         │
//     │       SendUpgradeBatch{ids, version, i, n} ◄── step() ◄─┘
//     │            │ caller sends upgrade_batch ─► onBatchSent()
//     │            ▼
//     │       WaitHealthy (step() with instances' health + version, every tick)
//     │            │ all of the batch healthy at the version
//     │            ▼
//     │       BatchDone{ids}: caller returns them to traffic (undrain)
//     │            │ more batches?
//     └─ Pause ◄───┘ no ─► Completed
//
//  Aborted{reason, ids of the batch in flight} when, before a batch, unhealthy instances exceed
//  max_unhealthy; after a batch (and while waiting), upgraded instances that are unhealthy
//  exceed max_unhealthy_upgraded; a batch is not healthy at the version within health_timeout;
//  the upgrade_batch webhook failed (onBatchFailed); or cancel().
//
// Batches: instances not yet at the version, one zone at a time (zones in name order, ids in
// natural order), at most `batch` instances each (a percentage of the pool, at least 1).
// Limits: a percentage is of the whole pool (rounded down, at least 0), a count is absolute;
// exceeded means strictly more than the limit.
//
// Restarts: toJson() is everything step() needs to go on where it stopped (the plan, the batch
// in flight and its phase, the phase's start as a wall time, counts, the abort reason);
// restore() loads it into a fresh machine. The caller writes it before it acts on an action
// (write-ahead) and re-checks its own side effects after a restart (control/README.md
// "Restarts during autoscaling").
//
// Thread: control thread. One RollingUpgrade per pool; at most one upgrade at a time.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"

namespace scalegate::control {

struct UpgradeInstance {
  std::string id;
  std::string zone;
  std::string version;
  bool healthy = true;
};

struct UpgradeRequest {
  std::string version;  // required, the target version label
  config::CountOrPercent batch{20, true};
  config::CountOrPercent max_unhealthy{20, true};
  config::CountOrPercent max_unhealthy_upgraded{20, true};
  Duration pause = std::chrono::seconds(10);
  Duration health_timeout = std::chrono::minutes(5);
  // Defaults from the pool's autoscale.upgrade, version left empty.
  static UpgradeRequest fromDefaults(const config::UpgradeDefaults& d, std::string version);
};

enum class UpgradeState {
  kIdle,            // never started
  kDraining,        // waiting for onDrained()
  kSending,         // drained: SendUpgradeBatch is next / waiting for onBatchSent()
  kWaitingHealthy,  // batch sent: waiting for it to be healthy at the version
  kPausing,         // between batches
  kCompleted,
  kAborted,
};
const char* upgradeStateName(UpgradeState s);

struct UpgradeAction {
  enum class Kind {
    kNone,              // nothing to do now (waiting for the caller, or idle)
    kDrainBatch,        // drain `ids`, then onDrained()
    kSendUpgradeBatch,  // send upgrade_batch for `ids` at `version`, then onBatchSent()
    kWaitHealthy,       // keep calling step() with fresh instance health
    kBatchDone,         // `ids` are healthy at the version: return them to traffic
    kPause,             // between batches, until `until`
    kCompleted,         // every instance is at the version (returned once)
    kAborted,           // `reason`; `ids`: the batch in flight (undrain them) (returned once)
  };
  Kind kind = Kind::kNone;
  std::vector<std::string> ids;
  std::string version;
  uint32_t batch_index = 0;  // 0-based
  uint32_t batch_count = 0;
  std::string reason;
  MonoTime until{};
};
const char* upgradeActionName(UpgradeAction::Kind k);

struct UpgradeProgress {
  UpgradeState state = UpgradeState::kIdle;
  std::string version;
  uint32_t batch_index = 0;  // the batch in flight (0-based); batch_count when done
  uint32_t batch_count = 0;
  uint32_t instances_total = 0;     // instances to upgrade at start
  uint32_t instances_upgraded = 0;  // of those, in finished batches
  std::vector<std::string> current_batch;
  WallTime started_at{};
  std::optional<WallTime> ended_at;
  std::string reason;  // why it aborted
};

class RollingUpgrade {
 public:
  // Plans the batches. Errors: kFailedPrecondition when one is already running;
  // kInvalidArgument for an empty version. Instances already at the version are skipped;
  // when none is left the upgrade completes at the first step().
  Status start(const UpgradeRequest& request, std::span<const UpgradeInstance> instances,
               MonoTime now, WallTime wall_now);

  // Advances the machine with the pool's current instances and returns what to do now.
  UpgradeAction step(std::span<const UpgradeInstance> instances, MonoTime now, WallTime wall_now);

  void onDrained(MonoTime now);    // the batch from kDrainBatch is drained
  void onBatchSent(MonoTime now);  // upgrade_batch was delivered (2xx)
  void onBatchFailed(const std::string& reason, MonoTime now, WallTime wall_now);
  void cancel(const std::string& reason, WallTime wall_now);

  bool running() const;
  const UpgradeProgress& progress() const { return progress_; }
  // kSending and the upgrade_batch of the batch in flight was already handed to the caller
  // (step() returns it once).
  bool batchSendRequested() const { return send_requested_; }

  // The machine as JSON. Monotonic times are written as wall times through the pair
  // (mono_ref, wall_ref), so the text changes only when the state does.
  nlohmann::json toJson(MonoTime mono_ref, WallTime wall_ref) const;
  // Replaces this machine with one saved by toJson(); `now`/`wall_now` map the saved wall
  // times back to this process's monotonic clock. kInvalidArgument naming the key when the
  // JSON is not such a machine (this machine is then left as it was). A completed or aborted
  // upgrade comes back as it ended and is not reported again by step().
  Status restore(const nlohmann::json& j, MonoTime now, WallTime wall_now);

 private:
  UpgradeAction abort(std::string reason, WallTime wall_now);
  UpgradeAction beginBatch(std::span<const UpgradeInstance> instances, WallTime wall_now);

  UpgradeRequest request_;
  UpgradeProgress progress_;
  std::vector<std::vector<std::string>> batches_;
  std::vector<std::string> upgraded_;  // ids in finished batches
  bool send_requested_ = false;
  bool terminal_reported_ = true;
  MonoTime phase_started_{};
};

}  // namespace scalegate::control
