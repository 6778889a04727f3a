#pragma once
// One L7 worker: its own event_base, its own SO_REUSEPORT listening sockets (opened by
// control, one per worker), its own upstream connection pools and counters. A connection
// stays on its worker for life. Everything here runs on the worker's thread except the few
// methods marked "any thread".
//
//   accept ─► ClientConn ──read──► parse head ─► route ─► balance ─► UpstreamConn (pooled)
//                 ▲                                                      │
//                 └────────── write response head + body ◄──read─────────┘

#include <event2/event.h>
#include <event2/event_struct.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "config/snapshot.h"
#include "l7proxy/balancer.h"
#include "l7proxy/counters.h"
#include "l7proxy/http1_parser.h"
#include "l7proxy/io_buffer.h"
#include "l7proxy/stats.h"
#include "l7proxy/tcp_relay.h"
#include "l7proxy/tls.h"

namespace scalegate::l7proxy {

class SnapshotChannel;
class Worker;
class ClientTable;
struct ClientConn;
struct UpstreamConn;
struct SnapshotView;

// Worker-local state of one member address; survives snapshots so pooled upstream
// connections outlive reloads. Shared by every pool that names the same address.
struct MemberSlot {
  SocketAddress address;
  UpstreamConn* idle_head = nullptr;  // most recently used first
  uint32_t idle_count = 0;
  uint32_t refs = 0;  // views + live upstream connections
  // Pooled connections idle longer than this are closed: the shortest idle_timeout of the
  // pools that name this address in the current view (set at adoption).
  Duration idle_timeout = std::chrono::seconds(60);
  // HTTP/2 sessions to this address (h2_upstream.cc), linked through next_idle/prev_idle.
  UpstreamConn* h2_sessions = nullptr;
  uint32_t h2_session_count = 0;
  bool in_view = false;         // named by the current view (set at adoption)
  bool h2_alpn_warned = false;  // logged once: the member's TLS did not pick h2
};

struct PoolView {
  const config::Pool* cfg = nullptr;
  SSL_CTX* tls = nullptr;  // upstream TLS: held by the snapshot
  const config::PoolState* state = nullptr;
  std::unique_ptr<Balancer> balancer;
  std::vector<MemberSlot*> slots;                // parallel to cfg->members
  std::vector<uint32_t> active;                  // in-flight requests per member on this worker
  PoolWorkerStats* stats = nullptr;              // this worker's slot
  std::vector<MemberWorkerStats*> member_stats;  // parallel to cfg->members
  std::vector<std::shared_ptr<MemberStats>> member_blocks;  // owners, for upstream connections
};

struct RouteView {
  const config::Route* route = nullptr;
  PoolView* pool = nullptr;
};

struct ListenerView {
  const config::Listener* cfg = nullptr;
  const TlsServerContext* tls = nullptr;  // TLS listener: held by the snapshot
  ListenerWorkerStats* stats = nullptr;   // this worker's slot
  ListenerStats* block = nullptr;         // all workers' slots (max_connections); may be null
  ClientTable* clients = nullptr;         // per-IP limits (held by `block`); may be null
  std::vector<RouteView> routes;
  ParseLimits limits;
  // tcp listeners (l7proxy/tcp_relay.h): the one pool, and the stats block their connections
  // keep alive after the view is gone.
  PoolView* pool = nullptr;
  std::shared_ptr<ListenerStats> stats_owner;
};

// A snapshot as this worker resolved it. Connections reference the view they started their
// current request under; it is freed when the last one lets go.
struct SnapshotView {
  std::shared_ptr<const config::Snapshot> snap;
  std::vector<PoolView> pools;
  std::vector<ListenerView> listeners;
  uint32_t refs = 0;
  int listenerIndex(const std::string& name) const;
};

struct AcceptSlot {
  int fd = -1;
  std::string listener;
  int listener_index = -1;  // in the current view
  Worker* worker = nullptr;
  event ev;
};

class Worker {
 public:
  Worker(int id, SnapshotChannel* channel);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop until drained or stopped. Worker thread.
  void run();
  // Any thread: wake the loop so it looks at the channel (new snapshot, drain, stop).
  void wake();
  // Generation of the snapshot this worker runs (any thread).
  uint64_t adoptedGeneration() const { return adopted_generation_.load(std::memory_order_acquire); }
  const WorkerCounters& counters() const { return counters_; }
  // Any thread: the worker has stopped accepting after a drain order.
  bool drainStarted() const { return drain_started_.load(std::memory_order_acquire); }
  int id() const { return id_; }

