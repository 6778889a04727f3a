#include "dataplane/lcore.h"

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "dataplane/maglev.h"
#include "dataplane/packet.h"

namespace scalegate::dataplane {
namespace {

enum class Action : uint8_t { kDone, kForward, kReverse };

inline void drop(LcoreContext& c, rte_mbuf* m, int8_t pidx, Drop why) {
  c.stats->drops[static_cast<int>(why)].inc();
  if (pidx >= 0) c.stats->port_drops[pidx].inc();
  rte_pktmbuf_free(m);
}

inline void send(LcoreContext& c, rte_mbuf* m, int8_t pidx) {
  PortContext& p = c.ports[pidx];
  c.stats->port_tx[pidx].inc();
  rte_eth_tx_buffer(p.port_id, c.queue, p.tx, m);
}

inline bool isLocal(const LcoreContext& c, uint32_t ip) {
  for (uint32_t i = 0; i < c.nlocal; ++i) {
    if (c.local_ips[i] == ip) return true;
  }
  return false;
}

inline FlowState stateAfter(FlowState s, const PacketInfo& info) {
  return info.kind == PacketKind::kUdp ? FlowState::kUdp : nextTcpState(s, info.tcp_flags);
}

// A NAT source port of this lcore's slice that no flow to (member, local address) uses.
// Returns the port in network order, or 0 when none was found in a bounded number of tries.
uint16_t allocNatPort(LcoreContext& c, const Backend& b, uint32_t local, uint8_t proto,
                      FlowKey* rkey, uint64_t* rhash) {
  for (int tries = 0; tries < 64; ++tries) {
    uint16_t port = static_cast<uint16_t>(c.nat_min + c.index * c.nat_per_lcore + c.nat_cursor);
    if (++c.nat_cursor == c.nat_per_lcore) c.nat_cursor = 0;
    rkey->src_ip = b.ip;
    rkey->dst_ip = local;
    rkey->src_port = b.port;
    rkey->dst_port = netOrder16(port);
    rkey->proto = proto;
    *rhash = FlowTable::hashKey(*rkey);
    if (c.flows->find(*rkey, *rhash, c.now_ms) == nullptr) return rkey->dst_port;
  }
  return 0;
}

// rx_pidx: the port index the burst came from, or -1 for redirected packets (their mbuf's
// port field says; PMDs such as net_ring do not set it, so received bursts do not rely on it).
void processBurst(LcoreContext& c, const ForwardingState& st, rte_mbuf** pkts, uint16_t n,
                  int8_t rx_pidx) {
  PacketInfo info[kBurst];
  FlowKey key[kBurst];
  uint64_t hash[kBurst];
  Action action[kBurst];
  const Vip* vip[kBurst];
  FlowEntry* entry[kBurst];
  int8_t pidx[kBurst];

  for (uint16_t i = 0; i < n && i < 3; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  // Pass 1: parse and classify; answer ARP and ping; hash flows and prefetch their buckets.
  for (uint16_t i = 0; i < n; ++i) {
    if (i + 3 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 3], void*));
    rte_mbuf* m = pkts[i];
    action[i] = Action::kDone;
    pidx[i] = rx_pidx >= 0 ? rx_pidx : c.port_index[m->port];
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    PacketKind kind = parseFrame({frame, rte_pktmbuf_data_len(m)}, &info[i]);
    switch (kind) {
      case PacketKind::kTcp:
      case PacketKind::kUdp: {
        const PacketInfo& pi = info[i];
        vip[i] = st.findVip(pi.dst_ip, pi.dst_port, pi.proto);
        if (vip[i] != nullptr) {
          if (!st.vipAdmits(*vip[i], pi.src_ip)) {
            c.stats->vip_access_denied[vip[i]->id].inc();
            drop(c, m, pidx[i], Drop::kAccessDenied);
            continue;
          }
          action[i] = Action::kForward;
        } else if (isLocal(c, pi.dst_ip)) {
          const uint32_t port = netOrder16(pi.dst_port);
          const uint32_t off = port - c.nat_min;
          if (port < c.nat_min || off >= c.nat_per_lcore * c.nlcores) {
            drop(c, m, pidx[i], Drop::kNotServed);
            continue;
          }
          const uint32_t owner = off / c.nat_per_lcore;
          if (owner != c.index) {
            m->port = c.ports[pidx[i]].port_id;
            if (rte_ring_mp_enqueue(c.rings[owner], m) != 0) {
              drop(c, m, pidx[i], Drop::kRedirectFull);
            } else {
              c.stats->redirected.inc();
            }
            continue;
          }
          action[i] = Action::kReverse;
        } else {
          drop(c, m, pidx[i], Drop::kNotServed);
          continue;
        }
        key[i] = FlowKey{pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, pi.proto, {0, 0, 0}};
        hash[i] = FlowTable::hashKey(key[i]);
        c.flows->prefetch(hash[i]);
        break;
      }
      case PacketKind::kArpRequest:
        if (pidx[i] >= 0 && (isLocal(c, info[i].dst_ip) || st.isVipAddress(info[i].dst_ip))) {
          makeArpReply(frame, c.ports[pidx[i]].mac);
          c.stats->arp_replies.inc();
          send(c, m, pidx[i]);
        } else {
          drop(c, m, pidx[i], Drop::kNotServed);
        }
        break;
      case PacketKind::kIcmpEcho:
        if (pidx[i] >= 0 && (isLocal(c, info[i].dst_ip) || st.isVipAddress(info[i].dst_ip))) {
          makeIcmpEchoReply(frame, info[i]);
          c.stats->icmp_replies.inc();
          send(c, m, pidx[i]);
        } else {
          drop(c, m, pidx[i], Drop::kNotServed);
        }
        break;
      case PacketKind::kMalformed:
        drop(c, m, pidx[i], Drop::kMalformed);
        break;
      case PacketKind::kFragment:
        drop(c, m, pidx[i], Drop::kFragment);
        break;
      case PacketKind::kIpv6:
      case PacketKind::kOther:
        drop(c, m, pidx[i], Drop::kNotIpv4);
        break;
      default:
        drop(c, m, pidx[i], Drop::kNotServed);
        break;
    }
  }

