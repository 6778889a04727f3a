#include "l7proxy/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include "common/assert.h"
#include "common/hash.h"
#include "common/log.h"
#include "l7proxy/connection.h"
#include "l7proxy/h2_upstream.h"
#include "l7proxy/http2.h"

namespace scalegate::l7proxy {

int SnapshotView::listenerIndex(const std::string& name) const {
  for (size_t i = 0; i < listeners.size(); ++i)
    if (listeners[i].cfg->name == name) return static_cast<int>(i);
  return -1;
}

void SnapshotChannel::publish(std::shared_ptr<const config::Snapshot> s) {
  uint64_t gen = s->generation;
  {
    std::lock_guard<std::mutex> lock(mu_);
    latest_ = std::move(s);
  }
  generation_.store(gen, std::memory_order_release);
}

std::shared_ptr<const config::Snapshot> SnapshotChannel::latest() const {
  std::lock_guard<std::mutex> lock(mu_);
  return latest_;
}

void SnapshotChannel::drain(Duration timeout) {
  drain_timeout_ns_.store(timeout.count(), std::memory_order_relaxed);
  drain_.store(true, std::memory_order_release);
}

bool SnapshotChannel::drainRequested(Duration* timeout) const {
  if (!drain_.load(std::memory_order_acquire)) return false;
  *timeout = Duration(drain_timeout_ns_.load(std::memory_order_relaxed));
  return true;
}

Worker::Worker(int id, SnapshotChannel* channel)
    : id_(id),
      channel_(channel),
      buffers_(16 * 1024),
      request_head_(std::make_unique<RequestHead>()),
      response_head_(std::make_unique<ResponseHead>()),
      h2_submit_head_(std::make_unique<RequestHead>()),
      sink_listener_(std::make_unique<ListenerWorkerStats>()),
      sink_pool_(std::make_unique<PoolWorkerStats>()),
      sink_member_(std::make_unique<MemberWorkerStats>()),
      tcp_(std::make_unique<TcpRelay>(this)) {
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  SG_CHECK(base_ != nullptr);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SG_CHECK(wake_fd_ >= 0);
  // Two priorities: the wake-up (a new snapshot) runs before any connection event of the
  // same loop pass, so a request that arrives after a publish is routed by the new snapshot.
  event_base_priority_init(base_, 2);
  event_assign(&wake_ev_, base_, wake_fd_, EV_READ | EV_PERSIST, onWake, this);
  event_priority_set(&wake_ev_, 0);
  event_add(&wake_ev_, nullptr);
  event_assign(&sweep_ev_, base_, -1, EV_PERSIST, onSweep, this);
  evtimer_assign(&drain_ev_, base_, onWake, this);
  timeval one_second{1, 0};
  event_add(&sweep_ev_, &one_second);
}

Worker::~Worker() {
  shutdownAll();
  for (UpstreamConn* u : h2_free_streams_) delete u;
  h2_free_streams_.clear();
  event_del(&wake_ev_);
  event_del(&sweep_ev_);
  event_del(&drain_ev_);
  ::close(wake_fd_);
  event_base_free(base_);
}

MonoTime Worker::refreshNow() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  now_ = MonoTime(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  return now_;
}

void Worker::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;  // a full counter already means "awake"
}

void Worker::onWake(evutil_socket_t fd, short, void* arg) {
  if (fd < 0) return;  // the drain timer: waking the loop is all it does
  uint64_t v;
  ssize_t n = ::read(fd, &v, sizeof(v));
  (void)n;
  auto* w = static_cast<Worker*>(arg);
  uint64_t gen = w->channel_->generation();
  if (gen != w->seen_generation_) {
    w->seen_generation_ = gen;
    w->adoptLatest();
  }
}

void Worker::onSweep(evutil_socket_t, short, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  w->refreshNow();
  w->sweepIdleUpstreams();
  w->sweepSlowReaders();
}

