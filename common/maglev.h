#pragma once
// Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4). The control thread
// builds one lookup table per pool and snapshot; the DPDK path and the HTTP proxy only read it
// (lookup = table[hash % table.size()]). Pure functions, thread-safe.
//
// The table depends only on the set of (name, weight) pairs, not on their order in the input:
// every scalegate node given the same members builds the same name -> slot mapping, so ECMP can
// move a flow between nodes without moving it between backends.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace scalegate {

// Envoy, Katran and the Maglev paper's default; M > 100 * N keeps imbalance within 1%.
inline constexpr uint32_t kDefaultMaglevTableSize = 65537;

struct MaglevBackend {
  std::string_view name;  // stable identity (member id); only hashed, not kept
  uint32_t weight;        // 0 = no slots
};

// Returns table_size entries, each an index into backends, or -1 everywhere when no backend has
// weight > 0. A backend's share of slots is proportional to its weight (within one slot per
// round of turn-taking). Preconditions: table_size is prime and > backends.size(); when they do
// not hold the result is empty. Cost O(M log M) typical, allocation: O(M + N).
std::vector<int32_t> buildMaglevTable(std::span<const MaglevBackend> backends, uint32_t table_size);

// Deterministic primality test for 32-bit values.
bool isPrime(uint32_t n);

// Smallest prime >= n; 0 when there is none below 2^32.
uint32_t nextPrime(uint32_t n);

}  // namespace scalegate
