#pragma once
// Per-client-IP state of one listener: open connections and a request-rate bucket per client,
// for `listeners[].limits` (max_connections_per_ip, requests_per_second_per_ip).
//
//   accept(peer) ─► keyOf(peer) ─► find(): probe 8 slots ─► slot i ─► acquireConnection(i)
//   request      ─────────────────────────────────────────► admitRequest(i)   (GCRA, one CAS)
//   close        ─────────────────────────────────────────► releaseConnection(i)
//
// One fixed-size table per listener, shared by all workers through atomics, never resized.
// Why shared and not per worker: SO_REUSEPORT hashes each connection's 4-tuple, so one
// client's connections land on every worker; per-worker tables would let a client open
// `workers` times the limit. Only the slots of one client are touched, so workers contend only
// when the same client is busy on several of them at once. Memory stays bounded under a flood
// of (spoofed or IPv6-rotated) addresses: a new client takes an empty slot or evicts one with
// no open connection (a full bucket first, else the one that refills soonest); when all 8
// candidate slots hold clients with open connections the new client is not tracked (its
// connections and requests are admitted, counted as reason ip_table_full). The probe position
// is keyed with a random per-table seed so clients cannot aim at one window.
// IPv6 clients are keyed by their /64 (a host usually owns a whole /64); IPv4 by address.
//
// Races between workers (two claim the same empty slot, or one evicts a slot while another
// is counting on it) can make counts briefly inexact; they never touch freed memory.
// Thread-safe (any worker).

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>

namespace scalegate::l7proxy {

class ClientTable {
 public:
  static constexpr uint32_t kDefaultSlots = 16384;
  static constexpr uint32_t kProbe = 8;

  explicit ClientTable(uint32_t slots = kDefaultSlots, uint64_t seed = 0);  // seed 0: random
  ClientTable(const ClientTable&) = delete;
  ClientTable& operator=(const ClientTable&) = delete;

  // Nonzero key of a client address (AF_INET / AF_INET6; IPv4-mapped IPv6 as IPv4).
  uint64_t keyOf(const sockaddr* sa) const;
  // The slot of `key`, claiming one if needed; -1 when no slot can be had (see above).
  // `now_ns`: monotonic clock.
  int32_t find(uint64_t key, int64_t now_ns);
  // Counts one more open connection in slot i unless `limit` (> 0) are open already.
  bool acquireConnection(int32_t i, uint32_t limit);
  void releaseConnection(int32_t i);
  uint32_t connections(int32_t i) const { return slots_[i].conns.load(std::memory_order_relaxed); }
  // Token bucket as GCRA: `burst` requests at once, refilled at one per `interval_ns`. True
  // when admitted; false sets *wait_ns to the time until the next request would be.
  bool admitRequest(int32_t i, int64_t now_ns, int64_t interval_ns, uint32_t burst,
                    int64_t* wait_ns);
  uint32_t size() const { return mask_ + 1; }

 private:
  struct Slot {
    std::atomic<uint64_t> key{0};  // 0 = empty
    std::atomic<uint32_t> conns{0};
    std::atomic<int64_t> tat{0};  // GCRA theoretical arrival time; <= now: bucket full
  };
  std::unique_ptr<Slot[]> slots_;
  uint32_t mask_;
  uint64_t seed_;
};

}  // namespace scalegate::l7proxy