void Worker::onAccept(evutil_socket_t fd, short, void* arg) {
  auto* slot = static_cast<AcceptSlot*>(arg);
  Worker* w = slot->worker;
  w->refreshNow();
  // Bounded batch so one busy listener cannot starve the connections already open.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    int cfd = ::accept4(fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        SG_LOG(kWarn, "worker %d: accept: out of file descriptors", w->id_);
      }
      return;
    }
    w->counters_.downstream_cx_total.inc();
    if (w->draining_ || slot->listener_index < 0) {
      ::close(cfd);
      continue;
    }
    const ListenerView& lv = w->view_->listeners[slot->listener_index];
    const auto* sa = reinterpret_cast<const sockaddr*>(&peer);
    int32_t ip_slot = -1;
    if (!w->admitConnection(lv, sa, &ip_slot)) {
      // Accept and close with nothing sent, as HAProxy's `tcp-request connection reject` and
      // Envoy's listener connection limit do: the client sees a FIN (a reset under load),
      // never a slow queue in our backlog.
      ::close(cfd);
      continue;
    }
    if (lv.cfg->protocol == config::ListenerProtocol::kTcp) {
      w->tcp_->accept(cfd, sa, len, w->view_, lv, ip_slot);
    } else {
      acceptClient(w, cfd, sa, len, slot->listener_index, ip_slot);
    }
  }
}

bool Worker::admitConnection(const ListenerView& lv, const sockaddr* peer, int32_t* ip_slot) {
  *ip_slot = -1;
  const config::Listener& l = *lv.cfg;
  if (l.access.enabled() && !l.access.admits(peer)) {
    lv.stats->access_denied.inc();
    return false;
  }
  const config::ClientLimits& lim = l.client_limits;
  // Workers read each other's open counts: a race can let one connection per worker past.
  if (lim.max_connections > 0 && lv.block != nullptr &&
      lv.block->openConnections() >= lim.max_connections) {
    lv.stats->limited[static_cast<int>(LimitReason::kMaxConnections)].inc();
    return false;
  }
  if (!lim.perIp() || lv.clients == nullptr) return true;
  int32_t i = lv.clients->find(lv.clients->keyOf(peer), now_.time_since_epoch().count());
  if (i < 0) {
    lv.stats->limited[static_cast<int>(LimitReason::kIpTableFull)].inc();
    return true;
  }
  if (!lv.clients->acquireConnection(i, lim.max_connections_per_ip)) {
    lv.stats->limited[static_cast<int>(LimitReason::kMaxConnectionsPerIp)].inc();
    return false;
  }
  *ip_slot = i;
  return true;
}

void Worker::addClient(ClientConn* c) {
  c->prev = nullptr;
  c->next = clients_;
  if (clients_ != nullptr) clients_->prev = c;
  clients_ = c;
  ++client_count_;
  counters_.downstream_cx_active.inc();
}

void Worker::clientClosed(ClientConn* c) {
  if (c->prev != nullptr) {
    c->prev->next = c->next;
  } else {
    clients_ = c->next;
  }
  if (c->next != nullptr) c->next->prev = c->prev;
  --client_count_;
  counters_.downstream_cx_active.dec();
}

MemberSlot* Worker::slotFor(const SocketAddress& addr) {
  auto it = slots_.find(addr);
  if (it == slots_.end()) {
    auto slot = std::make_unique<MemberSlot>();
    slot->address = addr;
    it = slots_.emplace(addr, std::move(slot)).first;
  }
  ++it->second->refs;
  return it->second.get();
}

void Worker::releaseSlot(MemberSlot* s) {
  if (--s->refs > 0) return;
  SG_ASSERT(s->idle_count == 0);
  slots_.erase(s->address);
}

void Worker::releaseView(SnapshotView* v) {
  if (--v->refs > 0) return;
  for (PoolView& p : v->pools) {
    for (MemberSlot* s : p.slots) releaseSlot(s);
  }
  delete v;
}

