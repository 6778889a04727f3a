#pragma once
// Parse stage: what a received Ethernet frame is, as offsets into its bytes. Pure functions over
// byte spans (no mbufs), so they are tested with hex fixtures and fuzzed without EAL. Addresses
// and ports stay in network byte order as they sit in the frame.
//
//   frame ─► parseFrame ─► PacketInfo { kind, l3/l4 offsets, 5-tuple, TCP flags }
//
// Only the first fragment-free IPv4 datagram with a complete L4 header is "TCP/UDP"; fragments,
// IP options beyond the header length, truncated frames and everything else get a kind that
// the classify stage drops and counts.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace scalegate::dataplane {

inline constexpr size_t kEthHeaderLen = 14;
inline constexpr size_t kIpv4MinHeaderLen = 20;
inline constexpr size_t kTcpMinHeaderLen = 20;
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr size_t kArpIpv4Len = 28;
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpAck = 0x10;

enum class PacketKind : uint8_t {
  kTcp,         // IPv4 + complete TCP header
  kUdp,         // IPv4 + UDP header
  kIcmpEcho,    // IPv4 ICMP echo request
  kArpRequest,  // ARP request for an IPv4 address over Ethernet
  kArpReply,    // ARP reply (Ethernet/IPv4)
  kIcmpOther,   // other ICMP
  kIpv6,        // not served by this path
  kFragment,    // IPv4 fragment (no reassembly)
  kOtherIpv4,   // other IP protocol
  kOther,       // other EtherType (VLAN included)
  kMalformed,   // truncated or inconsistent headers
};

struct PacketInfo {
  PacketKind kind = PacketKind::kOther;
  uint16_t l3 = 0;        // offset of the IPv4 header or ARP payload
  uint16_t l4 = 0;        // offset of the TCP/UDP/ICMP header
  uint16_t ip_len = 0;    // IPv4 total length (bytes from l3); the frame may be longer (padding)
  uint8_t proto = 0;      // IPv4 protocol
  uint8_t tcp_flags = 0;  // TCP only
  uint32_t src_ip = 0;    // network order; ARP: sender IP
  uint32_t dst_ip = 0;    // network order; ARP: target IP
  uint16_t src_port = 0;  // network order (TCP/UDP)
  uint16_t dst_port = 0;  // network order (TCP/UDP)
};

// Classifies frame and fills *out. Never reads past frame.size(). Hot path: no allocation.
PacketKind parseFrame(std::span<const uint8_t> frame, PacketInfo* out);

// Unaligned loads and stores of header fields, kept in network byte order.
inline uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Host <-> network byte order for 16/32-bit values.
inline uint16_t netOrder16(uint16_t v) { return __builtin_bswap16(v); }
inline uint32_t netOrder32(uint32_t v) { return __builtin_bswap32(v); }

}  // namespace scalegate::dataplane
