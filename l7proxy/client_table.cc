#include "l7proxy/client_table.h"

#include <netinet/in.h>

#include <cstring>
#include <limits>
#include <random>

#include "common/hash.h"

namespace scalegate::l7proxy {

ClientTable::ClientTable(uint32_t slots, uint64_t seed) {
  uint32_t n = kProbe;
  while (n < slots && n < (1u << 30)) n <<= 1;
  slots_ = std::make_unique<Slot[]>(n);
  mask_ = n - 1;
  if (seed == 0) {
    std::random_device rd;
    seed = (uint64_t{rd()} << 32) ^ rd();
  }
  seed_ = seed;
}

uint64_t ClientTable::keyOf(const sockaddr* sa) const {
  uint8_t b[17] = {};
  size_t n = 0;
  if (sa->sa_family == AF_INET) {
    std::memcpy(b, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    n = 4;
  } else if (sa->sa_family == AF_INET6) {
    const uint8_t* a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a, kMapped, 12) == 0) {
      std::memcpy(b, a + 12, 4);
      n = 4;
    } else {
      std::memcpy(b, a, 8);  // the /64
      b[16] = 6;             // never equal to an IPv4 key
      n = 17;
    }
  }
  uint64_t k = hashBytes(b, n, seed_);
  return k != 0 ? k : 1;
}

int32_t ClientTable::find(uint64_t key, int64_t now_ns) {
  uint32_t base = static_cast<uint32_t>(mix64(key));
  for (int pass = 0; pass < 2; ++pass) {
    int32_t claim = -1;
    int32_t evict = -1;
    int64_t evict_tat = std::numeric_limits<int64_t>::max();
    for (uint32_t p = 0; p < kProbe; ++p) {
      auto i = static_cast<int32_t>((base + p) & mask_);
      uint64_t k = slots_[i].key.load(std::memory_order_acquire);
      if (k == key) return i;
      if (claim >= 0) continue;
      if (k == 0) {
        claim = i;
        continue;
      }
      if (slots_[i].conns.load(std::memory_order_relaxed) != 0) continue;
      int64_t tat = slots_[i].tat.load(std::memory_order_relaxed);
      if (tat <= now_ns) {
        claim = i;  // a full bucket and no connection: the same as an empty slot
      } else if (tat < evict_tat) {
        evict = i;
        evict_tat = tat;
      }
    }
    if (claim < 0) claim = evict;
    if (claim < 0) return -1;
    uint64_t old = slots_[claim].key.load(std::memory_order_relaxed);
    if (old == key) return claim;
    if (slots_[claim].key.compare_exchange_strong(old, key, std::memory_order_acq_rel)) {
      slots_[claim].tat.store(0, std::memory_order_relaxed);
      return claim;
    }
    // Another worker took it first (possibly for this very key): look again once.
  }
  return -1;
}

bool ClientTable::acquireConnection(int32_t i, uint32_t limit) {
  std::atomic<uint32_t>& c = slots_[i].conns;
  if (limit == 0) {
    c.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  uint32_t cur = c.load(std::memory_order_relaxed);
  do {
    if (cur >= limit) return false;
  } while (!c.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void ClientTable::releaseConnection(int32_t i) {
  std::atomic<uint32_t>& c = slots_[i].conns;
  uint32_t cur = c.load(std::memory_order_relaxed);
  // Never below zero, even after a racing eviction reset the count.
  while (cur > 0 && !c.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
  }
}

bool ClientTable::admitRequest(int32_t i, int64_t now_ns, int64_t interval_ns, uint32_t burst,
                               int64_t* wait_ns) {
  std::atomic<int64_t>& t = slots_[i].tat;
  const int64_t tolerance = interval_ns * static_cast<int64_t>(burst);
  int64_t tat = t.load(std::memory_order_relaxed);
  for (int tries = 0; tries < 8; ++tries) {
    int64_t next = (tat > now_ns ? tat : now_ns) + interval_ns;
    if (next - now_ns > tolerance) {
      *wait_ns = next - now_ns - tolerance;
      return false;
    }
    if (t.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
  }
  return true;  // heavy contention on one client's slot: let this one through
}

}  // namespace scalegate::l7proxy
