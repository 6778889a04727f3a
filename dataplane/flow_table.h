#pragma once
// Flow table stage: one table per lcore (never shared, no locks), mapping a 5-tuple to what the
// lcore decided for it. Fixed size, allocated once; bounded by construction.
//
//   key hash ─► two candidate buckets (64 B each: 8 signatures + 8 expiry times)
//            ─► entries[bucket * 8 + slot] (32 B: key + rewrite data)
//
// A lookup reads one bucket line (two at most) and one entry line; lookups are done in bursts:
// hash and prefetch the buckets of 32 packets first, then match (DESIGN.md performance notes).
// Every entry has an expiry time (ms, wrapping 32-bit clock) refreshed by its packets with a
// TCP-state-aware timeout. Expired entries are invisible and their slots reused; sweep() frees
// them in the background so size() tracks live flows. When both candidate buckets are full of
// live flows, the one closest to expiry is evicted (counted).
//
// Thread: the owning lcore only, except size()/capacity() which are plain reads for the owner.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace scalegate::dataplane {

// Addresses and ports in network byte order.
struct FlowKey {
  uint32_t src_ip = 0;
  uint32_t dst_ip = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t proto = 0;
  uint8_t pad[3] = {0, 0, 0};
};
static_assert(sizeof(FlowKey) == 16);

inline bool operator==(const FlowKey& a, const FlowKey& b) {
  return std::memcmp(&a, &b, sizeof(FlowKey)) == 0;
}

enum class FlowState : uint8_t { kSynSent, kEstablished, kClosing, kUdp };

// What a flow maps to. A forward entry (client -> VIP) holds the member (addr_a:port_a) and,
// in nat mode, the local source (addr_b:port_b). A reverse entry (member -> local:nat_port)
// holds the client (addr_a:port_a) and the VIP (addr_b:port_b).
struct FlowEntry {
  FlowKey key;
  uint32_t addr_a = 0;
  uint32_t addr_b = 0;
  uint16_t port_a = 0;
  uint16_t port_b = 0;
  uint16_t backend = 0;  // forward: backend id (ForwardingState::backends)
  uint8_t vip = 0;       // VIP id (stats)
  uint8_t state = 0;     // FlowState; bit 7 set on reverse entries
};
static_assert(sizeof(FlowEntry) == 32);
inline constexpr uint8_t kFlowReverse = 0x80;

struct FlowTimeouts {
  uint32_t syn_ms = 10'000;
  uint32_t established_ms = 300'000;
  uint32_t closing_ms = 10'000;
  uint32_t udp_ms = 30'000;
};

// The state after a packet with tcp_flags (TCP) on a flow in `state`, and its timeout.
FlowState nextTcpState(FlowState state, uint8_t tcp_flags);
uint32_t timeoutFor(FlowState state, const FlowTimeouts& t);

// Wrap-safe: a slot with this expiry time is live at `now`.
inline bool flowLive(uint32_t expire, uint32_t now) {
  return static_cast<int32_t>(expire - now) > 0;
}

class FlowTable {
 public:
  static constexpr uint32_t kSlots = 8;

  // capacity: entries, rounded up to a power of two (at least 64). Memory: 40 B per entry.
  explicit FlowTable(uint64_t capacity);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  static uint64_t hashKey(const FlowKey& k);
  void prefetch(uint64_t hash) const;

  // The live entry for k, or null.
  FlowEntry* find(const FlowKey& k, uint64_t hash, uint32_t now);
  // The first live entry whose signature matches hash, without reading any entry (so the
  // caller can prefetch it and compare keys later): null means k is certainly absent; a
  // non-null entry is k's unless its key differs (then call find()).
  FlowEntry* peek(uint64_t hash, uint32_t now);
  // Adds k (the caller found it absent) with the given expiry; evicts when both buckets are
  // full of live entries. Never fails. The returned entry's value fields are zero.
  FlowEntry* insert(const FlowKey& k, uint64_t hash, uint32_t now, uint32_t expire);
  void setExpire(const FlowEntry* e, uint32_t expire);
  uint32_t expireOf(const FlowEntry* e) const;
  void erase(const FlowEntry* e);
  // Frees the expired entries of the next `buckets` buckets (round robin); returns how many.
  uint32_t sweep(uint32_t now, uint32_t buckets);

  uint64_t size() const { return size_; }  // occupied slots (live + expired, not yet swept)
  uint64_t capacity() const { return (mask_ + 1) * kSlots; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct alignas(64) Bucket {
    uint32_t sig[kSlots];
    uint32_t expire[kSlots];
  };
  static_assert(sizeof(Bucket) == 64);

  static uint32_t sigOf(uint64_t hash) { return static_cast<uint32_t>(hash >> 32) | 1u; }
  uint64_t first(uint64_t hash) const { return hash & mask_; }
  uint64_t second(uint64_t hash) const {
    uint64_t b = (hash >> 17) & mask_;
    return b == first(hash) ? b ^ 1 : b;
  }
  FlowEntry* findIn(uint64_t b, uint32_t sig, const FlowKey& k, uint32_t now);

  Bucket* buckets_ = nullptr;
  FlowEntry* entries_ = nullptr;
  size_t bytes_ = 0;
  uint64_t mask_ = 0;
  uint64_t size_ = 0;
  uint64_t evictions_ = 0;
  uint64_t sweep_cursor_ = 0;
};

}  // namespace scalegate::dataplane
