#include "control/rolling_upgrade.h"

#include <algorithm>
#include <map>
#include <set>

#include "control/scale_in_selector.h"
#include "control/state_file.h"

namespace scalegate::control {

namespace {

std::string seconds(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + "s";
}

using Json = nlohmann::json;

int64_t unixMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
WallTime fromUnixMs(int64_t ms) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}

Json limitJson(const config::CountOrPercent& l) {
  return Json{{"value", l.value}, {"percent", l.percent}};
}

config::CountOrPercent limitFrom(const Json& j) {
  config::CountOrPercent l;
  l.value = stateUint32(j.at("value"));
  l.percent = j.at("percent").get<bool>();
  return l;
}

std::vector<std::string> ids(const Json& j) { return j.get<std::vector<std::string>>(); }

std::string describeLimit(const config::CountOrPercent& l, uint32_t total) {
  return std::to_string(l.of(total)) +
         (l.percent ? " (" + std::to_string(l.value) + "% of " + std::to_string(total) + ")"
                    : std::string());
}

}  // namespace

const char* upgradeStateName(UpgradeState s) {
  switch (s) {
    case UpgradeState::kIdle:
      return "idle";
    case UpgradeState::kDraining:
      return "draining";
    case UpgradeState::kSending:
      return "sending";
    case UpgradeState::kWaitingHealthy:
      return "waiting_healthy";
    case UpgradeState::kPausing:
      return "pausing";
    case UpgradeState::kCompleted:
      return "completed";
    case UpgradeState::kAborted:
      return "aborted";
  }
  return "?";
}

const char* upgradeActionName(UpgradeAction::Kind k) {
  switch (k) {
    case UpgradeAction::Kind::kNone:
      return "none";
    case UpgradeAction::Kind::kDrainBatch:
      return "drain_batch";
    case UpgradeAction::Kind::kSendUpgradeBatch:
      return "send_upgrade_batch";
    case UpgradeAction::Kind::kWaitHealthy:
      return "wait_healthy";
    case UpgradeAction::Kind::kBatchDone:
      return "batch_done";
    case UpgradeAction::Kind::kPause:
      return "pause";
    case UpgradeAction::Kind::kCompleted:
      return "completed";
    case UpgradeAction::Kind::kAborted:
      return "aborted";
  }
  return "?";
}

UpgradeRequest UpgradeRequest::fromDefaults(const config::UpgradeDefaults& d, std::string version) {
  UpgradeRequest r;
  r.version = std::move(version);
  r.batch = d.batch;
  r.max_unhealthy = d.max_unhealthy;
  r.max_unhealthy_upgraded = d.max_unhealthy_upgraded;
  r.pause = d.pause;
  r.health_timeout = d.health_timeout;
  return r;
}

bool RollingUpgrade::running() const {
  return progress_.state != UpgradeState::kIdle && progress_.state != UpgradeState::kCompleted &&
         progress_.state != UpgradeState::kAborted;
}

Status RollingUpgrade::start(const UpgradeRequest& request,
                             std::span<const UpgradeInstance> instances, MonoTime now,
                             WallTime wall_now) {
  if (running()) {
    return Status(StatusCode::kFailedPrecondition,
                  "an upgrade to " + progress_.version + " is already running (batch " +
                      std::to_string(progress_.batch_index + 1) + " of " +
                      std::to_string(progress_.batch_count) + ")");
  }
  if (request.version.empty()) return invalidArgument("upgrade needs a version");
  request_ = request;
  // Instances not at the version, zone by zone, in natural id order.
  std::map<std::string, std::vector<std::string>> by_zone;
  for (const UpgradeInstance& x : instances) {
    if (x.version != request.version) by_zone[x.zone].push_back(x.id);
  }
  uint32_t size = std::max<uint32_t>(1, request.batch.of(static_cast<uint32_t>(instances.size())));
  batches_.clear();
  uint32_t total = 0;
  for (auto& [zone, ids] : by_zone) {
    std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) {
      return compareInstanceIds(a, b) < 0;
    });
    for (size_t i = 0; i < ids.size(); i += size) {
      batches_.emplace_back(ids.begin() + static_cast<ptrdiff_t>(i),
                            ids.begin() + static_cast<ptrdiff_t>(std::min(ids.size(), i + size)));
    }
    total += static_cast<uint32_t>(ids.size());
  }
  upgraded_.clear();
  progress_ = UpgradeProgress{};
  progress_.state = UpgradeState::kPausing;  // the first batch starts at the first step()
  progress_.version = request.version;
  progress_.batch_count = static_cast<uint32_t>(batches_.size());
  progress_.instances_total = total;
  progress_.started_at = wall_now;
  phase_started_ = now;  // kPausing ends at phase_started_: at once
  terminal_reported_ = false;
  return Status::ok();
}

