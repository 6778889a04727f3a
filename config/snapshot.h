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

namespace scalegate::config {

// Lookup tables for hash-based balancing, built once per snapshot and shared by all workers.
struct LbTables {
  std::vector<int32_t> maglev;                     // slot -> member index
  std::vector<std::pair<uint64_t, int32_t>> ring;  // sorted (point, member index)
};

// A member as the data paths see it right now.
struct MemberState {
  bool healthy = true;      // probes (and the initial state) say it can take traffic
  bool draining = false;    // no new requests
  uint32_t weight = 1;      // effective weight (config or admin API)
  MonoTime ready_since{};   // when it last became healthy or was added: slow start counts from it
};

struct PoolState {
  const Pool* pool = nullptr;          // points into Snapshot::config
  std::vector<MemberState> members;    // parallel to pool->members
  LbTables tables;
};

// Listening sockets control opened for one listen address: one SO_REUSEPORT fd per worker.
struct ListenSockets {
  std::string listener;      // listener name
  SocketAddress address;
  std::vector<int> fds;      // index = worker id; owned by control
};

struct Snapshot {
  uint64_t generation = 0;
  std::shared_ptr<const Config> config;
  std::vector<PoolState> pools;            // same order as config->pools (map order)
  std::vector<ListenSockets> sockets;      // for http and tcp listeners

  // Index of a pool by name in `pools`, or -1.
  int poolIndex(const std::string& name) const {
    for (size_t i = 0; i < pools.size(); ++i)
      if (pools[i].pool->name == name) return static_cast<int>(i);
    return -1;
  }
};

}  // namespace scalegate::config