  // Everything below is worker-internal, public for the connection code in worker.cc.
  event_base* base() const { return base_; }
  BufferPool& buffers() { return buffers_; }
  WorkerCounters& mutableCounters() { return counters_; }
  SnapshotView* view() const { return view_; }
  MonoTime now() const { return now_; }
  MonoTime refreshNow();
  bool draining() const { return draining_; }
  uint64_t nextRequestId() { return ++request_seq_; }
  void releaseView(SnapshotView* v);
  void retainView(SnapshotView* v) { ++v->refs; }
  void clientClosed(ClientConn* c);
  // Access list and connection limits of a new connection from `peer` (counted when refused).
  // True: keep it; *ip_slot is then the client's slot in lv.clients holding one connection
  // count, or -1 when the client is not tracked.
  bool admitConnection(const ListenerView& lv, const sockaddr* peer, int32_t* ip_slot);
  // timeouts.send: closes connections whose pending response made no progress (1 s sweep).
  void sweepSlowReaders();
  // Connections are freed at the end of the loop pass, so a callback that closed one can
  // still look at it (fd == -1) on its way out.
  void deferDelete(ClientConn* c) { dead_clients_.push_back(c); }
  void deferDelete(UpstreamConn* u) { dead_upstreams_.push_back(u); }
  void addClient(ClientConn* c);
  void releaseSlot(MemberSlot* s);
  // The head being parsed; one per worker since heads are handled one at a time.
  RequestHead& requestHead() { return *request_head_; }
  const TcpRelay& tcpRelay() const { return *tcp_; }
  ResponseHead& responseHead() { return *response_head_; }
  // HTTP/2 upstream streams (h2_upstream.cc): a free list, and a head parsed for submission.
  std::vector<UpstreamConn*>& h2StreamFreeList() { return h2_free_streams_; }
  RequestHead& h2SubmitHead() { return *h2_submit_head_; }

 private:
  static void onWake(evutil_socket_t fd, short what, void* arg);
  static void onAccept(evutil_socket_t fd, short what, void* arg);
  static void onSweep(evutil_socket_t fd, short what, void* arg);
  void adoptLatest();
  void beginDrain();
  void sweepIdleUpstreams();
  void freeDead();
  bool allClientsFinished() const;
  void shutdownAll();
  MemberSlot* slotFor(const SocketAddress& addr);

  int id_;
  SnapshotChannel* channel_;
  event_base* base_ = nullptr;
  int wake_fd_ = -1;
  event wake_ev_;
  event sweep_ev_;
  event drain_ev_;  // fires at the drain deadline so the loop wakes for it
  BufferPool buffers_;
  WorkerCounters counters_;
  SnapshotView* view_ = nullptr;
  std::atomic<uint64_t> adopted_generation_{0};
  uint64_t seen_generation_ = 0;  // channel generation last looked at
  std::vector<std::unique_ptr<AcceptSlot>> accept_slots_;
  std::unordered_map<SocketAddress, std::unique_ptr<MemberSlot>, SocketAddressHash> slots_;
  ClientConn* clients_ = nullptr;  // intrusive list of all client connections
  size_t client_count_ = 0;
  MonoTime now_{};
  bool draining_ = false;
  std::atomic<bool> drain_started_{false};
  MonoTime drain_deadline_{};
  uint64_t request_seq_ = 0;
  std::vector<ClientConn*> dead_clients_;
  std::vector<ClientConn*> scratch_clients_;  // sweepSlowReaders
  std::vector<UpstreamConn*> dead_upstreams_;
  std::unique_ptr<RequestHead> request_head_;
  std::unique_ptr<ResponseHead> response_head_;
  std::unique_ptr<RequestHead> h2_submit_head_;
  std::vector<UpstreamConn*> h2_free_streams_;
  // Where counters go when a snapshot carries no stats block (tests build such snapshots).
  std::unique_ptr<ListenerWorkerStats> sink_listener_;
  std::unique_ptr<PoolWorkerStats> sink_pool_;
  std::unique_ptr<MemberWorkerStats> sink_member_;
  std::unique_ptr<TcpRelay> tcp_;  // tcp listeners' connections
};

// Control → workers: the latest snapshot and the drain/stop orders. Control writes, workers
// read at the top of each loop pass (one atomic load when nothing changed).
class SnapshotChannel {
 public:
  // control thread
  void publish(std::shared_ptr<const config::Snapshot> s);
  void drain(Duration timeout);  // stop accepting; finish in-flight; then the loop ends
  // any thread
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  std::shared_ptr<const config::Snapshot> latest() const;
  bool drainRequested(Duration* timeout) const;

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const config::Snapshot> latest_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> drain_{false};
  std::atomic<int64_t> drain_timeout_ns_{0};
};

}  // namespace scalegate::l7proxy
