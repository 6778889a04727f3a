#include "control/autoscale_controller.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common/log.h"
#include "common/units.h"
#include "common/webhook_signature.h"
#include "control/metrics.h"
#include "control/scale_in_selector.h"
#include "control/state_file.h"

namespace scalegate::control {
namespace {

using Json = nlohmann::json;
using ActionReply = AdminServer::ActionReply;

constexpr uint32_t kMaxManualCapacity = 1000;

ActionReply errorReply(int code, std::string message) {
  ActionReply r;
  r.code = code;
  r.error = std::move(message);
  return r;
}

ActionReply jsonReply(int code, Json body) {
  ActionReply r;
  r.code = code;
  r.body = std::move(body);
  return r;
}

ActionReply notAllowed(const char* allow) {
  ActionReply r = errorReply(405, std::string("method not allowed here; allowed: ") + allow);
  r.allow = allow;
  return r;
}

bool inService(const MemberRecord& m, const config::HealthCheck& hc) {
  return m.drain == DrainState::kNone && m.healthEligible(hc) && !m.ejected;
}

// Healthy as a rolling upgrade or a repair must see it: a member whose probes have not yet
// passed since it (re)joined is not healthy, whatever the initial state says.
bool provenHealthy(const MemberRecord& m, const config::HealthCheck& hc) {
  if (!hc.enabled) return true;
  return m.health == HealthState::kHealthy;
}

uint32_t activeCount(const PoolRecord& p) {
  uint32_t n = 0;
  for (const MemberRecord& m : p.members) n += m.drain == DrainState::kNone ? 1 : 0;
  return n;
}

ScaleReason reasonOf(const ScaleDecision& d, const ActiveProfile& profile) {
  ScaleReason r;
  switch (d.cause) {
    case DecisionCause::kRule:
      r.kind = ScaleReasonKind::kRule;
      break;
    case DecisionCause::kTarget:
    case DecisionCause::kRulesAndTarget:
      r.kind = ScaleReasonKind::kTarget;
      break;
    case DecisionCause::kBelowMin:
    case DecisionCause::kAboveMax:
      r.kind = d.profile_index >= 0 ? ScaleReasonKind::kSchedule : ScaleReasonKind::kDefault;
      break;
    case DecisionCause::kDefaultCapacity:
    case DecisionCause::kNone:
      r.kind = ScaleReasonKind::kDefault;
      break;
  }
  r.rule = d.rule_text;
  if (d.rule_index >= 0 && static_cast<size_t>(d.rule_index) < profile.rules->size()) {
    r.metric = (*profile.rules)[static_cast<size_t>(d.rule_index)].metric;
  } else if (r.kind == ScaleReasonKind::kTarget && profile.target->has_value()) {
    r.metric = (*profile.target)->metric;
  }
  r.value = d.metric_value;
  if (d.rule_index >= 0 || r.kind == ScaleReasonKind::kTarget) r.threshold = d.threshold;
  r.profile = d.profile;
  r.message = d.reason;
  return r;
}

Json reasonJson(const ScaleReason& r) {
  Json j{{"kind", scaleReasonKindName(r.kind)}, {"profile", r.profile}, {"message", r.message}};
  if (!r.rule.empty()) j["rule"] = r.rule;
  if (!r.metric.empty()) j["metric"] = r.metric;
  if (r.value.has_value()) j["value"] = *r.value;
  if (r.threshold.has_value()) j["threshold"] = *r.threshold;
  return j;
}

Result<config::CountOrPercent> parseCountOrPercent(const Json& v, const char* key) {
  config::CountOrPercent c;
  std::string text;
  if (v.is_number_unsigned()) {
    c.value = static_cast<uint32_t>(std::min<uint64_t>(v.get<uint64_t>(), 100000));
    return c;
  }
  if (!v.is_string()) {
    return invalidArgument(std::string(key) + " must be a count such as 2 or a percent \"20%\"");
  }
  text = v.get<std::string>();
  if (!text.empty() && text.back() == '%') {
    c.percent = true;
    text.pop_back();
  }
  char* end = nullptr;
  unsigned long n = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || (c.percent && (n < 1 || n > 100)) || n > 100000) {
    return invalidArgument(std::string(key) + ": " + v.dump() +
                           " is not a count or a percent in 1%..100%");
  }
  c.value = static_cast<uint32_t>(n);
  return c;
}

std::string describe(const config::CountOrPercent& c) {
  return std::to_string(c.value) + (c.percent ? "%" : "");
}

}  // namespace

namespace {
std::string besideStateFile(const std::string& state_path, const char* suffix) {
  static constexpr std::string_view kSuffix = ".state.json";
  if (state_path.size() > kSuffix.size() &&
      state_path.compare(state_path.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
    return state_path.substr(0, state_path.size() - kSuffix.size()) + suffix;
  }
  return state_path + suffix;
}

constexpr int kStateVersion = 1;

// How long a restored upgrade waits for the members' first probe verdicts: enough probes for
// rise or fall, one more for the probe timer's phase, and a probe's timeout.
Duration upgradeSettle(const config::HealthCheck& hc) {
  if (!hc.enabled) return Duration::zero();
  const Duration every = std::max(hc.interval, hc.fast_interval) + hc.jitter;
  return every * (std::max(hc.rise, hc.fall) + 1) + hc.timeout;
}

// Events written down before they are queued carry whole milliseconds, the precision of the
// written timestamp, so a re-queued event renders to the same body.
WallTime wholeMillis(WallTime t) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch())));
}

int64_t unixMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
WallTime fromUnixMs(int64_t ms) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}
}  // namespace

std::string outboxPathFor(const std::string& state_path) {
  return besideStateFile(state_path, ".outbox.json");
}

std::string autoscaleStatePathFor(const std::string& state_path) {
  return besideStateFile(state_path, ".autoscale.json");
}

AutoscaleController::AutoscaleController(event_base* base, PoolRegistry& registry,
                                         const Clock& clock, std::string outbox_path,
                                         std::string state_path, std::function<void()> changed)
    : base_(base),
      registry_(registry),
      clock_(clock),
      changed_(std::move(changed)),
      state_path_(std::move(state_path)),
      mono_epoch_(clock.now()),
      wall_epoch_(clock.wallNow()) {
  WebhookSender::Hooks hooks;
  hooks.on_delivered = [this](const std::string& id, const ScaleEvent& e) { onDelivered(id, e); };
  hooks.on_failed = [this](const std::string& id, const ScaleEvent& e, const std::string& err) {
    onFailed(id, e, err);
  };
  hooks.secret_for = [this](const std::string& pool, const std::string& url) {
    return secretFor(pool, url);
  };
  sender_ = std::make_unique<WebhookSender>(base, clock, std::move(outbox_path), std::move(hooks));
}

AutoscaleController::~AutoscaleController() {
  if (timer_ != nullptr) event_free(timer_);
}

const config::AutoscaleConfig* AutoscaleController::configOf(const std::string& pool) const {
  const PoolRecord* p = registry_.findPool(pool);
  if (p == nullptr || p->cfg == nullptr || !p->cfg->autoscale.enabled) return nullptr;
  return &p->cfg->autoscale;
}

AutoscaleController::PoolState* AutoscaleController::state(const std::string& pool) {
  auto it = pools_.find(pool);
  return it == pools_.end() ? nullptr : it->second.get();
}

