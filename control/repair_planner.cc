#include "control/repair_planner.h"

#include <algorithm>
#include <set>

namespace scalegate::control {

namespace {

std::string seconds(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + "s";
}

}  // namespace

uint32_t RepairPlanner::budget(uint32_t pool_size) const {
  if (pool_size < 20) return 1;
  return std::max<uint32_t>(1,
                            static_cast<uint32_t>(uint64_t{pool_size} * policy_.max_percent / 100));
}

std::vector<std::string> RepairPlanner::inRepair() const {
  std::vector<std::string> out;
  for (const auto& [id, t] : members_) {
    if (t.repair_started) out.push_back(id);
  }
  return out;
}

void RepairPlanner::onRepairStarted(const std::string& id, MonoTime now) {
  Tracked& t = members_[id];
  if (t.first_seen == MonoTime{}) t.first_seen = now;
  t.repair_started = now;
}

void RepairPlanner::onRepairSucceeded(const std::string& id, MonoTime now) {
  (void)now;
  auto it = members_.find(id);
  if (it == members_.end() || !it->second.repair_started) return;
  it->second.repair_started.reset();
  it->second.unhealthy_since.reset();
  consecutive_failures_ = 0;
  pending_succeeded_.push_back(RepairOutcome{id, "healthy again"});
}

void RepairPlanner::fail(const std::string& id, MonoTime now, const std::string& reason,
                         std::vector<RepairOutcome>* failed) {
  auto it = members_.find(id);
  if (it == members_.end() || !it->second.repair_started) return;
  it->second.repair_started.reset();
  // Still unhealthy: it becomes a candidate again after another grace period.
  if (it->second.unhealthy_since) it->second.unhealthy_since = now;
  failed->push_back(RepairOutcome{id, reason});
  ++consecutive_failures_;
  if (consecutive_failures_ >= policy_.suspend_after_failures && !suspended(now)) {
    suspended_until_ = now + policy_.suspend_for;
    pending_suspension_ = RepairSuspension{
        *suspended_until_, consecutive_failures_,
        std::to_string(consecutive_failures_) + " repairs failed in a row (last: " + id + ", " +
            reason + "); repairs suspended for " + seconds(policy_.suspend_for)};
  }
}

std::optional<RepairSuspension> RepairPlanner::onRepairFailed(const std::string& id, MonoTime now,
                                                              const std::string& reason) {
  fail(id, now, reason, &pending_failed_);
  return pending_suspension_;
}

void RepairPlanner::resume() {
  suspended_until_.reset();
  consecutive_failures_ = 0;
}

RepairPlan RepairPlanner::tick(std::span<const RepairMemberView> members, MonoTime now) {
  RepairPlan plan;
  plan.failed = std::move(pending_failed_);
  plan.succeeded = std::move(pending_succeeded_);
  pending_failed_.clear();
  pending_succeeded_.clear();

  // Forget members that left; one that left while in repair was replaced.
  std::set<std::string> present;
  for (const RepairMemberView& m : members) present.insert(m.id);
  for (auto it = members_.begin(); it != members_.end();) {
    if (present.count(it->first) == 0) {
      if (it->second.repair_started) {
        consecutive_failures_ = 0;
        plan.succeeded.push_back(RepairOutcome{it->first, "replaced (left the pool)"});
      }
      it = members_.erase(it);
    } else {
      ++it;
    }
  }

  for (const RepairMemberView& m : members) {
    auto [it, inserted] = members_.try_emplace(m.id);
    Tracked& t = it->second;
    if (inserted) t.first_seen = now;
    if (m.healthy) {
      t.unhealthy_since.reset();
      if (t.repair_started) {
        t.repair_started.reset();
        consecutive_failures_ = 0;
        plan.succeeded.push_back(RepairOutcome{m.id, "healthy again"});
      }
      continue;
    }
    if (!t.unhealthy_since) t.unhealthy_since = now;
    if (t.repair_started && now - *t.repair_started >= policy_.timeout) {
      fail(m.id, now, "not healthy " + seconds(policy_.timeout) + " after the repair",
           &plan.failed);
    }
  }

  if (pending_suspension_) {
    plan.suspended = std::move(pending_suspension_);
    pending_suspension_.reset();
  }
  if (suspended_until_ && now >= *suspended_until_) {
    suspended_until_.reset();
    consecutive_failures_ = 0;
    plan.resumed = true;
  }
  if (!policy_.enabled || suspended(now)) return plan;

  uint32_t busy = 0;
  struct Candidate {
    MonoTime since;
    std::string id;
  };
  std::vector<Candidate> candidates;
  for (const RepairMemberView& m : members) {
    const Tracked& t = members_[m.id];
    if (t.repair_started) {
      ++busy;
      continue;
    }
    if (m.healthy || m.draining || !t.unhealthy_since) continue;
    if (now - t.first_seen < policy_.grace) continue;        // still in its first grace period
    if (now - *t.unhealthy_since < policy_.grace) continue;  // not unhealthy long enough
    candidates.push_back(Candidate{*t.unhealthy_since, m.id});
  }
  uint32_t room = budget(static_cast<uint32_t>(members.size()));
  room = room > busy ? room - busy : 0;
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.since != b.since ? a.since < b.since : a.id < b.id;
  });
  for (const Candidate& c : candidates) {
    if (plan.start.size() >= room) break;
    plan.start.push_back(c.id);
    members_[c.id].repair_started = now;
  }
  return plan;
}

}  // namespace scalegate::control
