#include "bench/sgload/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "bench/sgload/http1_parser.h"

namespace scalegate::bench {

namespace {

constexpr size_t kReadBuffer = 64 * 1024;
constexpr int kReleaseTlsBuffersAbove = 4096;  // connections per worker
constexpr int kMaxEvents = 512;
constexpr uint64_t kNsPerSec = 1'000'000'000;
constexpr uint64_t kScanPeriodNs = 10'000'000;          // timeouts and reconnects
constexpr uint64_t kMaxReconnectDelayNs = 100'000'000;  // backoff cap after connect errors
constexpr int32_t kH2Window = (1 << 30) - 1;            // like h2load -w 30 -W 30

// First message of each kind, printed once per process (later ones are only counted).
std::atomic<bool> g_reported[4];

void reportOnce(ErrorKind kind, const std::string& message) {
  if (!g_reported[static_cast<int>(kind)].exchange(true))
    std::fprintf(stderr, "sgload: %s\n", message.c_str());
}

std::atomic<bool> g_stop{false};

}  // namespace

void requestStop() { g_stop.store(true, std::memory_order_relaxed); }

uint64_t monoNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * kNsPerSec + static_cast<uint64_t>(ts.tv_nsec);
}

struct InFlight {
  uint64_t intended_ns;
  uint64_t sent_ns;
};

struct StreamSlot {
  uint64_t intended_ns = 0;
  uint64_t sent_ns = 0;
  size_t body_offset = 0;
  int32_t stream_id = 0;
  int status = 0;
  bool used = false;
  bool cancelled = false;  // timed out: already counted, RST_STREAM sent
};

struct Connection {
  enum class State { kClosed, kConnecting, kHandshake, kOpen };

  Worker* worker = nullptr;
  int fd = -1;
  State state = State::kClosed;
  SSL* ssl = nullptr;
  nghttp2_session* h2 = nullptr;
  bool epoll_out = false;
  bool in_ready = false;
  bool goaway = false;
  bool closing = false;  // ignore nghttp2 callbacks while tearing down
  bool fill_queued = false;

  std::unique_ptr<char[]> rbuf;
  size_t rlen = 0;
  std::string out;
  size_t out_off = 0;

  // HTTP/1.1: requests in flight, oldest first (a ring of `streams` entries).
  ResponseParser parser;
  std::vector<InFlight> ring;
  size_t ring_head = 0;
  size_t ring_count = 0;

  // HTTP/2: one slot per concurrent stream.
  std::vector<StreamSlot> slots;
  std::vector<int> free_slots;
  int active = 0;

  uint64_t connect_start_ns = 0;
  uint64_t reconnect_at_ns = 0;
  int connect_failures = 0;
};

namespace {

// nghttp2 callbacks; user_data is the Connection, stream user data is slot index + 1.
StreamSlot* slotOf(Connection* c, int32_t stream_id) {
  const auto tag =
      reinterpret_cast<intptr_t>(nghttp2_session_get_stream_user_data(c->h2, stream_id));
  if (tag <= 0 || static_cast<size_t>(tag) > c->slots.size()) return nullptr;
  return &c->slots[static_cast<size_t>(tag - 1)];
}

int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || std::memcmp(name, ":status", 7) != 0)
    return 0;
  StreamSlot* slot = slotOf(c, frame->hd.stream_id);
  if (slot == nullptr || valuelen != 3) return 0;
  int status = 0;
  for (size_t i = 0; i < 3; ++i) {
    if (value[i] < '0' || value[i] > '9') return 0;
    status = status * 10 + (value[i] - '0');
  }
  if (status >= 200) slot->status = status;  // 1xx: interim
  return 0;
}

int onStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  if (c->closing) return 0;
  StreamSlot* slot = slotOf(c, stream_id);
  if (slot == nullptr || !slot->used) return 0;
  if (!slot->cancelled) {
    if (error_code == NGHTTP2_NO_ERROR && slot->status > 0) {
      c->worker->onResponse(slot->status, slot->intended_ns);
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
      c->worker->onRequestRefused(slot->intended_ns);
    } else {
      c->worker->onRequestFailed(ErrorKind::kProtocol);
    }
  }
  slot->used = false;
  c->free_slots.push_back(static_cast<int>(slot - c->slots.data()));
  c->active--;
  return 0;
}

