// Feeds arbitrary bytes to the config loader: it must never crash, hang or throw, and a file it
// rejects must come with at least one error that names the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  scalegate::config::LoadResult r = scalegate::config::loadConfigText(text, "fuzz.yaml");
  if (!r.ok()) {
    for (const auto& e : r.errors) {
      if (e.file != "fuzz.yaml" || e.message.empty()) std::abort();
    }
    if (r.errorText().empty()) std::abort();
  } else if (r.config.listeners.empty()) {
    std::abort();  // "no listeners" is always an error
  }
  return 0;
}
