#pragma once
// AutoscaleController: runs a VM-scale-set's control loop for every pool that has `autoscale:`
// (issue 4). It owns the per-pool metric stores, autoscalers, repair planners and rolling
// upgrades, turns their decisions into drains and signed webhooks, and answers the admin API's
// autoscale endpoints. Control thread only: every method runs on the control event loop.
//
//   every second (own timer):
//     LoadSampler ─► PoolMetricStore ─┐
//     PoolRegistry (members, health) ─┼─► reconcile capacity ─► scale-in done? ─► scale_in hook
//                                     ├─► RollingUpgrade.step ─► drain / upgrade_batch / undrain
//                                     ├─► RepairPlanner.tick ─► repair hook
//                                     └─► Autoscaler.evaluate (every evaluation_interval)
//                                            out ─► planScaleOut(zones) ─► scale_out hook
//                                            in  ─► selectForScaleIn ─► drain ─► (drained) ─┘
//   admin API: POST /scale (manual), POST /metrics (custom), GET /autoscale, /upgrade
//   WebhookSender (persisted outbox) ─► scaler; its outcomes feed back (repair failures, upgrade
//   batches delivered or failed)
//
// Capacity: `desired` is the instance count the pool should have. It starts at the number of
// members in service (not draining), moves with every decision, and follows the members when
// they catch up (an operator adding one by hand raises it). After a scale-out or a repair the
// scaler has kProvisionTimeout to register the instances; if it has not by then, desired falls
// back to the members present and the autoscaler decides again from there.
// Evaluations pause while a scale-in drains or a rolling upgrade runs (Azure does not act while
// a scale operation is in progress).
//
// Restarts: what a crash must not lose is written to `<state>.autoscale.json` (atomically,
// whenever it changes): per pool the desired capacity, the provisioning deadline, the last
// scale (for cooldowns), a scale-in being drained (the instances and the event to send) and
// the rolling upgrade (control/README.md "Restarts during autoscaling").
// Without it a restart during a scale-out would start from the members present, decide again
// and ask the scaler for the same instances twice; a restart during a scale-in would leave its
// members drained forever and never send the scale_in webhook. The desired capacity is written
// before the scale_out webhook is queued, so a crash between the two can delay a scale-out
// (until kProvisionTimeout) but never double it. Webhooks themselves survive in the outbox.
// The scale_in and upgrade_batch webhooks get their webhook-id reserved and written to the
// file before they are queued; after a restart start() queues such an event again with that
// id only when the outbox does not hold it, so each has exactly one id.
// A rolling upgrade (RollingUpgrade::toJson: plan, batch in flight, phase, deadline, counts,
// abort state) is in the same file, in the same atomic write as the desired capacity and the
// provisioning deadline it moves; after a restart it goes on where it was once every member
// has a probe verdict again (at most (max(rise, fall) + 1) probe intervals + a probe timeout),
// so members that are merely not probed yet do not trip its abort limits.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <event2/event.h>
#include <prometheus/metric_family.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"
#include "control/admin_server.h"
#include "control/autoscale_policy.h"
#include "control/load_sampler.h"
#include "control/metric_series.h"
#include "control/pool_registry.h"
#include "control/repair_planner.h"
#include "control/rolling_upgrade.h"
#include "control/webhook_payload.h"
#include "control/webhook_sender.h"

namespace scalegate::control {

class AutoscaleController {
 public:
  static constexpr Duration kProvisionTimeout = std::chrono::minutes(10);
  static constexpr size_t kMaxDecisionsKept = 50;

  // `changed` is called after the controller changed the registry (drains, undrains): App
  // publishes a snapshot and saves the state file. `outbox_path` "" = no persisted outbox;
  // `state_path` "" = autoscale state kept in memory only.
  AutoscaleController(event_base* base, PoolRegistry& registry, const Clock& clock,
                      std::string outbox_path, std::string state_path,
                      std::function<void()> changed);
  ~AutoscaleController();
  AutoscaleController(const AutoscaleController&) = delete;
  AutoscaleController& operator=(const AutoscaleController&) = delete;

  // Takes the pools' autoscale settings (start and every reload). Reads the scalers' secret
  // files: an error names the pool and the file. At start App refuses to run on an error; on a
  // reload the pool keeps its previous scaler target.
  Status applyConfig(const config::Config& cfg);

  // Loads the autoscale state and the outbox (pending webhooks) of the previous run and starts
  // the 1-second tick. Call after applyConfig(). A corrupt state file is an error.
  Status start();

  // One pass of the loop (the timer calls it every second; tests call it directly).
  void tick();

  // /v1/pools/{pool}/{scale,autoscale,metrics,upgrade} (AdminServer::Hooks::pool_action).
  std::optional<AdminServer::ActionReply> poolAction(const std::string& pool,
                                                     const std::string& action,
                                                     const std::string& method,
                                                     const std::string& body);
  // Adds "capacity" and "autoscale" to a pool's JSON (AdminServer::Hooks::decorate_pool).
  void decoratePool(const std::string& pool, nlohmann::json* summary) const;
  // Autoscale, repair, upgrade and webhook families for /metrics (MetricsInput::extra).
  void addMetrics(std::vector<prometheus::MetricFamily>& out) const;

  const WebhookCounters& webhookCounters() const { return sender_->counters(); }
  // The autoscale state file's reader and writer on text: start() reads the file into
  // loadStateText(); stateText() is what the file gets. `name` (the path) starts every error.
  // Call loadStateText() after applyConfig() and only on a fresh controller (pools the config
  // does not autoscale are skipped). Tests and tests/fuzz use both directly.
  Status loadStateText(const std::string& name, const std::string& text);
  std::string stateText() const { return renderState(); }