int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  if (frame->hd.type == NGHTTP2_GOAWAY) static_cast<Connection*>(user_data)->goaway = true;
  return 0;
}

ssize_t readBody(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                 uint32_t* data_flags, nghttp2_data_source*, void* user_data) {
  auto* c = static_cast<Connection*>(user_data);
  StreamSlot* slot = slotOf(c, stream_id);
  const std::string& body = c->worker->requests().body();
  if (slot == nullptr) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  const size_t n = std::min(length, body.size() - slot->body_offset);
  std::memcpy(buf, body.data() + slot->body_offset, n);
  slot->body_offset += n;
  if (slot->body_offset == body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

nghttp2_session_callbacks* h2Callbacks() {
  static nghttp2_session_callbacks* callbacks = [] {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, onHeader);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, onStreamClose);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, onFrameRecv);
    return cb;
  }();
  return callbacks;
}

std::string sslErrorText() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "connection closed during the handshake";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

}  // namespace

Worker::Worker(const Options& options, const RequestSet& requests, const RunClock& clock,
               IntervalCollector* collector, int index, int connections, double rate_share,
               uint64_t request_budget)
    : opt_(options),
      req_(requests),
      clock_(clock),
      collector_(collector),
      index_(index),
      rate_share_(rate_share),
      budget_(request_budget),
      budget_left_(request_budget) {
  for (int i = 0; i < connections; ++i) {
    auto c = std::make_unique<Connection>();
    c->worker = this;
    c->rbuf.reset(new char[kReadBuffer]);
    c->out.reserve(std::max<size_t>(4096, req_.maxHttp1Size() * static_cast<size_t>(opt_.streams)));
    c->parser.reset(req_.isHead());
    if (opt_.h2) {
      c->slots.resize(static_cast<size_t>(opt_.streams));
      for (int s = opt_.streams - 1; s >= 0; --s) c->free_slots.push_back(s);
    } else {
      c->ring.resize(static_cast<size_t>(opt_.streams));
    }
    conns_.push_back(std::move(c));
  }
  scratch_.resize(static_cast<size_t>(opt_.streams));
  retry_.reserve(conns_.size() * static_cast<size_t>(opt_.streams));
  ready_.reserve(conns_.size());
  fill_queue_.reserve(conns_.size());
  if (opt_.openLoop()) {
    if (opt_.warmup_ns > 0) stages_.push_back(Stage{opt_.warmup_ns, opt_.stages.front().rate});
    stages_.insert(stages_.end(), opt_.stages.begin(), opt_.stages.end());
  }
}