UpgradeAction RollingUpgrade::abort(std::string reason, WallTime wall_now) {
  progress_.state = UpgradeState::kAborted;
  progress_.reason = std::move(reason);
  progress_.ended_at = wall_now;
  terminal_reported_ = false;
  UpgradeAction a;
  a.kind = UpgradeAction::Kind::kNone;
  return a;
}

void RollingUpgrade::onBatchFailed(const std::string& reason, MonoTime now, WallTime wall_now) {
  (void)now;
  if (!running()) return;
  abort("upgrade_batch " + std::to_string(progress_.batch_index + 1) + " failed: " + reason,
        wall_now);
}

void RollingUpgrade::cancel(const std::string& reason, WallTime wall_now) {
  if (!running()) return;
  abort("cancelled: " + reason, wall_now);
}

void RollingUpgrade::onDrained(MonoTime now) {
  if (progress_.state != UpgradeState::kDraining) return;
  progress_.state = UpgradeState::kSending;
  send_requested_ = false;
  phase_started_ = now;
}

void RollingUpgrade::onBatchSent(MonoTime now) {
  if (progress_.state != UpgradeState::kSending) return;
  progress_.state = UpgradeState::kWaitingHealthy;
  phase_started_ = now;
}

UpgradeAction RollingUpgrade::beginBatch(std::span<const UpgradeInstance> instances,
                                         WallTime wall_now) {
  std::set<std::string> present;
  uint32_t unhealthy = 0;
  for (const UpgradeInstance& x : instances) {
    present.insert(x.id);
    if (!x.healthy) ++unhealthy;
  }
  auto pool = static_cast<uint32_t>(instances.size());
  // Azure maxUnhealthyInstancePercent: checked before each batch.
  if (unhealthy > request_.max_unhealthy.of(pool)) {
    abort(std::to_string(unhealthy) + " of " + std::to_string(pool) +
              " instances unhealthy before batch " + std::to_string(progress_.batch_index + 1) +
              ", over max_unhealthy " + describeLimit(request_.max_unhealthy, pool),
          wall_now);
    return UpgradeAction{};
  }
  // Instances that left the pool since the plan are skipped; a batch left empty is skipped.
  while (progress_.batch_index < progress_.batch_count) {
    std::vector<std::string> ids;
    for (const std::string& id : batches_[progress_.batch_index]) {
      if (present.count(id) != 0) ids.push_back(id);
    }
    if (!ids.empty()) {
      progress_.current_batch = ids;
      progress_.state = UpgradeState::kDraining;
      UpgradeAction a;
      a.kind = UpgradeAction::Kind::kDrainBatch;
      a.ids = std::move(ids);
      a.version = progress_.version;
      a.batch_index = progress_.batch_index;
      a.batch_count = progress_.batch_count;
      return a;
    }
    ++progress_.batch_index;
  }
  progress_.state = UpgradeState::kCompleted;
  progress_.ended_at = wall_now;
  return UpgradeAction{};
}