  // Pass 2: match signatures in the (prefetched) buckets and prefetch the candidate entries;
  // their keys are compared in pass 3, when the entry lines have arrived.
  for (uint16_t i = 0; i < n; ++i) {
    if (action[i] == Action::kDone) continue;
    entry[i] = c.flows->peek(hash[i], c.now_ms);
    if (entry[i] != nullptr) rte_prefetch0(entry[i]);
  }

  // Pass 3: decide and rewrite.
  const uint32_t now = c.now_ms;
  for (uint16_t i = 0; i < n; ++i) {
    if (action[i] == Action::kDone) continue;
    rte_mbuf* m = pkts[i];
    uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
    const PacketInfo& pi = info[i];
    FlowEntry* e = entry[i];
    // A signature match of another flow, a flow an earlier packet of this burst created, or an
    // entry it pushed out: look again.
    if (e == nullptr || !(e->key == key[i])) e = c.flows->find(key[i], hash[i], now);

    if (action[i] == Action::kReverse) {
      if (e == nullptr || !(e->state & kFlowReverse)) {
        drop(c, m, pidx[i], Drop::kNoFlow);
        continue;
      }
      if (!rewriteTuple(frame, pi, e->addr_b, e->port_b, e->addr_a, e->port_a)) {
        drop(c, m, pidx[i], Drop::kTtlExceeded);
        continue;
      }
      const auto s = stateAfter(static_cast<FlowState>(e->state & 0x7f), pi);
      e->state = static_cast<uint8_t>(s) | kFlowReverse;
      c.flows->setExpire(e, now + timeoutFor(s, c.timeouts));
      c.stats->backend_packets[e->backend].inc();
      c.stats->backend_bytes[e->backend].inc(m->pkt_len);
      setEthernet(frame, c.ports[pidx[i]].mac, c.ports[pidx[i]].gateway);
      send(c, m, pidx[i]);
      continue;
    }

    const Vip& v = *vip[i];
    bool pinned = false;
    if (e != nullptr && !(e->state & kFlowReverse)) {
      const Backend& b = st.backends[e->backend];
      const bool new_syn = (pi.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn &&
                           static_cast<FlowState>(e->state) == FlowState::kClosing;
      // The flow stays on its member while that member is usable (and is still the same one).
      pinned = b.usable && b.ip == e->addr_a && b.port == e->port_a && !new_syn;
    }
    if (!pinned) {
      const PoolTable& pool = st.pools[v.pool];
      const uint16_t bid =
          pool.slots.empty()
              ? kNoBackend
              : pool.slots[maglevSlot(hash[i], static_cast<uint32_t>(pool.slots.size()))];
      if (bid == kNoBackend) {
        drop(c, m, pidx[i], Drop::kNoBackend);
        continue;
      }
      const Backend& b = st.backends[bid];
      uint32_t local = 0;
      uint16_t nat_port = 0;
      FlowKey rkey;
      uint64_t rhash = 0;
      if (!v.dsr) {
        local = c.local_ips[hash[i] % c.nlocal];
        nat_port = allocNatPort(c, b, local, pi.proto, &rkey, &rhash);
        if (nat_port == 0) {
          drop(c, m, pidx[i], Drop::kSnatExhausted);
          continue;
        }
      }
      const FlowState s0 = pi.kind == PacketKind::kUdp ? FlowState::kUdp : FlowState::kSynSent;
      if (e == nullptr || (e->state & kFlowReverse)) {
        e = c.flows->insert(key[i], hash[i], now, now + timeoutFor(s0, c.timeouts));
      }
      e->addr_a = b.ip;
      e->port_a = b.port;
      e->addr_b = local;
      e->port_b = nat_port;
      e->backend = bid;
      e->vip = v.id;
      e->state = static_cast<uint8_t>(s0);
      if (!v.dsr) {
        FlowEntry* r = c.flows->insert(rkey, rhash, now, now + timeoutFor(s0, c.timeouts));
        r->addr_a = pi.src_ip;
        r->port_a = pi.src_port;
        r->addr_b = pi.dst_ip;
        r->port_b = pi.dst_port;
        r->backend = bid;
        r->vip = v.id;
        r->state = static_cast<uint8_t>(s0) | kFlowReverse;
      }
      c.stats->flows_created.inc();
      c.stats->vip_flows[v.id].inc();
      c.stats->backend_flows[bid].inc();
    }
    const auto s = stateAfter(static_cast<FlowState>(e->state & 0x7f), pi);
    e->state = static_cast<uint8_t>(s);
    c.flows->setExpire(e, now + timeoutFor(s, c.timeouts));
    c.stats->vip_packets[v.id].inc();
    c.stats->vip_bytes[v.id].inc(m->pkt_len);
    c.stats->backend_packets[e->backend].inc();
    c.stats->backend_bytes[e->backend].inc(m->pkt_len);

    if (!v.dsr) {
      if (!rewriteTuple(frame, pi, e->addr_b, e->port_b, e->addr_a, e->port_a)) {
        drop(c, m, pidx[i], Drop::kTtlExceeded);
        continue;
      }
    } else {
      const uint32_t len = rte_pktmbuf_data_len(m);
      uint8_t* buf = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kIpipOverhead));
      if (buf == nullptr) {
        drop(c, m, pidx[i], Drop::kNoHeadroom);
        continue;
      }
      encapIpip(buf, len, c.nlocal > 0 ? c.local_ips[0] : v.ip, e->addr_a);
      frame = buf;
    }
    setEthernet(frame, c.ports[pidx[i]].mac, c.ports[pidx[i]].gateway);
    send(c, m, pidx[i]);
  }
}

}  // namespace

