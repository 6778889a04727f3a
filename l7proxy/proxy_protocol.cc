#include "l7proxy/proxy_protocol.h"

#include <netinet/in.h>

#include <cstring>

namespace scalegate::l7proxy {
namespace {

constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kVersion2Local = 0x20;
constexpr uint8_t kVersion2Proxy = 0x21;
constexpr uint8_t kUnspec = 0x00;
constexpr uint8_t kTcp4 = 0x11;
constexpr uint8_t kTcp6 = 0x21;

bool isInet(const sockaddr* a) {
  return a != nullptr && (a->sa_family == AF_INET || a->sa_family == AF_INET6);
}

// The address as 16 IPv6 bytes (IPv4 mapped) and its port in network order.
void asV6(const sockaddr* a, uint8_t* addr16, uint16_t* port_be) {
  if (a->sa_family == AF_INET6) {
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(a);
    std::memcpy(addr16, &s6->sin6_addr, 16);
    *port_be = s6->sin6_port;
    return;
  }
  const auto* s4 = reinterpret_cast<const sockaddr_in*>(a);
  std::memset(addr16, 0, 10);
  addr16[10] = addr16[11] = 0xFF;
  std::memcpy(addr16 + 12, &s4->sin_addr, 4);
  *port_be = s4->sin_port;
}

}  // namespace

size_t encodeProxyV2(const sockaddr* src, const sockaddr* dst, uint8_t* out, size_t cap) {
  const bool inet = isInet(src) && isInet(dst);
  const bool v4 = inet && src->sa_family == AF_INET && dst->sa_family == AF_INET;
  const size_t body = !inet ? 0 : v4 ? 12 : 36;
  if (cap < 16 + body) return 0;
  std::memcpy(out, kSignature, sizeof(kSignature));
  out[12] = inet ? kVersion2Proxy : kVersion2Local;
  out[13] = !inet ? kUnspec : v4 ? kTcp4 : kTcp6;
  out[14] = static_cast<uint8_t>(body >> 8);
  out[15] = static_cast<uint8_t>(body & 0xFF);
  uint8_t* p = out + 16;
  if (v4) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(src);
    const auto* d = reinterpret_cast<const sockaddr_in*>(dst);
    std::memcpy(p, &s->sin_addr, 4);
    std::memcpy(p + 4, &d->sin_addr, 4);
    std::memcpy(p + 8, &s->sin_port, 2);
    std::memcpy(p + 10, &d->sin_port, 2);
  } else if (inet) {
    uint16_t sport = 0, dport = 0;
    asV6(src, p, &sport);
    asV6(dst, p + 16, &dport);
    std::memcpy(p + 32, &sport, 2);
    std::memcpy(p + 34, &dport, 2);
  }
  return 16 + body;
}

}  // namespace scalegate::l7proxy