Worker::~Worker() {
  for (auto& c : conns_) {
    if (c->state != Connection::State::kClosed) {
      c->closing = true;
      if (c->h2) nghttp2_session_del(c->h2);
      if (c->ssl) SSL_free(c->ssl);
      if (c->fd >= 0) close(c->fd);
    }
  }
  if (ssl_ctx_) SSL_CTX_free(ssl_ctx_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

bool Worker::initTls() {
  ssl_ctx_ = SSL_CTX_new(TLS_client_method());
  if (ssl_ctx_ == nullptr) return false;
  SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
  SSL_CTX_set_options(ssl_ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ssl_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Releasing idle record buffers costs a malloc + free of ~17 KB per read and per write, i.e.
  // per request; worth it only when this worker holds so many connections that ~34 KB each
  // matters (10,000 connections: 340 MB).
  if (opt_.connections / opt_.threads > kReleaseTlsBuffersAbove)
    SSL_CTX_set_mode(ssl_ctx_, SSL_MODE_RELEASE_BUFFERS);
  // Read ahead: one read(2) fills the record buffer with whatever the socket holds, instead of
  // one for each record's 5-byte header and one for its body.
  SSL_CTX_set_read_ahead(ssl_ctx_, 1);
  if (opt_.insecure) {
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_default_verify_paths(ssl_ctx_);
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
  }
  static const unsigned char kH2[] = "\x02h2";
  static const unsigned char kH1[] = "\x08http/1.1";
  if (opt_.h2) {
    SSL_CTX_set_alpn_protos(ssl_ctx_, kH2, sizeof kH2 - 1);
  } else {
    SSL_CTX_set_alpn_protos(ssl_ctx_, kH1, sizeof kH1 - 1);
  }
  return true;
}

void Worker::run() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (opt_.tls && !initTls()) {
    reportOnce(ErrorKind::kConnect, "cannot create a TLS context");
    collector_->finish(index_);
    finished_.store(true, std::memory_order_release);
    return;
  }
  // Wait for the common start so that threads begin together.
  for (uint64_t now = monoNowNs(); now < clock_.start_ns; now = monoNowNs()) {
    const uint64_t wait = clock_.start_ns - now;
    timespec ts{static_cast<time_t>(wait / kNsPerSec), static_cast<long>(wait % kNsPerSec)};
    nanosleep(&ts, nullptr);
  }
  now_ = monoNowNs();
  stage_start_ns_ = clock_.start_ns;
  advanceSchedule();
  next_scan_ns_ = now_ + kScanPeriodNs;
  for (auto& c : conns_) startConnect(c.get());

  epoll_event events[kMaxEvents];
  const bool open_loop = opt_.openLoop();
  for (;;) {
    now_ = monoNowNs();
    if (now_ >= clock_.end_ns || budgetDone() || g_stop.load(std::memory_order_relaxed)) break;
    if (open_loop && next_intended_ == UINT64_MAX && inflight_ == 0) break;  // schedule done
    uint64_t wake = std::min(clock_.end_ns, next_scan_ns_);
    const uint64_t tick_ns = clock_.record_start_ns + (second_ + 1) * kNsPerSec;
    wake = std::min(wake, tick_ns);
    if (open_loop && !ready_.empty())
      wake = std::min(wake, retry_head_ < retry_.size() ? now_ : next_intended_);
    const uint64_t wait = wake > now_ ? wake - now_ : 0;
    timespec ts{static_cast<time_t>(wait / kNsPerSec), static_cast<long>(wait % kNsPerSec)};
    const int n = epoll_pwait2(epoll_fd_, events, kMaxEvents, &ts, nullptr);
    now_ = monoNowNs();
    for (int i = 0; i < n; ++i)
      handleEvent(static_cast<Connection*>(events[i].data.ptr), events[i].events);
    drainFills();
    if (open_loop) dispatchDue();
    if (now_ >= next_scan_ns_) scan();
    if (now_ >= tick_ns) tick();
  }
  // A run that reached its end (or its schedule's) lasted exactly the configured time; one
  // that ran out of -n requests or was interrupted lasted until now.
  const bool cut_short = budgetDone() || g_stop.load(std::memory_order_relaxed);
  stopped_ns_ = (clock_.end_ns != UINT64_MAX && !cut_short) ? clock_.end_ns : now_;
  if (stopped_ns_ > clock_.record_start_ns)
    collector_->submit(index_, second_, interval_latency_, interval_requests_, interval_errors_);
  collector_->finish(index_);
  for (auto& c : conns_) {
    if (c->state == Connection::State::kClosed) continue;
    c->closing = true;
    if (c->h2) nghttp2_session_del(c->h2);
    if (c->ssl) SSL_free(c->ssl);
    close(c->fd);
    c->h2 = nullptr;
    c->ssl = nullptr;
    c->fd = -1;
    c->state = Connection::State::kClosed;
  }
  finished_.store(true, std::memory_order_release);
}

void Worker::tick() {
  while (now_ >= clock_.record_start_ns + (second_ + 1) * kNsPerSec) {
    collector_->submit(index_, second_, interval_latency_, interval_requests_, interval_errors_);
    interval_latency_.reset();
    interval_requests_ = 0;
    interval_errors_ = 0;
    second_++;
  }
}

void Worker::advanceSchedule() {
  while (stage_ < stages_.size()) {
    const Stage& s = stages_[stage_];
    const double rate = s.rate * rate_share_;
    if (rate > 0) {
      const double offset = static_cast<double>(stage_seq_) * 1e9 / rate;
      if (offset < static_cast<double>(s.duration_ns)) {
        next_intended_ = stage_start_ns_ + static_cast<uint64_t>(offset);
        return;
      }
    }
    stage_start_ns_ += s.duration_ns;
    stage_++;
    stage_seq_ = 0;
  }
  next_intended_ = UINT64_MAX;
}

void Worker::onResponse(int status, uint64_t intended_ns) {
  inflight_--;
  if (now_ < clock_.record_start_ns) return;
  const uint64_t latency = now_ > intended_ns ? now_ - intended_ns : 0;
  stats_.latency.record(latency);
  interval_latency_.record(latency);
  stats_.requests++;
  interval_requests_++;
  stats_.status[static_cast<size_t>(status >= 0 && status < 600 ? status : 0)]++;
}

void Worker::onRequestFailed(ErrorKind kind) {
  inflight_--;
  onError(kind, 1);
}

void Worker::onRequestRefused(uint64_t intended_ns) {
  inflight_--;
  if (budget_ != 0) budget_left_++;
  if (opt_.openLoop()) {
    if (retry_head_ == retry_.size()) {
      retry_.clear();
      retry_head_ = 0;
    }
    retry_.push_back(intended_ns);
  }
}

void Worker::onError(ErrorKind kind, uint64_t count) {
  if (now_ < clock_.record_start_ns || count == 0) return;
  stats_.errors[static_cast<size_t>(kind)] += count;
  interval_errors_ += count;
}

void Worker::startConnect(Connection* c) {
  c->connect_start_ns = now_;
  c->fd = socket(opt_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    reportOnce(ErrorKind::kConnect, std::string("socket: ") + std::strerror(errno));
    onError(ErrorKind::kConnect, 1);
    c->connect_failures++;
    c->reconnect_at_ns = now_ + kMaxReconnectDelayNs;
    return;
  }
  const int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt_.source_len > 0) {
    // Many short connections from one source IP: let ports in TIME_WAIT be reused.
    setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bind(c->fd, reinterpret_cast<const sockaddr*>(&opt_.source), opt_.source_len);
  }
  c->state = Connection::State::kConnecting;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c->fd, &ev);
  c->epoll_out = true;
  if (connect(c->fd, reinterpret_cast<const sockaddr*>(&opt_.addr), opt_.addr_len) != 0 &&
      errno != EINPROGRESS) {
    reportOnce(ErrorKind::kConnect, std::string("connect: ") + std::strerror(errno));
    fail(c, ErrorKind::kConnect);
  }
}

