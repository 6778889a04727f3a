#pragma once
// TCP passthrough for listeners with `protocol: tcp`: each client connection is relayed, byte
// for byte, to one member of the listener's pool. Worker thread only (one TcpRelay per worker).
//
//   accept ─► pick member (pool balancer, healthy members only) ─► non-blocking connect
//                 ▲  connect failed or timed out: another member        │ connected
//                 └─────────────────────────────────────────────────────┤ [PROXY v2 header]
//   client ──► splice(client → pipe) ──► splice(pipe → member) ──► member      (upward flow)
//   client ◄── splice(pipe → client) ◄── splice(member → pipe) ◄── member      (downward flow)
//
// Zero copy: each direction moves bytes through a pipe with splice(); pipes come from a
// per-worker pool, are taken when a direction has bytes in flight and given back when it is
// empty, so an idle connection holds none. Where splice() cannot be used (listener
// `splice: false`, no pipe available, or the kernel refuses) a direction falls back to
// read()/write() through a pooled 64 KiB IoBuffer. Like the HTTP path: what is read is written
// at once, EV_WRITE is armed only when a write comes up short, and a direction stops reading
// while its destination cannot take more; a readiness event runs at most 4 read+write rounds.
//
// Half-close: a FIN from one side becomes shutdown(SHUT_WR) on the other once everything before
// it is written; the connection ends when both directions have ended, on a reset or error
// (propagated as a reset to the other side), at the listener's idle timeout, or at a drain
// deadline: the member's drain deadline (admin API), or the process drain_timeout after a
// reload removed its listener or member. A connection does not hold a snapshot once connected.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "l7proxy/io_buffer.h"
#include "l7proxy/stats.h"

namespace scalegate::l7proxy {

class Worker;
struct SnapshotView;
struct ListenerView;
struct PoolView;
struct TcpConn;
struct TcpMemberLink;

// Pipes for splice(), reused by the connections of one worker. Worker thread only.
class PipePool {
 public:
  explicit PipePool(size_t max_free = 256) : max_free_(max_free) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  struct Pipe {
    int rd = -1;
    int wr = -1;
    uint32_t capacity = 0;  // bytes the kernel lets it hold (F_GETPIPE_SZ)
  };
  // A pooled or new non-blocking pipe; false when none can be made (out of descriptors).
  bool get(Pipe* out);
  // Back to the pool; `dirty` (bytes left inside) closes it instead.
  void put(const Pipe& p, bool dirty);
  size_t freeCount() const { return free_.size(); }
  size_t created() const { return created_; }

 private:
  size_t max_free_;
  size_t created_ = 0;
  std::vector<Pipe> free_;
};

class TcpRelay {
 public:
  explicit TcpRelay(Worker* w);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  // Takes over client socket `fd` accepted on tcp listener `lv` of view `v` (the worker's
  // current view) and starts connecting to a member. `ip_slot`: the client's slot in the
  // listener's ClientTable holding one connection count (released at the end), or -1.
  void accept(int fd, const sockaddr* peer, socklen_t peer_len, SnapshotView* v,
              const ListenerView& lv, int32_t ip_slot);
  // The worker is about to switch to view `v`: least_request counts, member drains and removed
  // listeners or members take effect for open connections. Called before the old view goes.
  void adopt(SnapshotView* v);
  // Open connections (connecting or relaying).
  size_t connections() const { return count_; }
  // Closes every connection now (worker shutdown, drain deadline).
  void closeAll();
  // Frees connections closed during this loop pass.
  void freeDead();
  const PipePool& pipes() const { return pipes_; }

  // Internal, for the event callbacks in tcp_relay.cc.
  Worker* worker() const { return worker_; }
  PipePool& mutablePipes() { return pipes_; }
  BufferPool& buffers() { return buffers_; }
  TcpMemberLink* linkFor(const std::shared_ptr<MemberStats>& block, PoolView* pv, int32_t m,
                         const SnapshotView* v);
  void releaseLink(TcpMemberLink* link);
  void unlinkConn(TcpConn* c);
  void deferDelete(TcpConn* c) { dead_.push_back(c); }

 private:
  Worker* worker_;
  PipePool pipes_;
  // Read/write fallback buffers: as large as a pipe, so both paths move 64 KiB per call.
  BufferPool buffers_{64 * 1024, 64};
  TcpConn* conns_ = nullptr;  // intrusive list of open connections
  size_t count_ = 0;
  std::vector<TcpConn*> dead_;
  std::unordered_map<const MemberStats*, std::unique_ptr<TcpMemberLink>> links_;
  std::vector<const ListenerStats*> listeners_;  // tcp listeners of the current view
};

}  // namespace scalegate::l7proxy
