#include "dataplane/packet.h"

namespace scalegate::dataplane {

PacketKind parseFrame(std::span<const uint8_t> frame, PacketInfo* out) {
  const uint8_t* p = frame.data();
  const size_t len = frame.size();
  out->kind = PacketKind::kMalformed;
  if (len < kEthHeaderLen) return out->kind;
  const uint16_t ether_type = netOrder16(load16(p + 12));
  out->l3 = static_cast<uint16_t>(kEthHeaderLen);

  if (ether_type == kEtherTypeArp) {
    if (len < kEthHeaderLen + kArpIpv4Len) return out->kind;
    const uint8_t* a = p + kEthHeaderLen;
    // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4.
    if (netOrder16(load16(a)) != 1 || netOrder16(load16(a + 2)) != kEtherTypeIpv4 || a[4] != 6 ||
        a[5] != 4) {
      return out->kind = PacketKind::kOther;
    }
    const uint16_t op = netOrder16(load16(a + 6));
    out->src_ip = load32(a + 14);
    out->dst_ip = load32(a + 24);
    if (op == 1) return out->kind = PacketKind::kArpRequest;
    if (op == 2) return out->kind = PacketKind::kArpReply;
    return out->kind = PacketKind::kOther;
  }
  if (ether_type == kEtherTypeIpv6) return out->kind = PacketKind::kIpv6;
  if (ether_type != kEtherTypeIpv4) return out->kind = PacketKind::kOther;

  if (len < kEthHeaderLen + kIpv4MinHeaderLen) return out->kind;
  const uint8_t* ip = p + kEthHeaderLen;
  if ((ip[0] >> 4) != 4) return out->kind;
  const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
  const size_t total = netOrder16(load16(ip + 2));
  if (ihl < kIpv4MinHeaderLen || total < ihl || kEthHeaderLen + total > len) return out->kind;
  out->ip_len = static_cast<uint16_t>(total);
  out->proto = ip[9];
  out->src_ip = load32(ip + 12);
  out->dst_ip = load32(ip + 16);
  out->l4 = static_cast<uint16_t>(kEthHeaderLen + ihl);
  // More-fragments flag or a non-zero offset: a fragment.
  if ((netOrder16(load16(ip + 6)) & 0x3fff) != 0) return out->kind = PacketKind::kFragment;
  const uint8_t* l4 = ip + ihl;
  const size_t l4_len = total - ihl;
  switch (out->proto) {
    case kProtoTcp: {
      if (l4_len < kTcpMinHeaderLen) return out->kind;
      const size_t doff = static_cast<size_t>(l4[12] >> 4) * 4;
      if (doff < kTcpMinHeaderLen || doff > l4_len) return out->kind;
      out->src_port = load16(l4);
      out->dst_port = load16(l4 + 2);
      out->tcp_flags = l4[13];
      return out->kind = PacketKind::kTcp;
    }
    case kProtoUdp: {
      if (l4_len < kUdpHeaderLen) return out->kind;
      const size_t ulen = netOrder16(load16(l4 + 4));
      if (ulen < kUdpHeaderLen || ulen > l4_len) return out->kind;
      out->src_port = load16(l4);
      out->dst_port = load16(l4 + 2);
      return out->kind = PacketKind::kUdp;
    }
    case kProtoIcmp:
      if (l4_len < 8) return out->kind;
      return out->kind =
                 (l4[0] == 8 && l4[1] == 0) ? PacketKind::kIcmpEcho : PacketKind::kIcmpOther;
    default:
      return out->kind = PacketKind::kOtherIpv4;
  }
}

}  // namespace scalegate::dataplane
