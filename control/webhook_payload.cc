#include "control/webhook_payload.h"

#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

namespace scalegate::control {
namespace {

using Json = nlohmann::ordered_json;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

template <typename E, size_t N>
bool parseName(std::string_view s, const char* const (&names)[N], E* out) {
  for (size_t i = 0; i < N; ++i) {
    if (s == names[i]) {
      *out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

constexpr const char* kTypeNames[] = {"scale_out", "scale_in", "repair", "upgrade_batch"};
constexpr const char* kReasonNames[] = {"rule",     "target", "manual", "default",
                                        "schedule", "repair", "upgrade"};
constexpr const char* kRepairNames[] = {"replace", "restart", "reimage"};
constexpr const char* kFormatNames[] = {"scalegate", "azure"};

Json reasonJson(const ScaleReason& r) {
  Json j = Json::object();
  j["kind"] = scaleReasonKindName(r.kind);
  if (!r.rule.empty()) j["rule"] = r.rule;
  if (!r.metric.empty()) j["metric"] = r.metric;
  if (r.value && std::isfinite(*r.value)) j["value"] = *r.value;
  if (r.threshold && std::isfinite(*r.threshold)) j["threshold"] = *r.threshold;
  if (!r.profile.empty()) j["profile"] = r.profile;
  if (!r.message.empty()) j["message"] = r.message;
  return j;
}

std::string numberText(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// "cpu 82.5 > 75 (rule cpu avg 5m > 75)" for Azure's details text and logs.
std::string reasonText(const ScaleReason& r) {
  std::string out = scaleReasonKindName(r.kind);
  if (!r.metric.empty()) {
    out += ": " + r.metric;
    if (r.value) out += " " + numberText(*r.value);
    if (r.threshold) out += " vs " + numberText(*r.threshold);
  }
  if (!r.rule.empty()) out += " (" + r.rule + ")";
  if (!r.message.empty()) out += " " + r.message;
  return out;
}

std::string joinInstances(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out.push_back(',');
    out += s;
  }
  return out;
}

std::string joinZones(const std::map<std::string, uint32_t>& zones) {
  std::string out;
  for (const auto& [zone, n] : zones) {
    if (!out.empty()) out.push_back(',');
    out += zone + "=" + std::to_string(n);
  }
  return out;
}

Status want(bool ok, const std::string& key, const char* what) {
  return ok ? Status::ok() : invalidArgument(key + ": " + what);
}

Status readCount(const Json& j, const std::string& key, uint32_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return invalidArgument(key + ": missing");
  SG_RETURN_IF_ERROR(want(it->is_number_unsigned() && it->get<uint64_t>() <= UINT32_MAX, key,
                          "must be a whole number"));
  *out = static_cast<uint32_t>(it->get<uint64_t>());
  return Status::ok();
}

Status readString(const Json& j, const std::string& key, std::string* out, bool required) {
  auto it = j.find(key);
  if (it == j.end()) return required ? invalidArgument(key + ": missing") : Status::ok();
  SG_RETURN_IF_ERROR(want(it->is_string(), key, "must be a string"));
  *out = it->get<std::string>();
  return Status::ok();
}

Status readOptionalNumber(const Json& j, const std::string& key, std::optional<double>* out) {
  auto it = j.find(key);
  if (it == j.end()) return Status::ok();
  SG_RETURN_IF_ERROR(want(it->is_number(), key, "must be a number"));
  *out = it->get<double>();
  return Status::ok();
}

}  // namespace

const char* scaleEventTypeName(ScaleEventType t) { return kTypeNames[static_cast<int>(t)]; }
const char* scaleReasonKindName(ScaleReasonKind k) { return kReasonNames[static_cast<int>(k)]; }
const char* repairActionName(config::RepairAction a) { return kRepairNames[static_cast<int>(a)]; }
const char* webhookFormatName(WebhookFormat f) { return kFormatNames[static_cast<int>(f)]; }
bool parseScaleEventType(std::string_view s, ScaleEventType* out) {
  return parseName(s, kTypeNames, out);
}
bool parseScaleReasonKind(std::string_view s, ScaleReasonKind* out) {
  return parseName(s, kReasonNames, out);
}
bool parseRepairAction(std::string_view s, config::RepairAction* out) {
  return parseName(s, kRepairNames, out);
}
bool parseWebhookFormat(std::string_view s, WebhookFormat* out) {
  return parseName(s, kFormatNames, out);
}

std::string formatRfc3339(WallTime t, int digits) {
  if (digits < 0) digits = 0;
  if (digits > 9) digits = 9;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
  int64_t secs = ns.count() / 1'000'000'000;
  int64_t frac = ns.count() % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  time_t tt = static_cast<time_t>(secs);
  tm utc{};
  gmtime_r(&tt, &utc);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  std::string out(buf, n);
  if (digits > 0) {
    char fbuf[16];
    std::snprintf(fbuf, sizeof(fbuf), ".%09lld", static_cast<long long>(frac));
    out.append(fbuf, static_cast<size_t>(digits) + 1);
  }
  out.push_back('Z');
  return out;
}

Result<WallTime> parseRfc3339(std::string_view text) {
  auto bad = [&] { return invalidArgument("bad timestamp \"" + std::string(text) + "\""); };
  if (text.size() < 20 || text.back() != 'Z') return bad();
  tm utc{};
  std::string head(text.substr(0, 19));
  const char* end = strptime(head.c_str(), "%Y-%m-%dT%H:%M:%S", &utc);
  if (end == nullptr || *end != '\0') return bad();
  int64_t frac_ns = 0;
  std::string_view rest = text.substr(19, text.size() - 20);
  if (!rest.empty()) {
    if (rest[0] != '.' || rest.size() < 2 || rest.size() > 10) return bad();
    int64_t scale = 100'000'000;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return bad();
      frac_ns += (c - '0') * scale;
      scale /= 10;
    }
  }
  const int64_t secs = static_cast<int64_t>(timegm(&utc));
  // WallTime counts nanoseconds in 64 bits (years 1677..2262): beyond that it cannot hold it.
  constexpr int64_t kMaxSeconds =
      std::chrono::duration_cast<std::chrono::seconds>(WallTime::duration::max()).count() - 1;
  if (secs > kMaxSeconds || secs < -kMaxSeconds) return bad();
  return WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::seconds(secs) + std::chrono::nanoseconds(frac_ns)));
}

std::string renderScalegatePayload(const ScaleEvent& e, std::string_view webhook_id) {
  Json data = Json::object();
  data["pool"] = e.pool;
  data["old_capacity"] = e.old_capacity;
  data["new_capacity"] = e.new_capacity;
  data["reason"] = reasonJson(e.reason);
  Json zones = Json::object();
  for (const auto& [zone, n] : e.zones) zones[zone] = n;
  data["zones"] = std::move(zones);
  data["instances"] = e.instances;
  if (e.type == ScaleEventType::kRepair) {
    data["repair"] = Json{{"action", repairActionName(e.repair_action)}};
  }
  if (e.type == ScaleEventType::kUpgradeBatch) {
    data["upgrade"] = Json{{"version", e.upgrade.version},
                           {"batch_index", e.upgrade.batch_index},
                           {"batch_count", e.upgrade.batch_count}};
  }
  Json j = Json::object();
  j["type"] = scaleEventTypeName(e.type);
  j["id"] = webhook_id;
  j["timestamp"] = formatRfc3339(e.created_at);
  j["data"] = std::move(data);
  return dump(j);
}

std::string renderAzurePayload(const ScaleEvent& e, std::string_view webhook_id,
                               const AzureContext& azure) {
  const std::string resource = azure.resource_name.empty() ? e.pool : azure.resource_name;
  const std::string setting =
      azure.setting_name.empty() ? e.pool + "-autoscale" : azure.setting_name;
  const std::string rg_path =
      "/subscriptions/" + azure.subscription_id + "/resourceGroups/" + azure.resource_group;
  const std::string resource_id =
      rg_path + "/providers/Microsoft.Compute/virtualMachineScaleSets/" + resource;
  const char* operation = "Scale Out";
  std::string details;
  switch (e.type) {
    case ScaleEventType::kScaleOut:
    case ScaleEventType::kScaleIn:
      operation = e.type == ScaleEventType::kScaleOut ? "Scale Out" : "Scale In";
      details = "Autoscale successfully started scale operation for resource '" + resource +
                "' from capacity '" + std::to_string(e.old_capacity) + "' to capacity '" +
                std::to_string(e.new_capacity) + "'";
      break;
    case ScaleEventType::kRepair:
      operation = "Repair";
      details = "Automatic repair (" + std::string(repairActionName(e.repair_action)) +
                ") started for instance(s) '" + joinInstances(e.instances) + "' of resource '" +
                resource + "'";
      break;
    case ScaleEventType::kUpgradeBatch:
      operation = "Upgrade";
      details = "Rolling upgrade batch " + std::to_string(e.upgrade.batch_index + 1) + " of " +
                std::to_string(e.upgrade.batch_count) + " to version '" + e.upgrade.version +
                "' started for instance(s) '" + joinInstances(e.instances) + "' of resource '" +
                resource + "'";
      break;
  }
  Json context = Json::object();
  context["timestamp"] = formatRfc3339(e.created_at, 7);
  context["id"] = rg_path + "/providers/microsoft.insights/autoscalesettings/" + setting;
  context["name"] = setting;
  context["details"] = details;
  context["subscriptionId"] = azure.subscription_id;
  context["resourceGroupName"] = azure.resource_group;
  context["resourceName"] = resource;
  context["resourceType"] = azure.resource_type;
  context["resourceId"] = resource_id;
  context["portalLink"] = "https://portal.azure.com/#resource" + resource_id;
  context["oldCapacity"] = std::to_string(e.old_capacity);
  context["newCapacity"] = std::to_string(e.new_capacity);

  Json props = Json::object();
  for (const auto& [k, v] : azure.properties) props[k] = v;
  props["scalegate.webhookId"] = webhook_id;
  props["scalegate.type"] = scaleEventTypeName(e.type);
  props["scalegate.pool"] = e.pool;
  props["scalegate.reason"] = reasonText(e.reason);
  if (!e.zones.empty()) props["scalegate.zones"] = joinZones(e.zones);
  if (!e.instances.empty()) props["scalegate.instances"] = joinInstances(e.instances);
  if (e.type == ScaleEventType::kRepair) {
    props["scalegate.repairAction"] = repairActionName(e.repair_action);
  }
  if (e.type == ScaleEventType::kUpgradeBatch) {
    props["scalegate.version"] = e.upgrade.version;
    props["scalegate.batch"] =
        std::to_string(e.upgrade.batch_index + 1) + "/" + std::to_string(e.upgrade.batch_count);
  }

  Json j = Json::object();
  j["version"] = "1.0";
  j["status"] = "Activated";
  j["operation"] = operation;
  j["context"] = std::move(context);
  j["properties"] = std::move(props);
  return dump(j);
}

std::string renderPayload(WebhookFormat format, const ScaleEvent& event,
                          std::string_view webhook_id, const AzureContext& azure) {
  return format == WebhookFormat::kAzure ? renderAzurePayload(event, webhook_id, azure)
                                         : renderScalegatePayload(event, webhook_id);
}

Result<ScaleEvent> parseScalegatePayload(std::string_view body) {
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalidArgument("not valid JSON");
  if (!j.is_object()) return invalidArgument("not a JSON object");
  ScaleEvent e;
  std::string text;
  SG_RETURN_IF_ERROR(readString(j, "type", &text, true));
  if (!parseScaleEventType(text, &e.type)) return invalidArgument("type: unknown \"" + text + "\"");
  SG_RETURN_IF_ERROR(readString(j, "timestamp", &text, true));
  auto ts = parseRfc3339(text);
  if (!ts.isOk()) return invalidArgument("timestamp: " + ts.status().message());
  e.created_at = *ts;
  auto data_it = j.find("data");
  if (data_it == j.end() || !data_it->is_object()) return invalidArgument("data: missing");
  const Json& d = *data_it;
  SG_RETURN_IF_ERROR(readString(d, "pool", &e.pool, true));
  SG_RETURN_IF_ERROR(readCount(d, "old_capacity", &e.old_capacity));
  SG_RETURN_IF_ERROR(readCount(d, "new_capacity", &e.new_capacity));
  auto r = d.find("reason");
  if (r == d.end() || !r->is_object()) return invalidArgument("reason: missing");
  SG_RETURN_IF_ERROR(readString(*r, "kind", &text, true));
  if (!parseScaleReasonKind(text, &e.reason.kind)) {
    return invalidArgument("reason.kind: unknown \"" + text + "\"");
  }
  SG_RETURN_IF_ERROR(readString(*r, "rule", &e.reason.rule, false));
  SG_RETURN_IF_ERROR(readString(*r, "metric", &e.reason.metric, false));
  SG_RETURN_IF_ERROR(readOptionalNumber(*r, "value", &e.reason.value));
  SG_RETURN_IF_ERROR(readOptionalNumber(*r, "threshold", &e.reason.threshold));
  SG_RETURN_IF_ERROR(readString(*r, "profile", &e.reason.profile, false));
  SG_RETURN_IF_ERROR(readString(*r, "message", &e.reason.message, false));
  if (auto z = d.find("zones"); z != d.end()) {
    SG_RETURN_IF_ERROR(want(z->is_object(), "zones", "must be an object"));
    for (auto it = z->begin(); it != z->end(); ++it) {
      uint32_t n = 0;
      SG_RETURN_IF_ERROR(readCount(*z, it.key(), &n));
      e.zones[it.key()] = n;
    }
  }
  if (auto in = d.find("instances"); in != d.end()) {
    SG_RETURN_IF_ERROR(want(in->is_array(), "instances", "must be an array"));
    for (const auto& v : *in) {
      SG_RETURN_IF_ERROR(want(v.is_string(), "instances", "must hold strings"));
      e.instances.push_back(v.get<std::string>());
    }
  }
  if (e.type == ScaleEventType::kRepair) {
    auto rp = d.find("repair");
    if (rp == d.end() || !rp->is_object()) return invalidArgument("repair: missing");
    SG_RETURN_IF_ERROR(readString(*rp, "action", &text, true));
    if (!parseRepairAction(text, &e.repair_action)) {
      return invalidArgument("repair.action: unknown \"" + text + "\"");
    }
  }
  if (e.type == ScaleEventType::kUpgradeBatch) {
    auto up = d.find("upgrade");
    if (up == d.end() || !up->is_object()) return invalidArgument("upgrade: missing");
    SG_RETURN_IF_ERROR(readString(*up, "version", &e.upgrade.version, true));
    SG_RETURN_IF_ERROR(readCount(*up, "batch_index", &e.upgrade.batch_index));
    SG_RETURN_IF_ERROR(readCount(*up, "batch_count", &e.upgrade.batch_count));
  }
  return e;
}

}  // namespace scalegate::control