Status AutoscaleController::applyConfig(const config::Config& cfg) {
  std::string errors;
  std::map<std::string, std::string> secrets;
  for (const auto& [name, pool] : cfg.pools) {
    const config::AutoscaleConfig& as = pool.autoscale;
    if (!as.enabled) continue;
    auto& slot = pools_[name];
    if (!slot) {
      slot = std::make_unique<PoolState>();
      slot->name = name;
    }
    PoolState& ps = *slot;
    if (ps.repair) {
      ps.repair->setPolicy(as.repair);
    } else {
      ps.repair = std::make_unique<RepairPlanner>(as.repair);
    }
    WebhookTarget t;
    t.url = as.scaler.url;
    t.format = as.scaler.format == config::ScalerFormat::kAzure ? WebhookFormat::kAzure
                                                                : WebhookFormat::kScalegate;
    t.timeout = as.scaler.timeout;
    t.max_attempts = as.scaler.max_attempts;
    t.max_backoff = as.scaler.max_backoff;
    if (!as.scaler.secret_file.empty()) {
      Result<std::string> secret = readSecretFile(as.scaler.secret_file);
      if (!secret.isOk()) {
        errors += (errors.empty() ? "" : "; ") + std::string("pool ") + name +
                  ": autoscale.scaler.secret_file: " + secret.status().message();
        continue;  // keeps the previous target, if any
      }
      t.secret = *secret;
      secrets[as.scaler.secret_file] = *secret;
    }
    ps.target = std::move(t);
  }
  // Pools that lost `autoscale:` stop being driven (their pending webhooks still go out).
  for (auto it = pools_.begin(); it != pools_.end();) {
    auto p = cfg.pools.find(it->first);
    it = (p == cfg.pools.end() || !p->second.autoscale.enabled) ? pools_.erase(it) : std::next(it);
  }
  for (auto& [path, secret] : secrets) secrets_[path] = secret;
  if (!errors.empty()) return invalidArgument(errors);
  return Status::ok();
}

std::string AutoscaleController::secretFor(const std::string& pool, const std::string& url) const {
  auto it = pools_.find(pool);
  if (it != pools_.end() && it->second->target.has_value() && it->second->target->url == url) {
    return it->second->target->secret;
  }
  return "";
}

std::string AutoscaleController::renderState() const {
  Json pools = Json::object();
  for (const auto& [name, ps] : pools_) {
    if (!ps->desired_known) continue;
    Json j{{"desired", ps->desired}};
    if (ps->provisioning_until != MonoTime{}) {
      j["provisioning_until_unix_ms"] = unixMs(wallOf(ps->provisioning_until));
    }
    if (auto at = ps->autoscaler.lastScaledAt(); at.has_value()) {
      j["last_scaled_unix_ms"] = unixMs(wallOf(*at));
      j["last_direction"] = scaleDirectionName(ps->autoscaler.lastDirection());
    }
    if (ps->scale_in.has_value()) {
      const ScaleIn& si = *ps->scale_in;
      ScaleEvent e;
      e.type = ScaleEventType::kScaleIn;
      e.pool = name;
      e.old_capacity = si.old_capacity;
      e.new_capacity = si.new_capacity;
      e.reason = si.reason;
      e.zones = si.zones;
      e.instances = si.ids;
      e.created_at = si.webhook_id.empty() ? wallOf(si.started) : si.event_at;
      j["scale_in"] =
          Json::parse(renderScalegatePayload(e, si.webhook_id.empty() ? "pending" : si.webhook_id));
      j["scale_in_started_unix_ms"] = unixMs(wallOf(si.started));
      if (!si.webhook_id.empty()) j["scale_in_webhook_id"] = si.webhook_id;
    }
    if (ps->upgrade.progress().state != UpgradeState::kIdle) {
      Json u{{"machine", ps->upgrade.toJson(mono_epoch_, wall_epoch_)},
             {"drained_batch", ps->upgrade_batch}};
      if (!ps->upgrade_webhook_id.empty() && ps->upgrade_event.has_value()) {
        u["webhook_id"] = ps->upgrade_webhook_id;
        u["webhook_event"] =
            Json::parse(renderScalegatePayload(*ps->upgrade_event, ps->upgrade_webhook_id));
      }
      j["upgrade"] = std::move(u);
    }
    pools[name] = std::move(j);
  }
  return Json{{"version", kStateVersion}, {"pools", std::move(pools)}}.dump(
             1, ' ', false, Json::error_handler_t::replace) +
         "\n";
}

void AutoscaleController::persistState() {
  if (state_path_.empty()) return;
  std::string text = renderState();
  if (text == state_written_) return;
  Status st = replaceFileAtomically(state_path_, text);
  if (st.isOk()) {
    state_written_ = std::move(text);
    if (state_write_failing_) {
      state_write_failing_ = false;
      logEvent(LogLevel::kInfo, "autoscale state file written again", {{"path", state_path_}});
    }
    return;
  }
  ++state_write_errors_;
  if (!state_write_failing_) {
    state_write_failing_ = true;
    logEvent(LogLevel::kError, "autoscale state file write failed; retrying every second",
             {{"path", state_path_}, {"error", st.message()}});
    registry_.addEvent("state_write_failed", "", "", st.message());
  }
}

Status AutoscaleController::loadState() {
  if (state_path_.empty()) return Status::ok();
  auto text = readWholeFile(state_path_);
  if (!text.isOk()) {
    return text.status().code() == StatusCode::kNotFound ? Status::ok() : text.status();
  }
  return loadStateText(state_path_, *text);
}

