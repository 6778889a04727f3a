#include "control/webhook_payload.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace scalegate::control {
namespace {

using Json = nlohmann::json;

WallTime at(int64_t unix_ms) { return WallTime(std::chrono::milliseconds(unix_ms)); }

ScaleEvent scaleOut() {
  ScaleEvent e;
  e.type = ScaleEventType::kScaleOut;
  e.pool = "web";
  e.old_capacity = 2;
  e.new_capacity = 4;
  e.reason.kind = ScaleReasonKind::kRule;
  e.reason.rule = "cpu avg 5m > 75: increase 2";
  e.reason.metric = "cpu";
  e.reason.value = 82.5;
  e.reason.threshold = 75;
  e.reason.profile = "default";
  e.zones = {{"1", 1}, {"2", 1}};
  e.created_at = at(1'700'000'000'123);
  return e;
}

TEST(Rfc3339, FormatsAndParses) {
  EXPECT_EQ(formatRfc3339(at(1'700'000'000'123)), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(formatRfc3339(at(1'700'000'000'123), 7), "2023-11-14T22:13:20.1230000Z");
  EXPECT_EQ(formatRfc3339(at(1'700'000'000'123), 0), "2023-11-14T22:13:20Z");
  auto t = parseRfc3339("2023-11-14T22:13:20.123Z");
  ASSERT_TRUE(t.isOk());
  EXPECT_EQ(*t, at(1'700'000'000'123));
  EXPECT_EQ(
      *parseRfc3339("2016-03-11T07:31:04.5834118Z"),
      WallTime(std::chrono::seconds(1457681464)) +
          std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(583411800)));
  EXPECT_FALSE(parseRfc3339("2023-11-14 22:13:20Z").isOk());
  EXPECT_FALSE(parseRfc3339("2023-11-14T22:13:20.12x3Z").isOk());
  EXPECT_FALSE(parseRfc3339("2023-11-14T22:13:20+01:00").isOk());
  // Outside what 64-bit nanoseconds hold (found by tests/fuzz/webhook: signed overflow).
  EXPECT_FALSE(parseRfc3339("4054-01-15T08:00:00.123Z").isOk());
  EXPECT_TRUE(parseRfc3339("2262-01-01T00:00:00Z").isOk());
}

TEST(ScalegatePayload, ScaleOutCarriesTheWholeDecision) {
  Json j = Json::parse(renderScalegatePayload(scaleOut(), "msg_abc"));
  EXPECT_EQ(j["type"], "scale_out");
  EXPECT_EQ(j["id"], "msg_abc");
  EXPECT_EQ(j["timestamp"], "2023-11-14T22:13:20.123Z");
  const Json& d = j["data"];
  EXPECT_EQ(d["pool"], "web");
  EXPECT_EQ(d["old_capacity"], 2);
  EXPECT_EQ(d["new_capacity"], 4);
  EXPECT_EQ(d["reason"]["kind"], "rule");
  EXPECT_EQ(d["reason"]["metric"], "cpu");
  EXPECT_DOUBLE_EQ(d["reason"]["value"].get<double>(), 82.5);
  EXPECT_DOUBLE_EQ(d["reason"]["threshold"].get<double>(), 75);
  EXPECT_EQ(d["reason"]["profile"], "default");
  EXPECT_EQ(d["zones"], (Json{{"1", 1}, {"2", 1}}));
  EXPECT_EQ(d["instances"], Json::array());
  EXPECT_FALSE(d.contains("repair"));
  EXPECT_FALSE(d.contains("upgrade"));
}

TEST(ScalegatePayload, ManualReasonOmitsMetricFields) {
  ScaleEvent e = scaleOut();
  e.reason = ScaleReason{};
  e.reason.kind = ScaleReasonKind::kManual;
  Json r = Json::parse(renderScalegatePayload(e, "m"))["data"]["reason"];
  EXPECT_EQ(r, (Json{{"kind", "manual"}}));
}

TEST(ScalegatePayload, RepairAndUpgradeRoundTrip) {
  ScaleEvent repair = scaleOut();
  repair.type = ScaleEventType::kRepair;
  repair.old_capacity = repair.new_capacity = 3;
  repair.reason = ScaleReason{ScaleReasonKind::kRepair, "", "", {}, {}, "", "unhealthy 10m"};
  repair.zones = {{"2", 1}};
  repair.instances = {"vm-1"};
  repair.repair_action = config::RepairAction::kRestart;
  std::string body = renderScalegatePayload(repair, "msg_r");
  EXPECT_EQ(Json::parse(body)["data"]["repair"], (Json{{"action", "restart"}}));
  auto back = parseScalegatePayload(body);
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(renderScalegatePayload(*back, "msg_r"), body);

  ScaleEvent up = scaleOut();
  up.type = ScaleEventType::kUpgradeBatch;
  up.reason = ScaleReason{ScaleReasonKind::kUpgrade, "", "", {}, {}, "", ""};
  up.instances = {"vm-3", "vm-4"};
  up.upgrade = UpgradeBatch{"v2", 1, 5};
  body = renderScalegatePayload(up, "msg_u");
  EXPECT_EQ(Json::parse(body)["data"]["upgrade"],
            (Json{{"version", "v2"}, {"batch_index", 1}, {"batch_count", 5}}));
  back = parseScalegatePayload(body);
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->instances, up.instances);
  EXPECT_EQ(back->upgrade.version, "v2");
  EXPECT_EQ(back->created_at, up.created_at);
  EXPECT_EQ(renderScalegatePayload(*back, "msg_u"), body);