void Worker::adoptLatest() {
  std::shared_ptr<const config::Snapshot> s = channel_->latest();
  if (s == nullptr || (view_ != nullptr && view_->snap == s)) return;
  auto* v = new SnapshotView();
  v->snap = s;
  v->refs = 1;  // held as the current view
  v->pools.resize(s->pools.size());
  uint32_t buffer_bytes = 16 * 1024;
  for (size_t i = 0; i < s->pools.size(); ++i) {
    const config::PoolState& ps = s->pools[i];
    PoolView& pv = v->pools[i];
    pv.cfg = ps.pool;
    pv.state = &ps;
    if (auto it = s->pool_tls.find(ps.pool->name); it != s->pool_tls.end()) {
      pv.tls = it->second.get();
    }
    std::vector<MemberView> members(ps.members.size());
    for (size_t m = 0; m < ps.members.size(); ++m) {
      members[m].weight = ps.members[m].draining ? 0 : ps.members[m].weight;
      members[m].healthy = ps.members[m].healthy;
      members[m].ready_since = ps.members[m].ready_since;
      members[m].id = ps.pool->members[m].id;
      pv.slots.push_back(slotFor(ps.pool->members[m].address));
      const auto& block = ps.members[m].stats;
      pv.member_blocks.push_back(block);
      pv.member_stats.push_back(block != nullptr ? &block->per_worker[id_] : sink_member_.get());
    }
    pv.stats = ps.stats != nullptr ? &ps.stats->per_worker[id_] : sink_pool_.get();
    pv.active.assign(ps.members.size(), 0);
    pv.balancer = Balancer::create(ps.pool->balance, members, &ps.tables, ps.pool->slow_start,
                                   mix64(s->generation * 1315423911ULL + id_ * 2654435761ULL + i));
  }
  // Each address's pooled connections live as long as the strictest pool naming it allows.
  bool any_h2 = false;
  for (auto& [addr, slot] : slots_) slot->in_view = false;
  for (const PoolView& pv : v->pools) {
    for (MemberSlot* slot : pv.slots) {
      slot->idle_timeout = Duration::max();
      slot->in_view = true;
    }
    any_h2 = any_h2 || pv.cfg->upstream.protocol == config::UpstreamProtocol::kH2;
  }
  for (const PoolView& pv : v->pools) {
    for (MemberSlot* slot : pv.slots) {
      slot->idle_timeout = std::min(slot->idle_timeout, pv.cfg->upstream.idle_timeout);
    }
  }
  for (size_t li = 0; li < s->config->listeners.size(); ++li) {
    const config::Listener& l = s->config->listeners[li];
    if (l.protocol == config::ListenerProtocol::kL4) continue;
    ListenerView lv;
    lv.cfg = &l;
    if (li < s->listener_tls.size()) lv.tls = s->listener_tls[li].get();
    ListenerStats* block = li < s->listener_stats.size() ? s->listener_stats[li].get() : nullptr;
    lv.stats = block != nullptr ? &block->per_worker[id_] : sink_listener_.get();
    lv.block = block;
    lv.clients = block != nullptr ? block->clients() : nullptr;
    if (l.protocol == config::ListenerProtocol::kTcp) {
      int pi = s->poolIndex(l.pool);
      if (pi < 0) continue;  // validation prevents this
      lv.pool = &v->pools[pi];
      if (block != nullptr) lv.stats_owner = s->listener_stats[li];
      v->listeners.push_back(std::move(lv));
      continue;
    }
    lv.limits.max_head_bytes = static_cast<uint32_t>(l.limits.max_request_header_bytes);
    lv.limits.max_headers = l.limits.max_headers;
    lv.limits.max_uri_bytes = static_cast<uint32_t>(l.limits.max_uri_bytes);
    for (const config::Route& r : l.routes) {
      int pi = s->poolIndex(r.pool);
      if (pi < 0) continue;  // validation prevents this
      lv.routes.push_back(RouteView{&r, &v->pools[pi]});
    }
    // Buffers hold a whole head plus what the proxy adds to it.
    buffer_bytes = std::max<uint32_t>(buffer_bytes, lv.limits.max_head_bytes + 2048);
    v->listeners.push_back(std::move(lv));
  }
  // An HTTP/2 stream's buffer holds a response head plus one stream window of payload.
  if (any_h2) buffer_bytes += kH2UpstreamWindow + 1024;
  buffers_.setBufferBytes(buffer_bytes);

  // Listening sockets: watch the new ones, stop watching those that are gone (control
  // closes them once every worker has moved on).
  std::vector<std::unique_ptr<AcceptSlot>> kept;
  for (const config::ListenSockets& ls : s->sockets) {
    if (static_cast<size_t>(id_) >= ls.fds.size()) continue;
    int fd = ls.fds[id_];
    std::unique_ptr<AcceptSlot> slot;
    for (auto& old : accept_slots_) {
      if (old != nullptr && old->fd == fd) slot = std::move(old);
    }
    if (slot == nullptr) {
      slot = std::make_unique<AcceptSlot>();
      slot->fd = fd;
      slot->worker = this;
      event_assign(&slot->ev, base_, fd, EV_READ | EV_PERSIST, onAccept, slot.get());
      if (!draining_) event_add(&slot->ev, nullptr);
    }
    slot->listener = ls.listener;
    slot->listener_index = v->listenerIndex(ls.listener);
    kept.push_back(std::move(slot));
  }
  for (auto& old : accept_slots_) {
    if (old != nullptr) event_del(&old->ev);
  }
  accept_slots_ = std::move(kept);

  tcp_->adopt(v);
  SnapshotView* old = view_;
  view_ = v;
  if (old != nullptr) releaseView(old);
  // HTTP/2 sessions to members the new view no longer names finish their streams and close.
  std::vector<MemberSlot*> gone;
  for (auto& [addr, slot] : slots_) {
    if (!slot->in_view && slot->h2_sessions != nullptr) gone.push_back(slot.get());
  }
  for (MemberSlot* slot : gone) h2DrainSessions(slot);
  adopted_generation_.store(s->generation, std::memory_order_release);
}