Status AutoscaleController::loadStateText(const std::string& name, const std::string& text) {
  const std::string where = "autoscale state " + name + ": ";
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object() || !root.contains("pools") ||
      !root["pools"].is_object()) {
    return invalidArgument(where + "not a JSON object with \"pools\"");
  }
  const auto version = root.find("version");
  if (version == root.end() || !version->is_number_integer() ||
      version->get<int64_t>() != kStateVersion) {
    return invalidArgument(where + "unknown version (want " + std::to_string(kStateVersion) + ")");
  }
  const MonoTime now = clock_.now();
  const WallTime wall = clock_.wallNow();
  // A wall time of the previous run as a monotonic time of this one.
  auto monoOf = [&](int64_t unix_ms) {
    return now + std::chrono::duration_cast<Duration>(fromUnixMs(unix_ms) - wall);
  };
  size_t restored = 0;
  for (auto it = root["pools"].begin(); it != root["pools"].end(); ++it) {
    PoolState* ps = state(it.key());
    if (ps == nullptr) continue;  // no longer autoscaled
    const Json& j = it.value();
    try {
      ps->desired = stateUint32(j.at("desired"));
      ps->desired_known = true;
      if (j.contains("provisioning_until_unix_ms")) {
        ps->provisioning_until = monoOf(stateMillis(j["provisioning_until_unix_ms"]));
        // A deadline already past still ends in the next reconcile (with its event).
        if (ps->provisioning_until <= MonoTime{}) ps->provisioning_until = now;
      }
      if (j.contains("last_scaled_unix_ms")) {
        const std::string dir = j.value("last_direction", "none");
        ps->autoscaler.recordScaled(dir == "out"  ? ScaleDirection::kOut
                                    : dir == "in" ? ScaleDirection::kIn
                                                  : ScaleDirection::kNone,
                                    monoOf(stateMillis(j["last_scaled_unix_ms"])));
      }
      if (j.contains("scale_in")) {
        auto e = parseScalegatePayload(j["scale_in"].dump());
        if (!e.isOk()) return invalidArgument(where + it.key() + ": " + e.status().message());
        ScaleIn si;
        si.ids = e->instances;
        si.old_capacity = e->old_capacity;
        si.new_capacity = e->new_capacity;
        si.reason = e->reason;
        si.zones = e->zones;
        si.started = monoOf(j.contains("scale_in_started_unix_ms")
                                ? stateMillis(j["scale_in_started_unix_ms"])
                                : unixMs(wall));
        if (j.contains("scale_in_webhook_id")) {
          si.webhook_id = j["scale_in_webhook_id"].get<std::string>();
          si.event_at = e->created_at;
        }
        ps->scale_in = std::move(si);
      }
      if (j.contains("upgrade")) {
        const Json& u = j["upgrade"];
        Status st = ps->upgrade.restore(u.at("machine"), now, wall);
        if (!st.isOk()) return invalidArgument(where + it.key() + ": upgrade: " + st.message());
        ps->upgrade_batch = u.at("drained_batch").get<std::vector<std::string>>();
        if (u.contains("webhook_id")) {
          auto e = parseScalegatePayload(u.at("webhook_event").dump());
          if (!e.isOk()) {
            return invalidArgument(where + it.key() +
                                   ": upgrade: webhook_event: " + e.status().message());
          }
          ps->upgrade_webhook_id = u["webhook_id"].get<std::string>();
          ps->upgrade_event = std::move(*e);
        }
        ps->upgrade_active = ps->upgrade.running();
        if (ps->upgrade_active) {
          const PoolRecord* p = registry_.findPool(it.key());
          ps->upgrade_resumed = true;
          ps->upgrade_settle_until =
              now + upgradeSettle(p != nullptr && p->cfg != nullptr ? p->cfg->health
                                                                    : config::HealthCheck{});
          registry_.setUpgradeVersion(it.key(), ps->upgrade.progress().version);
        }
      }
    } catch (const Json::exception& e) {
      return invalidArgument(where + it.key() + ": " + e.what());
    }
    ++restored;
    const UpgradeProgress& up = ps->upgrade.progress();
    registry_.addEvent("autoscale_state_restored", it.key(), "",
                       "desired " + std::to_string(ps->desired) +
                           (ps->scale_in.has_value() ? ", a scale-in draining" : "") +
                           (ps->provisioning_until != MonoTime{} ? ", provisioning" : "") +
                           (ps->upgrade_active ? ", an upgrade to " + up.version : ""));
    if (ps->upgrade_active) {
      registry_.addEvent("upgrade_resumed", it.key(), "",
                         "to " + up.version + ": batch " + std::to_string(up.batch_index + 1) +
                             " of " + std::to_string(up.batch_count) + " " +
                             upgradeStateName(up.state) + ", " +
                             std::to_string(up.instances_upgraded) + " of " +
                             std::to_string(up.instances_total) + " instance(s) upgraded");
      logEvent(LogLevel::kInfo, "rolling upgrade resumed",
               {{"pool", it.key()},
                {"version", up.version},
                {"batch", std::to_string(up.batch_index + 1)},
                {"batches", std::to_string(up.batch_count)},
                {"state", upgradeStateName(up.state)}});
    }
  }
  state_written_ = text;
  if (restored > 0) {
    logEvent(LogLevel::kInfo, "autoscale state restored",
             {{"path", name}, {"pools", std::to_string(restored)}});
  }
  return Status::ok();
}

Status AutoscaleController::start() {
  SG_RETURN_IF_ERROR(loadState());
  Result<size_t> resumed = sender_->loadOutbox();
  if (!resumed.isOk()) return resumed.status();
  if (*resumed > 0) {
    registry_.addEvent("webhooks_resumed", "", "",
                       std::to_string(*resumed) + " pending webhook(s) from the outbox");
    logEvent(LogLevel::kInfo, "webhooks resumed from the outbox",
             {{"pending", std::to_string(*resumed)}});
  }
  resumeWebhooks();
  timer_ = event_new(base_, -1, EV_PERSIST, onTimer, this);
  timeval one{1, 0};
  event_add(timer_, &one);
  return Status::ok();
}

void AutoscaleController::resumeWebhooks() {
  for (auto& [name, ps] : pools_) {
    if (ps->scale_in.has_value() && !ps->scale_in->webhook_id.empty()) {
      // The members were drained and the scale_in decided under this id: it is either in the
      // outbox already, or queued now with the same id (a scaler de-duplicates by it).
      if (sender_->isPending(ps->scale_in->webhook_id)) {
        ps->scale_in.reset();
      } else {
        sendScaleIn(*ps);
      }
    }
    if (ps->upgrade_active && ps->upgrade.progress().state == UpgradeState::kSending &&
        ps->upgrade.batchSendRequested() && !ps->upgrade_webhook_id.empty() &&
        ps->upgrade_event.has_value() && !sender_->isPending(ps->upgrade_webhook_id)) {
      // Not in the outbox: never queued, or delivered just before the crash. The same id
      // either way; its delivery (or the scaler's "duplicate" 2xx) moves the batch on.
      std::string id = send(*ps, *ps->upgrade_event, ps->upgrade_webhook_id);
      registry_.addEvent("upgrade_batch_sent", name, "",
                         "batch " + std::to_string(ps->upgrade_event->upgrade.batch_index + 1) +
                             "/" + std::to_string(ps->upgrade_event->upgrade.batch_count) +
                             " queued again after a restart (webhook " + id + ")");
    }
  }
  persistState();
}

void AutoscaleController::onTimer(evutil_socket_t, short, void* arg) {
  static_cast<AutoscaleController*>(arg)->tick();
}

void AutoscaleController::recordMetrics(const std::vector<PoolLoadSample>& samples,
                                        int64_t second) {
  for (const PoolLoadSample& s : samples) {
    PoolState* ps = state(s.pool);
    if (ps == nullptr) continue;
    ps->live = s;
    for (const auto& [name, values] : s.member_metrics) {
      if (!ps->metrics.record(name, second, values).isOk()) ++ps->metric_samples_dropped;
      // The per-member request rate under the name target tracking configs use.
      if (name == "requests_per_second" &&
          !ps->metrics.record("requests_per_second_per_member", second, values).isOk()) {
        ++ps->metric_samples_dropped;
      }
    }
    for (const auto& [name, value] : s.pool_metrics) {
      if (!ps->metrics.recordValue(name, second, value).isOk()) ++ps->metric_samples_dropped;
    }
  }
}

void AutoscaleController::tick() {
  const MonoTime now = clock_.now();
  const WallTime wall = clock_.wallNow();
  recordMetrics(sampler_.sample(registry_, now), PoolMetricStore::unixSecond(wall));
  bool registry_changed = false;
  const uint64_t version_before = registry_.version();
  for (auto& [name, ps] : pools_) {
    const PoolRecord* p = registry_.findPool(name);
    const config::AutoscaleConfig* cfg = configOf(name);
    if (p == nullptr || cfg == nullptr) continue;
    finishScaleIn(*ps, *p);
    reconcile(*ps, *p, now);
    stepUpgrade(*ps, *p, *cfg, now, wall);
    if (cfg->repair.enabled) tickRepairs(*ps, *p, *cfg, now);
    if (!ps->scale_in.has_value() && !ps->upgrade_active && ps->autoscaler.due(*cfg, now)) {
      evaluate(*ps, *p, *cfg, now, wall);
    }
  }
  registry_changed = registry_.version() != version_before;
  if (registry_changed && changed_) changed_();
  persistState();
}

void AutoscaleController::reconcile(PoolState& ps, const PoolRecord& p, MonoTime now) {
  const uint32_t active = activeCount(p);
  if (!ps.desired_known) {
    ps.desired = active;
    ps.desired_known = true;
    return;
  }
  if (active >= ps.desired) {
    ps.desired = active;
    ps.provisioning_until = MonoTime{};
  } else if (now >= ps.provisioning_until) {
    if (ps.provisioning_until != MonoTime{}) {
      registry_.addEvent("provisioning_timeout", p.name, "",
                         "the scaler registered " + std::to_string(active) + " of " +
                             std::to_string(ps.desired) + " instances in time; capacity is " +
                             std::to_string(active) + " again");
    }
    ps.desired = active;
    ps.provisioning_until = MonoTime{};
  }
}

