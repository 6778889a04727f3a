#pragma once
// Internet checksums (RFC 1071) and incremental updates (RFC 1624, eqn. 3) over raw header
// bytes. Pure functions; values are in network byte order exactly as they sit in the packet,
// so no byte swapping is needed (the one's-complement sum is byte-order independent).

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace scalegate::dataplane {

// One's-complement sum of len bytes at p (len may be odd), added to `sum`; not folded.
inline uint32_t csumPartial(const uint8_t* p, size_t len, uint32_t sum = 0) {
  while (len >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    uint16_t w = 0;
    std::memcpy(&w, p, 1);
    sum += w;
  }
  return sum;
}

// Folds a 32-bit sum to 16 bits and complements it: the value to store in a checksum field.
inline uint16_t csumFold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Checksum field value after a 16-bit word changes from old_w to new_w: HC' = ~(~HC + ~m + m').
inline uint16_t csumReplace16(uint16_t check, uint16_t old_w, uint16_t new_w) {
  uint32_t sum = static_cast<uint16_t>(~check);
  sum += static_cast<uint16_t>(~old_w);
  sum += new_w;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Same for a 32-bit field (an IPv4 address), as two 16-bit words.
inline uint16_t csumReplace32(uint16_t check, uint32_t old_v, uint32_t new_v) {
  uint32_t sum = static_cast<uint16_t>(~check);
  sum += static_cast<uint16_t>(~old_v) + static_cast<uint16_t>(~(old_v >> 16));
  sum += (new_v & 0xffff) + (new_v >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Header checksum of an IPv4 header of ihl_bytes at ip (its checksum field is ignored).
inline uint16_t ipv4HeaderChecksum(const uint8_t* ip, size_t ihl_bytes) {
  uint32_t sum = csumPartial(ip, 10);
  sum = csumPartial(ip + 12, ihl_bytes - 12, sum);
  return csumFold(sum);
}

// TCP or UDP checksum over the IPv4 pseudo header and l4_len bytes of segment at l4, whose
// checksum field (at check_offset) is taken as zero. src/dst are network-order words.
inline uint16_t l4Checksum(uint32_t src, uint32_t dst, uint8_t proto, const uint8_t* l4,
                           size_t l4_len, size_t check_offset) {
  uint32_t sum = (src & 0xffff) + (src >> 16) + (dst & 0xffff) + (dst >> 16);
  uint16_t pl[2];
  uint8_t b[4] = {0, proto, static_cast<uint8_t>(l4_len >> 8), static_cast<uint8_t>(l4_len)};
  std::memcpy(pl, b, 4);
  sum += pl[0] + pl[1];
  sum = csumPartial(l4, check_offset, sum);
  sum = csumPartial(l4 + check_offset + 2, l4_len - check_offset - 2, sum);
  return csumFold(sum);
}

}  // namespace scalegate::dataplane
