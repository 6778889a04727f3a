#include "common/address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <unordered_set>

namespace scalegate {
namespace {

SocketAddress mustParse(std::string_view text, bool allow_no_port = false) {
  auto r = SocketAddress::parse(text, allow_no_port);
  EXPECT_TRUE(r.isOk()) << text << ": " << r.status().toString();
  return r.isOk() ? *r : SocketAddress();
}

TEST(SocketAddress, DefaultIsInvalid) {
  SocketAddress a;
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(a.family(), AF_UNSPEC);
  EXPECT_EQ(a.port(), 0);
  EXPECT_EQ(a.sockaddrLen(), 0u);
}

TEST(SocketAddress, ParsesIpv4) {
  SocketAddress a = mustParse("10.1.2.3:8080");
  EXPECT_TRUE(a.isV4());
  EXPECT_EQ(a.port(), 8080);
  EXPECT_EQ(a.ipString(), "10.1.2.3");
  EXPECT_EQ(a.toString(), "10.1.2.3:8080");
  EXPECT_EQ(a.sockaddrLen(), sizeof(sockaddr_in));
}

TEST(SocketAddress, ParsesBracketedIpv6) {
  SocketAddress a = mustParse("[::1]:443");
  EXPECT_TRUE(a.isV6());
  EXPECT_EQ(a.port(), 443);
  EXPECT_EQ(a.ipString(), "::1");
  EXPECT_EQ(a.toString(), "[::1]:443");
  EXPECT_EQ(a.sockaddrLen(), sizeof(sockaddr_in6));
  EXPECT_EQ(mustParse("[::]:80").toString(), "[::]:80");
  EXPECT_EQ(mustParse("[2001:db8::1]:1").toString(), "[2001:db8::1]:1");
}

TEST(SocketAddress, WildcardMeansIpv4Any) {
  for (const char* text : {"*:80", ":80"}) {
    SocketAddress a = mustParse(text);
    EXPECT_TRUE(a.isV4()) << text;
    EXPECT_EQ(a.toString(), "0.0.0.0:80");
  }
}

TEST(SocketAddress, PortIsOptionalOnlyWhenAllowed) {
  EXPECT_FALSE(SocketAddress::parse("10.0.0.1").isOk());
  EXPECT_FALSE(SocketAddress::parse("::1").isOk());
  EXPECT_EQ(mustParse("10.0.0.1", true).toString(), "10.0.0.1:0");
  EXPECT_EQ(mustParse("::1", true).toString(), "[::1]:0");
  EXPECT_EQ(mustParse("[fe80::1]", true).toString(), "[fe80::1]:0");
}

TEST(SocketAddress, RejectsBadPorts) {
  for (const char* text : {"1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:99999999", "1.2.3.4:-1",
                           "1.2.3.4:8o", "1.2.3.4: 80", "[::1]:", "[::1]:70000", "[::1]80"}) {
    EXPECT_FALSE(SocketAddress::parse(text).isOk()) << text;
  }
  EXPECT_EQ(mustParse("1.2.3.4:65535").port(), 65535);
  EXPECT_EQ(mustParse("1.2.3.4:0").port(), 0);  // ephemeral bind
}

TEST(SocketAddress, RejectsJunk) {
  for (const char* text :
       {"", ":", "*", "localhost:80", "example.com:80", "1.2.3:80", "256.1.1.1:80", "[::1:80",
        "[1.2.3.4]:80", "::1:80", "1.2.3.4:80:90", "[]:80", "[::g]:80"}) {
    EXPECT_FALSE(SocketAddress::parse(text).isOk()) << text;
  }
  auto r = SocketAddress::parse("example.com:80");
  EXPECT_NE(r.status().message().find("example.com"), std::string::npos);
}

TEST(SocketAddress, ParseIp) {
  auto v4 = SocketAddress::parseIp("10.0.0.1");
  ASSERT_TRUE(v4.isOk());
  EXPECT_TRUE(v4->isV4());
  EXPECT_EQ(v4->port(), 0);
  auto v6 = SocketAddress::parseIp("fe80::1");
  ASSERT_TRUE(v6.isOk());
  EXPECT_TRUE(v6->isV6());
  EXPECT_FALSE(SocketAddress::parseIp("10.0.0.1:80").isOk());
  EXPECT_FALSE(SocketAddress::parseIp("host").isOk());
  EXPECT_FALSE(SocketAddress::parseIp("").isOk());
}

TEST(SocketAddress, FromSockaddr) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(9000);
  sin.sin_addr.s_addr = htonl(0x7f000001);
  SocketAddress a(reinterpret_cast<sockaddr*>(&sin), sizeof(sin));
  EXPECT_EQ(a.toString(), "127.0.0.1:9000");
  EXPECT_EQ(a, mustParse("127.0.0.1:9000"));
}

TEST(SocketAddress, EqualityHashAndSetPort) {
  SocketAddress a = mustParse("127.0.0.1:80");
  SocketAddress b = mustParse("127.0.0.1:80");
  SocketAddress c = mustParse("127.0.0.1:81");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_NE(mustParse("[::1]:80"), mustParse("127.0.0.1:80"));
  c.setPort(80);
  EXPECT_EQ(a, c);
  std::unordered_set<SocketAddress, SocketAddressHash> set{a, b, mustParse("[::1]:80")};
  EXPECT_EQ(set.size(), 2u);
}

TEST(SocketAddress, IpToCharsRespectsCapacity) {
  SocketAddress a = mustParse("[2001:db8::1]:1");
  char buf[INET6_ADDRSTRLEN];
  size_t n = a.ipToChars(buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, n), "2001:db8::1");
  char tiny[4];
  EXPECT_EQ(a.ipToChars(tiny, sizeof(tiny)), 0u);
}

struct Split {
  bool ok;
  std::string host;
  uint16_t port;
};

Split split(std::string_view text) {
  std::string_view host = "unset";
  uint16_t port = 7;
  bool ok = splitHostPort(text, &host, &port);
  return {ok, std::string(host), port};
}

TEST(SplitHostPort, Forms) {
  Split s = split("example.com:8080");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.host, "example.com");
  EXPECT_EQ(s.port, 8080);
  s = split("example.com");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.host, "example.com");
  EXPECT_EQ(s.port, 0);
  s = split("example.com:");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.port, 0);
  s = split("[::1]:443");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.host, "::1");
  EXPECT_EQ(s.port, 443);
  s = split("[fe80::1]");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.host, "fe80::1");
  EXPECT_EQ(s.port, 0);
  s = split("10.0.0.1:80");
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.host, "10.0.0.1");
}

TEST(SplitHostPort, Malformed) {
  for (const char* text :
       {"", ":80", "::1", "[::1", "[::1]x", "[]:80", "a:b", "a:70000", "a:1:2"}) {
    Split s = split(text);
    EXPECT_FALSE(s.ok) << text;
    EXPECT_EQ(s.host, "unset") << text;  // outputs untouched on failure
  }
}

}  // namespace
}  // namespace scalegate