void AutoscaleController::evaluate(PoolState& ps, const PoolRecord& p,
                                   const config::AutoscaleConfig& cfg, MonoTime now,
                                   WallTime wall) {
  ++ps.evaluations;
  const ActiveProfile profile = activeProfile(cfg, wall);
  ScaleDecision d = ps.autoscaler.evaluate(cfg, ps.metrics, ps.desired, wall, now,
                                           ps.live.members_in_service);
  for (const FlappingEvent& f : d.flapping) {
    ++ps.flapping;
    registry_.addEvent(flappingKindName(f.kind), p.name, "",
                       "intended " + std::to_string(f.intended) + ", kept " +
                           std::to_string(f.actual) + ": " + f.detail);
  }
  if (!d.changed) return;
  ScaleReason reason = reasonOf(d, profile);
  Json record{{"at", formatRfc3339(wall)},
              {"direction", scaleDirectionName(d.direction)},
              {"old_capacity", d.old_capacity},
              {"new_capacity", d.new_capacity},
              {"cause", decisionCauseName(d.cause)},
              {"reason", reasonJson(reason)}};
  if (!d.flapping.empty()) record["flapping"] = d.flapping.size();
  bool applied = true;
  if (d.new_capacity > ps.desired) {
    scaleOut(ps, p, cfg, d.new_capacity, std::move(reason), now);
  } else {
    applied = scaleIn(ps, p, cfg, d.new_capacity, std::move(reason), now);
  }
  record["applied"] = applied;
  remember(ps, std::move(record));
  if (applied) ps.autoscaler.recordScaled(d.direction, now);
}

void AutoscaleController::scaleOut(PoolState& ps, const PoolRecord& p,
                                   const config::AutoscaleConfig& cfg, uint32_t capacity,
                                   ScaleReason reason, MonoTime now) {
  std::map<std::string, uint32_t> counts;
  for (const MemberRecord& m : p.members) {
    if (m.drain == DrainState::kNone) ++counts[m.spec.zone];
  }
  ScaleEvent e;
  e.type = ScaleEventType::kScaleOut;
  e.pool = p.name;
  e.old_capacity = ps.desired;
  e.new_capacity = capacity;
  e.zones = planScaleOut(cfg.zones, counts, capacity - ps.desired);
  if (cfg.zones.empty()) e.zones.clear();
  e.reason = std::move(reason);
  e.created_at = clock_.wallNow();
  // Desired first, on disk, then the webhook (see the header: a crash in between must not lead
  // to a second scale_out for the same instances).
  ps.desired = capacity;
  ps.provisioning_until = now + kProvisionTimeout;
  ps.autoscaler.recordScaled(ScaleDirection::kOut, now);
  persistState();
  std::string id = send(ps, e);
  ++ps.scale_outs;
  registry_.addEvent("scale_out", p.name, "",
                     std::to_string(e.old_capacity) + " -> " + std::to_string(capacity) + ": " +
                         e.reason.message + " (webhook " + id + ")");
  logEvent(LogLevel::kInfo, "scale out",
           {{"pool", p.name},
            {"from", std::to_string(e.old_capacity)},
            {"to", std::to_string(capacity)},
            {"reason", e.reason.message},
            {"webhook_id", id}});
}

bool AutoscaleController::scaleIn(PoolState& ps, const PoolRecord& p,
                                  const config::AutoscaleConfig& cfg, uint32_t capacity,
                                  ScaleReason reason, MonoTime now) {
  // Only registered members can be removed: instances still provisioning count when they
  // register (desired follows them up again, and the next evaluation decides again).
  const uint32_t active = activeCount(p);
  const uint32_t want = active > capacity ? active - capacity : 0;
  if (want == 0) {
    ps.desired = capacity;
    ps.provisioning_until = MonoTime{};
    return true;
  }
  std::vector<InstanceInfo> instances;
  for (const MemberRecord& m : p.members) {
    if (m.drain != DrainState::kNone) continue;
    InstanceInfo i;
    i.id = m.spec.id;
    i.zone = m.spec.zone;
    i.fault_domain = m.spec.fault_domain;
    i.created_at = m.added_at;
    i.scale_in_protected = m.spec.scale_in_protected;
    i.healthy = m.probeHealthy(p.cfg->health) && !m.ejected;
    i.version = m.spec.version;
    instances.push_back(std::move(i));
  }
  std::vector<std::string> ids =
      selectForScaleIn(instances, want, cfg.scale_in.policy, cfg.scale_in.prioritize_unhealthy);
  if (ids.empty()) {
    registry_.addEvent("scale_in_blocked", p.name, "",
                       "wanted " + std::to_string(want) +
                           " instance(s) fewer, but every member is protected from scale-in");
    return false;
  }
  ScaleIn s;
  s.ids = ids;
  s.old_capacity = ps.desired;
  s.new_capacity = active - static_cast<uint32_t>(ids.size());
  s.reason = std::move(reason);
  s.started = now;
  std::string names;
  for (const std::string& id : ids) {
    const MemberRecord* m = p.find(id);
    if (m != nullptr && !p.cfg->autoscale.zones.empty()) ++s.zones[m->spec.zone];
    Status st = registry_.drainMember(p.name, id, cfg.scale_in.drain);
    if (!st.isOk()) SG_LOG(kWarn, "scale-in drain of %s: %s", id.c_str(), st.message().c_str());
    names += (names.empty() ? "" : ", ") + id;
  }
  registry_.addEvent("scale_in_started", p.name, "",
                     std::to_string(s.old_capacity) + " -> " + std::to_string(s.new_capacity) +
                         ": draining " + names + " (" + s.reason.message + ")");
  logEvent(LogLevel::kInfo, "scale in: draining",
           {{"pool", p.name},
            {"from", std::to_string(s.old_capacity)},
            {"to", std::to_string(s.new_capacity)},
            {"instances", names}});
  ++ps.scale_ins;
  ps.desired = s.new_capacity;
  ps.scale_in = std::move(s);
  return true;
}

void AutoscaleController::finishScaleIn(PoolState& ps, const PoolRecord& p) {
  if (!ps.scale_in.has_value()) return;
  std::vector<std::string> leaving;
  for (const std::string& id : ps.scale_in->ids) {
    const MemberRecord* m = p.find(id);
    if (m != nullptr && m->drain == DrainState::kDraining) return;  // not yet
    // One returned to service meanwhile (re-added through the API) is no longer leaving.
    if (m == nullptr || m->drain == DrainState::kDrained) leaving.push_back(id);
  }
  ps.scale_in->new_capacity +=
      static_cast<uint32_t>(ps.scale_in->ids.size() - leaving.size());
  ps.scale_in->ids = std::move(leaving);
  if (ps.scale_in->ids.empty()) {
    ps.scale_in.reset();
    return;
  }
  sendScaleIn(ps);
}

void AutoscaleController::sendScaleIn(PoolState& ps) {
  ScaleIn& si = *ps.scale_in;
  if (si.webhook_id.empty()) {
    // Write-ahead: the id goes to the state file before the outbox has the event, so a crash
    // in between queues it again under this id (resumeWebhooks), never under a second one.
    si.webhook_id = sender_->reserveId();
    si.event_at = wholeMillis(clock_.wallNow());
    persistState();
  }
  ScaleEvent e;
  e.type = ScaleEventType::kScaleIn;
  e.pool = ps.name;
  e.old_capacity = si.old_capacity;
  e.new_capacity = si.new_capacity;
  e.reason = si.reason;
  e.zones = si.zones;
  e.instances = si.ids;
  e.created_at = si.event_at;
  std::string id = send(ps, e, si.webhook_id);
  std::string names;
  for (const std::string& n : e.instances) names += (names.empty() ? "" : ", ") + n;
  registry_.addEvent("scale_in", ps.name, "",
                     std::to_string(e.old_capacity) + " -> " + std::to_string(e.new_capacity) +
                         ": " + names + " drained after " +
                         std::to_string(toMillis(clock_.now() - si.started)) + "ms (webhook " + id +
                         ")");
  ps.scale_in.reset();
  persistState();
}

