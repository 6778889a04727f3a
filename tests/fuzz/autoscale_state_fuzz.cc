// Feeds arbitrary bytes to the two files the control plane writes for itself and reads back at
// start: the autoscale state (<state>.autoscale.json: desired capacity, provisioning deadline,
// last scale, a draining scale-in, a rolling upgrade; AutoscaleController::loadStateText) and
// the webhook outbox (<state>.outbox.json; WebhookSender::loadOutboxText). The same bytes go to
// both. Neither may crash, hang or throw; a rejected file gets an error naming it. A file a
// loader accepts saves to text that loads again, into a fresh controller or sender, and saves to
// the same text (the round trip every restart relies on).
#include <event2/event.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>

#include "common/clock.h"
#include "config/loader.h"
#include "control/autoscale_controller.h"
#include "control/pool_registry.h"
#include "control/webhook_sender.h"

namespace {

using scalegate::ManualClock;
using scalegate::Status;
using scalegate::control::AutoscaleController;
using scalegate::control::PoolRegistry;
using scalegate::control::WebhookSender;

constexpr char kSecret[] = "whsec_YXV0b3NjYWxlLXN0YXRlLWZ1enotc2VjcmV0LTAxMjM=";

// Two autoscaled pools (web with versions and zones for upgrades, api in Azure format) and one
// that is not autoscaled (its entries in a state file are skipped).
const std::shared_ptr<const scalegate::config::Config>& fuzzConfig() {
  static const auto cfg = [] {
    scalegate::config::LoadResult r = scalegate::config::loadConfigText(
        "listeners:\n"
        "  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }\n"
        "pools:\n"
        "  web:\n"
        "    health: { type: http, path: /health, interval: 1s, timeout: 500ms }\n"
        "    members:\n"
        "      - { id: vm-0, address: 10.0.0.1:80, version: v1, zone: '1' }\n"
        "      - { id: vm-1, address: 10.0.0.2:80, version: v1, zone: '2' }\n"
        "      - { id: vm-2, address: 10.0.0.3:80, version: v1, zone: '1' }\n"
        "    autoscale:\n"
        "      capacity: { min: 1, max: 5, default: 3 }\n"
        "      zones: ['1', '2']\n"
        "      scaler: { url: 'http://127.0.0.1:9/hooks' }\n"
        "  api:\n"
        "    autoscale:\n"
        "      capacity: { min: 0, max: 10, default: 0 }\n"
        "      scaler: { url: 'http://127.0.0.1:9/azure', format: azure }\n"
        "  static: {}\n",
        "fuzz.yaml");
    if (!r.ok()) std::abort();
    return std::make_shared<const scalegate::config::Config>(std::move(r.config));
  }();
  return cfg;
}

event_base* fuzzBase() {
  static event_base* const base = event_base_new();
  return base;
}

// A controller as App builds it at start (registry with the config applied), state kept in
// memory only: loadStateText() is the file's contents.
struct Controller {
  explicit Controller(const ManualClock& clock)
      : registry(1, clock), ctl(fuzzBase(), registry, clock, "", "", nullptr) {
    registry.applyConfig(fuzzConfig());
    if (!ctl.applyConfig(*fuzzConfig()).isOk()) std::abort();
  }
  PoolRegistry registry;
  AutoscaleController ctl;
};

WebhookSender::Hooks senderHooks() {
  WebhookSender::Hooks hooks;
  hooks.secret_for = [](const std::string& pool, const std::string&) {
    return pool == "web" ? std::string(kSecret) : std::string();
  };
  return hooks;
}

void checkAutoscaleState(const std::string& text) {
  ManualClock clock;
  std::string saved;
  {
    Controller first(clock);
    Status st = first.ctl.loadStateText("fuzz.autoscale.json", text);
    if (!st.isOk()) {
      if (st.message().find("fuzz.autoscale.json") == std::string::npos) std::abort();
      return;
    }
    saved = first.ctl.stateText();
  }
  Controller second(clock);
  if (!second.ctl.loadStateText("saved.autoscale.json", saved).isOk()) std::abort();
  if (second.ctl.stateText() != saved) std::abort();
}

void checkOutbox(const std::string& text) {
  ManualClock clock;
  std::string saved;
  {
    WebhookSender first(fuzzBase(), clock, "", senderHooks());
    scalegate::Result<size_t> n = first.loadOutboxText("fuzz.outbox.json", text);
    if (!n.isOk()) {
      if (n.status().message().find("fuzz.outbox.json") == std::string::npos) std::abort();
      if (first.pending() != 0) std::abort();  // nothing is resumed from a bad file
      return;
    }
    const std::vector<std::string> ids = first.pendingIds();
    if (*n != first.pending() || ids.size() != *n) std::abort();
    if (std::set<std::string>(ids.begin(), ids.end()).size() != ids.size()) std::abort();
    saved = first.outboxText();
  }
  WebhookSender second(fuzzBase(), clock, "", senderHooks());
  if (!second.loadOutboxText("saved.outbox.json", saved).isOk()) std::abort();
  if (second.outboxText() != saved) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  checkAutoscaleState(text);
  checkOutbox(text);
  return 0;
}