void Worker::updateInterest(Connection* c, bool want_out) {
  if (c->epoll_out == want_out) return;
  epoll_event ev{};
  ev.events = want_out ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.ptr = c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
  c->epoll_out = want_out;
}

void Worker::handleEvent(Connection* c, uint32_t events) {
  switch (c->state) {
    case Connection::State::kClosed:
      return;
    case Connection::State::kConnecting: {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        reportOnce(ErrorKind::kConnect, std::string("connect: ") + std::strerror(err));
        fail(c, ErrorKind::kConnect);
      } else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        onConnected(c);
      }
      return;
    }
    case Connection::State::kHandshake:
      doHandshake(c);
      return;
    case Connection::State::kOpen:
      if ((events & EPOLLOUT) && !flush(c)) return;
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) handleRead(c);
      return;
  }
}

void Worker::onConnected(Connection* c) {
  c->connect_failures = 0;
  if (!opt_.tls) {
    c->state = Connection::State::kOpen;
    startSession(c);
    return;
  }
  c->ssl = SSL_new(ssl_ctx_);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  in6_addr ip;
  const bool literal = inet_pton(AF_INET, opt_.host.c_str(), &ip) == 1 ||
                       inet_pton(AF_INET6, opt_.host.c_str(), &ip) == 1;
  if (!literal) SSL_set_tlsext_host_name(c->ssl, opt_.host.c_str());
  if (!opt_.insecure) {
    if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt_.host.c_str());
    } else {
      SSL_set1_host(c->ssl, opt_.host.c_str());
    }
  }
  c->state = Connection::State::kHandshake;
  doHandshake(c);
}