 private:
  struct ScaleIn {
    std::vector<std::string> ids;
    uint32_t old_capacity = 0, new_capacity = 0;
    ScaleReason reason;
    std::map<std::string, uint32_t> zones;
    MonoTime started{};
    // Set once the members are drained: the scale_in webhook's id, reserved and written to
    // the state file before it is queued, and the event's time.
    std::string webhook_id;
    WallTime event_at{};
  };
  struct PoolState {
    std::string name;
    PoolMetricStore metrics;
    Autoscaler autoscaler;
    std::unique_ptr<RepairPlanner> repair;
    RollingUpgrade upgrade;
    bool upgrade_active = false;
    std::vector<std::string> upgrade_batch;  // drained for the batch in flight
    // The batch in flight's upgrade_batch webhook: id reserved (and persisted) before queueing.
    std::string upgrade_webhook_id;
    std::optional<ScaleEvent> upgrade_event;
    bool upgrade_resumed = false;         // restored from the state file by this run
    MonoTime upgrade_settle_until{};      // after a restore: wait for probe verdicts until then
    std::optional<WebhookTarget> target;  // nullopt: no usable scaler (error logged)
    uint32_t desired = 0;
    bool desired_known = false;
    MonoTime provisioning_until{};
    std::optional<ScaleIn> scale_in;
    std::deque<nlohmann::json> decisions;  // newest last
    PoolLoadSample live;
    uint64_t evaluations = 0, scale_outs = 0, scale_ins = 0, flapping = 0;
    uint64_t repairs_started = 0, repairs_succeeded = 0, repairs_failed = 0;
    uint64_t metric_samples_dropped = 0;
  };

  static void onTimer(evutil_socket_t, short, void* arg);
  const config::AutoscaleConfig* configOf(const std::string& pool) const;
  PoolState* state(const std::string& pool);
  void recordMetrics(const std::vector<PoolLoadSample>& samples, int64_t second);
  void reconcile(PoolState& ps, const PoolRecord& p, MonoTime now);
  void evaluate(PoolState& ps, const PoolRecord& p, const config::AutoscaleConfig& cfg,
                MonoTime now, WallTime wall);
  void scaleOut(PoolState& ps, const PoolRecord& p, const config::AutoscaleConfig& cfg,
                uint32_t capacity, ScaleReason reason, MonoTime now);
  // False when nothing could be chosen (every member protected).
  bool scaleIn(PoolState& ps, const PoolRecord& p, const config::AutoscaleConfig& cfg,
               uint32_t capacity, ScaleReason reason, MonoTime now);
  void finishScaleIn(PoolState& ps, const PoolRecord& p);
  // Sends the drained scale-in's webhook (its id written to the state file first) and ends it.
  void sendScaleIn(PoolState& ps);
  void stepUpgrade(PoolState& ps, const PoolRecord& p, const config::AutoscaleConfig& cfg,
                   MonoTime now, WallTime wall);
  void tickRepairs(PoolState& ps, const PoolRecord& p, const config::AutoscaleConfig& cfg,
                   MonoTime now);
  // Queues the event; `id` "" = a new webhook-id, else that (reserved) one.
  std::string send(PoolState& ps, const ScaleEvent& event, const std::string& id = "");
  void remember(PoolState& ps, nlohmann::json decision);
  void onDelivered(const std::string& id, const ScaleEvent& event);
  void onFailed(const std::string& id, const ScaleEvent& event, const std::string& error);
  std::string secretFor(const std::string& pool, const std::string& url) const;
  // Writes the autoscale state file when its contents changed; logs the first failure of a run.
  void persistState();
  Status loadState();
  // After loadOutbox(): queues again, with their recorded ids, the scale_in and upgrade_batch
  // webhooks the previous run wrote down but whose queueing the outbox does not show.
  void resumeWebhooks();
  std::string renderState() const;
  WallTime wallOf(MonoTime t) const { return wall_epoch_ + (t - mono_epoch_); }

  nlohmann::json autoscaleJson(const PoolState& ps, const PoolRecord& p,
                               const config::AutoscaleConfig& cfg) const;
  AdminServer::ActionReply manualScale(PoolState& ps, const PoolRecord& p,
                                       const config::AutoscaleConfig& cfg, const std::string& body);
  AdminServer::ActionReply pushMetrics(PoolState& ps, const std::string& body);
  AdminServer::ActionReply startUpgrade(PoolState& ps, const PoolRecord& p,
                                        const config::AutoscaleConfig& cfg,
                                        const std::string& body);

  event_base* base_;
  PoolRegistry& registry_;
  const Clock& clock_;
  std::function<void()> changed_;
  std::unique_ptr<WebhookSender> sender_;
  LoadSampler sampler_;
  std::map<std::string, std::unique_ptr<PoolState>> pools_;
  std::map<std::string, std::string> secrets_;  // by secret file path
  event* timer_ = nullptr;
  std::string state_path_;
  std::string state_written_;  // the file's contents as last written
  bool state_write_failing_ = false;
  uint64_t state_write_errors_ = 0;
  // Monotonic times are written as wall times through one fixed pair of readings, so the
  // contents only change when the state does.
  MonoTime mono_epoch_{};
  WallTime wall_epoch_{};
};

// Where the outbox lives next to the state file: "x.state.json" -> "x.outbox.json".
std::string outboxPathFor(const std::string& state_path);
// "x.state.json" -> "x.autoscale.json".
std::string autoscaleStatePathFor(const std::string& state_path);

}  // namespace scalegate::control
