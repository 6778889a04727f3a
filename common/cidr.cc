#include "common/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace scalegate {

namespace {

Ip128 maskOf(uint8_t length) {
  Ip128 m;
  if (length >= 64) {
    m.hi = ~uint64_t{0};
    m.lo = length == 64 ? 0 : ~uint64_t{0} << (128 - length);
  } else {
    m.hi = length == 0 ? 0 : ~uint64_t{0} << (64 - length);
  }
  return m;
}

uint32_t maskV4(uint8_t length) { return length == 0 ? 0 : ~uint32_t{0} << (32 - length); }

Ip128 fromBytes(const uint8_t b[16]) {
  Ip128 v;
  for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | b[i];
  for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | b[i];
  return v;
}

bool isV4Mapped(const uint8_t b[16]) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(b, kPrefix, 12) == 0;
}

}  // namespace

Result<IpPrefix> parseCidr(std::string_view text) {
  std::string_view addr = text;
  int length = -1;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3) return invalidArgument("bad prefix length");
    length = 0;
    for (char ch : len) {
      if (ch < '0' || ch > '9') return invalidArgument("bad prefix length");
      length = length * 10 + (ch - '0');
    }
  }
  if (addr.empty() || addr.size() >= INET6_ADDRSTRLEN) {
    return invalidArgument("expected an IPv4 or IPv6 address");
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, addr.data(), addr.size());
  buf[addr.size()] = '\0';
  IpPrefix p;
  in_addr a4;
  in6_addr a6;
  if (::inet_pton(AF_INET, buf, &a4) == 1) {
    if (length < 0) length = 32;
    if (length > 32) return invalidArgument("IPv4 prefix length above 32");
    p.length = static_cast<uint8_t>(length);
    p.network.lo = ntohl(a4.s_addr);
    if ((p.network.lo & ~uint64_t{maskV4(p.length)}) != 0) {
      return invalidArgument("host bits set past the prefix length");
    }
  } else if (::inet_pton(AF_INET6, buf, &a6) == 1) {
    if (length < 0) length = 128;
    if (length > 128) return invalidArgument("IPv6 prefix length above 128");
    p.v6 = true;
    p.length = static_cast<uint8_t>(length);
    p.network = fromBytes(a6.s6_addr);
    Ip128 m = maskOf(p.length);
    if ((p.network.hi & ~m.hi) != 0 || (p.network.lo & ~m.lo) != 0) {
      return invalidArgument("host bits set past the prefix length");
    }
  } else {
    return invalidArgument("expected an IPv4 or IPv6 address");
  }
  return p;
}

std::string formatCidr(const IpPrefix& p) {
  char buf[INET6_ADDRSTRLEN];
  if (p.v6) {
    uint8_t b[16];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(p.network.hi >> (56 - 8 * i));
    for (int i = 0; i < 8; ++i) b[8 + i] = static_cast<uint8_t>(p.network.lo >> (56 - 8 * i));
    ::inet_ntop(AF_INET6, b, buf, sizeof(buf));
  } else {
    in_addr a{htonl(static_cast<uint32_t>(p.network.lo))};
    ::inet_ntop(AF_INET, &a, buf, sizeof(buf));
  }
  return std::string(buf) + "/" + std::to_string(p.length);
}

void CidrSet::add(const IpPrefix& p) {
  if (p.v6) {
    auto it = std::find_if(v6_.begin(), v6_.end(),
                           [&](const V6Table& t) { return t.length == p.length; });
    if (it == v6_.end()) {
      v6_.push_back(V6Table{p.length, maskOf(p.length), {}});
      it = v6_.end() - 1;
    }
    it->networks.push_back(p.network);
  } else {
    auto it = std::find_if(v4_.begin(), v4_.end(),
                           [&](const V4Table& t) { return t.length == p.length; });
    if (it == v4_.end()) {
      v4_.push_back(V4Table{p.length, maskV4(p.length), {}});
      it = v4_.end() - 1;
    }
    it->networks.push_back(static_cast<uint32_t>(p.network.lo));
  }
}

void CidrSet::build() {
  count_ = 0;
  // Shortest prefixes first: broad rules (a /8 deny) answer most lookups on the first table.
  std::sort(v4_.begin(), v4_.end(),
            [](const V4Table& a, const V4Table& b) { return a.length < b.length; });
  std::sort(v6_.begin(), v6_.end(),
            [](const V6Table& a, const V6Table& b) { return a.length < b.length; });
  for (V4Table& t : v4_) {
    std::sort(t.networks.begin(), t.networks.end());
    t.networks.erase(std::unique(t.networks.begin(), t.networks.end()), t.networks.end());
    count_ += t.networks.size();
  }
  for (V6Table& t : v6_) {
    std::sort(t.networks.begin(), t.networks.end());
    t.networks.erase(std::unique(t.networks.begin(), t.networks.end()), t.networks.end());
    count_ += t.networks.size();
  }
}

bool CidrSet::containsV4(uint32_t ip) const {
  for (const V4Table& t : v4_) {
    if (std::binary_search(t.networks.begin(), t.networks.end(), ip & t.mask)) return true;
  }
  return false;
}

bool CidrSet::containsV6(const uint8_t addr[16]) const {
  if (isV4Mapped(addr)) {
    uint32_t ip = (uint32_t{addr[12]} << 24) | (uint32_t{addr[13]} << 16) |
                  (uint32_t{addr[14]} << 8) | addr[15];
    return containsV4(ip);
  }
  Ip128 v = fromBytes(addr);
  for (const V6Table& t : v6_) {
    Ip128 k{v.hi & t.mask.hi, v.lo & t.mask.lo};
    if (std::binary_search(t.networks.begin(), t.networks.end(), k)) return true;
  }
  return false;
}

bool CidrSet::contains(const sockaddr* sa) const {
  if (sa->sa_family == AF_INET) {
    return containsV4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    return containsV6(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr);
  }
  return false;
}

}  // namespace scalegate