void Worker::doHandshake(Connection* c) {
  const int rc = SSL_do_handshake(c->ssl);
  if (rc == 1) {
    if (opt_.h2) {
      const unsigned char* proto = nullptr;
      unsigned len = 0;
      SSL_get0_alpn_selected(c->ssl, &proto, &len);
      if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
        reportOnce(ErrorKind::kProtocol, "the server did not select h2 by ALPN");
        fail(c, ErrorKind::kProtocol);
        return;
      }
    }
    c->state = Connection::State::kOpen;
    startSession(c);
    return;
  }
  switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      updateInterest(c, false);
      return;
    case SSL_ERROR_WANT_WRITE:
      updateInterest(c, true);
      return;
    default: {
      std::string why = sslErrorText();
      const long verify = SSL_get_verify_result(c->ssl);
      if (verify != X509_V_OK) {
        why += std::string(" (") + X509_verify_cert_error_string(verify) +
               "; --insecure skips verification)";
      }
      reportOnce(ErrorKind::kConnect, "TLS handshake failed: " + why);
      fail(c, ErrorKind::kConnect);
      return;
    }
  }
}

void Worker::startSession(Connection* c) {
  if (opt_.h2) {
    nghttp2_session_client_new(&c->h2, h2Callbacks(), c);
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(kH2Window)},
    };
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, kH2Window);
    c->goaway = false;
  }
  fill(c);
  if (c->state != Connection::State::kOpen) return;
  if (opt_.h2 && !sendHttp2Pending(c)) return;
  if (c->out.size() == c->out_off) updateInterest(c, false);
}

int Worker::room(const Connection* c) const {
  if (opt_.h2) return opt_.streams - c->active;
  return opt_.streams - static_cast<int>(c->ring_count);
}

void Worker::fill(Connection* c) {
  if (c->state != Connection::State::kOpen || c->goaway) return;
  int n = room(c);
  if (budget_ != 0 && static_cast<uint64_t>(n) > budget_left_) n = static_cast<int>(budget_left_);
  if (n <= 0) return;
  if (now_ >= clock_.end_ns) return;
  int count = 0;
  if (!opt_.openLoop()) {
    for (; count < n; ++count) scratch_[static_cast<size_t>(count)] = now_;
  } else {
    while (count < n && retry_head_ < retry_.size())
      scratch_[static_cast<size_t>(count++)] = retry_[retry_head_++];
    while (count < n && next_intended_ <= now_) {
      scratch_[static_cast<size_t>(count++)] = next_intended_;
      stage_seq_++;
      advanceSchedule();
    }
    if (count < n && !c->in_ready) {
      c->in_ready = true;
      ready_.push_back(c);
    }
    if (count == 0) return;
  }
  if (opt_.h2) {
    sendHttp2(c, count, scratch_.data());
  } else {
    sendHttp1(c, count, scratch_.data());
  }
}

void Worker::dispatchDue() {
  while ((next_intended_ <= now_ || retry_head_ < retry_.size()) && !ready_.empty()) {
    Connection* c = ready_.back();
    ready_.pop_back();
    c->in_ready = false;
    fill(c);
    if (c->state == Connection::State::kOpen && opt_.h2) sendHttp2Pending(c);
  }
}

