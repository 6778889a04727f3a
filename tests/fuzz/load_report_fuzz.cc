// Feeds arbitrary bytes to the load-report parsers (X-Load header, JSON body, rich health body):
// they must never crash, hang or throw, and whatever they return must respect the documented
// limits (at most kMaxLoadValues values, valid names, finite numbers, a canonical health state).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control/load_report.h"

namespace {

using scalegate::control::LoadReport;

void checkReport(const LoadReport& r) {
  if (r.values.size() > scalegate::control::kMaxLoadValues) std::abort();
  for (const auto& [name, value] : r.values) {
    if (!scalegate::control::isLoadName(name) || !std::isfinite(value)) std::abort();
  }
  if (!r.app_health.empty() && r.app_health != "Initializing" && r.app_health != "Healthy" &&
      r.app_health != "Unhealthy" && r.app_health != "Unknown") {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  LoadReport header = scalegate::control::parseLoadHeader(text);
  checkReport(header);
  if (!header.app_health.empty()) std::abort();  // headers never carry rich health

  // The body as the prober sees it: after the header's values, with and without a JSON type.
  LoadReport body = header;
  bool parsed = scalegate::control::parseLoadBody(text, "application/json", &body);
  checkReport(body);
  if (!parsed && (body.values != header.values || !body.app_health.empty())) std::abort();
  for (const auto& [name, value] : header.values) {
    if (body.values.at(name) != value) std::abort();  // values already present are kept
  }

  LoadReport sniffed;
  (void)scalegate::control::parseLoadBody(text, "", &sniffed);
  checkReport(sniffed);
  return 0;
}
