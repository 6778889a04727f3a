#include "dataplane/flow_table.h"

#include <gtest/gtest.h>

#include "dataplane/packet.h"

namespace scalegate::dataplane {
namespace {

FlowKey key(uint32_t i) {
  return FlowKey{0x0a000000u + i, 0x0a00000au, static_cast<uint16_t>(i * 7), 80, kProtoTcp, {}};
}

TEST(FlowTableTest, InsertFindErase) {
  FlowTable t(1024);
  EXPECT_EQ(t.capacity(), 1024u);
  const FlowKey k = key(1);
  const uint64_t h = FlowTable::hashKey(k);
  EXPECT_EQ(t.find(k, h, 0), nullptr);
  FlowEntry* e = t.insert(k, h, 0, 1000);
  e->backend = 7;
  EXPECT_EQ(t.size(), 1u);
  FlowEntry* f = t.find(k, h, 10);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->backend, 7);
  EXPECT_EQ(t.find(key(2), FlowTable::hashKey(key(2)), 10), nullptr);
  t.erase(f);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find(k, h, 10), nullptr);
}

TEST(FlowTableTest, ExpiredEntriesVanishAndAreSwept) {
  FlowTable t(1024);
  for (uint32_t i = 0; i < 100; ++i) {
    FlowKey k = key(i);
    t.insert(k, FlowTable::hashKey(k), 0, i < 50 ? 100 : 10000);
  }
  EXPECT_EQ(t.size(), 100u);
  // At t=100 the first 50 are expired: invisible at once, freed by a full sweep.
  EXPECT_EQ(t.find(key(3), FlowTable::hashKey(key(3)), 100), nullptr);
  EXPECT_NE(t.find(key(60), FlowTable::hashKey(key(60)), 100), nullptr);
  EXPECT_EQ(t.sweep(100, 1024 / FlowTable::kSlots), 50u);
  EXPECT_EQ(t.size(), 50u);
  // Refreshing the expiry keeps an entry alive.
  FlowEntry* e = t.find(key(60), FlowTable::hashKey(key(60)), 100);
  t.setExpire(e, 30000);
  EXPECT_NE(t.find(key(60), FlowTable::hashKey(key(60)), 20000), nullptr);
  EXPECT_EQ(t.find(key(61), FlowTable::hashKey(key(61)), 20000), nullptr);
}

TEST(FlowTableTest, ClockWrapIsHandled) {
  FlowTable t(64);
  const uint32_t now = 0xffffff00u;
  FlowKey k = key(5);
  t.insert(k, FlowTable::hashKey(k), now, now + 1000);  // expiry wraps past zero
  EXPECT_NE(t.find(k, FlowTable::hashKey(k), now + 500), nullptr);
  EXPECT_EQ(t.find(k, FlowTable::hashKey(k), now + 1000), nullptr);
}

TEST(FlowTableTest, BoundedWithEvictionOfClosestToExpiry) {
  FlowTable t(64);
  // Far more live flows than slots: the size never exceeds capacity, evictions are counted,
  // and the flows that were evicted are those closest to expiry.
  for (uint32_t i = 0; i < 1000; ++i) {
    FlowKey k = key(i);
    t.insert(k, FlowTable::hashKey(k), 0, 100000 + i);
  }
  EXPECT_EQ(t.size(), t.capacity());
  EXPECT_EQ(t.evictions(), 1000u - t.capacity());
  uint32_t found_late = 0, found_early = 0;
  for (uint32_t i = 0; i < 1000; ++i) {
    bool found = t.find(key(i), FlowTable::hashKey(key(i)), 0) != nullptr;
    (i >= 900 ? found_late : found_early) += found;
  }
  EXPECT_GT(found_late, found_early / 10);  // newest (latest expiry) survive far more often
}

TEST(FlowTableTest, HighLoadWithoutEvictions) {
  // Two candidate buckets per key: at 75% load nothing live is evicted.
  FlowTable t(1 << 16);
  const uint32_t n = (1 << 16) * 3 / 4;
  for (uint32_t i = 0; i < n; ++i) {
    FlowKey k = key(i);
    k.dst_port = static_cast<uint16_t>(i >> 16);
    t.insert(k, FlowTable::hashKey(k), 0, 1000);
  }
  EXPECT_EQ(t.evictions(), 0u);
  EXPECT_EQ(t.size(), n);
}

TEST(FlowStateTest, TcpTimeoutsFollowState) {
  FlowTimeouts to{1, 2, 3, 4};
  FlowState s = nextTcpState(FlowState::kSynSent, kTcpSyn);
  EXPECT_EQ(s, FlowState::kSynSent);
  EXPECT_EQ(timeoutFor(s, to), 1u);
  s = nextTcpState(s, kTcpAck);
  EXPECT_EQ(s, FlowState::kEstablished);
  EXPECT_EQ(timeoutFor(s, to), 2u);
  s = nextTcpState(s, kTcpAck | kTcpFin);
  EXPECT_EQ(s, FlowState::kClosing);
  EXPECT_EQ(timeoutFor(s, to), 3u);
  EXPECT_EQ(nextTcpState(s, kTcpAck), FlowState::kClosing);  // stays closing
  EXPECT_EQ(nextTcpState(FlowState::kEstablished, kTcpRst), FlowState::kClosing);
  EXPECT_EQ(timeoutFor(FlowState::kUdp, to), 4u);
}

}  // namespace
}  // namespace scalegate::dataplane