void Worker::sendHttp1(Connection* c, int n, const uint64_t* intended) {
  const size_t cap = c->ring.size();
  for (int i = 0; i < n; ++i) {
    c->ring[(c->ring_head + c->ring_count) % cap] = InFlight{intended[i], now_};
    c->ring_count++;
  }
  inflight_ += static_cast<uint64_t>(n);
  if (budget_ != 0) budget_left_ -= static_cast<uint64_t>(n);
  if (n == 1 && c->ssl == nullptr && c->out.size() == c->out_off) {
    // The common case: one request straight from the precomputed bytes.
    const std::string& r = req_.http1(nextPath());
    const ssize_t w = send(c->fd, r.data(), r.size(), MSG_NOSIGNAL);
    if (w == static_cast<ssize_t>(r.size())) return;
    if (w < 0 && errno != EAGAIN) {
      fail(c, ErrorKind::kReset);
      return;
    }
    c->out.assign(r, w > 0 ? static_cast<size_t>(w) : 0);
    c->out_off = 0;
    updateInterest(c, true);
    return;
  }
  for (int i = 0; i < n; ++i) c->out += req_.http1(nextPath());
  flush(c);
}

void Worker::sendHttp2(Connection* c, int n, const uint64_t* intended) {
  nghttp2_data_provider provider{};
  provider.read_callback = readBody;
  const bool has_body = !req_.body().empty();
  for (int i = 0; i < n; ++i) {
    const int index = c->free_slots.back();
    c->free_slots.pop_back();
    StreamSlot& slot = c->slots[static_cast<size_t>(index)];
    slot = StreamSlot{intended[i], now_, 0, 0, 0, true, false};
    const size_t p = nextPath();
    const int32_t id = nghttp2_submit_request(
        c->h2, nullptr, req_.http2Headers(p), req_.http2HeaderCount(p),
        has_body ? &provider : nullptr, reinterpret_cast<void*>(static_cast<intptr_t>(index + 1)));
    if (id < 0) {
      slot.used = false;
      c->free_slots.push_back(index);
      c->goaway = true;  // stream ids exhausted or session closing: reconnect when idle
      break;
    }
    slot.stream_id = id;
    c->active++;
    inflight_++;
    if (budget_ != 0) budget_left_--;
  }
}

bool Worker::sendHttp2Pending(Connection* c) {
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(c->h2, &data);
    if (n < 0) {
      fail(c, ErrorKind::kProtocol);
      return false;
    }
    if (n == 0) break;
    c->out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (c->out.size() != c->out_off && !flush(c)) return false;
  if (c->goaway && c->active == 0) {
    closeConnection(c, false);
    return false;
  }
  return true;
}

bool Worker::flush(Connection* c) {
  while (c->out_off < c->out.size()) {
    const char* p = c->out.data() + c->out_off;
    const size_t len = c->out.size() - c->out_off;
    ssize_t w;
    if (c->ssl) {
      const int rc = SSL_write(c->ssl, p, static_cast<int>(std::min<size_t>(len, INT32_MAX)));
      if (rc <= 0) {
        const int err = SSL_get_error(c->ssl, rc);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
          updateInterest(c, true);
          return true;
        }
        ERR_clear_error();
        fail(c, ErrorKind::kReset);
        return false;
      }
      w = rc;
    } else {
      w = send(c->fd, p, len, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) {
          updateInterest(c, true);
          return true;
        }
        fail(c, ErrorKind::kReset);
        return false;
      }
    }
    c->out_off += static_cast<size_t>(w);
  }
  c->out.clear();
  c->out_off = 0;
  updateInterest(c, false);
  return true;
}

