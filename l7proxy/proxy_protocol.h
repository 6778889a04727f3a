#pragma once
// PROXY protocol version 2 (haproxy.org/download/2.9/doc/proxy-protocol.txt): the binary header
// a tcp listener writes to a member before the client's first byte, so the member learns the
// client's address. Pure functions over byte spans; any thread.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace scalegate::l7proxy {

// Signature (12) + version/command, family, length (4) + two IPv6 addresses and ports (36).
inline constexpr size_t kProxyV2MaxBytes = 52;

// Writes a PROXY v2 header for a TCP connection from `src` (the client) to `dst` (the address
// it connected to) into out[0..cap) and returns its length, or 0 when cap is too small.
// AF_INET and AF_INET6 give a PROXY command over TCP4 / TCP6; when the families differ the
// IPv4 one is written as an IPv4-mapped IPv6 address. Any other family (or null) gives a
// LOCAL command with no address (the member then uses the connection's own addresses).
size_t encodeProxyV2(const sockaddr* src, const sockaddr* dst, uint8_t* out, size_t cap);

}  // namespace scalegate::l7proxy