  body = renderScalegatePayload(scaleOut(), "x");
  back = parseScalegatePayload(body);
  ASSERT_TRUE(back.isOk());
  EXPECT_EQ(*back->reason.value, 82.5);
  EXPECT_EQ(back->zones, scaleOut().zones);
}

TEST(ScalegatePayload, ParseNamesTheBadKey) {
  EXPECT_EQ(parseScalegatePayload("[").status().message(), "not valid JSON");
  EXPECT_EQ(parseScalegatePayload(R"({"type":"grow"})").status().message(),
            "type: unknown \"grow\"");
  std::string body = renderScalegatePayload(scaleOut(), "x");
  Json j = Json::parse(body);
  j["data"]["old_capacity"] = -1;
  EXPECT_EQ(parseScalegatePayload(j.dump()).status().message(),
            "old_capacity: must be a whole number");
  j = Json::parse(body);
  j["type"] = "repair";
  EXPECT_EQ(parseScalegatePayload(j.dump()).status().message(), "repair: missing");
}

TEST(AzurePayload, ScaleInLooksLikeAzureMonitor) {
  ScaleEvent e = scaleOut();
  e.type = ScaleEventType::kScaleIn;
  e.old_capacity = 3;
  e.new_capacity = 2;
  e.instances = {"vm-2"};
  e.zones = {{"3", 1}};
  AzureContext azure;
  azure.subscription_id = "s1";
  azure.resource_group = "rg1";
  azure.properties = {{"key1", "value1"}};
  Json j = Json::parse(renderAzurePayload(e, "msg_1", azure));
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_EQ(j["status"], "Activated");
  EXPECT_EQ(j["operation"], "Scale In");
  const Json& c = j["context"];
  EXPECT_EQ(c["timestamp"], "2023-11-14T22:13:20.1230000Z");
  EXPECT_EQ(c["id"],
            "/subscriptions/s1/resourceGroups/rg1/providers/microsoft.insights/"
            "autoscalesettings/web-autoscale");
  EXPECT_EQ(c["name"], "web-autoscale");
  EXPECT_EQ(c["details"],
            "Autoscale successfully started scale operation for resource 'web' from capacity "
            "'3' to capacity '2'");
  EXPECT_EQ(c["subscriptionId"], "s1");
  EXPECT_EQ(c["resourceGroupName"], "rg1");
  EXPECT_EQ(c["resourceName"], "web");
  EXPECT_EQ(c["resourceType"], "microsoft.compute/virtualmachinescalesets");
  EXPECT_EQ(c["resourceId"],
            "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/"
            "virtualMachineScaleSets/web");
  EXPECT_EQ(c["portalLink"],
            "https://portal.azure.com/#resource" + c["resourceId"].get<std::string>());
  // Azure sends the capacities as strings.
  EXPECT_EQ(c["oldCapacity"], "3");
  EXPECT_EQ(c["newCapacity"], "2");
  const Json& p = j["properties"];
  EXPECT_EQ(p["key1"], "value1");
  EXPECT_EQ(p["scalegate.type"], "scale_in");
  EXPECT_EQ(p["scalegate.instances"], "vm-2");
  EXPECT_EQ(p["scalegate.zones"], "3=1");
  EXPECT_EQ(p["scalegate.webhookId"], "msg_1");
  for (const auto& [k, v] : p.items()) EXPECT_TRUE(v.is_string()) << k;
}

TEST(AzurePayload, ScaleOutRepairUpgradeOperations) {
  ScaleEvent e = scaleOut();
  EXPECT_EQ(Json::parse(renderPayload(WebhookFormat::kAzure, e, "m", {}))["operation"],
            "Scale Out");
  e.type = ScaleEventType::kRepair;
  e.instances = {"vm-7"};
  e.repair_action = config::RepairAction::kReimage;
  Json j = Json::parse(renderAzurePayload(e, "m", {}));
  EXPECT_EQ(j["operation"], "Repair");
  EXPECT_EQ(j["properties"]["scalegate.repairAction"], "reimage");
  EXPECT_NE(j["context"]["details"].get<std::string>().find("vm-7"), std::string::npos);
  e.type = ScaleEventType::kUpgradeBatch;
  e.upgrade = UpgradeBatch{"v9", 0, 3};
  j = Json::parse(renderAzurePayload(e, "m", {}));
  EXPECT_EQ(j["operation"], "Upgrade");
  EXPECT_EQ(j["properties"]["scalegate.version"], "v9");
  EXPECT_EQ(j["properties"]["scalegate.batch"], "1/3");
  // The scalegate renderer is what renderPayload picks by default.
  EXPECT_EQ(renderPayload(WebhookFormat::kScalegate, e, "m", {}), renderScalegatePayload(e, "m"));
}

TEST(WebhookNames, RoundTrip) {
  WebhookFormat f;
  EXPECT_TRUE(parseWebhookFormat("azure", &f));
  EXPECT_EQ(f, WebhookFormat::kAzure);
  EXPECT_FALSE(parseWebhookFormat("Azure", &f));
  ScaleEventType t;
  EXPECT_TRUE(parseScaleEventType("upgrade_batch", &t));
  EXPECT_STREQ(scaleEventTypeName(t), "upgrade_batch");
}

}  // namespace
}  // namespace scalegate::control