void Worker::handleRead(Connection* c) {
  for (;;) {
    const size_t cap = kReadBuffer - c->rlen;
    ssize_t n;
    if (c->ssl) {
      const int rc = SSL_read(c->ssl, c->rbuf.get() + c->rlen, static_cast<int>(cap));
      if (rc <= 0) {
        const int err = SSL_get_error(c->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) return;
        if (err == SSL_ERROR_WANT_WRITE) {
          updateInterest(c, true);
          return;
        }
        ERR_clear_error();
        if (err == SSL_ERROR_ZERO_RETURN) {
          onEof(c);
        } else {
          fail(c, ErrorKind::kReset);
        }
        return;
      }
      n = rc;
    } else {
      n = read(c->fd, c->rbuf.get() + c->rlen, cap);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        fail(c, ErrorKind::kReset);
        return;
      }
      if (n == 0) {
        onEof(c);
        return;
      }
    }
    stats_.bytes_read += static_cast<uint64_t>(n);
    if (opt_.h2) {
      processHttp2(c, c->rbuf.get(), static_cast<size_t>(n));
    } else {
      c->rlen += static_cast<size_t>(n);
      processHttp1(c);
    }
    if (c->state != Connection::State::kOpen) return;
    // Level-triggered: a short read means the socket is drained; epoll reports more later.
    // OpenSSL may hold bytes epoll cannot see (decrypted, or read ahead but not yet
    // decrypted): TLS reads on while it does, and otherwise leaves the socket to epoll
    // instead of paying a read(2) that returns EAGAIN.
    if (c->ssl == nullptr ? static_cast<size_t>(n) < cap : !SSL_has_pending(c->ssl)) return;
  }
}

void Worker::processHttp1(Connection* c) {
  size_t off = 0;
  const size_t cap = c->ring.size();
  while (off < c->rlen) {
    if (c->ring_count == 0) {
      reportOnce(ErrorKind::kProtocol, "response bytes without a request in flight");
      fail(c, ErrorKind::kProtocol);
      return;
    }
    size_t used = 0;
    const ResponseParser::Step step = c->parser.feed(c->rbuf.get() + off, c->rlen - off, &used);
    off += used;
    if (step == ResponseParser::Step::kComplete) {
      const InFlight done = c->ring[c->ring_head];
      c->ring_head = (c->ring_head + 1) % cap;
      c->ring_count--;
      onResponse(c->parser.status(), done.intended_ns);
      const bool keep_alive = c->parser.keepAlive();
      c->parser.reset(req_.isHead());
      if (!keep_alive) {
        // The server closes: it will not process the requests pipelined behind this response.
        while (c->ring_count > 0) {
          onRequestRefused(c->ring[c->ring_head].intended_ns);
          c->ring_head = (c->ring_head + 1) % cap;
          c->ring_count--;
        }
        closeConnection(c, false);
        return;
      }
    } else if (step == ResponseParser::Step::kError) {
      reportOnce(ErrorKind::kProtocol, "unparsable HTTP/1.1 response");
      fail(c, ErrorKind::kProtocol);
      return;
    } else if (used == 0) {
      break;
    }
  }
  if (off < c->rlen) {
    if (off == 0 && c->rlen == kReadBuffer) {
      reportOnce(ErrorKind::kProtocol, "response head larger than the read buffer");
      fail(c, ErrorKind::kProtocol);
      return;
    }
    std::memmove(c->rbuf.get(), c->rbuf.get() + off, c->rlen - off);
  }
  c->rlen -= off;
  deferFill(c);
}

void Worker::processHttp2(Connection* c, const char* data, size_t len) {
  const ssize_t rc = nghttp2_session_mem_recv(c->h2, reinterpret_cast<const uint8_t*>(data), len);
  if (rc < 0) {
    reportOnce(ErrorKind::kProtocol,
               std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rc)));
    fail(c, ErrorKind::kProtocol);
    return;
  }
  deferFill(c);
}

void Worker::deferFill(Connection* c) {
  if (c->fill_queued) return;
  c->fill_queued = true;
  fill_queue_.push_back(c);
}

void Worker::drainFills() {
  for (size_t i = 0; i < fill_queue_.size(); ++i) {
    Connection* c = fill_queue_[i];
    c->fill_queued = false;
    if (c->state != Connection::State::kOpen) continue;
    fill(c);
    if (!opt_.h2 || c->state != Connection::State::kOpen) continue;
    if (!sendHttp2Pending(c)) continue;
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
      if (!c->goaway || c->active > 0)
        reportOnce(ErrorKind::kProtocol,
                   "HTTP/2 session ended by a protocol error (does the server speak h2?)");
      const uint64_t lost = dropInflight(c);
      onError(ErrorKind::kProtocol, lost);
      closeConnection(c, false);
    }
  }
  fill_queue_.clear();
}