UpgradeAction RollingUpgrade::step(std::span<const UpgradeInstance> instances, MonoTime now,
                                   WallTime wall_now) {
  UpgradeAction a;
  a.version = progress_.version;
  a.batch_index = progress_.batch_index;
  a.batch_count = progress_.batch_count;
  switch (progress_.state) {
    case UpgradeState::kIdle:
    case UpgradeState::kDraining:
      break;
    case UpgradeState::kPausing:
      if (progress_.batch_index >= progress_.batch_count) {
        progress_.state = UpgradeState::kCompleted;
        progress_.ended_at = wall_now;
        progress_.current_batch.clear();
        break;
      }
      if (now < phase_started_) {
        a.kind = UpgradeAction::Kind::kPause;
        a.until = phase_started_;
        return a;
      }
      a = beginBatch(instances, wall_now);
      if (a.kind != UpgradeAction::Kind::kNone) return a;
      break;
    case UpgradeState::kSending:
      if (!send_requested_) {
        send_requested_ = true;
        a.kind = UpgradeAction::Kind::kSendUpgradeBatch;
        a.ids = progress_.current_batch;
        return a;
      }
      break;
    case UpgradeState::kWaitingHealthy: {
      std::map<std::string, const UpgradeInstance*> by_id;
      for (const UpgradeInstance& x : instances) by_id[x.id] = &x;
      auto pool = static_cast<uint32_t>(instances.size());
      // Instances of the batch that left the pool are no longer waited for.
      std::vector<std::string>& batch = progress_.current_batch;
      batch.erase(std::remove_if(batch.begin(), batch.end(),
                                 [&](const std::string& id) { return by_id.count(id) == 0; }),
                  batch.end());
      bool done = std::all_of(batch.begin(), batch.end(), [&](const std::string& id) {
        const UpgradeInstance* x = by_id[id];
        return x->healthy && x->version == progress_.version;
      });
      auto upgradedUnhealthy = [&](bool with_batch) {
        uint32_t n = 0;
        auto count = [&](const std::string& id) {
          auto it = by_id.find(id);
          if (it != by_id.end() && !it->second->healthy) ++n;
        };
        for (const std::string& id : upgraded_) count(id);
        if (with_batch) {
          for (const std::string& id : batch) count(id);
        }
        return n;
      };
      uint32_t limit = request_.max_unhealthy_upgraded.of(pool);
      if (done) {
        // Azure maxUnhealthyUpgradedInstancePercent: checked after each batch.
        uint32_t bad = upgradedUnhealthy(true);
        upgraded_.insert(upgraded_.end(), batch.begin(), batch.end());
        progress_.instances_upgraded += static_cast<uint32_t>(batch.size());
        a.kind = UpgradeAction::Kind::kBatchDone;
        a.ids = batch;
        if (bad > limit) {
          abort(std::to_string(bad) + " upgraded instances unhealthy after batch " +
                    std::to_string(progress_.batch_index + 1) + ", over max_unhealthy_upgraded " +
                    describeLimit(request_.max_unhealthy_upgraded, pool),
                wall_now);
          break;
        }
        ++progress_.batch_index;
        progress_.current_batch.clear();
        progress_.state = UpgradeState::kPausing;
        phase_started_ = now + request_.pause;
        return a;
      }
      uint32_t bad = upgradedUnhealthy(false);
      if (bad > limit) {
        abort(std::to_string(bad) + " upgraded instances unhealthy during batch " +
                  std::to_string(progress_.batch_index + 1) + ", over max_unhealthy_upgraded " +
                  describeLimit(request_.max_unhealthy_upgraded, pool),
              wall_now);
        break;
      }
      if (now - phase_started_ > request_.health_timeout) {
        std::string late;
        for (const std::string& id : batch) {
          const UpgradeInstance* x = by_id[id];
          if (x->healthy && x->version == progress_.version) continue;
          if (!late.empty()) late += ", ";
          late += id + (x->version != progress_.version ? " (version " + x->version + ")"
                                                        : " (unhealthy)");
        }
        abort("batch " + std::to_string(progress_.batch_index + 1) + " of " +
                  std::to_string(progress_.batch_count) + " not healthy at version " +
                  progress_.version + " within " + seconds(request_.health_timeout) + ": " + late,
              wall_now);
        break;
      }
      a.kind = UpgradeAction::Kind::kWaitHealthy;
      a.ids = batch;
      return a;
    }
    case UpgradeState::kCompleted:
    case UpgradeState::kAborted:
      break;
  }
  if ((progress_.state == UpgradeState::kCompleted || progress_.state == UpgradeState::kAborted) &&
      !terminal_reported_) {
    terminal_reported_ = true;
    UpgradeAction t;
    t.version = progress_.version;
    t.batch_index = progress_.batch_index;
    t.batch_count = progress_.batch_count;
    if (progress_.state == UpgradeState::kCompleted) {
      t.kind = UpgradeAction::Kind::kCompleted;
      progress_.batch_index = progress_.batch_count;
    } else {
      t.kind = UpgradeAction::Kind::kAborted;
      t.reason = progress_.reason;
      t.ids = progress_.current_batch;
    }
    return t;
  }
  return UpgradeAction{};
}

