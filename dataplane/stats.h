#pragma once
// Per-lcore counters (DESIGN.md "Counters"): written only by their lcore with plain relaxed
// stores, read by control at scrape time and summed over lcores. One block per lcore,
// cache-line aligned; the arrays are indexed by port index, VIP id and backend id.

#include <atomic>
#include <cstdint>

#include "dataplane/forwarding_state.h"

namespace scalegate::dataplane {

inline constexpr uint32_t kMaxPorts = 8;

class Counter {
 public:
  void inc(uint64_t n = 1) {  // owning lcore only
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }  // any thread

 private:
  std::atomic<uint64_t> v_{0};
};

// Why a packet was dropped.
enum class Drop : uint8_t {
  kMalformed,      // truncated or inconsistent headers
  kNotIpv4,        // IPv6 and other EtherTypes
  kFragment,       // IPv4 fragments (no reassembly)
  kNotServed,      // IPv4 to no VIP or local address, other protocols, other ICMP, ARP replies
  kNoBackend,      // the VIP's pool has no usable member
  kNoFlow,         // return traffic for a flow this lcore does not know
  kTtlExceeded,    // TTL 0 or 1
  kSnatExhausted,  // no free NAT source port for a new flow
  kTxFull,         // the port's TX queue was full
  kRedirectFull,   // the owning lcore's redirect ring was full
  kNoHeadroom,     // encapsulation without mbuf headroom
  kAccessDenied,   // a client the VIP's listeners[].access does not admit
  kCount
};

inline const char* dropName(Drop d) {
  switch (d) {
    case Drop::kMalformed:
      return "malformed";
    case Drop::kNotIpv4:
      return "not_ipv4";
    case Drop::kFragment:
      return "fragment";
    case Drop::kNotServed:
      return "not_served";
    case Drop::kNoBackend:
      return "no_backend";
    case Drop::kNoFlow:
      return "no_flow";
    case Drop::kTtlExceeded:
      return "ttl_exceeded";
    case Drop::kSnatExhausted:
      return "snat_exhausted";
    case Drop::kTxFull:
      return "tx_full";
    case Drop::kRedirectFull:
      return "redirect_full";
    case Drop::kNoHeadroom:
      return "no_headroom";
    case Drop::kAccessDenied:
      return "access_denied";
    case Drop::kCount:
      break;
  }
  return "unknown";
}

struct alignas(64) LcoreStats {
  Counter port_rx[kMaxPorts];
  Counter port_tx[kMaxPorts];         // handed to the port's TX buffer
  Counter port_tx_failed[kMaxPorts];  // of those, refused by a full TX queue (freed)
  Counter port_drops[kMaxPorts];      // every drop, by the port the packet came in on
  Counter drops[static_cast<int>(Drop::kCount)];
  Counter arp_replies;
  Counter icmp_replies;
  Counter redirected;  // return packets handed to the lcore owning their NAT port
  Counter flows_created;
  Counter flow_evictions;  // live flows pushed out of a full bucket pair
  Counter flow_entries;    // gauge: occupied flow-table slots
  Counter flow_capacity;   // gauge
  Counter vip_packets[kMaxVips];
  Counter vip_bytes[kMaxVips];
  Counter vip_flows[kMaxVips];
  Counter vip_access_denied[kMaxVips];    // packets dropped by the VIP's access list
  Counter backend_packets[kMaxBackends];  // both directions
  Counter backend_bytes[kMaxBackends];
  Counter backend_flows[kMaxBackends];
};

}  // namespace scalegate::dataplane