void Worker::onEof(Connection* c) {
  if (!opt_.h2 && c->ring_count > 0 && c->parser.completesOnEof()) {
    const InFlight done = c->ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) % c->ring.size();
    c->ring_count--;
    onResponse(c->parser.status(), done.intended_ns);
  }
  // Requests still in flight are lost, whether or not their response had begun.
  const uint64_t lost = dropInflight(c);
  onError(ErrorKind::kReset, lost);
  closeConnection(c, false);
}

uint64_t Worker::dropInflight(Connection* c) {
  uint64_t n = 0;
  if (opt_.h2) {
    for (StreamSlot& s : c->slots) {
      if (s.used && !s.cancelled) n++;
      s.used = false;
    }
    c->free_slots.clear();
    for (int s = static_cast<int>(c->slots.size()) - 1; s >= 0; --s) c->free_slots.push_back(s);
    c->active = 0;
  } else {
    n = c->ring_count;
    c->ring_head = 0;
    c->ring_count = 0;
  }
  inflight_ -= n;
  return n;
}

void Worker::fail(Connection* c, ErrorKind kind) {
  uint64_t lost = dropInflight(c);
  if (kind == ErrorKind::kConnect || (kind == ErrorKind::kProtocol && lost == 0)) lost = 1;
  onError(kind, lost);
  if (kind == ErrorKind::kConnect && budget_ != 0 && budget_left_ > 0) {
    budget_left_--;  // with -n, a dead server cannot stretch the run forever
  }
  closeConnection(c, kind == ErrorKind::kConnect);
}

void Worker::closeConnection(Connection* c, bool connect_failed) {
  if (c->state == Connection::State::kClosed) return;
  dropInflight(c);
  c->closing = true;
  if (c->h2) nghttp2_session_del(c->h2);
  c->h2 = nullptr;
  c->closing = false;
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = nullptr;
  close(c->fd);
  c->fd = -1;
  c->state = Connection::State::kClosed;
  c->epoll_out = false;
  c->goaway = false;
  c->rlen = 0;
  c->out.clear();
  c->out_off = 0;
  c->parser.reset(req_.isHead());
  if (connect_failed) {
    c->connect_failures++;
    const int shift = std::min(c->connect_failures - 1, 7);
    c->reconnect_at_ns = now_ + std::min<uint64_t>(kMaxReconnectDelayNs, 1'000'000ull << shift);
  } else {
    c->reconnect_at_ns = 0;
    if (now_ < clock_.end_ns && !(budget_ != 0 && budget_left_ == 0)) startConnect(c);
  }
}

void Worker::scan() {
  next_scan_ns_ = now_ + kScanPeriodNs;
  const uint64_t timeout = opt_.timeout_ns;
  for (auto& owned : conns_) {
    Connection* c = owned.get();
    switch (c->state) {
      case Connection::State::kClosed:
        if (c->reconnect_at_ns <= now_ && !(budget_ != 0 && budget_left_ == 0)) startConnect(c);
        break;
      case Connection::State::kConnecting:
      case Connection::State::kHandshake:
        if (now_ - c->connect_start_ns > timeout) {
          reportOnce(ErrorKind::kConnect, "connect: timed out");
          fail(c, ErrorKind::kConnect);
        }
        break;
      case Connection::State::kOpen:
        if (!opt_.h2) {
          if (c->ring_count > 0 && now_ - c->ring[c->ring_head].sent_ns > timeout)
            fail(c, ErrorKind::kTimeout);
        } else {
          bool cancelled = false;
          for (StreamSlot& slot : c->slots) {
            if (!slot.used || slot.cancelled || now_ - slot.sent_ns <= timeout) continue;
            slot.cancelled = true;  // counted now; its close callback will not count it again
            onRequestFailed(ErrorKind::kTimeout);
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, slot.stream_id, NGHTTP2_CANCEL);
            cancelled = true;
          }
          if (cancelled) sendHttp2Pending(c);
        }
        break;
    }
  }
}

}  // namespace scalegate::bench
