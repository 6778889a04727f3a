#pragma once
// The per-lcore loop (run to completion, like DPDK's examples/l3fwd main_loop): each pass reads
// bursts of up to 32 packets from this lcore's RX queue on every port, plus packets other
// lcores redirected to it, and runs them through the stages:
//
//   rx_burst ─► parse (packet.h) ─► classify: ARP/ICMP for us ─► reply in place ──────┐
//                                   VIP ─► flow table (hit) or Maglev (miss) ─► rewrite ┼─► tx
//                                   buffer local:nat_port ─► owner lcore? ─► reverse NAT ──────┘
//                                   anything else ─► drop (counted by reason)
//
// then flushes the TX buffers, sweeps a few flow-table buckets and reports an RCU quiescent
// state (the ForwardingState it read may be freed after that).

#include <rte_ethdev.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <atomic>
#include <cstdint>

#include "dataplane/flow_table.h"
#include "dataplane/forwarding_state.h"
#include "dataplane/rewrite.h"
#include "dataplane/stats.h"

namespace scalegate::dataplane {

inline constexpr uint16_t kBurst = 32;
inline constexpr uint32_t kMaxLocalAddresses = 16;

struct PortContext {
  uint16_t port_id = 0;
  uint8_t index = 0;  // position in the config (stats label)
  MacAddress mac;
  MacAddress gateway;
  rte_eth_dev_tx_buffer* tx = nullptr;  // this lcore's buffer for this port
  LcoreStats* stats = nullptr;          // for the TX error callback
};

struct alignas(64) LcoreContext {
  // Read every packet, in access order.
  FlowTable* flows = nullptr;
  LcoreStats* stats = nullptr;
  const std::atomic<const ForwardingState*>* state = nullptr;
  uint32_t index = 0;  // 0..lcores-1: queue id, RCU thread id, NAT port slice
  uint16_t queue = 0;
  uint32_t nports = 0;
  PortContext ports[kMaxPorts];
  int8_t port_index[RTE_MAX_ETHPORTS];          // DPDK port id -> index in ports, -1 when not ours
  uint32_t local_ips[kMaxLocalAddresses] = {};  // network order
  uint32_t nlocal = 0;
  uint16_t nat_min = 0;        // host order: first NAT port of lcore 0
  uint16_t nat_per_lcore = 0;  // ports per lcore
  uint16_t nat_cursor = 0;     // next candidate offset in this lcore's slice
  uint32_t nlcores = 1;
  FlowTimeouts timeouts;
  uint64_t tsc_per_ms = 1;
  uint32_t now_ms = 0;
  rte_ring* own_ring = nullptr;  // packets redirected to this lcore
  rte_ring* rings[32] = {};      // every lcore's ring, by index
  rte_rcu_qsbr* rcu = nullptr;   // null: no RCU (single-threaded bench)
  const std::atomic<bool>* stop = nullptr;
  // Set (release) by lcoreMain as its last act. Dataplane::stop() reads it (acquire) after
  // rte_eal_mp_wait_lcore(), whose own synchronisation is inside DPDK and invisible to TSan,
  // so the teardown's happens-after-the-loop is stated in our code, where TSan checks it.
  std::atomic<bool> exited{false};
  uint32_t sweep_idle = 64;  // buckets swept per idle pass
};

// Sets port_index to -1 everywhere; call before filling ports.
void initLcoreContext(LcoreContext& c);

// One pass of the loop described above. Returns the packets received (rx + redirected).
uint32_t pollOnce(LcoreContext& c);

// Runs pollOnce until *c.stop; the rte_eal_remote_launch entry point (arg: LcoreContext*).
int lcoreMain(void* arg);

// TX buffer error callback: frees unsent packets, counts them (userdata: PortContext*).
void countTxFailures(rte_mbuf** pkts, uint16_t unsent, void* userdata);

}  // namespace scalegate::dataplane