void initLcoreContext(LcoreContext& c) {
  for (auto& p : c.port_index) p = -1;
}

void countTxFailures(rte_mbuf** pkts, uint16_t unsent, void* userdata) {
  auto* p = static_cast<PortContext*>(userdata);
  p->stats->drops[static_cast<int>(Drop::kTxFull)].inc(unsent);
  p->stats->port_drops[p->index].inc(unsent);
  p->stats->port_tx_failed[p->index].inc(unsent);
  for (uint16_t i = 0; i < unsent; ++i) rte_pktmbuf_free(pkts[i]);
}

uint32_t pollOnce(LcoreContext& c) {
  const ForwardingState* st = c.state->load(std::memory_order_acquire);
  c.now_ms = static_cast<uint32_t>(rte_rdtsc() / c.tsc_per_ms);
  rte_mbuf* pkts[kBurst];
  uint32_t total = 0;
  for (uint32_t p = 0; p < c.nports; ++p) {
    const uint16_t n = rte_eth_rx_burst(c.ports[p].port_id, c.queue, pkts, kBurst);
    if (n == 0) continue;
    total += n;
    c.stats->port_rx[p].inc(n);
    if (st == nullptr) {
      for (uint16_t i = 0; i < n; ++i) drop(c, pkts[i], static_cast<int8_t>(p), Drop::kNoBackend);
      continue;
    }
    processBurst(c, *st, pkts, n, static_cast<int8_t>(p));
  }
  if (c.own_ring != nullptr) {
    const unsigned n =
        rte_ring_sc_dequeue_burst(c.own_ring, reinterpret_cast<void**>(pkts), kBurst, nullptr);
    if (n > 0) {
      total += n;
      if (st != nullptr) {
        processBurst(c, *st, pkts, static_cast<uint16_t>(n), -1);
      } else {
        for (unsigned i = 0; i < n; ++i) drop(c, pkts[i], -1, Drop::kNoBackend);
      }
    }
  }
  for (uint32_t p = 0; p < c.nports; ++p) {
    rte_eth_tx_buffer_flush(c.ports[p].port_id, c.queue, c.ports[p].tx);
  }
  // Background expiry: one bucket per busy pass keeps the cost per packet small; idle passes
  // catch up.
  c.flows->sweep(c.now_ms, total > 0 ? 1 : c.sweep_idle);
  c.stats->flow_entries.set(c.flows->size());
  c.stats->flow_evictions.set(c.flows->evictions());
  if (c.rcu != nullptr) rte_rcu_qsbr_quiescent(c.rcu, c.index);
  return total;
}

int lcoreMain(void* arg) {
  auto& c = *static_cast<LcoreContext*>(arg);
  if (c.rcu != nullptr) {
    rte_rcu_qsbr_thread_register(c.rcu, c.index);
    rte_rcu_qsbr_thread_online(c.rcu, c.index);
  }
  while (!c.stop->load(std::memory_order_relaxed)) pollOnce(c);
  if (c.rcu != nullptr) {
    rte_rcu_qsbr_thread_offline(c.rcu, c.index);
    rte_rcu_qsbr_thread_unregister(c.rcu, c.index);
  }
  c.exited.store(true, std::memory_order_release);
  return 0;
}

}  // namespace scalegate::dataplane
