#include "common/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace scalegate {
namespace {

IpPrefix mustParse(std::string_view text) {
  auto r = parseCidr(text);
  EXPECT_TRUE(r.isOk()) << text << ": " << r.status().toString();
  return r.isOk() ? *r : IpPrefix();
}

uint32_t v4(const char* s) {
  in_addr a;
  EXPECT_EQ(::inet_pton(AF_INET, s, &a), 1) << s;
  return ntohl(a.s_addr);
}

bool hasV6(const CidrSet& set, const char* s) {
  in6_addr a;
  EXPECT_EQ(::inet_pton(AF_INET6, s, &a), 1) << s;
  return set.containsV6(a.s6_addr);
}

CidrSet setOf(std::initializer_list<const char*> prefixes) {
  CidrSet s;
  for (const char* p : prefixes) s.add(mustParse(p));
  s.build();
  return s;
}

TEST(Cidr, ParsesAndFormats) {
  EXPECT_EQ(formatCidr(mustParse("10.0.0.0/8")), "10.0.0.0/8");
  EXPECT_EQ(formatCidr(mustParse("192.168.1.7")), "192.168.1.7/32");
  EXPECT_EQ(formatCidr(mustParse("0.0.0.0/0")), "0.0.0.0/0");
  EXPECT_EQ(formatCidr(mustParse("2001:db8::/32")), "2001:db8::/32");
  EXPECT_EQ(formatCidr(mustParse("::1")), "::1/128");
  EXPECT_EQ(formatCidr(mustParse("::/0")), "::/0");
  IpPrefix p = mustParse("2001:db8:0:0:8000::/65");
  EXPECT_TRUE(p.v6);
  EXPECT_EQ(p.length, 65);
}

TEST(Cidr, RejectsJunk) {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.1/8", "10.0.0/8", "::/129",
                          "2001:db8::1/32", "host/8", "10.0.0.0/-1", "10.0.0.0/8x", "1.2.3.4:80"}) {
    EXPECT_FALSE(parseCidr(bad).isOk()) << bad;
  }
}

TEST(Cidr, MatchesIpv4AcrossPrefixLengths) {
  CidrSet s = setOf({"10.0.0.0/8", "192.168.1.0/24", "172.16.5.4/32", "100.64.0.0/10"});
  EXPECT_EQ(s.size(), 4u);
  EXPECT_TRUE(s.containsV4(v4("10.255.1.2")));
  EXPECT_TRUE(s.containsV4(v4("192.168.1.255")));
  EXPECT_FALSE(s.containsV4(v4("192.168.2.0")));
  EXPECT_TRUE(s.containsV4(v4("172.16.5.4")));
  EXPECT_FALSE(s.containsV4(v4("172.16.5.5")));
  EXPECT_TRUE(s.containsV4(v4("100.127.255.255")));
  EXPECT_FALSE(s.containsV4(v4("100.128.0.0")));
  EXPECT_FALSE(s.containsV4(v4("11.0.0.0")));
}

TEST(Cidr, ZeroLengthMatchesEverythingOfItsFamily) {
  CidrSet s = setOf({"0.0.0.0/0"});
  EXPECT_TRUE(s.containsV4(v4("1.2.3.4")));
  EXPECT_FALSE(hasV6(s, "2001:db8::1"));
  CidrSet s6 = setOf({"::/0"});
  EXPECT_TRUE(hasV6(s6, "2001:db8::1"));
  EXPECT_FALSE(s6.containsV4(v4("1.2.3.4")));
}

TEST(Cidr, MatchesIpv6AndMappedIpv4) {
  CidrSet s = setOf({"2001:db8::/32", "fd00:1:2:3::/64", "::1", "127.0.0.0/8"});
  EXPECT_TRUE(hasV6(s, "2001:db8:ffff::1"));
  EXPECT_FALSE(hasV6(s, "2001:db9::1"));
  EXPECT_TRUE(hasV6(s, "fd00:1:2:3:ffff::1"));
  EXPECT_FALSE(hasV6(s, "fd00:1:2:4::1"));
  EXPECT_TRUE(hasV6(s, "::1"));
  EXPECT_FALSE(hasV6(s, "::2"));
  // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d: they match IPv4 prefixes.
  EXPECT_TRUE(hasV6(s, "::ffff:127.0.0.2"));
  EXPECT_FALSE(hasV6(s, "::ffff:128.0.0.2"));
}

TEST(Cidr, ContainsTakesKernelAddresses) {
  CidrSet s = setOf({"127.0.0.2/32", "::1"});
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(v4("127.0.0.2"));
  EXPECT_TRUE(s.contains(reinterpret_cast<sockaddr*>(&a)));
  a.sin_addr.s_addr = htonl(v4("127.0.0.3"));
  EXPECT_FALSE(s.contains(reinterpret_cast<sockaddr*>(&a)));
  sockaddr_in6 b{};
  b.sin6_family = AF_INET6;
  b.sin6_addr = in6addr_loopback;
  EXPECT_TRUE(s.contains(reinterpret_cast<sockaddr*>(&b)));
  sockaddr un{};
  un.sa_family = AF_UNIX;
  EXPECT_FALSE(s.contains(&un));
}

TEST(Cidr, DuplicatesCollapse) {
  CidrSet s = setOf({"10.0.0.0/8", "10.0.0.0/8", "10.1.0.0/16"});
  EXPECT_EQ(s.size(), 2u);
}

TEST(AccessList, DenyWinsAndEmptyAllowAdmitsAll) {
  AccessList open;
  EXPECT_FALSE(open.enabled());
  EXPECT_TRUE(open.admitsV4(v4("8.8.8.8")));

  AccessList deny_only;
  deny_only.deny = setOf({"10.0.0.0/8"});
  EXPECT_TRUE(deny_only.enabled());
  EXPECT_FALSE(deny_only.admitsV4(v4("10.1.1.1")));
  EXPECT_TRUE(deny_only.admitsV4(v4("11.1.1.1")));

  AccessList both;
  both.allow = setOf({"10.0.0.0/8"});
  both.deny = setOf({"10.9.0.0/16"});
  EXPECT_TRUE(both.admitsV4(v4("10.1.1.1")));
  EXPECT_FALSE(both.admitsV4(v4("10.9.1.1")));  // deny wins over the broader allow
  EXPECT_FALSE(both.admitsV4(v4("11.1.1.1")));  // not in a non-empty allow list
}

}  // namespace
}  // namespace scalegate
