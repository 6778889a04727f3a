#pragma once
// Non-cryptographic 64-bit hashing for load balancing: Maglev permutations, ring points and
// affinity keys. The same bytes and seed give the same value on every node, run and CPU
// (little-endian word order on every host). Not keyed: never use it where an attacker must
// not be able to predict or collide the result. Thread-safe (pure functions).

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace scalegate {

// Bijective 64-bit finalizer with full avalanche (each input bit flips each output bit with
// probability close to 1/2). Constants are Stafford's "Mix13" variant of the MurmurHash3
// finalizer.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Hash of len bytes at data (data may be null when len is 0). Different seeds give
// independent-looking functions. About one 64x64->128 multiply per 16 bytes.
uint64_t hashBytes(const void* data, size_t len, uint64_t seed = 0);

inline uint64_t hashString(std::string_view s, uint64_t seed = 0) {
  return hashBytes(s.data(), s.size(), seed);
}

}  // namespace scalegate
