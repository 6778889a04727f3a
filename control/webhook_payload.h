#pragma once
// What scalegate tells a scaler, and the JSON bodies it sends (control/README.md "Webhook
// contract" has the full format with examples). A ScaleEvent is built by the autoscaler, repair
// planner or rolling upgrade, handed to WebhookSender::enqueue (control/webhook_sender.h), and
// rendered here into one of two bodies:
//   - the scalegate format: {"type": "scale_out", "timestamp": ..., "data": {...}}, the Standard
//     Webhooks payload shape, carrying everything in the event;
//   - an Azure Monitor autoscale notification ({"version": "1.0", "status": "Activated",
//     "operation": "Scale Out", "context": {..., "oldCapacity": "2", "newCapacity": "4"},
//     "properties": {...}}) so that receivers written for Azure work unchanged.
// Pure functions; any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"

namespace scalegate::control {

enum class ScaleEventType { kScaleOut, kScaleIn, kRepair, kUpgradeBatch };
// Why the capacity or an instance changes.
enum class ScaleReasonKind { kRule, kTarget, kManual, kDefault, kSchedule, kRepair, kUpgrade };
enum class WebhookFormat { kScalegate, kAzure };

const char* scaleEventTypeName(ScaleEventType t);      // "scale_out", "scale_in", ...
const char* scaleReasonKindName(ScaleReasonKind k);    // "rule", "target", ...
const char* repairActionName(config::RepairAction a);  // "replace", "restart", "reimage"
const char* webhookFormatName(WebhookFormat f);        // "scalegate", "azure"
bool parseScaleEventType(std::string_view s, ScaleEventType* out);
bool parseScaleReasonKind(std::string_view s, ScaleReasonKind* out);
bool parseRepairAction(std::string_view s, config::RepairAction* out);
bool parseWebhookFormat(std::string_view s, WebhookFormat* out);

struct ScaleReason {
  ScaleReasonKind kind = ScaleReasonKind::kManual;
  std::string rule;    // the rule as people read it: "cpu avg 5m > 75 → increase 2"; may be ""
  std::string metric;  // "cpu", "requests_per_second_per_member", ...; "" when none
  std::optional<double> value;      // the metric value that fired the rule
  std::optional<double> threshold;  // the rule's threshold or the target value
  std::string profile;              // the autoscale profile in force ("default" or a scheduled one)
  std::string message;  // free text for people: "unhealthy for 10m (probe: 503)"; may be ""
};

struct UpgradeBatch {
  std::string version;       // the version label the batch moves to
  uint32_t batch_index = 0;  // 0-based
  uint32_t batch_count = 0;
};

struct ScaleEvent {
  ScaleEventType type = ScaleEventType::kScaleOut;
  std::string pool;
  uint32_t old_capacity = 0;
  uint32_t new_capacity = 0;
  ScaleReason reason;
  // scale_out: zone -> instances to add there; scale_in: zone -> instances removed there.
  // Empty for a zoneless pool.
  std::map<std::string, uint32_t> zones;
  // scale_in: the instances to delete (already drained); repair: the instance to repair;
  // upgrade_batch: the instances of the batch. Empty for scale_out.
  std::vector<std::string> instances;
  config::RepairAction repair_action = config::RepairAction::kReplace;  // repair only
  UpgradeBatch upgrade;                                                 // upgrade_batch only
  WallTime created_at{};  // when the decision was taken
};

// Azure resource names used by the Azure format (defaults fit a local demo; the lead maps them
// from config if a receiver needs real ones). `properties` is Azure's string bag from the
// autoscale notification settings, echoed as is.
struct AzureContext {
  std::string subscription_id = "00000000-0000-0000-0000-000000000000";
  std::string resource_group = "scalegate";
  std::string resource_name;  // "" = the pool name
  std::string resource_type = "microsoft.compute/virtualmachinescalesets";
  std::string setting_name;  // "" = "<pool>-autoscale"
  std::map<std::string, std::string> properties;
};

// RFC 3339 UTC with `digits` fractional digits (0..9): "2026-11-28T16:20:00.123Z".
std::string formatRfc3339(WallTime t, int digits = 3);
// Parses what formatRfc3339 writes (any number of fractional digits, 'Z' only).
Result<WallTime> parseRfc3339(std::string_view text);

// The scalegate format. `webhook_id` is echoed as "id" so a receiver that logs bodies can
// match them with deliveries.
std::string renderScalegatePayload(const ScaleEvent& event, std::string_view webhook_id);
// The Azure Monitor autoscale notification for the event. scale_out/scale_in are "Scale Out"/
// "Scale In" exactly as Azure sends them; repair and upgrade_batch (which Azure autoscale never
// notifies) use operations "Repair" and "Upgrade" and put the instance details in properties
// under "scalegate.*" keys (see control/README.md).
std::string renderAzurePayload(const ScaleEvent& event, std::string_view webhook_id,
                               const AzureContext& azure);
std::string renderPayload(WebhookFormat format, const ScaleEvent& event,
                          std::string_view webhook_id, const AzureContext& azure);

// Reads back a scalegate-format body (the outbox stores events this way). kInvalidArgument
// with the key at fault when the JSON does not describe an event.
Result<ScaleEvent> parseScalegatePayload(std::string_view body);

}  // namespace scalegate::control