void AutoscaleController::stepUpgrade(PoolState& ps, const PoolRecord& p,
                                      const config::AutoscaleConfig& cfg, MonoTime now,
                                      WallTime wall) {
  if (!ps.upgrade_active) return;
  const config::HealthCheck& hc = p.cfg->health;
  std::vector<UpgradeInstance> instances;
  bool unprobed = false;
  for (const MemberRecord& m : p.members) {
    bool in_batch = std::find(ps.upgrade_batch.begin(), ps.upgrade_batch.end(), m.spec.id) !=
                    ps.upgrade_batch.end();
    if (m.drain != DrainState::kNone && !in_batch) continue;  // leaving the pool
    instances.push_back({m.spec.id, m.spec.zone, m.spec.version, provenHealthy(m, hc)});
    unprobed = unprobed || (hc.enabled && m.health == HealthState::kUnknown);
  }
  if (ps.upgrade_settle_until != MonoTime{}) {
    // Restored by this run: every member starts unprobed, which is not unhealthy.
    if (unprobed && now < ps.upgrade_settle_until) return;
    ps.upgrade_settle_until = MonoTime{};
  }
  UpgradeAction a = ps.upgrade.step(instances, now, wall);
  const UpgradeProgress& pr = ps.upgrade.progress();
  auto batchText = [&] {
    std::string s = "batch " + std::to_string(a.batch_index + 1) + "/" +
                    std::to_string(a.batch_count) + ":";
    for (const std::string& id : a.ids) s += " " + id;
    return s;
  };
  switch (a.kind) {
    case UpgradeAction::Kind::kDrainBatch:
      ps.upgrade_batch = a.ids;
      for (const std::string& id : a.ids) {
        Status st = registry_.drainMember(p.name, id, cfg.scale_in.drain);
        if (!st.isOk()) SG_LOG(kWarn, "upgrade drain of %s: %s", id.c_str(), st.message().c_str());
      }
      registry_.addEvent("upgrade_batch_draining", p.name, "", batchText());
      break;
    case UpgradeAction::Kind::kSendUpgradeBatch: {
      ScaleEvent e;
      e.type = ScaleEventType::kUpgradeBatch;
      e.pool = p.name;
      e.old_capacity = ps.desired;
      e.new_capacity = ps.desired;
      e.reason.kind = ScaleReasonKind::kUpgrade;
      e.reason.message = "rolling upgrade to " + a.version;
      e.instances = a.ids;
      e.upgrade = {a.version, a.batch_index, a.batch_count};
      e.created_at = wholeMillis(clock_.wallNow());
      // Write-ahead: the batch's phase, its webhook-id and event are on disk before the outbox
      // has it, so a restart in between queues it again under this id, never a second one.
      ps.upgrade_webhook_id = ps.target.has_value() ? sender_->reserveId() : "";
      ps.upgrade_event = e;
      // The restarted instances register again; until they do, desired does not drop.
      ps.provisioning_until = now + kProvisionTimeout;
      persistState();
      std::string id = send(ps, e, ps.upgrade_webhook_id);
      if (!ps.target.has_value()) {
        // Nothing will ever deliver it: the batch fails now instead of waiting in `sending`
        // forever (its drained members come back with the abort).
        ps.upgrade.onBatchFailed("upgrade_batch not sent: the pool has no usable scaler",
                                 clock_.now(), clock_.wallNow());
        persistState();
        break;
      }
      registry_.addEvent("upgrade_batch_sent", p.name, "", batchText() + " (webhook " + id + ")");
      break;
    }
    case UpgradeAction::Kind::kBatchDone:
      for (const std::string& id : a.ids) {
        (void)registry_.undrainMember(p.name, id, "upgraded to " + pr.version);
      }
      ps.upgrade_batch.clear();
      ps.upgrade_webhook_id.clear();
      ps.upgrade_event.reset();
      registry_.addEvent("upgrade_batch_done", p.name, "", batchText());
      break;
    case UpgradeAction::Kind::kCompleted:
      registry_.finishUpgrade(p.name);
      ps.upgrade_active = false;
      ps.upgrade_webhook_id.clear();
      ps.upgrade_event.reset();
      registry_.addEvent("upgrade_completed", p.name, "",
                         std::to_string(pr.instances_upgraded) + " instance(s) at " + pr.version);
      break;
    case UpgradeAction::Kind::kAborted:
      for (const std::string& id : a.ids) {
        (void)registry_.undrainMember(p.name, id, "upgrade aborted");
      }
      for (const std::string& id : ps.upgrade_batch) {
        (void)registry_.undrainMember(p.name, id, "upgrade aborted");
      }
      ps.upgrade_batch.clear();
      ps.upgrade_active = false;
      ps.upgrade_webhook_id.clear();
      ps.upgrade_event.reset();
      registry_.addEvent("upgrade_aborted", p.name, "", a.reason);
      logEvent(LogLevel::kWarn, "rolling upgrade aborted",
               {{"pool", p.name}, {"version", pr.version}, {"reason", a.reason}});
      break;
    case UpgradeAction::Kind::kNone:
    case UpgradeAction::Kind::kWaitHealthy:
    case UpgradeAction::Kind::kPause:
      break;
  }
  if (ps.upgrade_active && pr.state == UpgradeState::kDraining && !ps.upgrade_batch.empty()) {
    bool drained = std::all_of(ps.upgrade_batch.begin(), ps.upgrade_batch.end(),
                               [&](const std::string& id) {
                                 const MemberRecord* m = p.find(id);
                                 return m == nullptr || m->drain == DrainState::kDrained;
                               });
    if (drained) ps.upgrade.onDrained(now);
  }
}

void AutoscaleController::tickRepairs(PoolState& ps, const PoolRecord& p,
                                      const config::AutoscaleConfig& cfg, MonoTime now) {
  std::vector<RepairMemberView> views;
  for (const MemberRecord& m : p.members) {
    // Members of a rolling upgrade's batch are restarted on purpose: not repair candidates.
    bool upgrading = std::find(ps.upgrade_batch.begin(), ps.upgrade_batch.end(), m.spec.id) !=
                     ps.upgrade_batch.end();
    views.push_back({m.spec.id, m.probeHealthy(p.cfg->health),
                     m.drain != DrainState::kNone || upgrading});
  }
  RepairPlan plan = ps.repair->tick(views, now);
  for (const std::string& id : plan.start) {
    ScaleEvent e;
    e.type = ScaleEventType::kRepair;
    e.pool = p.name;
    e.old_capacity = ps.desired;
    e.new_capacity = ps.desired;
    e.reason.kind = ScaleReasonKind::kRepair;
    const MemberRecord* m = p.find(id);
    e.reason.message = "unhealthy for longer than the grace period " +
                       std::to_string(toMillis(cfg.repair.grace) / 1000) + "s" +
                       (m != nullptr && m->last_probe.has_value() && !m->last_probe->error.empty()
                            ? " (" + m->last_probe->error + ")"
                            : "");
    e.instances = {id};
    e.repair_action = cfg.repair.action;
    e.created_at = clock_.wallNow();
    std::string wid = send(ps, e);
    ++ps.repairs_started;
    ps.provisioning_until = now + kProvisionTimeout;
    registry_.addEvent("repair_started", p.name, id,
                       std::string(repairActionName(cfg.repair.action)) + ": " + e.reason.message +
                           " (webhook " + wid + ")");
  }
  for (const RepairOutcome& o : plan.succeeded) {
    ++ps.repairs_succeeded;
    registry_.addEvent("repair_succeeded", p.name, o.id, o.reason);
  }
  for (const RepairOutcome& o : plan.failed) {
    ++ps.repairs_failed;
    registry_.addEvent("repair_failed", p.name, o.id, o.reason);
  }
  if (plan.suspended.has_value()) {
    registry_.addEvent("repairs_suspended", p.name, "",
                       plan.suspended->reason + " (" + std::to_string(plan.suspended->failures) +
                           " failure(s) in a row)");
    logEvent(LogLevel::kWarn, "automatic repairs suspended",
             {{"pool", p.name}, {"reason", plan.suspended->reason}});
  }
  if (plan.resumed) registry_.addEvent("repairs_resumed", p.name, "", "suspension ended");
}

