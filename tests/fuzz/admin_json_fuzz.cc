// Feeds arbitrary bytes to the admin API's JSON parsers: the PUT member body, the drain body and
// the registry's state file. None may crash, hang or throw. A member body that parses and names
// an address yields a valid one; a state file that loads saves to text that loads again into
// the same state (the round trip the process relies on across restarts).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "config/loader.h"
#include "control/admin_server.h"
#include "control/pool_registry.h"

namespace {

using scalegate::control::PoolRegistry;

const std::shared_ptr<const scalegate::config::Config>& fuzzConfig() {
  static const auto cfg = [] {
    scalegate::config::LoadResult r = scalegate::config::loadConfigText(
        "listeners:\n"
        "  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }\n"
        "pools:\n"
        "  web:\n"
        "    members:\n"
        "      - { id: vm-0, address: 10.0.0.1:80 }\n"
        "      - { id: vm-1, address: 10.0.0.2:80 }\n"
        "  api: {}\n",
        "fuzz.yaml");
    if (!r.ok()) std::abort();
    return std::make_shared<const scalegate::config::Config>(std::move(r.config));
  }();
  return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  scalegate::control::MemberSpec spec;
  bool address_seen = false;
  scalegate::Status st = scalegate::control::parseMemberBody(text, &spec, &address_seen);
  if (st.isOk() && address_seen && !spec.address.valid()) std::abort();
  if (!st.isOk() && st.message().empty()) std::abort();

  std::optional<scalegate::Duration> timeout;
  st = scalegate::control::parseDrainBody(text, &timeout);
  if (st.isOk() && timeout.has_value() && timeout->count() < 0) std::abort();

  scalegate::ManualClock clock;
  PoolRegistry first(1, clock);
  st = first.loadStateText("fuzz.json", text);
  if (!st.isOk()) {
    if (st.message().find("fuzz.json") == std::string::npos) std::abort();
    return 0;
  }
  first.applyConfig(fuzzConfig());
  const std::string saved = first.stateJson();
  PoolRegistry second(1, clock);
  if (!second.loadStateText("saved.json", saved).isOk()) std::abort();
  second.applyConfig(fuzzConfig());
  if (second.stateJson() != saved) std::abort();
  return 0;
}
