#pragma once
// Automatic instance repairs (Azure VMSS automaticRepairsPolicy).
//
//   each tick: tick(members, now) ──► RepairPlan { start: ids to repair now,
//                                                  succeeded / failed: finished repairs,
//                                                  suspended: event to record }
//   caller: sends the repair webhook for each id in `start` (tick() already counts them as in
//           repair); a webhook that finally fails: onRepairFailed(id, now, why).
//
//   member unhealthy ──(continuously for `grace`)──► candidate ──(room in the budget)──► start
//   in repair ──► healthy again, or gone from the pool (replaced) ──► succeeded
//             └─► `timeout` passes, or onRepairFailed ─────────────► failed
//   `suspend_after_failures` failures in a row ──► repairs suspended for `suspend_for`
//
// Budget: at most max_percent (5%) of the pool in repair at once, and one at a time below 20
// members (at least one). Members are ignored during their first `grace` after they first
// appear (a new or replacement instance is still booting) and while draining. The oldest
// unhealthy member goes first. Scale-in protection does not exempt a member from repairs.
//
// Thread: control thread. Holds per-member timestamps; owns no config beyond a copy.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "config/model.h"

namespace scalegate::control {

struct RepairMemberView {
  std::string id;
  bool healthy = true;
  bool draining = false;  // leaving the pool: never repaired
};

struct RepairOutcome {
  std::string id;
  std::string reason;  // "healthy again", "replaced (left the pool)", "timeout after 10m", ...
};

struct RepairSuspension {
  MonoTime until{};
  uint32_t failures = 0;
  std::string reason;
};

struct RepairPlan {
  std::vector<std::string> start;             // send a repair (policy action) for these now
  std::vector<RepairOutcome> succeeded;       // repairs that finished since the last tick
  std::vector<RepairOutcome> failed;          // repairs that failed (timeout) since the last tick
  std::optional<RepairSuspension> suspended;  // repairs were just suspended: record an event
  bool resumed = false;                       // a suspension just ended
};

class RepairPlanner {
 public:
  explicit RepairPlanner(config::RepairPolicy policy) : policy_(policy) {}
  void setPolicy(const config::RepairPolicy& policy) { policy_ = policy; }

  // Observes the pool's members and says what to do. Members missing from `members` are
  // forgotten (a member in repair that is gone succeeded: it was replaced).
  RepairPlan tick(std::span<const RepairMemberView> members, MonoTime now);

  // A repair of `id` started outside tick() (a repair requested by hand).
  void onRepairStarted(const std::string& id, MonoTime now);
  // The repaired member is healthy again (tick() also notices this by itself).
  void onRepairSucceeded(const std::string& id, MonoTime now);
  // The repair webhook failed for good, or the caller gave up. May suspend repairs: the
  // returned suspension is also reported by the next tick().
  std::optional<RepairSuspension> onRepairFailed(const std::string& id, MonoTime now,
                                                 const std::string& reason);

  // Ends a suspension by hand (Azure: set serviceState back to Running).
  void resume();

  bool suspended(MonoTime now) const { return suspended_until_ && now < *suspended_until_; }
  std::optional<MonoTime> suspendedUntil() const { return suspended_until_; }
  uint32_t consecutiveFailures() const { return consecutive_failures_; }
  std::vector<std::string> inRepair() const;
  // How many members may be in repair at once in a pool of `pool_size`.
  uint32_t budget(uint32_t pool_size) const;

 private:
  struct Tracked {
    MonoTime first_seen{};
    std::optional<MonoTime> unhealthy_since;
    std::optional<MonoTime> repair_started;
  };
  void fail(const std::string& id, MonoTime now, const std::string& reason,
            std::vector<RepairOutcome>* failed);

  config::RepairPolicy policy_;
  std::map<std::string, Tracked> members_;
  uint32_t consecutive_failures_ = 0;
  std::optional<MonoTime> suspended_until_;
  std::optional<RepairSuspension> pending_suspension_;
  std::vector<RepairOutcome> pending_failed_;
  std::vector<RepairOutcome> pending_succeeded_;
};

}  // namespace scalegate::control
