#pragma once
// Rewrite stage: the header changes the data path makes, as pure functions over frame bytes
// (hex-fixture tested). Checksums are updated incrementally (RFC 1624) where only a few words
// change, so a rewrite touches the headers once and never the payload.
//
//   NAT forward  client:port -> vip:vport     becomes  local:nat_port -> member:mport
//   NAT reverse  member:mport -> local:nat_port becomes  vip:vport -> client:port
//   DSR          IPv4 frame                     becomes  IPv4(local -> member, proto 4) + frame
//   ARP request  for one of our addresses       becomes  the reply, in place
//   ICMP echo    request to one of our addresses becomes the echo reply, in place

#include <cstddef>
#include <cstdint>

#include "dataplane/packet.h"

namespace scalegate::dataplane {

struct MacAddress {
  uint8_t bytes[6] = {0, 0, 0, 0, 0, 0};
  bool operator==(const MacAddress&) const = default;
};

// Sets the Ethernet source and destination of frame.
inline void setEthernet(uint8_t* frame, const MacAddress& src, const MacAddress& dst) {
  std::memcpy(frame, dst.bytes, 6);
  std::memcpy(frame + 6, src.bytes, 6);
}

// Replaces the IPv4 source/destination and the TCP/UDP ports of a frame that parseFrame()
// classified as kTcp or kUdp (info describes it), and decrements the TTL, updating the IPv4,
// TCP and UDP checksums incrementally (a UDP checksum of 0, "none", stays 0). All values are in
// network byte order. Returns false, changing nothing, when the TTL is 1 or 0 (drop).
bool rewriteTuple(uint8_t* frame, const PacketInfo& info, uint32_t src_ip, uint16_t src_port,
                  uint32_t dst_ip, uint16_t dst_port);

// Length added by encapIpip().
inline constexpr size_t kIpipOverhead = kIpv4MinHeaderLen;

// IP-in-IP (RFC 2003) encapsulation for DSR. `buf` starts kIpipOverhead bytes before an IPv4
// Ethernet frame of frame_len bytes (the caller prepended that headroom). Moves the Ethernet
// header to buf, writes an outer IPv4 header (outer_src -> outer_dst, protocol 4, TTL 64, the
// inner TOS, DF as in the inner header, valid checksum) and leaves the inner datagram untouched.
// Returns the new frame length (frame_len + kIpipOverhead).
size_t encapIpip(uint8_t* buf, size_t frame_len, uint32_t outer_src, uint32_t outer_dst);

// Turns an ARP request (parseFrame: kArpRequest) into the reply "target IP is at our_mac",
// addressed to the requester, in place.
void makeArpReply(uint8_t* frame, const MacAddress& our_mac);

// Turns an ICMP echo request (parseFrame: kIcmpEcho) into the echo reply in place: MACs and
// IPs swapped, TTL 64, type 0, both checksums valid.
void makeIcmpEchoReply(uint8_t* frame, const PacketInfo& info);

}  // namespace scalegate::dataplane
