#pragma once
// Maglev stage: one lookup table per pool, slot -> backend id, built by control from the
// pool's usable members with common/maglev.h (the same weighted Maglev the HTTP path uses) and
// read by the lcores on a flow-table miss. Pure functions.

#include <cstdint>
#include <span>
#include <vector>

#include "common/hash.h"
#include "common/maglev.h"

namespace scalegate::dataplane {

inline constexpr uint16_t kNoBackend = 0xffff;

// table_size entries, each one of ids[i] for backends[i] (parallel spans), or kNoBackend
// everywhere when no backend has weight > 0. Empty when table_size is not a prime above
// backends.size(). Control thread.
std::vector<uint16_t> buildBackendTable(std::span<const MaglevBackend> backends,
                                        std::span<const uint16_t> ids, uint32_t table_size);

// The slot of a flow: the flow-table hash remixed so slot and bucket bits are independent.
inline uint32_t maglevSlot(uint64_t flow_hash, uint32_t table_size) {
  return static_cast<uint32_t>(mix64(flow_hash ^ 0x4d61676c6576466cULL) % table_size);
}

}  // namespace scalegate::dataplane