std::string AutoscaleController::send(PoolState& ps, const ScaleEvent& event,
                                      const std::string& id) {
  if (!ps.target.has_value()) {
    registry_.addEvent("webhook_not_sent", ps.name, "",
                       std::string(scaleEventTypeName(event.type)) +
                           ": the pool has no usable scaler (see the log)");
    return "-";
  }
  return id.empty() ? sender_->enqueue(event, *ps.target) : sender_->enqueue(event, *ps.target, id);
}

void AutoscaleController::remember(PoolState& ps, Json decision) {
  ps.decisions.push_back(std::move(decision));
  while (ps.decisions.size() > kMaxDecisionsKept) ps.decisions.pop_front();
}

void AutoscaleController::onDelivered(const std::string& id, const ScaleEvent& e) {
  registry_.addEvent("webhook_delivered", e.pool, "",
                     std::string(scaleEventTypeName(e.type)) + " " + id);
  PoolState* ps = state(e.pool);
  if (ps != nullptr && e.type == ScaleEventType::kUpgradeBatch && ps->upgrade_active &&
      id == ps->upgrade_webhook_id) {
    ps->upgrade.onBatchSent(clock_.now());
    persistState();
  }
}

void AutoscaleController::onFailed(const std::string& id, const ScaleEvent& e,
                                   const std::string& error) {
  registry_.addEvent("webhook_failed", e.pool, "",
                     std::string(scaleEventTypeName(e.type)) + " " + id + ": " + error);
  logEvent(LogLevel::kError, "webhook delivery failed",
           {{"pool", e.pool},
            {"type", scaleEventTypeName(e.type)},
            {"webhook_id", id},
            {"error", error}});
  PoolState* ps = state(e.pool);
  if (ps == nullptr) return;
  const MonoTime now = clock_.now();
  switch (e.type) {
    case ScaleEventType::kRepair:
      for (const std::string& m : e.instances) {
        (void)ps->repair->onRepairFailed(m, now, "webhook failed: " + error);
      }
      break;
    case ScaleEventType::kUpgradeBatch:
      if (ps->upgrade_active && id == ps->upgrade_webhook_id) {
        ps->upgrade.onBatchFailed("upgrade_batch webhook failed: " + error, now, clock_.wallNow());
        persistState();
      }
      break;
    case ScaleEventType::kScaleOut:
      // Nobody is provisioning: the next tick brings desired back to the members present.
      ps->provisioning_until = now;
      break;
    case ScaleEventType::kScaleIn:
      break;  // the drained members stay drained; an operator can remove them
  }
}

Json AutoscaleController::autoscaleJson(const PoolState& ps, const PoolRecord& p,
                                        const config::AutoscaleConfig& cfg) const {
  const WallTime wall = clock_.wallNow();
  const MonoTime now = clock_.now();
  const ActiveProfile profile = activeProfile(cfg, wall);
  uint32_t healthy = 0;
  for (const MemberRecord& m : p.members) healthy += inService(m, p.cfg->health) ? 1 : 0;
  Json j{{"pool", p.name},
         {"capacity",
          {{"desired", ps.desired},
           {"active", activeCount(p)},
           {"min", profile.min},
           {"max", profile.max},
           {"default", profile.default_capacity},
           {"profile", profile.name}}},
         {"members", {{"total", p.members.size()}, {"in_service", healthy}}},
         {"provisioning", ps.provisioning_until != MonoTime{} && now < ps.provisioning_until},
         {"evaluation_interval_ms", toMillis(cfg.evaluation_interval)},
         {"evaluations", ps.evaluations},
         {"live",
          {{"requests_per_second", ps.live.requests_per_second},
           {"latency_p95_ms", ps.live.p95_ms},
           {"latency_p99_ms", ps.live.p99_ms},
           {"error_rate", ps.live.error_rate},
           {"members_in_service", ps.live.members_in_service}}},
         {"decisions", Json::array()}};
  for (const Json& d : ps.decisions) j["decisions"].push_back(d);
  if (ps.scale_in.has_value()) {
    j["scale_in"] = {{"instances", ps.scale_in->ids},
                     {"old_capacity", ps.scale_in->old_capacity},
                     {"new_capacity", ps.scale_in->new_capacity},
                     {"draining_for_ms", toMillis(now - ps.scale_in->started)}};
  }
  if (ps.repair) {
    Json r{{"enabled", cfg.repair.enabled},
           {"in_repair", ps.repair->inRepair()},
           {"consecutive_failures", ps.repair->consecutiveFailures()},
           {"suspended", ps.repair->suspended(now)},
           {"started", ps.repairs_started},
           {"succeeded", ps.repairs_succeeded},
           {"failed", ps.repairs_failed}};
    if (ps.repair->suspended(now)) {
      r["suspended_for_ms"] = toMillis(*ps.repair->suspendedUntil() - now);
    }
    j["repair"] = std::move(r);
  }
  const UpgradeProgress& u = ps.upgrade.progress();
  j["upgrade"] = {{"state", upgradeStateName(u.state)},
                  {"version", u.version},
                  {"batch", u.batch_index},
                  {"batches", u.batch_count},
                  {"instances_total", u.instances_total},
                  {"instances_upgraded", u.instances_upgraded},
                  {"current_batch", u.current_batch},
                  {"reason", u.reason}};
  if (u.started_at != WallTime{}) j["upgrade"]["started_at"] = formatRfc3339(u.started_at);
  if (u.ended_at.has_value()) j["upgrade"]["ended_at"] = formatRfc3339(*u.ended_at);
  // Restored from the state file by this run (it went on where the previous run stopped).
  j["upgrade"]["resumed"] = ps.upgrade_resumed;
  if (!ps.upgrade_webhook_id.empty()) j["upgrade"]["webhook_id"] = ps.upgrade_webhook_id;
  const WebhookCounters& w = sender_->counters();
  j["webhooks"] = {{"pending", w.pending},
                   {"delivered", w.delivered},
                   {"given_up", w.given_up},
                   {"retries", w.retries},
                   {"scaler", ps.target.has_value() ? ps.target->url : ""}};
  return j;
}

void AutoscaleController::decoratePool(const std::string& pool, Json* summary) const {
  auto it = pools_.find(pool);
  const PoolRecord* p = registry_.findPool(pool);
  const config::AutoscaleConfig* cfg = configOf(pool);
  if (it == pools_.end() || p == nullptr || cfg == nullptr) return;
  const ActiveProfile profile = activeProfile(*cfg, clock_.wallNow());
  (*summary)["capacity"] = {{"desired", it->second->desired},
                            {"min", profile.min},
                            {"max", profile.max},
                            {"profile", profile.name}};
  (*summary)["upgrade"] = upgradeStateName(it->second->upgrade.progress().state);
}

