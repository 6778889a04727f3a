#include "dataplane/rewrite.h"

#include <cstring>

#include "dataplane/checksum.h"

namespace scalegate::dataplane {

bool rewriteTuple(uint8_t* frame, const PacketInfo& info, uint32_t src_ip, uint16_t src_port,
                  uint32_t dst_ip, uint16_t dst_port) {
  uint8_t* ip = frame + info.l3;
  uint8_t* l4 = frame + info.l4;
  const uint8_t ttl = ip[8];
  if (ttl <= 1) return false;

  // IPv4 header: TTL (shares a word with the protocol) and both addresses.
  uint16_t ip_check = load16(ip + 10);
  const uint16_t old_ttl_word = load16(ip + 8);
  ip[8] = static_cast<uint8_t>(ttl - 1);
  ip_check = csumReplace16(ip_check, old_ttl_word, load16(ip + 8));
  ip_check = csumReplace32(ip_check, info.src_ip, src_ip);
  ip_check = csumReplace32(ip_check, info.dst_ip, dst_ip);
  store16(ip + 10, ip_check);
  store32(ip + 12, src_ip);
  store32(ip + 16, dst_ip);

  // TCP/UDP: the pseudo header's addresses and the ports.
  const size_t check_off = info.kind == PacketKind::kTcp ? 16 : 6;
  uint16_t l4_check = load16(l4 + check_off);
  const bool udp_no_checksum = info.kind == PacketKind::kUdp && l4_check == 0;
  if (!udp_no_checksum) {
    l4_check = csumReplace32(l4_check, info.src_ip, src_ip);
    l4_check = csumReplace32(l4_check, info.dst_ip, dst_ip);
    l4_check = csumReplace16(l4_check, info.src_port, src_port);
    l4_check = csumReplace16(l4_check, info.dst_port, dst_port);
    // In UDP an all-zero checksum means "none"; a computed zero is sent as all ones.
    if (info.kind == PacketKind::kUdp && l4_check == 0) l4_check = 0xffff;
    store16(l4 + check_off, l4_check);
  }
  store16(l4, src_port);
  store16(l4 + 2, dst_port);
  return true;
}

size_t encapIpip(uint8_t* buf, size_t frame_len, uint32_t outer_src, uint32_t outer_dst) {
  std::memmove(buf, buf + kIpipOverhead, kEthHeaderLen);
  store16(buf + 12, netOrder16(kEtherTypeIpv4));
  uint8_t* outer = buf + kEthHeaderLen;
  const uint8_t* inner = outer + kIpipOverhead;
  const size_t inner_len = frame_len - kEthHeaderLen;
  outer[0] = 0x45;
  outer[1] = inner[1];  // TOS/DSCP carried over
  store16(outer + 2, netOrder16(static_cast<uint16_t>(inner_len + kIpipOverhead)));
  store16(outer + 4, 0);
  store16(outer + 6, netOrder16(netOrder16(load16(inner + 6)) & 0x4000));  // DF only
  outer[8] = 64;
  outer[9] = kProtoIpip;
  store32(outer + 12, outer_src);
  store32(outer + 16, outer_dst);
  store16(outer + 10, ipv4HeaderChecksum(outer, kIpv4MinHeaderLen));
  return frame_len + kIpipOverhead;
}

void makeArpReply(uint8_t* frame, const MacAddress& our_mac) {
  uint8_t* a = frame + kEthHeaderLen;
  uint8_t requester_mac[6];
  std::memcpy(requester_mac, a + 8, 6);
  const uint32_t requester_ip = load32(a + 14);
  const uint32_t target_ip = load32(a + 24);
  store16(a + 6, netOrder16(2));
  std::memcpy(a + 8, our_mac.bytes, 6);
  store32(a + 14, target_ip);
  std::memcpy(a + 18, requester_mac, 6);
  store32(a + 24, requester_ip);
  std::memcpy(frame, requester_mac, 6);
  std::memcpy(frame + 6, our_mac.bytes, 6);
}

void makeIcmpEchoReply(uint8_t* frame, const PacketInfo& info) {
  uint8_t mac[6];
  std::memcpy(mac, frame, 6);
  std::memcpy(frame, frame + 6, 6);
  std::memcpy(frame + 6, mac, 6);
  uint8_t* ip = frame + info.l3;
  store32(ip + 12, info.dst_ip);
  store32(ip + 16, info.src_ip);
  ip[8] = 64;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  store16(ip + 10, ipv4HeaderChecksum(ip, ihl));
  uint8_t* icmp = frame + info.l4;
  const uint16_t old_type_word = load16(icmp);
  icmp[0] = 0;
  store16(icmp + 2, csumReplace16(load16(icmp + 2), old_type_word, load16(icmp)));
}

}  // namespace scalegate::dataplane
