#pragma once
// IPv4/IPv6 socket addresses and host:port parsing. No DNS: scalegate's config names
// literal addresses (members register themselves with their IP).

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace scalegate {

class SocketAddress {
 public:
  SocketAddress() = default;
  // From a kernel sockaddr (accept/getsockname); len is the valid length.
  SocketAddress(const sockaddr* sa, socklen_t len);

  // Parses "1.2.3.4:80", "[::1]:80", "*:80" / ":80" (IPv4 any), "[::]:80", and with
  // allow_no_port also "1.2.3.4" / "::1" (port 0). Rejects out-of-range ports and junk.
  static Result<SocketAddress> parse(std::string_view text, bool allow_no_port = false);
  // A literal IP without port: "10.0.0.1", "fe80::1". Port is 0.
  static Result<SocketAddress> parseIp(std::string_view text);

  int family() const { return storage_.ss_family; }  // AF_INET, AF_INET6, or AF_UNSPEC
  bool isV4() const { return family() == AF_INET; }
  bool isV6() const { return family() == AF_INET6; }
  bool valid() const { return family() == AF_INET || family() == AF_INET6; }
  uint16_t port() const;
  void setPort(uint16_t port);
  const sockaddr* sockaddrPtr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t sockaddrLen() const;

  // "1.2.3.4:80" or "[::1]:80".
  std::string toString() const;
  // "1.2.3.4" or "::1"; writes into out (>= INET6_ADDRSTRLEN bytes), returns the length.
  size_t ipToChars(char* out, size_t cap) const;
  std::string ipString() const;

  bool operator==(const SocketAddress& o) const;
  bool operator!=(const SocketAddress& o) const { return !(*this == o); }
  size_t hash() const;

 private:
  sockaddr_storage storage_{};
};

struct SocketAddressHash {
  size_t operator()(const SocketAddress& a) const { return a.hash(); }
};

// Splits "host:port" / "[v6]:port" into host and port without resolving; for Host headers
// and URLs. Port is 0 when absent (or empty: "example.com:"). An IPv6 host comes back without
// its brackets ("[::1]:80" -> "::1"). False on malformed input.
bool splitHostPort(std::string_view text, std::string_view* host, uint16_t* port);

}  // namespace scalegate
