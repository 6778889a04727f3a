#include "l7proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <string>

namespace scalegate::l7proxy {
namespace {

sockaddr_in v4(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

sockaddr_in6 v6(const char* ip, uint16_t port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &a.sin6_addr);
  return a;
}

std::string hex(const uint8_t* p, size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out += kHex[p[i] >> 4];
    out += kHex[p[i] & 15];
  }
  return out;
}

const sockaddr* sa(const void* p) { return static_cast<const sockaddr*>(p); }

// Signature "\r\n\r\n\0\r\nQUIT\n".
constexpr char kSig[] = "0d0a0d0a000d0a515549540a";

TEST(ProxyProtocolV2, Tcp4) {
  sockaddr_in src = v4("192.0.2.10", 51234), dst = v4("10.0.0.1", 443);
  uint8_t buf[kProxyV2MaxBytes];
  size_t n = encodeProxyV2(sa(&src), sa(&dst), buf, sizeof(buf));
  ASSERT_EQ(n, 28u);
  // v2 PROXY, TCP over IPv4, 12 bytes: 192.0.2.10, 10.0.0.1, 51234 (0xc822), 443 (0x01bb).
  EXPECT_EQ(hex(buf, n),
            std::string(kSig) + "21" + "11" + "000c" + "c000020a" + "0a000001" + "c822" + "01bb");
}

TEST(ProxyProtocolV2, Tcp6) {
  sockaddr_in6 src = v6("2001:db8::1", 40000), dst = v6("::1", 8443);
  uint8_t buf[kProxyV2MaxBytes];
  size_t n = encodeProxyV2(sa(&src), sa(&dst), buf, sizeof(buf));
  ASSERT_EQ(n, 52u);
  EXPECT_EQ(hex(buf, n), std::string(kSig) + "21" + "21" + "0024" +
                             "20010db8000000000000000000000001" +
                             "00000000000000000000000000000001" + "9c40" + "20fb");
}

TEST(ProxyProtocolV2, MixedFamiliesMapIpv4IntoIpv6) {
  sockaddr_in src = v4("127.0.0.1", 1);
  sockaddr_in6 dst = v6("::1", 2);
  uint8_t buf[kProxyV2MaxBytes];
  size_t n = encodeProxyV2(sa(&src), sa(&dst), buf, sizeof(buf));
  ASSERT_EQ(n, 52u);
  EXPECT_EQ(hex(buf + 12, 4), "21210024");
  EXPECT_EQ(hex(buf + 16, 16), "00000000000000000000ffff7f000001");
  EXPECT_EQ(hex(buf + 48, 4), "00010002");
}

TEST(ProxyProtocolV2, NonInetIsLocal) {
  sockaddr_un src{};
  src.sun_family = AF_UNIX;
  sockaddr_in dst = v4("10.0.0.1", 80);
  uint8_t buf[kProxyV2MaxBytes];
  size_t n = encodeProxyV2(sa(&src), sa(&dst), buf, sizeof(buf));
  ASSERT_EQ(n, 16u);
  EXPECT_EQ(hex(buf, n), std::string(kSig) + "20" + "00" + "0000");
  EXPECT_EQ(encodeProxyV2(nullptr, nullptr, buf, sizeof(buf)), 16u);
}

TEST(ProxyProtocolV2, TooSmallWritesNothing) {
  sockaddr_in src = v4("192.0.2.10", 1), dst = v4("10.0.0.1", 2);
  uint8_t buf[kProxyV2MaxBytes] = {};
  EXPECT_EQ(encodeProxyV2(sa(&src), sa(&dst), buf, 27), 0u);
  EXPECT_EQ(buf[0], 0);
  EXPECT_EQ(encodeProxyV2(sa(&src), sa(&dst), buf, 28), 28u);
}

}  // namespace
}  // namespace scalegate::l7proxy
