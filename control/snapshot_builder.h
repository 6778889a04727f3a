#pragma once
// Builds the immutable Snapshot the data paths run on from the registry's current state.
// Control thread.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/snapshot.h"
#include "control/pool_registry.h"
#include "l7proxy/stats.h"

namespace scalegate::control {

// Statistics blocks of the listeners, by listener name: a listener that survives a reload
// keeps its block, so its counters never go backwards.
class ListenerStatsTable {
 public:
  explicit ListenerStatsTable(int workers) : workers_(workers) {}
  // The blocks for cfg's listeners (parallel to cfg.listeners); blocks of listeners no longer
  // in cfg are dropped here (snapshots still naming them keep them alive).
  std::vector<std::shared_ptr<l7proxy::ListenerStats>> resolve(const config::Config& cfg);

 private:
  int workers_;
  std::map<std::string, std::shared_ptr<l7proxy::ListenerStats>> blocks_;
};

// A member takes traffic when its probes say healthy (or it has no probe) and outlier
// detection has not ejected it. When fewer than low_health.threshold_percent of a pool's
// members qualify, the pool either spreads over every member (panic) or refuses (503).
// TLS state a snapshot carries (control/tls_table.h builds it).
struct SnapshotTls {
  std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> listener_tls;
  std::shared_ptr<const l7proxy::TicketKeyRing> ticket_keys;
  std::map<std::string, std::shared_ptr<ssl_ctx_st>> pool_tls;
};

std::shared_ptr<const config::Snapshot> buildSnapshot(
    const PoolRegistry& registry, uint64_t generation, std::vector<config::ListenSockets> sockets,
    std::vector<std::shared_ptr<l7proxy::ListenerStats>> listener_stats, SnapshotTls tls = {});

}  // namespace scalegate::control