void Worker::sweepIdleUpstreams() {
  std::vector<UpstreamConn*> expired;
  for (auto& [addr, slot] : slots_) {
    for (UpstreamConn* u = slot->idle_head; u != nullptr; u = u->next_idle) {
      if (now_ - u->idle_since >= slot->idle_timeout) expired.push_back(u);
    }
  }
  for (UpstreamConn* u : expired) closeIdleUpstream(u);
  std::vector<MemberSlot*> with_h2;
  for (auto& [addr, slot] : slots_) {
    if (slot->h2_sessions != nullptr) with_h2.push_back(slot.get());
  }
  for (MemberSlot* slot : with_h2) h2SweepSessions(slot, now_);
}

void Worker::sweepSlowReaders() {
  std::vector<ClientConn*>& slow = scratch_clients_;
  slow.clear();
  for (ClientConn* c = clients_; c != nullptr; c = c->next) {
    if (!c->write_armed || c->view == nullptr) continue;
    const ListenerView& lv = c->view->listeners[c->listener];
    if (now_ - c->send_since >= lv.cfg->timeouts.send) slow.push_back(c);
  }
  for (ClientConn* c : slow) {
    if (c->view == nullptr) continue;
    c->view->listeners[c->listener]
        .stats->limited[static_cast<int>(LimitReason::kSendTimeout)]
        .inc();
    closeClient(c);
  }
}

