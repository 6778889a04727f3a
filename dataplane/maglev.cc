#include "dataplane/maglev.h"

namespace scalegate::dataplane {

std::vector<uint16_t> buildBackendTable(std::span<const MaglevBackend> backends,
                                        std::span<const uint16_t> ids, uint32_t table_size) {
  std::vector<int32_t> idx = buildMaglevTable(backends, table_size);
  std::vector<uint16_t> out(idx.size(), kNoBackend);
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] >= 0) out[i] = ids[static_cast<size_t>(idx[i])];
  }
  return out;
}

}  // namespace scalegate::dataplane
