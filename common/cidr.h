#pragma once
// IPv4/IPv6 prefix sets (CIDR) and allow/deny access lists, for listener access control
// (`listeners[].access`) in the HTTP/TCP listeners and the DPDK L4 path.
//
//   "10.0.0.0/8", "2001:db8::/32" ─► parseCidr ─► CidrSet::add ... build()
//                                                    │  one sorted table of masked networks
//                                                    ▼  per prefix length present
//   client address ─► contains(): for each length, mask + binary search ─► bool
//
// A lookup costs one binary search per distinct prefix length in the set (at most 33 for
// IPv4, 129 for IPv6; usually a handful), touches no heap and takes no lock. Sets are built
// once (config load) and then only read, so any number of threads may look up concurrently.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace scalegate {

// One IPv6 address as two host-order halves (IPv4 uses `lo` only).
struct Ip128 {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const Ip128& o) const { return hi == o.hi && lo == o.lo; }
  bool operator<(const Ip128& o) const { return hi != o.hi ? hi < o.hi : lo < o.lo; }
};

struct IpPrefix {
  bool v6 = false;
  uint8_t length = 0;  // 0..32 (IPv4) or 0..128 (IPv6)
  Ip128 network;       // host order, bits past `length` zero
};

// Parses "10.1.0.0/16", "2001:db8::/32", or a bare address (a /32 or /128). Host bits set
// past the prefix ("10.1.2.3/16") are an error: they usually mean a typo.
Result<IpPrefix> parseCidr(std::string_view text);
std::string formatCidr(const IpPrefix& p);

class CidrSet {
 public:
  void add(const IpPrefix& p);  // then build() before lookups
  void build();                 // sorts and de-duplicates
  bool empty() const { return v4_.empty() && v6_.empty(); }
  size_t size() const { return count_; }

  // `ip` in host order.
  bool containsV4(uint32_t ip) const;
  bool containsV6(const uint8_t addr[16]) const;  // IPv4-mapped (::ffff:a.b.c.d) checks IPv4
  // A kernel address (AF_INET / AF_INET6); other families are never contained.
  bool contains(const sockaddr* sa) const;

 private:
  struct V4Table {
    uint8_t length = 0;
    uint32_t mask = 0;
    std::vector<uint32_t> networks;  // sorted
  };
  struct V6Table {
    uint8_t length = 0;
    Ip128 mask;
    std::vector<Ip128> networks;  // sorted
  };
  std::vector<V4Table> v4_;  // one per prefix length present
  std::vector<V6Table> v6_;
  size_t count_ = 0;
};

// Network-security-group semantics: a deny match refuses; otherwise an empty allow list
// admits everyone and a non-empty one admits only its matches.
struct AccessList {
  CidrSet allow;
  CidrSet deny;
  bool enabled() const { return !allow.empty() || !deny.empty(); }
  bool admitsV4(uint32_t ip) const {  // host order
    if (deny.containsV4(ip)) return false;
    return allow.empty() || allow.containsV4(ip);
  }
  bool admits(const sockaddr* sa) const {
    if (deny.contains(sa)) return false;
    return allow.empty() || allow.contains(sa);
  }
};

}  // namespace scalegate