std::optional<ActionReply> AutoscaleController::poolAction(const std::string& pool,
                                                           const std::string& action,
                                                           const std::string& method,
                                                           const std::string& body) {
  static const char* const kActions[] = {"scale", "autoscale", "metrics", "upgrade"};
  if (std::none_of(std::begin(kActions), std::end(kActions),
                   [&](const char* a) { return action == a; })) {
    return std::nullopt;
  }
  const PoolRecord* p = registry_.findPool(pool);
  const config::AutoscaleConfig* cfg = configOf(pool);
  PoolState* ps = state(pool);
  if (p == nullptr) return errorReply(404, "pool \"" + pool + "\" not found");
  if (cfg == nullptr || ps == nullptr) {
    return errorReply(409, "pool \"" + pool +
                               "\" has no autoscale section: manual scaling, upgrades and "
                               "metrics need a scaler (autoscale.scaler.url)");
  }
  if (action == "autoscale") {
    if (method != "GET") return notAllowed("GET, HEAD");
    return jsonReply(200, autoscaleJson(*ps, *p, *cfg));
  }
  if (action == "scale") {
    if (method == "GET") return jsonReply(200, autoscaleJson(*ps, *p, *cfg)["capacity"]);
    if (method != "POST") return notAllowed("GET, HEAD, POST");
    ActionReply r = manualScale(*ps, *p, *cfg, body);
    if (changed_) changed_();
    persistState();
    return r;
  }
  if (action == "metrics") {
    if (method == "GET") {
      Json j{{"metrics", Json::object()}};
      const int64_t now_s = PoolMetricStore::unixSecond(clock_.wallNow());
      for (const std::string& name : ps->metrics.names()) {
        Json points = Json::array();
        for (const MetricPoint& pt : ps->metrics.points(name, std::chrono::seconds(60), now_s)) {
          points.push_back({pt.unix_second, pt.avg, pt.min, pt.max, pt.sum, pt.count});
        }
        j["metrics"][name] = std::move(points);
      }
      j["columns"] = {"unix_second", "avg", "min", "max", "sum", "count"};
      return jsonReply(200, j);
    }
    if (method != "POST") return notAllowed("GET, HEAD, POST");
    return pushMetrics(*ps, body);
  }
  // upgrade
  if (method == "GET") return jsonReply(200, autoscaleJson(*ps, *p, *cfg)["upgrade"]);
  if (method == "DELETE") {
    if (!ps->upgrade_active) return errorReply(409, "no rolling upgrade is running");
    ps->upgrade.cancel("cancelled through the admin API", clock_.wallNow());
    stepUpgrade(*ps, *p, *cfg, clock_.now(), clock_.wallNow());
    if (changed_) changed_();
    persistState();
    return jsonReply(200, autoscaleJson(*ps, *p, *cfg)["upgrade"]);
  }
  if (method != "POST") return notAllowed("GET, HEAD, POST, DELETE");
  ActionReply r = startUpgrade(*ps, *p, *cfg, body);
  if (changed_) changed_();
  persistState();
  return r;
}

ActionReply AutoscaleController::manualScale(PoolState& ps, const PoolRecord& p,
                                             const config::AutoscaleConfig& cfg,
                                             const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("capacity") ||
      !j["capacity"].is_number_unsigned() || j.size() != 1) {
    return errorReply(400, "the body must be {\"capacity\": N} with N a whole number");
  }
  const uint64_t requested = j["capacity"].get<uint64_t>();
  if (requested > kMaxManualCapacity) {
    return errorReply(400, "capacity must be at most " + std::to_string(kMaxManualCapacity));
  }
  if (ps.scale_in.has_value()) {
    return errorReply(409, "a scale-in is draining instances; try again when it is done");
  }
  if (ps.upgrade_active) return errorReply(409, "a rolling upgrade is running");
  const MonoTime now = clock_.now();
  reconcile(ps, p, now);
  ManualScale m = clampManualScale(cfg, static_cast<uint32_t>(requested), clock_.wallNow());
  const uint32_t old_capacity = ps.desired;
  ScaleReason reason;
  reason.kind = ScaleReasonKind::kManual;
  reason.profile = m.profile;
  reason.message = "manual scale to " + std::to_string(requested) +
                   (m.clamped ? " (" + m.reason + ")" : std::string());
  bool applied = true;
  ScaleDirection dir = ScaleDirection::kNone;
  if (m.capacity > ps.desired) {
    dir = ScaleDirection::kOut;
    scaleOut(ps, p, cfg, m.capacity, reason, now);
  } else if (m.capacity < ps.desired) {
    dir = ScaleDirection::kIn;
    applied = scaleIn(ps, p, cfg, m.capacity, reason, now);
  }
  if (dir != ScaleDirection::kNone && applied) ps.autoscaler.recordScaled(dir, now);
  if (dir != ScaleDirection::kNone) {
    remember(ps, {{"at", formatRfc3339(clock_.wallNow())},
                  {"direction", scaleDirectionName(dir)},
                  {"old_capacity", old_capacity},
                  {"new_capacity", ps.desired},
                  {"cause", "manual"},
                  {"reason", reasonJson(reason)},
                  {"applied", applied}});
  }
  if (!applied) return errorReply(409, "every member is protected from scale-in");
  return jsonReply(202, {{"old_capacity", old_capacity},
                         {"new_capacity", ps.desired},
                         {"requested", requested},
                         {"clamped", m.clamped},
                         {"min", m.min},
                         {"max", m.max},
                         {"reason", m.reason}});
}

ActionReply AutoscaleController::pushMetrics(PoolState& ps, const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("metrics") || !j["metrics"].is_object()) {
    return errorReply(400, "the body must be {\"metrics\": {\"name\": number, ...}}");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "metrics") {
      return errorReply(400, "unknown field \"" + it.key() + "\" (allowed: metrics)");
    }
  }
  const int64_t second = PoolMetricStore::unixSecond(clock_.wallNow());
  size_t accepted = 0;
  for (auto it = j["metrics"].begin(); it != j["metrics"].end(); ++it) {
    if (!it->is_number() || !std::isfinite(it->get<double>())) {
      return errorReply(400, "metric \"" + it.key() + "\" must be a finite number");
    }
    Status st = ps.metrics.recordValue(it.key(), second, it->get<double>());
    if (!st.isOk()) {
      return errorReply(st.code() == StatusCode::kOutOfRange ? 409 : 400,
                        "metric \"" + it.key() + "\": " + st.message());
    }
    ++accepted;
  }
  return jsonReply(202, {{"accepted", accepted}, {"unix_second", second}});
}

