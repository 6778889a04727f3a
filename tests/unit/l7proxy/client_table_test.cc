#include "l7proxy/client_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <set>

namespace scalegate::l7proxy {
namespace {

constexpr int64_t kSec = 1000000000;

sockaddr_storage addr(const char* ip) {
  sockaddr_storage ss{};
  if (std::string_view(ip).find(':') == std::string_view::npos) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    EXPECT_EQ(::inet_pton(AF_INET, ip, &a->sin_addr), 1);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    EXPECT_EQ(::inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
  }
  return ss;
}

uint64_t key(const ClientTable& t, const char* ip) {
  sockaddr_storage ss = addr(ip);
  return t.keyOf(reinterpret_cast<sockaddr*>(&ss));
}

TEST(ClientTable, KeysByAddressAndIpv6Slash64) {
  ClientTable t(64, 42);
  EXPECT_NE(key(t, "127.0.0.2"), key(t, "127.0.0.3"));
  EXPECT_EQ(key(t, "127.0.0.2"), key(t, "::ffff:127.0.0.2"));  // dual-stack socket view
  EXPECT_EQ(key(t, "2001:db8:1:2::1"), key(t, "2001:db8:1:2:ffff::9"));
  EXPECT_NE(key(t, "2001:db8:1:2::1"), key(t, "2001:db8:1:3::1"));
  EXPECT_NE(key(t, "127.0.0.2"), 0u);
}

TEST(ClientTable, CountsConnectionsPerClientUpToTheLimit) {
  ClientTable t(64, 42);
  int32_t a = t.find(key(t, "10.0.0.1"), 0);
  int32_t b = t.find(key(t, "10.0.0.2"), 0);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_NE(a, b);
  EXPECT_EQ(t.find(key(t, "10.0.0.1"), 0), a);
  EXPECT_TRUE(t.acquireConnection(a, 2));
  EXPECT_TRUE(t.acquireConnection(a, 2));
  EXPECT_FALSE(t.acquireConnection(a, 2));
  EXPECT_TRUE(t.acquireConnection(b, 2));  // another client is not affected
  t.releaseConnection(a);
  EXPECT_TRUE(t.acquireConnection(a, 2));
  EXPECT_EQ(t.connections(a), 2u);
  t.releaseConnection(b);
  t.releaseConnection(b);  // never below zero
  EXPECT_EQ(t.connections(b), 0u);
}

TEST(ClientTable, TokenBucketAdmitsBurstThenRate) {
  ClientTable t(64, 42);
  int32_t i = t.find(key(t, "10.0.0.1"), 0);
  const int64_t now = 100 * kSec;
  const int64_t interval = kSec / 10;  // 10 per second
  int64_t wait = 0;
  for (int n = 0; n < 20; ++n) EXPECT_TRUE(t.admitRequest(i, now, interval, 20, &wait)) << n;
  EXPECT_FALSE(t.admitRequest(i, now, interval, 20, &wait));
  EXPECT_EQ(wait, interval);
  // 0.25 s later: two requests' worth refilled.
  EXPECT_TRUE(t.admitRequest(i, now + kSec / 4, interval, 20, &wait));
  EXPECT_TRUE(t.admitRequest(i, now + kSec / 4, interval, 20, &wait));
  EXPECT_FALSE(t.admitRequest(i, now + kSec / 4, interval, 20, &wait));
  EXPECT_GT(wait, 0);
  EXPECT_LE(wait, interval);
  // Another client has its own bucket.
  int32_t j = t.find(key(t, "10.0.0.2"), now);
  EXPECT_TRUE(t.admitRequest(j, now, interval, 20, &wait));
}

TEST(ClientTable, StaysBoundedUnderAFloodOfAddresses) {
  ClientTable t(64, 7);
  const int64_t now = 10 * kSec;
  const int64_t interval = kSec;  // slow refill: buckets stay depleted
  char ip[32];
  int tracked = 0;
  std::set<int32_t> used;
  for (int n = 0; n < 10000; ++n) {
    std::snprintf(ip, sizeof(ip), "10.%d.%d.%d", n >> 16, (n >> 8) & 255, n & 255);
    int32_t i = t.find(key(t, ip), now);
    if (i < 0) continue;
    ++tracked;
    used.insert(i);
    int64_t wait;
    (void)t.admitRequest(i, now, interval, 1, &wait);
  }
  EXPECT_LE(used.size(), 64u);  // never more state than the table holds
  EXPECT_EQ(tracked, 10000);    // no open connections: depleted buckets are evicted
}

TEST(ClientTable, ClientsWithOpenConnectionsAreNeverEvicted) {
  ClientTable t(8, 7);  // one probe window: 8 slots
  char ip[32];
  std::vector<int32_t> held;
  for (int n = 0; n < 8; ++n) {
    std::snprintf(ip, sizeof(ip), "10.0.0.%d", n + 1);
    int32_t i = t.find(key(t, ip), 0);
    ASSERT_GE(i, 0);
    ASSERT_TRUE(t.acquireConnection(i, 0));
    held.push_back(i);
  }
  EXPECT_EQ(t.find(key(t, "10.0.1.1"), 0), -1);  // full of live clients: not tracked
  EXPECT_EQ(t.find(key(t, "10.0.0.3"), 0), held[2]);
  t.releaseConnection(held[5]);
  int32_t fresh = t.find(key(t, "10.0.1.1"), 0);
  EXPECT_EQ(fresh, held[5]);  // the slot without connections (and a full bucket) is reused
}

}  // namespace
}  // namespace scalegate::l7proxy
