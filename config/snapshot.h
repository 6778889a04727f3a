#pragma once
// The immutable, fully resolved view of the world that control publishes to the data paths
// (DESIGN.md "Threads and state"). Control builds one per change (config reload, membership,
// health, weights) and publishes one root pointer; data paths only read it.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "config/model.h"

namespace scalegate::l7proxy {
// Statistics blocks (l7proxy/stats.h); control allocates them, workers write them.
struct ListenerStats;
struct PoolStats;
struct MemberStats;
// TLS (l7proxy/tls.h); control builds them, workers create connections from them.
class TlsServerContext;
struct TicketKeyRing;
}  // namespace scalegate::l7proxy
struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace scalegate::config {

// Lookup tables for hash-based balancing, built once per snapshot and shared by all workers.
struct LbTables {
  std::vector<int32_t> maglev;                     // slot -> member index
  std::vector<std::pair<uint64_t, int32_t>> ring;  // sorted (point, member index)
};

// A member as the data paths see it right now.
struct MemberState {
  bool healthy = true;     // may take traffic: probes say healthy (or the pool is in panic),
                           // and it is not ejected by outlier detection
  bool draining = false;   // no new requests
  MonoTime drain_deadline{};  // while draining: open TCP passthrough connections end here
  uint32_t weight = 1;     // effective weight (config or admin API)
  MonoTime ready_since{};  // when it last became healthy or was added: slow start counts from it
  std::shared_ptr<l7proxy::MemberStats> stats;
};

struct PoolState {
  const Pool* pool = nullptr;        // points into Snapshot::config
  std::vector<MemberState> members;  // parallel to pool->members
  LbTables tables;
  bool panic = false;   // too few healthy members: health ignored (spread_all)
  bool refuse = false;  // too few healthy members: answer 503 (refuse)
  std::shared_ptr<l7proxy::PoolStats> stats;
};

// Listening sockets control opened for one listen address: one SO_REUSEPORT fd per worker.
struct ListenSockets {
  std::string listener;  // listener name
  SocketAddress address;
  std::vector<int> fds;  // index = worker id; owned by control
};

struct Snapshot {
  uint64_t generation = 0;
  std::shared_ptr<const Config> config;
  std::vector<PoolState> pools;        // same order as config->pools (map order)
  std::vector<ListenSockets> sockets;  // for http and tcp listeners
  // Parallel to config->listeners.
  std::vector<std::shared_ptr<l7proxy::ListenerStats>> listener_stats;
  // Parallel to config->listeners: the TLS context of each TLS listener (null otherwise).
  std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> listener_tls;
  // Session ticket keys of every TLS listener; control rotates them on an interval.
  std::shared_ptr<const l7proxy::TicketKeyRing> ticket_keys;
  // Client TLS contexts of the pools with upstream TLS, by pool name.
  std::map<std::string, std::shared_ptr<ssl_ctx_st>> pool_tls;

  // Index of a pool by name in `pools`, or -1.
  int poolIndex(const std::string& name) const {
    for (size_t i = 0; i < pools.size(); ++i)
      if (pools[i].pool->name == name) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace scalegate::config