ActionReply AutoscaleController::startUpgrade(PoolState& ps, const PoolRecord& p,
                                              const config::AutoscaleConfig& cfg,
                                              const std::string& body) {
  Json j = Json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return errorReply(400, "the body must be a JSON object such as {\"version\": \"v2\"}");
  }
  if (!j.contains("version") || !j["version"].is_string() ||
      j["version"].get<std::string>().empty()) {
    return errorReply(400, "version (a non-empty string) is required");
  }
  UpgradeRequest req = UpgradeRequest::fromDefaults(cfg.upgrade, j["version"].get<std::string>());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "version") continue;
    if (k == "batch" || k == "max_unhealthy" || k == "max_unhealthy_upgraded") {
      Result<config::CountOrPercent> c = parseCountOrPercent(*it, k.c_str());
      if (!c.isOk()) return errorReply(400, c.status().message());
      (k == "batch" ? req.batch : k == "max_unhealthy" ? req.max_unhealthy
                                                       : req.max_unhealthy_upgraded) = *c;
    } else if (k == "pause" || k == "health_timeout") {
      if (!it->is_string()) return errorReply(400, k + " must be a duration such as \"10s\"");
      Result<Duration> d = parseDuration(it->get<std::string>());
      if (!d.isOk()) return errorReply(400, k + ": " + d.status().message());
      (k == "pause" ? req.pause : req.health_timeout) = *d;
    } else {
      return errorReply(400, "unknown field \"" + k +
                                 "\" (allowed: version, batch, max_unhealthy, "
                                 "max_unhealthy_upgraded, pause, health_timeout)");
    }
  }
  if (ps.scale_in.has_value()) return errorReply(409, "a scale-in is draining instances");
  std::vector<UpgradeInstance> instances;
  for (const MemberRecord& m : p.members) {
    if (m.drain != DrainState::kNone) continue;
    instances.push_back(
        {m.spec.id, m.spec.zone, m.spec.version, provenHealthy(m, p.cfg->health)});
  }
  Status st = ps.upgrade.start(req, instances, clock_.now(), clock_.wallNow());
  if (!st.isOk()) {
    return errorReply(st.code() == StatusCode::kFailedPrecondition ? 409 : 400, st.message());
  }
  ps.upgrade_active = true;
  ps.upgrade_batch.clear();
  ps.upgrade_webhook_id.clear();
  ps.upgrade_event.reset();
  ps.upgrade_resumed = false;
  ps.upgrade_settle_until = MonoTime{};
  if (!ps.desired_known) reconcile(ps, p, clock_.now());  // the state file's pool entry
  registry_.setUpgradeVersion(p.name, req.version);
  const UpgradeProgress& u = ps.upgrade.progress();
  registry_.addEvent("upgrade_started", p.name, "",
                     "to " + req.version + ": " + std::to_string(u.instances_total) +
                         " instance(s) in " + std::to_string(u.batch_count) +
                         " batch(es) of " + describe(req.batch) + ", max unhealthy " +
                         describe(req.max_unhealthy) + ", pause " +
                         std::to_string(toMillis(req.pause)) + "ms");
  stepUpgrade(ps, p, cfg, clock_.now(), clock_.wallNow());
  return jsonReply(202, autoscaleJson(ps, p, cfg)["upgrade"]);
}

void AutoscaleController::addMetrics(std::vector<prometheus::MetricFamily>& out) const {
  using prometheus::MetricType;
  auto capacity = metricFamily("scalegate_pool_capacity",
                               "Pool capacity in instances: desired (what autoscale asks for), "
                               "active (members not leaving), min, max.",
                               MetricType::Gauge);
  auto decisions = metricFamily("scalegate_autoscale_decisions_total",
                                "Capacity changes decided (autoscale rules, targets, manual).",
                                MetricType::Counter);
  auto evaluations = metricFamily("scalegate_autoscale_evaluations_total",
                                  "Autoscale evaluations run.", MetricType::Counter);
  auto flapping = metricFamily("scalegate_autoscale_flapping_total",
                               "Scale-ins that flapping protection reduced or skipped.",
                               MetricType::Counter);
  auto repairs = metricFamily("scalegate_repairs_total",
                              "Automatic instance repairs by result.", MetricType::Counter);
  auto suspended = metricFamily("scalegate_repairs_suspended",
                                "1 while automatic repairs are suspended.", MetricType::Gauge);
  auto upgrade_state = metricFamily("scalegate_upgrade_state",
                                    "Rolling upgrade state: 1 for the current state.",
                                    MetricType::Gauge);
  auto upgrade_instances = metricFamily(
      "scalegate_upgrade_instances",
      "Rolling upgrade progress: instances to upgrade (total) and upgraded so far.",
      MetricType::Gauge);
  auto upgrade_batches = metricFamily("scalegate_upgrade_batches",
                                      "Rolling upgrade batches: total and done.",
                                      MetricType::Gauge);
  const MonoTime now = clock_.now();
  for (const auto& [name, ps] : pools_) {
    const PoolRecord* p = registry_.findPool(name);
    const config::AutoscaleConfig* cfg = configOf(name);
    if (p == nullptr || cfg == nullptr) continue;
    const ActiveProfile profile = activeProfile(*cfg, clock_.wallNow());
    const std::vector<prometheus::ClientMetric::Label> pool{{"pool", name}};
    auto with = [&](const char* k, std::string v) {
      auto l = pool;
      l.push_back({k, std::move(v)});
      return l;
    };
    addGaugeSample(capacity, with("kind", "desired"), ps->desired);
    addGaugeSample(capacity, with("kind", "active"), activeCount(*p));
    addGaugeSample(capacity, with("kind", "min"), profile.min);
    addGaugeSample(capacity, with("kind", "max"), profile.max);
    addCounterSample(decisions, with("direction", "out"), ps->scale_outs);
    addCounterSample(decisions, with("direction", "in"), ps->scale_ins);
    addCounterSample(evaluations, pool, ps->evaluations);
    addCounterSample(flapping, pool, ps->flapping);
    addCounterSample(repairs, with("result", "started"), ps->repairs_started);
    addCounterSample(repairs, with("result", "succeeded"), ps->repairs_succeeded);
    addCounterSample(repairs, with("result", "failed"), ps->repairs_failed);
    addGaugeSample(suspended, pool, ps->repair && ps->repair->suspended(now) ? 1 : 0);
    const UpgradeProgress& u = ps->upgrade.progress();
    for (UpgradeState s : {UpgradeState::kIdle, UpgradeState::kDraining, UpgradeState::kSending,
                           UpgradeState::kWaitingHealthy, UpgradeState::kPausing,
                           UpgradeState::kCompleted, UpgradeState::kAborted}) {
      addGaugeSample(upgrade_state, with("state", upgradeStateName(s)), u.state == s ? 1 : 0);
    }
    addGaugeSample(upgrade_instances, with("kind", "total"), u.instances_total);
    addGaugeSample(upgrade_instances, with("kind", "upgraded"), u.instances_upgraded);
    addGaugeSample(upgrade_batches, with("kind", "total"), u.batch_count);
    addGaugeSample(upgrade_batches, with("kind", "done"),
                   u.state == UpgradeState::kCompleted ? u.batch_count : u.batch_index);
  }
  const WebhookCounters& w = sender_->counters();
  auto deliveries = metricFamily("scalegate_webhook_deliveries_total",
                                 "Webhook deliveries by final result.", MetricType::Counter);
  addCounterSample(deliveries, {{"result", "delivered"}}, w.delivered);
  addCounterSample(deliveries, {{"result", "given_up"}}, w.given_up);
  auto attempts = metricFamily("scalegate_webhook_attempts_total",
                               "Webhook delivery attempts (first tries and retries).",
                               MetricType::Counter);
  addCounterSample(attempts, {}, w.attempts);
  auto failed = metricFamily("scalegate_webhook_failed_attempts_total",
                             "Webhook attempts that failed, by reason.", MetricType::Counter);
  for (size_t i = 0; i < w.failed_attempts.size(); ++i) {
    addCounterSample(failed, {{"reason", attemptOutcomeName(static_cast<AttemptOutcome>(i))}},
                     w.failed_attempts[i]);
  }
  auto pending = metricFamily("scalegate_webhook_pending",
                              "Webhooks not yet delivered nor given up (persisted in the outbox).",
                              MetricType::Gauge);
  addGaugeSample(pending, {}, static_cast<double>(w.pending));
  auto latency = metricFamily("scalegate_webhook_last_latency_seconds",
                              "Duration of the last answered webhook attempt.",
                              MetricType::Gauge);
  addGaugeSample(latency, {}, std::chrono::duration<double>(w.last_latency).count());
  for (auto* f : {&capacity, &decisions, &evaluations, &flapping, &repairs, &suspended,
                  &upgrade_state, &upgrade_instances, &upgrade_batches}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  for (auto* f : {&deliveries, &attempts, &failed, &pending, &latency}) out.push_back(std::move(*f));
}

}  // namespace scalegate::control
