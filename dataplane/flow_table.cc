#include "dataplane/flow_table.h"

#include <sys/mman.h>

#include <bit>
#include <new>

#include "common/hash.h"
#include "dataplane/packet.h"

namespace scalegate::dataplane {

FlowState nextTcpState(FlowState state, uint8_t tcp_flags) {
  if (tcp_flags & (kTcpRst | kTcpFin)) return FlowState::kClosing;
  if (state == FlowState::kClosing) return state;
  if ((tcp_flags & kTcpSyn) && !(tcp_flags & kTcpAck)) return FlowState::kSynSent;
  if (tcp_flags & kTcpAck) return FlowState::kEstablished;
  return state;
}

uint32_t timeoutFor(FlowState state, const FlowTimeouts& t) {
  switch (state) {
    case FlowState::kSynSent:
      return t.syn_ms;
    case FlowState::kEstablished:
      return t.established_ms;
    case FlowState::kClosing:
      return t.closing_ms;
    case FlowState::kUdp:
      return t.udp_ms;
  }
  return t.closing_ms;
}

FlowTable::FlowTable(uint64_t capacity) {
  uint64_t entries = std::bit_ceil(capacity < 64 ? uint64_t{64} : capacity);
  uint64_t nbuckets = entries / kSlots;
  mask_ = nbuckets - 1;
  bytes_ = nbuckets * sizeof(Bucket) + entries * sizeof(FlowEntry);
  // Anonymous memory is zeroed (every slot empty) and, being large, may use transparent huge
  // pages, which matters for TLB misses at millions of flows.
  void* mem = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::bad_alloc();
  madvise(mem, bytes_, MADV_HUGEPAGE);
  buckets_ = static_cast<Bucket*>(mem);
  entries_ = reinterpret_cast<FlowEntry*>(buckets_ + nbuckets);
}

FlowTable::~FlowTable() { munmap(buckets_, bytes_); }

uint64_t FlowTable::hashKey(const FlowKey& k) {
  uint64_t w0, w1;
  std::memcpy(&w0, &k, 8);
  std::memcpy(&w1, reinterpret_cast<const uint8_t*>(&k) + 8, 8);
  return mix64(w0 ^ mix64(w1 ^ 0x9e3779b97f4a7c15ULL));
}

void FlowTable::prefetch(uint64_t hash) const {
  __builtin_prefetch(&buckets_[first(hash)]);
  __builtin_prefetch(&buckets_[second(hash)]);
}

FlowEntry* FlowTable::findIn(uint64_t b, uint32_t sig, const FlowKey& k, uint32_t now) {
  const Bucket& bucket = buckets_[b];
  for (uint32_t s = 0; s < kSlots; ++s) {
    if (bucket.sig[s] == sig && flowLive(bucket.expire[s], now)) {
      FlowEntry* e = &entries_[b * kSlots + s];
      if (e->key == k) return e;
    }
  }
  return nullptr;
}

FlowEntry* FlowTable::find(const FlowKey& k, uint64_t hash, uint32_t now) {
  const uint32_t sig = sigOf(hash);
  if (FlowEntry* e = findIn(first(hash), sig, k, now)) return e;
  return findIn(second(hash), sig, k, now);
}

FlowEntry* FlowTable::peek(uint64_t hash, uint32_t now) {
  const uint32_t sig = sigOf(hash);
  for (uint64_t b : {first(hash), second(hash)}) {
    const Bucket& bucket = buckets_[b];
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (bucket.sig[s] == sig && flowLive(bucket.expire[s], now)) return &entries_[b * kSlots + s];
    }
  }
  return nullptr;
}

FlowEntry* FlowTable::insert(const FlowKey& k, uint64_t hash, uint32_t now, uint32_t expire) {
  const uint64_t cand[2] = {first(hash), second(hash)};
  // The emptier of the two buckets (power of two choices keeps buckets from overflowing).
  int free_count[2] = {0, 0};
  for (int c = 0; c < 2; ++c) {
    for (uint32_t s = 0; s < kSlots; ++s) free_count[c] += buckets_[cand[c]].sig[s] == 0;
  }
  uint64_t b = cand[free_count[1] > free_count[0] ? 1 : 0];
  int slot = -1;
  if (free_count[0] + free_count[1] > 0) {
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (buckets_[b].sig[s] == 0) {
        slot = static_cast<int>(s);
        break;
      }
    }
    ++size_;
  } else {
    // Both full: reuse an expired slot, else evict the live entry closest to expiry.
    int32_t best_left = INT32_MAX;
    for (uint64_t c : cand) {
      for (uint32_t s = 0; s < kSlots; ++s) {
        const int32_t left = static_cast<int32_t>(buckets_[c].expire[s] - now);
        if (left < best_left) {
          best_left = left;
          b = c;
          slot = static_cast<int>(s);
        }
      }
    }
    if (best_left > 0) ++evictions_;
  }
  Bucket& bucket = buckets_[b];
  bucket.sig[slot] = sigOf(hash);
  bucket.expire[slot] = expire;
  FlowEntry* e = &entries_[b * kSlots + static_cast<uint64_t>(slot)];
  *e = FlowEntry{};
  e->key = k;
  return e;
}

void FlowTable::setExpire(const FlowEntry* e, uint32_t expire) {
  const uint64_t i = static_cast<uint64_t>(e - entries_);
  buckets_[i / kSlots].expire[i % kSlots] = expire;
}

uint32_t FlowTable::expireOf(const FlowEntry* e) const {
  const uint64_t i = static_cast<uint64_t>(e - entries_);
  return buckets_[i / kSlots].expire[i % kSlots];
}

void FlowTable::erase(const FlowEntry* e) {
  const uint64_t i = static_cast<uint64_t>(e - entries_);
  Bucket& bucket = buckets_[i / kSlots];
  if (bucket.sig[i % kSlots] != 0) --size_;
  bucket.sig[i % kSlots] = 0;
}

uint32_t FlowTable::sweep(uint32_t now, uint32_t buckets) {
  uint32_t freed = 0;
  for (uint32_t n = 0; n < buckets; ++n) {
    Bucket& bucket = buckets_[sweep_cursor_];
    sweep_cursor_ = (sweep_cursor_ + 1) & mask_;
    for (uint32_t s = 0; s < kSlots; ++s) {
      if (bucket.sig[s] != 0 && !flowLive(bucket.expire[s], now)) {
        bucket.sig[s] = 0;
        ++freed;
      }
    }
  }
  size_ -= freed;
  return freed;
}

}  // namespace scalegate::dataplane
