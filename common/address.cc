#include "common/address.h"

#include <arpa/inet.h>

#include <cstring>

namespace scalegate {
namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out.append(s);
  out += '"';
  return out;
}

// Digits only, 0..65535. The empty string is not a port.
bool parsePort(std::string_view s, uint16_t* out) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// inet_pton wants a NUL-terminated string; addresses are short, so a stack copy does.
bool toCString(std::string_view s, char* buf, size_t cap) {
  if (s.size() + 1 > cap) return false;
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  return true;
}

bool parseV4(std::string_view s, in_addr* out) {
  char buf[INET_ADDRSTRLEN];
  return toCString(s, buf, sizeof(buf)) && inet_pton(AF_INET, buf, out) == 1;
}

bool parseV6(std::string_view s, in6_addr* out) {
  char buf[INET6_ADDRSTRLEN];
  return toCString(s, buf, sizeof(buf)) && inet_pton(AF_INET6, buf, out) == 1;
}

}  // namespace

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) {
  if (sa == nullptr || len <= 0) return;
  size_t n =
      static_cast<size_t>(len) < sizeof(storage_) ? static_cast<size_t>(len) : sizeof(storage_);
  std::memcpy(&storage_, sa, n);
  if (!valid()) storage_ = sockaddr_storage{};
}

Result<SocketAddress> SocketAddress::parseIp(std::string_view text) {
  SocketAddress a;
  in_addr v4{};
  in6_addr v6{};
  if (parseV4(text, &v4)) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
    sin->sin_family = AF_INET;
    sin->sin_addr = v4;
    return a;
  }
  if (parseV6(text, &v6)) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = v6;
    return a;
  }
  return invalidArgument("bad IP address " + quoted(text) +
                         ": expected a literal IPv4 or IPv6 address (no host names)");
}

Result<SocketAddress> SocketAddress::parse(std::string_view text, bool allow_no_port) {
  auto bad = [&](const std::string& why) {
    return Status(StatusCode::kInvalidArgument, "bad address " + quoted(text) + ": " + why);
  };
  if (text.empty()) return bad("empty");
  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  bool bracketed = false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = text.substr(1, close - 1);
    bracketed = true;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':port' after ']'");
      port_text = rest.substr(1);
      has_port = true;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      host = text;
    } else if (text.find(':') != colon) {
      // Several colons without brackets: a bare IPv6 address, which cannot carry a port.
      if (!allow_no_port) return bad("an IPv6 address with a port needs brackets: [::1]:80");
      host = text;
    } else {
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
      has_port = true;
    }
  }
  uint16_t port = 0;
  if (has_port) {
    if (!parsePort(port_text, &port)) {
      return bad("bad port " + quoted(port_text) + " (expected 0..65535)");
    }
  } else if (!allow_no_port) {
    return bad("missing port (expected host:port, e.g. 127.0.0.1:8080)");
  }
  SocketAddress a;
  if (!bracketed && (host.empty() || host == "*")) {
    if (!has_port) return bad("missing IP address");
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (bracketed) {
    in6_addr v6{};
    if (!parseV6(host, &v6)) return bad("bad IPv6 address " + quoted(host));
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = v6;
  } else {
    in_addr v4{};
    in6_addr v6{};
    if (parseV4(host, &v4)) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage_);
      sin->sin_family = AF_INET;
      sin->sin_addr = v4;
    } else if (!has_port && parseV6(host, &v6)) {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_addr = v6;
    } else {
      return bad("expected a literal IP address, not " + quoted(host) + " (no DNS)");
    }
  }
  a.setPort(port);
  return a;
}

uint16_t SocketAddress::port() const {
  if (isV4()) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (isV6()) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

void SocketAddress::setPort(uint16_t port) {
  if (isV4()) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
  if (isV6()) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
}

socklen_t SocketAddress::sockaddrLen() const {
  if (isV4()) return sizeof(sockaddr_in);
  if (isV6()) return sizeof(sockaddr_in6);
  return 0;
}

size_t SocketAddress::ipToChars(char* out, size_t cap) const {
  if (cap == 0) return 0;
  out[0] = '\0';
  const void* src = nullptr;
  if (isV4()) src = &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr;
  if (isV6()) src = &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr;
  if (src == nullptr) return 0;
  if (inet_ntop(family(), src, out, static_cast<socklen_t>(cap)) == nullptr) {
    out[0] = '\0';
    return 0;
  }
  return std::strlen(out);
}

std::string SocketAddress::ipString() const {
  char buf[INET6_ADDRSTRLEN];
  size_t n = ipToChars(buf, sizeof(buf));
  return std::string(buf, n);
}

std::string SocketAddress::toString() const {
  if (!valid()) return "";
  std::string out;
  if (isV6()) out += '[';
  out += ipString();
  if (isV6()) out += ']';
  out += ':';
  out += std::to_string(port());
  return out;
}

bool SocketAddress::operator==(const SocketAddress& o) const {
  if (family() != o.family()) return false;
  if (isV4()) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&o.storage_);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (isV6()) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&o.storage_);
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
  }
  return true;  // two unset addresses
}

size_t SocketAddress::hash() const {
  // FNV-1a over family, port and address bytes: the fields operator== compares.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  };
  int fam = family();
  mix(&fam, sizeof(fam));
  uint16_t p = port();
  mix(&p, sizeof(p));
  if (isV4()) mix(&reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, sizeof(in_addr));
  if (isV6()) mix(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, sizeof(in6_addr));
  return static_cast<size_t>(h);
}

bool splitHostPort(std::string_view text, std::string_view* host, uint16_t* port) {
  std::string_view h;
  std::string_view p;
  bool has_port = false;
  if (text.empty()) return false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    h = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      has_port = true;
    }
  } else {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
      h = text;
    } else {
      if (text.find(':', colon + 1) != std::string_view::npos) return false;  // bare IPv6
      h = text.substr(0, colon);
      p = text.substr(colon + 1);
      has_port = true;
    }
  }
  if (h.empty()) return false;
  uint16_t port_value = 0;
  // RFC 3986 allows an empty port ("example.com:"); it means the default.
  if (has_port && !p.empty() && !parsePort(p, &port_value)) return false;
  *host = h;
  *port = port_value;
  return true;
}

}  // namespace scalegate
