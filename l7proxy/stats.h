#pragma once
// Statistics blocks shared by control (owner, reader at scrape time) and the workers (writers).
// Control allocates one block per listener, pool and member when it builds a snapshot (or
// carries the old block over when the thing still exists), with one cache-line-aligned slot
// per worker; a worker resolves its slot pointers when it adopts the snapshot and then only
// increments plain relaxed counters (DESIGN.md "Counters", Envoy's stats model). Blocks are
// held by shared_ptr from the snapshots that name them, so a worker never writes freed memory.

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "l7proxy/client_table.h"
#include "l7proxy/counters.h"

namespace scalegate::l7proxy {

// Request-duration buckets, seconds (upper bounds; +Inf is implicit).
inline constexpr std::array<double, 14> kDurationBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// A per-worker histogram: counts per bucket plus count and sum (in microseconds).
struct DurationHistogram {
  Counter buckets[kDurationBuckets.size() + 1];  // last = +Inf
  Counter count;
  Counter sum_us;
  void observe(uint64_t micros);  // worker
};

struct alignas(64) ListenerWorkerStats {
  Counter cx_total;
  Counter cx_active;
  Counter rq_total;
  Counter rq_active;
  Counter responses_by_class[6];  // index status/100; includes local replies
  Counter local_replies[static_cast<int>(LocalReply::kCount)];
  DurationHistogram duration;
  // tcp listeners (l7proxy/tcp_relay.h)
  Counter bytes_in;   // received from clients
  Counter bytes_out;  // sent to clients
  Counter tls_handshakes;          // completed
  Counter tls_resumed;             // ...of which resumed a session (ticket)
  Counter tls_handshake_failures;  // failed or abandoned handshakes
  Counter h2_connections;          // connections that spoke HTTP/2
  Counter h2_streams;              // request streams opened by clients
  Counter h2_resets_received;      // RST_STREAM from clients
  Counter h2_goaways_sent;         // GOAWAY frames sent (drain, errors, flood defences)
  Counter h2_protocol_errors;      // sessions ended for a protocol violation or flood
  Counter limited[static_cast<int>(LimitReason::kCount)];  // abuse limits (config ClientLimits)
  Counter access_denied;  // connections closed at accept by listeners[].access
};

struct alignas(64) PoolWorkerStats {
  Counter rq_total;
  Counter rq_retry;
  Counter no_healthy_member;  // 503s because nothing was eligible (tcp: connections refused)
  DurationHistogram duration;
  // Connections of tcp listeners (l7proxy/tcp_relay.h); their retries count in rq_retry.
  Counter cx_total;         // client connections routed to the pool
  Counter cx_active;        // ...open now
  Counter cx_connect_fail;  // connection attempts to members that failed
  Counter bytes_in;         // sent to members
  Counter bytes_out;        // received from members
};

struct alignas(64) MemberWorkerStats {
  Counter rq_total;               // requests sent to the member (each attempt)
  Counter rq_active;              // in flight now (gauge)
  Counter responses_by_class[6];  // answers from the member
  Counter cx_total;
  Counter cx_active;
  Counter cx_connect_fail;
  Counter failures;                   // 5xx, connect failures, resets before a response
  Counter outlier_signals;            // times `consecutive_failures` reached the pool's threshold
  Counter bytes_in;                   // request bytes sent to the member
  Counter bytes_out;                  // response bytes received from it
  uint32_t consecutive_failures = 0;  // worker-local; control does not read it
};

template <typename Slot>
struct StatsBlock {
  explicit StatsBlock(int workers) : per_worker(static_cast<size_t>(workers)) {}
  std::vector<Slot> per_worker;  // index = worker id
  // Any thread: the sum of one counter over all workers.
  template <typename F>
  uint64_t sum(F field) const {
    uint64_t t = 0;
    for (const Slot& s : per_worker) t += field(s).get();
    return t;
  }
};

// Named types (not aliases) so config/snapshot.h can forward-declare them.
struct ListenerStats : StatsBlock<ListenerWorkerStats> {
  using StatsBlock::StatsBlock;
  // Open connections of the listener on all workers (max_connections). Any thread.
  uint64_t openConnections() const {
    return sum([](const ListenerWorkerStats& s) -> const Counter& { return s.cx_active; });
  }
  // The per-client-IP table, made by control when the listener first has per-IP limits and
  // kept for the block's life (connections release the slots they hold). Any thread reads.
  ClientTable* clients() const { return clients_.load(std::memory_order_acquire); }
  void ensureClients() {  // control thread
    if (clients_owner_ != nullptr) return;
    clients_owner_ = std::make_unique<ClientTable>();
    clients_.store(clients_owner_.get(), std::memory_order_release);
  }

 private:
  std::unique_ptr<ClientTable> clients_owner_;
  std::atomic<ClientTable*> clients_{nullptr};
};
struct PoolStats : StatsBlock<PoolWorkerStats> {
  using StatsBlock::StatsBlock;
};
struct MemberStats : StatsBlock<MemberWorkerStats> {
  using StatsBlock::StatsBlock;
};

}  // namespace scalegate::l7proxy