Json RollingUpgrade::toJson(MonoTime mono_ref, WallTime wall_ref) const {
  auto wallOf = [&](MonoTime t) { return unixMs(wall_ref + (t - mono_ref)); };
  Json j{{"state", upgradeStateName(progress_.state)},
         {"version", progress_.version},
         {"request",
          {{"batch", limitJson(request_.batch)},
           {"max_unhealthy", limitJson(request_.max_unhealthy)},
           {"max_unhealthy_upgraded", limitJson(request_.max_unhealthy_upgraded)},
           {"pause_ms", toMillis(request_.pause)},
           {"health_timeout_ms", toMillis(request_.health_timeout)}}},
         {"batches", batches_},
         {"batch_index", progress_.batch_index},
         {"batch_count", progress_.batch_count},
         {"instances_total", progress_.instances_total},
         {"instances_upgraded", progress_.instances_upgraded},
         {"current_batch", progress_.current_batch},
         {"upgraded", upgraded_},
         {"send_requested", send_requested_},
         {"phase_started_unix_ms", wallOf(phase_started_)},
         {"started_at_unix_ms", unixMs(progress_.started_at)},
         {"reason", progress_.reason}};
  if (progress_.ended_at.has_value()) j["ended_at_unix_ms"] = unixMs(*progress_.ended_at);
  return j;
}

Status RollingUpgrade::restore(const Json& j, MonoTime now, WallTime wall_now) {
  RollingUpgrade r;
  try {
    if (!j.is_object()) return invalidArgument("not a JSON object");
    const std::string state = j.at("state").get<std::string>();
    bool known = false;
    for (UpgradeState s : {UpgradeState::kIdle, UpgradeState::kDraining, UpgradeState::kSending,
                           UpgradeState::kWaitingHealthy, UpgradeState::kPausing,
                           UpgradeState::kCompleted, UpgradeState::kAborted}) {
      if (state == upgradeStateName(s)) {
        r.progress_.state = s;
        known = true;
      }
    }
    if (!known) return invalidArgument("state: unknown state \"" + state + "\"");
    r.progress_.version = j.at("version").get<std::string>();
    if (r.progress_.version.empty() && r.progress_.state != UpgradeState::kIdle) {
      return invalidArgument("version: empty");
    }
    const Json& req = j.at("request");
    r.request_.version = r.progress_.version;
    r.request_.batch = limitFrom(req.at("batch"));
    r.request_.max_unhealthy = limitFrom(req.at("max_unhealthy"));
    r.request_.max_unhealthy_upgraded = limitFrom(req.at("max_unhealthy_upgraded"));
    r.request_.pause = std::chrono::milliseconds(stateMillis(req.at("pause_ms")));
    r.request_.health_timeout = std::chrono::milliseconds(stateMillis(req.at("health_timeout_ms")));
    for (const Json& b : j.at("batches")) r.batches_.push_back(ids(b));
    r.progress_.batch_index = stateUint32(j.at("batch_index"));
    r.progress_.batch_count = stateUint32(j.at("batch_count"));
    if (r.progress_.batch_count != r.batches_.size()) {
      return invalidArgument("batch_count: " + std::to_string(r.progress_.batch_count) + ", but " +
                             std::to_string(r.batches_.size()) + " batches");
    }
    if (r.progress_.batch_index > r.progress_.batch_count) {
      return invalidArgument("batch_index: past the last batch");
    }
    const bool in_batch = r.progress_.state == UpgradeState::kDraining ||
                          r.progress_.state == UpgradeState::kSending ||
                          r.progress_.state == UpgradeState::kWaitingHealthy;
    if (in_batch && r.progress_.batch_index == r.progress_.batch_count) {
      return invalidArgument("batch_index: no batch in flight in state " + state);
    }
    r.progress_.instances_total = stateUint32(j.at("instances_total"));
    r.progress_.instances_upgraded = stateUint32(j.at("instances_upgraded"));
    r.progress_.current_batch = ids(j.at("current_batch"));
    r.upgraded_ = ids(j.at("upgraded"));
    r.send_requested_ = j.at("send_requested").get<bool>();
    r.phase_started_ = now + std::chrono::duration_cast<Duration>(
                                 fromUnixMs(stateMillis(j.at("phase_started_unix_ms"))) - wall_now);
    r.progress_.started_at = fromUnixMs(stateMillis(j.at("started_at_unix_ms")));
    if (j.contains("ended_at_unix_ms")) {
      r.progress_.ended_at = fromUnixMs(stateMillis(j["ended_at_unix_ms"]));
    }
    r.progress_.reason = j.at("reason").get<std::string>();
  } catch (const Json::exception& e) {
    return invalidArgument(e.what());
  }
  // Completed and aborted upgrades were reported by the run that ended them.
  r.terminal_reported_ = !r.running();
  *this = std::move(r);
  return Status::ok();
}

}  // namespace scalegate::control