void Worker::beginDrain() {
  draining_ = true;
  for (auto& slot : accept_slots_) event_del(&slot->ev);
  drain_started_.store(true, std::memory_order_release);
  std::vector<ClientConn*> idle;
  for (ClientConn* c = clients_; c != nullptr; c = c->next) {
    if (c->h2 != nullptr) h2Drain(c);  // GOAWAY; the connection ends with its last stream
    if (clientIsIdle(c)) idle.push_back(c);
  }
  for (ClientConn* c : idle) closeClient(c);
  std::vector<UpstreamConn*> pooled;
  for (auto& [addr, slot] : slots_) {
    for (UpstreamConn* u = slot->idle_head; u != nullptr; u = u->next_idle) pooled.push_back(u);
  }
  for (UpstreamConn* u : pooled) closeIdleUpstream(u);
  std::vector<MemberSlot*> with_h2;
  for (auto& [addr, slot] : slots_) {
    if (slot->h2_sessions != nullptr) with_h2.push_back(slot.get());
  }
  for (MemberSlot* slot : with_h2) h2DrainSessions(slot);
}

bool Worker::allClientsFinished() const {
  // A connection that got its last response and is only waiting for the client's FIN does
  // not hold up the exit.
  for (const ClientConn* c = clients_; c != nullptr; c = c->next) {
    if (!(c->state == ClientState::kClosing && c->shut_wr)) return false;
  }
  return tcp_->connections() == 0;  // tcp connections run to their end or the deadline
}

void Worker::freeDead() {
  for (ClientConn* c : dead_clients_) delete c;
  dead_clients_.clear();
  for (UpstreamConn* u : dead_upstreams_) {
    if (u->h2 != nullptr && !u->h2_stream) h2FreeSession(u);
    delete u;
  }
  dead_upstreams_.clear();
  tcp_->freeDead();
}

void Worker::shutdownAll() {
  while (clients_ != nullptr) closeClient(clients_);
  tcp_->closeAll();
  std::vector<UpstreamConn*> pooled;
  for (auto& [addr, slot] : slots_) {
    for (UpstreamConn* u = slot->idle_head; u != nullptr; u = u->next_idle) pooled.push_back(u);
  }
  for (UpstreamConn* u : pooled) closeIdleUpstream(u);
  std::vector<MemberSlot*> with_h2;
  for (auto& [addr, slot] : slots_) {
    if (slot->h2_sessions != nullptr) with_h2.push_back(slot.get());
  }
  for (MemberSlot* slot : with_h2) h2CloseSessions(slot);
  for (auto& slot : accept_slots_) event_del(&slot->ev);
  accept_slots_.clear();
  if (view_ != nullptr) {
    SnapshotView* v = view_;
    view_ = nullptr;
    releaseView(v);
  }
  freeDead();
}

void Worker::run() {
  refreshNow();
  for (;;) {
    uint64_t gen = channel_->generation();
    if (gen != seen_generation_) {
      seen_generation_ = gen;
      adoptLatest();
    }
    Duration drain_timeout;
    if (!draining_ && channel_->drainRequested(&drain_timeout)) {
      refreshNow();
      drain_deadline_ = now_ + drain_timeout;
      timeval tv{static_cast<time_t>(toMillis(drain_timeout) / 1000),
                 static_cast<suseconds_t>(toMillis(drain_timeout) % 1000 * 1000)};
      evtimer_add(&drain_ev_, &tv);
      beginDrain();
    }
    freeDead();
    if (draining_) {
      refreshNow();
      if (allClientsFinished()) break;
      if (now_ >= drain_deadline_) {
        SG_LOG(kWarn, "worker %d: drain timeout, closing %zu connections", id_, client_count_);
        break;
      }
      if (!evtimer_pending(&drain_ev_, nullptr)) {
        // libevent's cached clock can fire a timer a little early: wait for the rest.
        auto left =
            std::chrono::duration_cast<std::chrono::microseconds>(drain_deadline_ - now_).count() +
            1000;
        timeval tv{static_cast<time_t>(left / 1000000), static_cast<suseconds_t>(left % 1000000)};
        evtimer_add(&drain_ev_, &tv);
      }
    }
    event_base_loop(base_, EVLOOP_ONCE);
  }
  shutdownAll();
}

}  // namespace scalegate::l7proxy
