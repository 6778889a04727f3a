#include "common/hash.h"

#include <bit>
#include <cstring>

namespace scalegate {
namespace {

__extension__ using Uint128 = unsigned __int128;

// Odd constants from the fractional parts of sqrt(2), sqrt(3), sqrt(5) and the golden ratio.
constexpr uint64_t kLane0 = 0x6a09e667f3bcc909ULL;
constexpr uint64_t kLane1 = 0xbb67ae8584caa73bULL;
constexpr uint64_t kLane2 = 0x3c6ef372fe94f82bULL;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

inline uint64_t load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// Full 128-bit product folded to 64 bits: every bit of both operands reaches the middle bits.
inline uint64_t foldMul(uint64_t a, uint64_t b) {
  Uint128 product = static_cast<Uint128>(a) * b;
  return static_cast<uint64_t>(product) ^ static_cast<uint64_t>(product >> 64);
}

// One 16-byte block into the state. The rotated old state is kept outside the product so a
// zero multiplicand cannot erase what was absorbed before.
inline uint64_t absorb(uint64_t state, uint64_t w0, uint64_t w1) {
  return foldMul(w0 ^ state ^ kLane0, w1 ^ kLane1) ^ std::rotl(state, 23);
}

}  // namespace

uint64_t hashBytes(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t state = mix64(seed + kGolden) ^ (static_cast<uint64_t>(len) * kLane2);
  size_t left = len;
  while (left >= 16) {
    state = absorb(state, load64(p), load64(p + 8));
    p += 16;
    left -= 16;
  }
  // The tail (0..15 bytes) is zero-padded; the length folded in above and below keeps padded
  // inputs of different lengths apart.
  unsigned char tail[16] = {};
  if (left > 0) std::memcpy(tail, p, left);
  state = absorb(state, load64(tail), load64(tail + 8) ^ static_cast<uint64_t>(left));
  return mix64(state ^ static_cast<uint64_t>(len));
}

}  // namespace scalegate
