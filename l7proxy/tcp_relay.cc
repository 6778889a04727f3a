#include "l7proxy/tcp_relay.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/hash.h"
#include "config/model.h"
#include "l7proxy/connection.h"
#include "l7proxy/proxy_protocol.h"
#include "l7proxy/worker.h"

namespace scalegate::l7proxy {

// Worker-local state of one member (keyed by its statistics block, which control carries over
// from snapshot to snapshot while the member exists): its open connections on this worker.
struct TcpMemberLink {
  std::shared_ptr<MemberStats> owner;
  MemberWorkerStats* stats = nullptr;  // this worker's slot
  TcpConn* head = nullptr;             // connections to the member
  uint32_t conns = 0;
  uint32_t* view_active = nullptr;  // the member's least_request count in the current view
  bool in_view = false;
  MonoTime drain_deadline = MonoTime::max();  // the member is draining (admin API)
  MonoTime gone_deadline = MonoTime::max();   // the member left the configuration
};

// Bytes in one direction: from `src` to `dst`, through a pipe (splice) or a buffer.
struct TcpFlow {
  PipePool::Pipe pipe;      // rd < 0: none held
  IoBuffer* buf = nullptr;  // read/write fallback
  uint32_t pending = 0;     // bytes read from src and not yet written to dst
  bool full = false;        // no room for more: src is not read until dst takes some
  bool src_eof = false;     // src sent its FIN
  bool dst_shut = false;    // dst's write side is shut down (FIN passed on)
  // Since when dst has taken no byte of what is pending for it; max() while nothing waits.
  MonoTime stalled_since = MonoTime::max();
};

enum class TcpState : uint8_t { kConnecting, kRelaying };

struct TcpConn {
  TcpRelay* relay = nullptr;
  Worker* worker = nullptr;
  int cfd = -1;
  int32_t ip_slot = -1;  // in ls_owner's ClientTable (per-IP connection count), -1 none
  int ufd = -1;
  TcpState state = TcpState::kConnecting;
  bool splice = true;
  bool closed = false;
  bool c_read = false, c_write = false, u_read = false, u_write = false;
  bool timer_armed = false;
  uint8_t attempts = 0;
  uint8_t max_attempts = 1;
  uint8_t pp_len = 0;   // PROXY header bytes (0 = none)
  uint8_t pp_sent = 0;  // ...already written
  uint32_t exclude_count = 0;
  int32_t tried[kMaxAttempts] = {};
  uint64_t hash = 0;
  TcpConn* next = nullptr;  // all connections of the relay
  TcpConn* prev = nullptr;
  TcpConn* mnext = nullptr;  // connections of the same member
  TcpConn* mprev = nullptr;
  TcpMemberLink* link = nullptr;
  MemberWorkerStats* ms = nullptr;  // the member's slot (link's, or the view's sink)
  // Held only while connecting: the balancer and members to retry on.
  SnapshotView* view = nullptr;
  PoolView* pool = nullptr;
  TcpFlow up;    // client -> member
  TcpFlow down;  // member -> client
  Duration idle{};
  Duration send{};  // timeouts.send: a stalled flow's limit
  Duration connect_timeout{};
  MonoTime last_active{};
  MonoTime connect_deadline{};
  MonoTime listener_gone = MonoTime::max();
  MonoTime timer_at{};
  const ListenerStats* listener_key = nullptr;
  std::shared_ptr<ListenerStats> ls_owner;
  ListenerWorkerStats* ls = nullptr;
  std::shared_ptr<PoolStats> ps_owner;
  PoolWorkerStats* ps = nullptr;
  uint8_t pp[kProxyV2MaxBytes] = {};
  event crev, cwev, urev, uwev, timer;
};

namespace {

constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
// Read-and-write rounds one readiness event may run for one direction (bulk transfers).
constexpr int kRoundsPerEvent = 4;

timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

void arm(event* ev, bool* flag, bool on) {
  if (*flag == on) return;
  *flag = on;
  if (on) {
    event_add(ev, nullptr);
  } else {
    event_del(ev);
  }
}

void onClientRead(evutil_socket_t, short, void* arg);
void onClientWrite(evutil_socket_t, short, void* arg);
void onUpstreamRead(evutil_socket_t, short, void* arg);
void onUpstreamWrite(evutil_socket_t, short, void* arg);
void onTimer(evutil_socket_t, short, void* arg);
bool connectNext(TcpConn* c);

MonoTime hardDeadline(const TcpConn* c) {
  MonoTime d = c->listener_gone;
  if (c->link != nullptr) d = std::min({d, c->link->drain_deadline, c->link->gone_deadline});
  return d;
}

// When a flow that stopped moving (its destination takes nothing) runs out of timeouts.send.
MonoTime stallDeadline(const TcpConn* c) {
  const MonoTime since = std::min(c->up.stalled_since, c->down.stalled_since);
  return since == MonoTime::max() ? since : since + c->send;
}

MonoTime dueAt(const TcpConn* c) {
  MonoTime soft = c->state == TcpState::kConnecting
                      ? c->connect_deadline
                      : std::min(c->last_active + c->idle, stallDeadline(c));
  return std::min(soft, hardDeadline(c));
}

// Lazy timer: a later deadline costs nothing until the timer fires and re-arms for the rest.
void setTimer(TcpConn* c) {
  MonoTime d = dueAt(c);
  if (c->timer_armed && d >= c->timer_at) return;
  timeval tv = toTimeval(d - c->worker->now());
  evtimer_add(&c->timer, &tv);
  c->timer_armed = true;
  c->timer_at = d;
}

// Passive outlier detection, as for HTTP (connection.cc): consecutive connect failures.
void memberFailed(TcpConn* c) {
  MemberWorkerStats* ms = c->ms;
  ms->failures.inc();
  const config::OutlierDetection& od = c->pool->cfg->outlier;
  if (od.enabled && ++ms->consecutive_failures >= od.consecutive_failures) {
    ms->outlier_signals.inc();
    ms->consecutive_failures = 0;
  }
}

void attachMember(TcpConn* c, int32_t m) {
  PoolView* p = c->pool;
  const std::shared_ptr<MemberStats>& block = p->member_blocks[m];
  c->link = block != nullptr ? c->relay->linkFor(block, p, m, c->view) : nullptr;
  c->ms = c->link != nullptr ? c->link->stats : p->member_stats[m];
  if (c->link != nullptr) {
    TcpMemberLink* l = c->link;
    c->mprev = nullptr;
    c->mnext = l->head;
    if (l->head != nullptr) l->head->mprev = c;
    l->head = c;
    ++l->conns;
    if (l->view_active != nullptr) ++*l->view_active;
  }
  c->ms->rq_total.inc();
  c->ms->rq_active.inc();
}

void detachMember(TcpConn* c) {
  if (c->ms == nullptr) return;
  c->ms->rq_active.dec();
  c->ms = nullptr;
  TcpMemberLink* l = c->link;
  if (l == nullptr) return;
  if (c->mprev != nullptr) {
    c->mprev->mnext = c->mnext;
  } else {
    l->head = c->mnext;
  }
  if (c->mnext != nullptr) c->mnext->mprev = c->mprev;
  c->mnext = c->mprev = nullptr;
  --l->conns;
  if (l->view_active != nullptr) --*l->view_active;
  c->link = nullptr;
  c->relay->releaseLink(l);
}

void closeUpstreamSocket(TcpConn* c, bool reset) {
  if (c->ufd < 0) return;
  event_del(&c->urev);
  event_del(&c->uwev);
  c->u_read = c->u_write = false;
  if (reset) {
    linger lg{1, 0};
    ::setsockopt(c->ufd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  ::close(c->ufd);
  c->ufd = -1;
  c->worker->mutableCounters().upstream_cx_active.dec();
  if (c->ms != nullptr) c->ms->cx_active.dec();
}

void releaseFlow(TcpConn* c, TcpFlow& f) {
  if (f.pipe.rd >= 0) {
    c->relay->mutablePipes().put(f.pipe, f.pending > 0);
    f.pipe = PipePool::Pipe();
  }
  if (f.buf != nullptr) {
    c->relay->buffers().put(f.buf);
    f.buf = nullptr;
  }
  f.pending = 0;
}

void releaseView(TcpConn* c) {
  if (c->view == nullptr) return;
  c->worker->releaseView(c->view);
  c->view = nullptr;
  c->pool = nullptr;
}

// Ends the connection. `reset_client` / `reset_member`: close that side with a reset (the
// other side reset or failed, and a FIN would claim an orderly end).
void finish(TcpConn* c, bool reset_client, bool reset_member) {
  if (c->closed) return;
  c->closed = true;
  Worker* w = c->worker;
  closeUpstreamSocket(c, reset_member);
  detachMember(c);
  event_del(&c->crev);
  event_del(&c->cwev);
  event_del(&c->timer);
  if (reset_client) {
    linger lg{1, 0};
    ::setsockopt(c->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  ::close(c->cfd);
  c->cfd = -1;
  releaseFlow(c, c->up);
  releaseFlow(c, c->down);
  releaseView(c);
  if (c->ip_slot >= 0 && c->ls_owner != nullptr && c->ls_owner->clients() != nullptr) {
    c->ls_owner->clients()->releaseConnection(c->ip_slot);
  }
  c->ls->cx_active.dec();
  c->ps->cx_active.dec();
  w->mutableCounters().downstream_cx_active.dec();
  c->ls_owner.reset();
  c->ps_owner.reset();
  c->relay->unlinkConn(c);
  c->relay->deferDelete(c);
}

// --- relaying -------------------------------------------------------------------------------

// Reads once from src into the flow's pipe or buffer. >0 bytes (*filled: all the room was
// used), 0 EOF, -1 nothing to read (or no room), -2 error.
ssize_t readFlow(TcpConn* c, TcpFlow& f, int src, bool* filled) {
  if (f.pending == 0 && f.pipe.rd < 0 && f.buf == nullptr) {
    if (c->splice && c->relay->mutablePipes().get(&f.pipe)) {
      // piped
    } else {
      f.buf = c->relay->buffers().get();
    }
  }
  if (f.pipe.rd >= 0) {
    uint32_t room = f.pipe.capacity > f.pending ? f.pipe.capacity - f.pending : 0;
    if (room == 0) {
      f.full = true;
      return -1;
    }
    ssize_t n = ::splice(src, nullptr, f.pipe.wr, nullptr, room, kSpliceFlags);
    if (n >= 0) {
      *filled = static_cast<uint32_t>(n) == room;
      return n;
    }
    if (errno == EAGAIN || errno == EINTR) {
      // A pipe counts pages, not bytes: with bytes pending it may be full before `room`.
      if (f.pending > 0) f.full = true;
      return -1;
    }
    if ((errno == EINVAL || errno == ENOSYS) && f.pending == 0) {
      // This socket cannot be spliced: read/write from now on.
      c->splice = false;
      c->relay->mutablePipes().put(f.pipe, false);
      f.pipe = PipePool::Pipe();
      f.buf = c->relay->buffers().get();
    } else {
      return -2;
    }
  }
  IoBuffer* b = f.buf;
  if (b->room() == 0) b->compact();
  if (b->room() == 0) {
    f.full = true;
    return -1;
  }
  const uint32_t room = b->room();
  ssize_t n = ::read(src, b->data() + b->end, room);
  if (n > 0) {
    b->end += static_cast<uint32_t>(n);
    *filled = static_cast<uint32_t>(n) == room;
    return n;
  }
  if (n == 0) return 0;
  return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
}

// Writes what the flow holds to dst. >=0 bytes written, -1 dst cannot take more now, -2 error.
ssize_t writeFlow(TcpConn* c, TcpFlow& f, int dst) {
  if (f.pending == 0) return 0;
  ssize_t n;
  if (f.pipe.rd >= 0) {
    n = ::splice(f.pipe.rd, nullptr, dst, nullptr, f.pending, kSpliceFlags);
  } else {
    n = ::write(dst, f.buf->begin(), f.pending);
    if (n > 0) f.buf->start += static_cast<uint32_t>(n);
  }
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? -1 : -2;
  f.pending -= static_cast<uint32_t>(n);
  if (n > 0) f.full = false;
  if (f.pending == 0) releaseFlow(c, f);  // an idle direction holds no pipe or buffer
  return n;
}

// Writes whatever of the PROXY header is left. False on error (the connection is finished).
bool sendProxyHeader(TcpConn* c) {
  while (c->pp_sent < c->pp_len) {
    ssize_t n = ::send(c->ufd, c->pp + c->pp_sent, c->pp_len - c->pp_sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      finish(c, true, true);
      return false;
    }
    c->pp_sent += static_cast<uint8_t>(n);
    c->ms->bytes_in.inc(static_cast<uint64_t>(n));
  }
  return true;
}

void countRead(TcpConn* c, bool upward, uint64_t n) {
  if (upward) {
    c->ls->bytes_in.inc(n);
  } else {
    c->ms->bytes_out.inc(n);
    c->ps->bytes_out.inc(n);
  }
}

void countWritten(TcpConn* c, bool upward, uint64_t n) {
  if (upward) {
    c->ms->bytes_in.inc(n);
    c->ps->bytes_in.inc(n);
  } else {
    c->ls->bytes_out.inc(n);
  }
}

// Moves bytes of one direction: reads from its source (when `read`), writes what it holds,
// then re-arms: the source is read while there is room, the destination watched while a write
// came up short, and an EOF passed on as shutdown(SHUT_WR) once everything is written.
void pump(TcpConn* c, bool upward, bool read) {
  TcpFlow& f = upward ? c->up : c->down;
  const int src = upward ? c->cfd : c->ufd;
  const int dst = upward ? c->ufd : c->cfd;
  bool blocked = false;
  // A read that filled all the room may have left more behind: while each round's bytes are
  // written at once, go round again (bounded, so other connections get their turn) instead of
  // paying an epoll_wait per pipe- or buffer-full.
  for (int round = 0; round < kRoundsPerEvent; ++round) {
    bool filled = false;
    if (read && !f.src_eof && !f.full) {
      ssize_t n = readFlow(c, f, src, &filled);
      if (n > 0) {
        f.pending += static_cast<uint32_t>(n);
        c->last_active = c->worker->now();
        countRead(c, upward, static_cast<uint64_t>(n));
      } else if (n == 0) {
        f.src_eof = true;
      } else if (n == -2) {  // reset by the source: the destination learns it the same way
        finish(c, !upward, upward);
        return;
      }
    }
    if (upward && c->pp_sent < c->pp_len) {
      if (!sendProxyHeader(c)) return;
    }
    blocked = upward && c->pp_sent < c->pp_len;
    if (!blocked && f.pending > 0) {
      ssize_t n = writeFlow(c, f, dst);
      if (n == -2) {  // the destination is gone: reset the source
        finish(c, upward, !upward);
        return;
      }
      if (n > 0) {
        c->last_active = c->worker->now();
        countWritten(c, upward, static_cast<uint64_t>(n));
      }
      blocked = f.pending > 0;
      if (!blocked) {
        f.stalled_since = MonoTime::max();
      } else if (n > 0 || f.stalled_since == MonoTime::max()) {
        f.stalled_since = c->worker->now();  // the clock restarts with every byte taken
      }
    }
    if (!filled || blocked) break;
  }
  if (upward) {
    arm(&c->uwev, &c->u_write, blocked);
    arm(&c->crev, &c->c_read, !f.src_eof && !f.full);
  } else {
    arm(&c->cwev, &c->c_write, blocked);
    arm(&c->urev, &c->u_read, !f.src_eof && !f.full);
  }
  if (f.src_eof && f.pending == 0 && !f.dst_shut) {
    ::shutdown(dst, SHUT_WR);
    f.dst_shut = true;
  }
  if (c->up.dst_shut && c->down.dst_shut) {
    finish(c, false, false);
    return;
  }
  if (f.stalled_since != MonoTime::max()) setTimer(c);  // earlier than the idle deadline
}

void onClientRead(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<TcpConn*>(arg);
  c->worker->refreshNow();
  pump(c, true, true);
}

void onClientWrite(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<TcpConn*>(arg);
  c->worker->refreshNow();
  pump(c, false, false);
}

void onUpstreamRead(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<TcpConn*>(arg);
  c->worker->refreshNow();
  pump(c, false, true);
}

// --- connecting -----------------------------------------------------------------------------

void connected(TcpConn* c) {
  c->state = TcpState::kRelaying;
  c->ms->consecutive_failures = 0;
  releaseView(c);  // no more picks: the connection no longer holds the snapshot
  c->last_active = c->worker->now();
  setTimer(c);
  arm(&c->uwev, &c->u_write, false);
  pump(c, true, true);  // PROXY header, then whatever the client sent meanwhile
  if (c->closed) return;
  pump(c, false, true);
}

// The attempt on the current member failed (refused, unreachable, timed out): try another
// member while attempts are left, else close the client (nothing was sent to it).
void connectFailed(TcpConn* c) {
  Worker* w = c->worker;
  w->mutableCounters().upstream_cx_connect_fail.inc();
  c->ms->cx_connect_fail.inc();
  c->ps->cx_connect_fail.inc();
  memberFailed(c);
  closeUpstreamSocket(c, false);
  detachMember(c);
  if (c->attempts < c->max_attempts) {
    w->mutableCounters().upstream_rq_retry.inc();
    c->ps->rq_retry.inc();
    connectNext(c);
    return;
  }
  finish(c, false, false);
}

void onUpstreamWrite(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<TcpConn*>(arg);
  c->worker->refreshNow();
  if (c->state == TcpState::kConnecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      connectFailed(c);
      return;
    }
    connected(c);
    return;
  }
  pump(c, true, false);
}

// Picks a member not tried yet and starts a non-blocking connect. False when the connection
// was closed (no member left).
bool connectNext(TcpConn* c) {
  Worker* w = c->worker;
  PoolView* p = c->pool;
  for (;;) {
    PickInput in;
    in.hash = c->hash;
    in.active = p->active.data();
    in.exclude = c->tried;
    in.exclude_count = c->exclude_count;
    in.now = w->now();
    int32_t m = p->balancer->pick(in);
    if (m < 0) {
      if (c->attempts == 0) c->ps->no_healthy_member.inc();
      finish(c, false, false);
      return false;
    }
    ++c->attempts;
    if (c->exclude_count < kMaxAttempts) c->tried[c->exclude_count++] = m;
    attachMember(c, m);
    const SocketAddress& a = p->slots[m]->address;
    int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1;
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      rc = ::connect(fd, a.sockaddrPtr(), a.sockaddrLen());
    }
    if (fd < 0 || (rc < 0 && errno != EINPROGRESS)) {
      if (fd >= 0) ::close(fd);
      w->mutableCounters().upstream_cx_connect_fail.inc();
      c->ms->cx_connect_fail.inc();
      c->ps->cx_connect_fail.inc();
      memberFailed(c);
      detachMember(c);
      if (c->attempts < c->max_attempts) {
        w->mutableCounters().upstream_rq_retry.inc();
        c->ps->rq_retry.inc();
        continue;
      }
      finish(c, false, false);
      return false;
    }
    c->ufd = fd;
    w->mutableCounters().upstream_cx_total.inc();
    w->mutableCounters().upstream_cx_active.inc();
    c->ms->cx_total.inc();
    c->ms->cx_active.inc();
    event_assign(&c->urev, w->base(), fd, EV_READ | EV_PERSIST, onUpstreamRead, c);
    event_assign(&c->uwev, w->base(), fd, EV_WRITE | EV_PERSIST, onUpstreamWrite, c);
    if (rc == 0) {
      connected(c);
      return !c->closed;
    }
    c->connect_deadline = w->now() + c->connect_timeout;
    arm(&c->uwev, &c->u_write, true);
    setTimer(c);
    return true;
  }
}

void onTimer(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<TcpConn*>(arg);
  Worker* w = c->worker;
  MonoTime now = w->refreshNow();
  c->timer_armed = false;
  if (now < dueAt(c)) {
    setTimer(c);
    return;
  }
  if (now >= hardDeadline(c)) {  // drain deadline of the member, listener or process
    finish(c, false, false);
    return;
  }
  if (c->state == TcpState::kConnecting) {
    connectFailed(c);
    return;
  }
  if (now >= stallDeadline(c)) {  // a slow or stuck reader on either side
    c->ls->limited[static_cast<int>(LimitReason::kSendTimeout)].inc();
  } else {
    w->mutableCounters().downstream_cx_idle_timeout.inc();
  }
  finish(c, false, false);
}

}  // namespace

// --- PipePool -------------------------------------------------------------------------------

PipePool::~PipePool() {
  for (const Pipe& p : free_) {
    ::close(p.rd);
    ::close(p.wr);
  }
}

bool PipePool::get(Pipe* out) {
  if (!free_.empty()) {
    *out = free_.back();
    free_.pop_back();
    return true;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  int cap = ::fcntl(fds[0], F_GETPIPE_SZ);
  out->rd = fds[0];
  out->wr = fds[1];
  out->capacity = cap > 0 ? static_cast<uint32_t>(cap) : 4096;
  ++created_;
  return true;
}

void PipePool::put(const Pipe& p, bool dirty) {
  if (dirty || free_.size() >= max_free_) {
    ::close(p.rd);
    ::close(p.wr);
    return;
  }
  free_.push_back(p);
}

// --- TcpRelay -------------------------------------------------------------------------------

TcpRelay::TcpRelay(Worker* w) : worker_(w) {}

TcpRelay::~TcpRelay() {
  closeAll();
  freeDead();
}

TcpMemberLink* TcpRelay::linkFor(const std::shared_ptr<MemberStats>& block, PoolView* pv, int32_t m,
                                 const SnapshotView* v) {
  auto it = links_.find(block.get());
  if (it != links_.end()) return it->second.get();
  auto link = std::make_unique<TcpMemberLink>();
  link->owner = block;
  link->stats = &block->per_worker[worker_->id()];
  // A member first used now: its least_request count in the current view starts here (when
  // the view changed while connecting, the next adoption sets it).
  link->in_view = true;
  if (v == worker_->view()) link->view_active = &pv->active[m];
  return links_.emplace(block.get(), std::move(link)).first->second.get();
}

void TcpRelay::releaseLink(TcpMemberLink* link) {
  // Links of members in the current view stay (the next connection needs them); the others
  // go with their last connection.
  if (link->conns == 0 && !link->in_view) links_.erase(link->owner.get());
}

void TcpRelay::unlinkConn(TcpConn* c) {
  if (c->prev != nullptr) {
    c->prev->next = c->next;
  } else {
    conns_ = c->next;
  }
  if (c->next != nullptr) c->next->prev = c->prev;
  c->next = c->prev = nullptr;
  --count_;
}

void TcpRelay::accept(int fd, const sockaddr* peer, socklen_t peer_len, SnapshotView* v,
                      const ListenerView& lv, int32_t ip_slot) {
  Worker* w = worker_;
  PoolView* p = lv.pool;
  if (p == nullptr) {  // validation prevents this
    if (ip_slot >= 0) lv.clients->releaseConnection(ip_slot);
    ::close(fd);
    return;
  }
  auto* c = new TcpConn();
  c->relay = this;
  c->worker = w;
  c->cfd = fd;
  c->listener_key = lv.stats_owner.get();
  c->ls_owner = lv.stats_owner;
  c->ip_slot = ip_slot;
  c->ls = lv.stats;
  c->ps_owner = p->state->stats;
  c->ps = p->stats;
  c->prev = nullptr;
  c->next = conns_;
  if (conns_ != nullptr) conns_->prev = c;
  conns_ = c;
  ++count_;
  c->ls->cx_total.inc();
  c->ls->cx_active.inc();
  c->ps->cx_total.inc();
  c->ps->cx_active.inc();
  w->mutableCounters().downstream_cx_active.inc();
  event_assign(&c->crev, w->base(), fd, EV_READ | EV_PERSIST, onClientRead, c);
  event_assign(&c->cwev, w->base(), fd, EV_WRITE | EV_PERSIST, onClientWrite, c);
  evtimer_assign(&c->timer, w->base(), onTimer, c);
  if (p->state->refuse) {  // too few healthy members and the pool says refuse
    p->stats->no_healthy_member.inc();
    finish(c, false, false);
    return;
  }
  const config::Listener& l = *lv.cfg;
  const config::Pool& pc = *p->cfg;
  c->idle = l.tcp.idle;
  c->send = l.tcp.send;
  c->connect_timeout =
      l.tcp.connect > Duration::zero() ? l.tcp.connect : pc.upstream.connect_timeout;
  c->splice = l.tcp.splice;
  c->max_attempts = static_cast<uint8_t>(std::min<uint32_t>(1 + pc.upstream.retries, kMaxAttempts));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (l.tcp.proxy_protocol == config::ProxyProtocol::kV2 ||
      pc.proxy_protocol == config::ProxyProtocol::kV2) {
    sockaddr_storage local;
    socklen_t len = sizeof(local);
    const sockaddr* dst = nullptr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      dst = reinterpret_cast<const sockaddr*>(&local);
    }
    c->pp_len = static_cast<uint8_t>(encodeProxyV2(peer, dst, c->pp, sizeof(c->pp)));
  }
  if (pc.balance == config::BalanceAlgorithm::kMaglev ||
      pc.balance == config::BalanceAlgorithm::kRingHash) {
    // The same key as the HTTP path's client_ip affinity: the address as text.
    char ip[64];
    SocketAddress a(peer, peer_len);
    size_t n = a.ipToChars(ip, sizeof(ip));
    c->hash = hashBytes(ip, n);
  }
  c->view = v;
  c->pool = p;
  w->retainView(v);
  connectNext(c);
}

void TcpRelay::adopt(SnapshotView* v) {
  MonoTime now = worker_->refreshNow();
  const config::Config& cfg = *v->snap->config;
  for (auto& [key, link] : links_) {
    link->in_view = false;
    link->view_active = nullptr;
  }
  std::vector<TcpMemberLink*> changed;
  for (PoolView& pv : v->pools) {
    for (size_t m = 0; m < pv.member_blocks.size(); ++m) {
      auto it = links_.find(pv.member_blocks[m].get());
      if (it == links_.end()) continue;
      TcpMemberLink* link = it->second.get();
      link->in_view = true;
      link->view_active = &pv.active[m];
      pv.active[m] = link->conns;
      const config::MemberState& ms = pv.state->members[m];
      MonoTime drain = ms.draining ? ms.drain_deadline : MonoTime::max();
      if (drain != link->drain_deadline || link->gone_deadline != MonoTime::max()) {
        link->drain_deadline = drain;
        link->gone_deadline = MonoTime::max();
        changed.push_back(link);
      }
    }
  }
  for (auto it = links_.begin(); it != links_.end();) {
    TcpMemberLink* link = it->second.get();
    if (!link->in_view) {
      if (link->conns == 0) {
        it = links_.erase(it);
        continue;
      }
      if (link->gone_deadline == MonoTime::max()) {
        // Removed from its pool (reload, admin API): open connections get the drain timeout.
        link->gone_deadline = now + cfg.drain_timeout;
        changed.push_back(link);
      }
    }
    ++it;
  }
  for (TcpMemberLink* link : changed) {
    for (TcpConn* c = link->head; c != nullptr; c = c->mnext) setTimer(c);
  }
  // Listeners removed by a reload: their connections get the drain timeout too.
  std::vector<const ListenerStats*> listeners;
  for (const ListenerView& lv : v->listeners) {
    if (lv.cfg->protocol == config::ListenerProtocol::kTcp)
      listeners.push_back(lv.stats_owner.get());
  }
  if (listeners != listeners_) {
    listeners_ = std::move(listeners);
    for (TcpConn* c = conns_; c != nullptr; c = c->next) {
      bool present =
          std::find(listeners_.begin(), listeners_.end(), c->listener_key) != listeners_.end();
      MonoTime gone =
          present ? MonoTime::max() : std::min(c->listener_gone, now + cfg.drain_timeout);
      if (gone != c->listener_gone) {
        c->listener_gone = gone;
        setTimer(c);
      }
    }
  }
}

void TcpRelay::closeAll() {
  while (conns_ != nullptr) finish(conns_, false, false);
}

void TcpRelay::freeDead() {
  for (TcpConn* c : dead_) delete c;
  dead_.clear();
}

}  // namespace scalegate::l7proxy
