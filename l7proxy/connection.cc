#include "l7proxy/connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/err.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/hash.h"
#include "l7proxy/h2_upstream.h"
#include "l7proxy/http2.h"
#include "l7proxy/tls.h"
#include "l7proxy/worker.h"

namespace scalegate::l7proxy {
namespace {

void onClientRead(evutil_socket_t fd, short what, void* arg);
void onClientWrite(evutil_socket_t fd, short what, void* arg);
void onClientTimer(evutil_socket_t fd, short what, void* arg);
void onUpstreamRead(evutil_socket_t fd, short what, void* arg);
void onUpstreamWrite(evutil_socket_t fd, short what, void* arg);
void upstreamConnecting(UpstreamConn* u, ClientConn* c);

void flushClient(ClientConn* c);
void flushUpstream(ClientConn* c);
bool assignUpstream(ClientConn* c);
bool frameRequestBody(ClientConn* c);
void tlsHandshake(ClientConn* c);

timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

const config::Listener& listenerCfg(const ClientConn* c) {
  return *c->view->listeners[c->listener].cfg;
}

ListenerWorkerStats* listenerStats(const ClientConn* c) {
  return c->view->listeners[c->listener].stats;
}

MemberWorkerStats* memberStats(const Exchange& ex) { return ex.pool->member_stats[ex.member]; }

// Passive outlier detection, worker side: count consecutive failures of the member on this
// worker and raise a signal for control (which decides on ejection) at the pool's threshold.
void memberFailed(const Exchange& ex) {
  MemberWorkerStats* ms = memberStats(ex);
  ms->failures.inc();
  const config::OutlierDetection& od = ex.pool->cfg->outlier;
  if (od.enabled && ++ms->consecutive_failures >= od.consecutive_failures) {
    ms->outlier_signals.inc();
    ms->consecutive_failures = 0;
  }
}

void memberSucceeded(const Exchange& ex) { memberStats(ex)->consecutive_failures = 0; }

// The request is over (answered, failed or abandoned): gauges and duration histograms.
void endRequest(ClientConn* c) {
  Exchange& ex = c->ex;
  if (!ex.state_in_exchange) return;
  ex.state_in_exchange = false;
  Worker* w = c->worker;
  w->mutableCounters().downstream_rq_active.dec();
  ListenerWorkerStats* ls = listenerStats(c);
  ls->rq_active.dec();
  auto micros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(w->now() - ex.started).count());
  ls->duration.observe(micros);
  if (ex.pool != nullptr) ex.pool->stats->duration.observe(micros);
}

void countResponse(ClientConn* c, uint16_t status) {
  unsigned cls = status / 100;
  if (cls > 5) cls = 5;
  c->worker->mutableCounters().responses_by_class[cls].inc();
  listenerStats(c)->responses_by_class[cls].inc();
}

}  // namespace

// --- event arming ---------------------------------------------------------------------------

void setClientRead(ClientConn* c, bool on) {
  if (c->stream != nullptr) {  // an HTTP/2 stream: reading means giving back window
    if (on) h2StreamBodyConsumed(c);
    return;
  }
  if (on && c->ssl != nullptr && SSL_has_pending(c->ssl) && c->fd >= 0) {
    // Decrypted bytes wait inside OpenSSL: the socket may never become readable for them.
    c->read_enabled = true;
    event_add(&c->rev, nullptr);
    event_active(&c->rev, EV_READ, 1);
    return;
  }
  if (c->read_enabled == on) return;
  c->read_enabled = on;
  if (on) {
    event_add(&c->rev, nullptr);
  } else {
    event_del(&c->rev);
  }
}

void setClientWrite(ClientConn* c, bool on) {
  if (c->stream != nullptr) return;
  if (c->write_armed == on) return;
  c->write_armed = on;
  if (on) c->send_since = c->worker->now();
  if (on) {
    event_add(&c->wev, nullptr);
  } else {
    event_del(&c->wev);
  }
}

void setUpRead(UpstreamConn* u, bool on) {
  if (u->h2_stream) {  // an HTTP/2 stream: reading means giving back window
    h2StreamReadable(u, on);
    return;
  }
  if (on && u->ssl != nullptr && SSL_pending(u->ssl) > 0) {
    u->read_enabled = true;  // decrypted bytes wait inside OpenSSL, not in the socket
    event_add(&u->rev, nullptr);
    event_active(&u->rev, EV_READ, 1);
    return;
  }
  if (u->read_enabled == on) return;
  u->read_enabled = on;
  if (on) {
    event_add(&u->rev, nullptr);
  } else {
    event_del(&u->rev);
  }
}

void setUpWrite(UpstreamConn* u, bool on) {
  if (u->h2_stream) return;
  if (u->write_armed == on) return;
  u->write_armed = on;
  if (on) {
    event_add(&u->wev, nullptr);
  } else {
    event_del(&u->wev);
  }
}

// Timers are re-armed lazily: moving a deadline later costs a store; the timer, when it fires
// early, re-arms itself for the rest. Only an earlier deadline touches libevent.
void setDeadline(ClientConn* c, MonoTime d) {
  c->deadline = d;
  if (c->timer_armed && d >= c->timer_at) return;
  timeval tv = toTimeval(d - c->worker->now());
  evtimer_add(&c->timer, &tv);
  c->timer_armed = true;
  c->timer_at = d;
}

ssize_t clientRecv(ClientConn* c, char* p, size_t n) {
  if (c->ssl == nullptr) return ::read(c->fd, p, n);
  ERR_clear_error();
  int r = SSL_read(c->ssl, p, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) return r;
  switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_WRITE:  // a key update wants out: retry when writable
      c->tls_read_wants_write = true;
      event_add(&c->wev, nullptr);
      if (!c->write_armed) c->send_since = c->worker->now();
      c->write_armed = true;
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    default:
      errno = ECONNRESET;
      return -1;
  }
}

// writev over TLS: one SSL_write per piece; a short write ends the batch (the caller re-arms
// EV_WRITE). Returns bytes written, or -1 with errno EAGAIN (retry when ready) or EPIPE.
static ssize_t sslWritev(SSL* ssl, const iovec* iov, int n) {
  ssize_t total = 0;
  for (int i = 0; i < n; ++i) {
    if (iov[i].iov_len == 0) continue;
    ERR_clear_error();
    int r = SSL_write(ssl, iov[i].iov_base,
                      static_cast<int>(std::min<size_t>(iov[i].iov_len, INT32_MAX)));
    if (r > 0) {
      total += r;
      if (static_cast<size_t>(r) < iov[i].iov_len) return total;
      continue;
    }
    int e = SSL_get_error(ssl, r);
    if (total > 0) return total;
    errno = (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) ? EAGAIN : EPIPE;
    return -1;
  }
  return total;
}

ssize_t clientSendv(ClientConn* c, const iovec* iov, int n) {
  ssize_t r = c->ssl == nullptr ? ::writev(c->fd, iov, n) : sslWritev(c->ssl, iov, n);
  if (r > 0) c->send_since = c->worker->now();  // progress: the send timeout starts over
  return r;
}

namespace {

// --- upstream connections -------------------------------------------------------------------

void pushIdle(MemberSlot* s, UpstreamConn* u) {
  u->prev_idle = nullptr;
  u->next_idle = s->idle_head;
  if (s->idle_head != nullptr) s->idle_head->prev_idle = u;
  s->idle_head = u;
  ++s->idle_count;
}

void unlinkIdle(MemberSlot* s, UpstreamConn* u) {
  if (u->prev_idle != nullptr) {
    u->prev_idle->next_idle = u->next_idle;
  } else {
    s->idle_head = u->next_idle;
  }
  if (u->next_idle != nullptr) u->next_idle->prev_idle = u->prev_idle;
  u->next_idle = u->prev_idle = nullptr;
  --s->idle_count;
}

}  // namespace

void destroyUpstream(UpstreamConn* u) {
  Worker* w = u->worker;
  event_del(&u->rev);
  event_del(&u->wev);
  if (u->ssl != nullptr) {
    SSL_free(u->ssl);
    u->ssl = nullptr;
  }
  ::close(u->fd);
  if (u->in != nullptr) w->buffers().put(u->in);
  w->mutableCounters().upstream_cx_active.dec();
  if (u->stats != nullptr) u->stats->cx_active.dec();
  u->stats_owner.reset();
  w->releaseSlot(u->slot);
  u->fd = -1;
  w->deferDelete(u);
}

ssize_t upstreamRecv(UpstreamConn* u, char* p, size_t n) {
  if (u->ssl == nullptr) return ::read(u->fd, p, n);
  ERR_clear_error();
  int r = SSL_read(u->ssl, p, static_cast<int>(std::min<size_t>(n, INT32_MAX)));
  if (r > 0) {
    if (SSL_pending(u->ssl) > 0 && u->read_enabled) event_active(&u->rev, EV_READ, 1);
    return r;
  }
  switch (SSL_get_error(u->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    default:
      errno = ECONNRESET;
      return -1;
  }
}

ssize_t upstreamSendv(UpstreamConn* u, const iovec* iov, int n) {
  if (u->ssl == nullptr) return ::writev(u->fd, iov, n);
  return sslWritev(u->ssl, iov, n);
}

UpstreamConn* connectUpstream(Worker* w, MemberSlot* s, const PoolView* p, int* err,
                              event_callback_fn on_read, event_callback_fn on_write) {
  const SocketAddress& a = s->address;
  int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno;
    return nullptr;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  int rc = ::connect(fd, a.sockaddrPtr(), a.sockaddrLen());
  if (rc < 0 && errno != EINPROGRESS) {
    *err = errno;
    ::close(fd);
    return nullptr;
  }
  SSL* ssl = nullptr;
  if (p->tls != nullptr) {
    ssl = SSL_new(p->tls);
    if (ssl == nullptr) {
      *err = ENOMEM;
      ::close(fd);
      return nullptr;
    }
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    const config::UpstreamSettings& us = p->cfg->upstream;
    if (!us.tls_server_name.empty()) {
      SSL_set_tlsext_host_name(ssl, us.tls_server_name.c_str());
      if (us.tls_verify) SSL_set1_host(ssl, us.tls_server_name.c_str());
    }
  }
  auto* u = new UpstreamConn();
  u->fd = fd;
  u->worker = w;
  u->slot = s;
  u->ssl = ssl;
  ++s->refs;
  u->tcp_connected = (rc == 0);
  u->connected = (rc == 0) && ssl == nullptr;
  event_assign(&u->rev, w->base(), fd, EV_READ | EV_PERSIST, on_read, u);
  event_assign(&u->wev, w->base(), fd, EV_WRITE | EV_PERSIST, on_write, u);
  setUpRead(u, true);
  if (!u->connected) setUpWrite(u, true);  // connect or handshake progress
  w->mutableCounters().upstream_cx_total.inc();
  w->mutableCounters().upstream_cx_active.inc();
  return u;
}

namespace {

// Detaches the exchange's upstream connection: back to the pool when it is clean, else closed.
void releaseUpstream(ClientConn* c, bool reusable) {
  Exchange& ex = c->ex;
  UpstreamConn* u = ex.up;
  if (u == nullptr) return;
  ex.up = nullptr;
  if (ex.pool != nullptr && ex.member >= 0) {
    --ex.pool->active[ex.member];
    memberStats(ex)->rq_active.dec();
  }
  if (u->h2_stream) {  // the stream ends; its session stays
    h2ReleaseStream(u);
    return;
  }
  Worker* w = c->worker;
  if (reusable && u->in != nullptr && !u->in->empty()) reusable = false;
  uint32_t max_idle = ex.pool != nullptr ? ex.pool->cfg->upstream.max_idle_per_member : 0;
  if (reusable && u->slot->idle_count < max_idle && !w->draining()) {
    if (u->in != nullptr) {
      w->buffers().put(u->in);
      u->in = nullptr;
    }
    u->client = nullptr;
    u->reused = true;
    u->idle_since = w->now();
    setUpWrite(u, false);
    setUpRead(u, true);  // an idle connection that becomes readable was closed by the member
    pushIdle(u->slot, u);
    return;
  }
  destroyUpstream(u);
}

// --- client output --------------------------------------------------------------------------

IoBuffer* ensureOut(ClientConn* c) {
  if (c->out == nullptr) c->out = c->worker->buffers().get();
  return c->out;
}

bool appendOut(ClientConn* c, const char* p, size_t n) {
  IoBuffer* b = ensureOut(c);
  if (b->room() < n) b->compact();
  if (b->room() < n) return false;
  std::memcpy(b->data() + b->end, p, n);
  b->end += static_cast<uint32_t>(n);
  return true;
}

const char* reasonPhrase(uint16_t status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

LocalReply replyForParseStatus(uint16_t status) {
  switch (status) {
    case 414:
      return LocalReply::kUriTooLong;
    case 431:
      return LocalReply::kHeaderTooLarge;
    case 501:
      return LocalReply::kNotImplemented;
    case 505:
      return LocalReply::kVersionNotSupported;
    default:
      return LocalReply::kBadRequest;
  }
}

void closeAfterFlush(ClientConn* c) {
  c->state = ClientState::kClosing;
  c->ex.client_keep_alive = false;
  setDeadline(c, c->worker->now() + std::chrono::seconds(5));
  flushClient(c);
}

}  // namespace

// The proxy answers the request itself. `keep_open` only when the request was read whole.
void localReply(ClientConn* c, LocalReply why, bool keep_open) {
  Worker* w = c->worker;
  WorkerCounters& k = w->mutableCounters();
  Exchange& ex = c->ex;
  releaseUpstream(c, false);
  if (ex.resp_started) {  // part of a response already went out: all we can do is close
    closeClient(c);
    return;
  }
  uint16_t status = localReplyStatus(why);
  k.local_replies[static_cast<int>(why)].inc();
  listenerStats(c)->local_replies[static_cast<int>(why)].inc();
  countResponse(c, status);
  ex.status = status;
  ex.resp_started = true;
  if (c->stream != nullptr) {  // HTTP/2: the reason phrase is the body of a response
    const char* reason = reasonPhrase(status);
    if (c->out != nullptr) c->out->start = c->out->end = 0;
    appendOut(c, reason, std::strlen(reason));
    appendOut(c, "\n", 1);
    ex.resp_head_done = true;
    ex.resp_done = true;
    h2SubmitLocalReply(c, status);
    return;
  }
  if (w->draining() || c->peer_eof) keep_open = false;
  const char* reason = reasonPhrase(status);
  char buf[512];
  char retry[48] = "";
  if (ex.retry_after_s > 0) {
    std::snprintf(retry, sizeof(retry), "retry-after: %u\r\n", ex.retry_after_s);
  }
  int body_len = static_cast<int>(std::strlen(reason)) + 1;
  int n = std::snprintf(buf, sizeof(buf),
                        "HTTP/1.1 %u %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                        "%s%s\r\n%s\n",
                        status, reason, body_len, retry, keep_open ? "" : "connection: close\r\n",
                        reason);
  if (c->out != nullptr) c->out->start = c->out->end = 0;  // drop a half-built head
  appendOut(c, buf, static_cast<size_t>(n));
  if (!keep_open) {
    endRequest(c);
    closeAfterFlush(c);
    return;
  }
  ex.resp_head_done = true;
  ex.resp_done = true;
  flushClient(c);
}

namespace {

// --- request head rewriting -----------------------------------------------------------------

struct HeadWriter {
  char* p;
  char* end;
  bool ok = true;
  void put(std::string_view s) {
    if (static_cast<size_t>(end - p) < s.size()) {
      ok = false;
      return;
    }
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void field(std::string_view name, std::string_view value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }
};

void hex16(uint64_t v, char* out) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[v & 15];
    v >>= 4;
  }
}

bool routeMatches(const config::Route& r, std::string_view host, std::string_view path) {
  if (path.substr(0, r.path_prefix.size()) != r.path_prefix) return false;
  if (r.host.empty()) return true;
  // Host without port (an IPv6 literal keeps its brackets).
  size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(']', colon) == std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string_view want = r.host;
  if (want.size() > 2 && want[0] == '*' && want[1] == '.') {
    want.remove_prefix(1);  // ".example.com"
    if (host.size() <= want.size()) return false;
    host = host.substr(host.size() - want.size());
  } else if (host.size() != want.size()) {
    return false;
  }
  for (size_t i = 0; i < want.size(); ++i) {
    char a = host[i], b = want[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a + 32);
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b + 32);
    if (a != b) return false;
  }
  return true;
}

// The affinity key for maglev / ring_hash.
uint64_t affinityHash(const ClientConn* c, const RequestHead& h, const config::HashKey& key) {
  switch (key.source) {
    case config::HashSource::kHeader: {
      int32_t i = h.findHeader(key.name);
      if (i >= 0) return hashBytes(h.headers[i].value.data(), h.headers[i].value.size());
      break;
    }
    case config::HashSource::kCookie: {
      int32_t i = h.findHeader("cookie");
      if (i < 0) break;
      std::string_view v = h.headers[i].value;
      while (!v.empty()) {
        size_t semi = v.find(';');
        std::string_view pair = v.substr(0, semi);
        while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
        size_t eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == key.name) {
          std::string_view val = pair.substr(eq + 1);
          return hashBytes(val.data(), val.size());
        }
        if (semi == std::string_view::npos) break;
        v.remove_prefix(semi + 1);
      }
      break;
    }
    case config::HashSource::kClientIp:
      break;
  }
  return hashBytes(c->ip, c->ip_len);
}

// Writes the head sent upstream: the request line in origin-form, every end-to-end field,
// X-Forwarded-For/-Proto and a request id. False when it does not fit (431).
bool buildUpstreamHead(ClientConn* c, const RequestHead& h, IoBuffer* b) {
  const config::Listener& l = listenerCfg(c);
  HeadWriter out{b->data(), b->data() + b->cap};
  out.put(h.method_text);
  out.put(" ");
  const bool absolute = h.target[0] != '/' && h.target != "*";
  if (absolute) {  // absolute-form becomes origin-form, keeping the query
    out.put(h.path);
    size_t q = h.target.find('?');
    if (q != std::string_view::npos) out.put(h.target.substr(q));
  } else {
    out.put(h.target);
  }
  out.put(" HTTP/1.1\r\n");
  int32_t last_xff = -1;
  for (uint32_t i = 0; i < h.header_count; ++i) {
    if (l.xff && equalsLowercase(h.headers[i].name, "x-forwarded-for"))
      last_xff = static_cast<int32_t>(i);
  }
  const std::string_view rid_name = l.request_id_header;
  bool has_rid = false;
  for (uint32_t i = 0; i < h.header_count; ++i) {
    if (h.isHopByHop(i)) continue;
    const HeaderField& f = h.headers[i];
    if (absolute && equalsLowercase(f.name, "host")) continue;
    if (l.xff) {
      if (equalsLowercase(f.name, "x-forwarded-proto")) continue;
      if (static_cast<int32_t>(i) == last_xff) {
        out.put(f.name);
        out.put(": ");
        out.put(f.value);
        out.put(", ");
        out.put(std::string_view(c->ip, c->ip_len));
        out.put("\r\n");
        continue;
      }
    }
    if (!rid_name.empty() && equalsLowercase(f.name, rid_name)) has_rid = true;
    out.field(f.name, f.value);
  }
  if (absolute) out.field("host", h.host);
  if (h.body == BodyKind::kChunked) out.put("transfer-encoding: chunked\r\n");
  if (l.xff) {
    if (last_xff < 0) out.field("x-forwarded-for", std::string_view(c->ip, c->ip_len));
    out.put(c->tls ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n");
  }
  if (!rid_name.empty() && !has_rid) {
    uint64_t seq = c->worker->nextRequestId();
    char id[32];
    hex16(mix64(seq ^ (static_cast<uint64_t>(c->worker->id()) << 56) ^ 0x5ca1e9a7e0000000ULL), id);
    hex16(mix64(seq + 0x9e3779b97f4a7c15ULL * (c->worker->id() + 1)), id + 16);
    out.field(rid_name, std::string_view(id, 32));
  }
  out.put("\r\n");
  if (!out.ok) return false;
  b->start = 0;
  b->end = static_cast<uint32_t>(out.p - b->data());
  return true;
}

// --- request side ---------------------------------------------------------------------------

// Strips chunked framing in place from the bytes of `b` after `fwd`, keeping only chunk-data:
// data runs move with one memmove each; only framing bytes go through the decoder one at a
// time. Advances `fwd` over the payload and sets `done` at the last chunk. False on a framing
// error. Shared by request bodies (members spoken to over HTTP/2) and response bodies
// (HTTP/1.0 clients).
static bool dechunkInPlace(IoBuffer* b, ChunkedDecoder& dec, uint32_t& fwd, bool& done) {
  char* base = b->begin();
  uint32_t n = b->size();
  uint32_t w = fwd;  // end of payload ready to send
  uint32_t r = fwd;  // next unprocessed byte
  while (r < n && !done) {
    uint64_t ahead = dec.dataBytesAhead();
    if (ahead > 0) {
      uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(ahead, n - r));
      ChunkedDecoder::Step s = dec.feed(base + r, take);
      if (s.error) return false;
      if (w != r) std::memmove(base + w, base + r, take);
      w += take;
      r += take;
      continue;
    }
    ChunkedDecoder::Step s = dec.feed(base + r, 1);
    if (s.error) return false;
    r += static_cast<uint32_t>(s.consumed);
    if (s.done) done = true;
  }
  if (r < n) std::memmove(base + w, base + r, n - r);
  b->end -= r - w;
  fwd = w;
  return true;
}

// Strips chunked framing from the request body in place (members spoken to over HTTP/2):
// ex.req_fwd then covers payload bytes only. False on a framing error.
bool dechunkRequestBody(ClientConn* c) {
  Exchange& ex = c->ex;
  uint32_t before = ex.req_fwd;
  if (!dechunkInPlace(c->in, ex.req_chunks, ex.req_fwd, ex.req_done)) return false;
  ex.req_body_bytes += ex.req_fwd - before;
  return true;
}

// Extends ex.req_fwd over newly read request-body bytes. False on a framing error or limit.
bool frameRequestBody(ClientConn* c) {
  Exchange& ex = c->ex;
  if (ex.req_done || c->in == nullptr) return true;
  uint32_t avail = c->in->size() - ex.req_fwd;
  if (avail == 0) return true;
  const char* p = c->in->begin() + ex.req_fwd;
  uint64_t limit = listenerCfg(c).limits.max_request_body_bytes;
  if (ex.req_body == BodyKind::kContentLength) {
    uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(avail, ex.req_remaining));
    ex.req_fwd += take;
    ex.req_remaining -= take;
    ex.req_body_bytes += take;
    if (ex.req_remaining == 0) ex.req_done = true;
    return true;
  }
  if (ex.up_h2) {  // HTTP/2 members take the payload only (DATA frames do the framing)
    if (!dechunkRequestBody(c)) {
      localReply(c, LocalReply::kBadRequest, false);
      return false;
    }
    if (limit != 0 && ex.req_chunks.payloadBytes() > limit) {
      localReply(c, LocalReply::kBodyTooLarge, false);
      return false;
    }
    return true;
  }
  ChunkedDecoder::Step s = ex.req_chunks.feed(p, avail);
  if (s.error) {
    localReply(c, LocalReply::kBadRequest, false);
    return false;
  }
  ex.req_fwd += static_cast<uint32_t>(s.consumed);
  if (limit != 0 && ex.req_chunks.payloadBytes() > limit) {
    localReply(c, LocalReply::kBodyTooLarge, false);
    return false;
  }
  if (s.done) ex.req_done = true;
  return true;
}

bool canRetry(const ClientConn* c) {
  const Exchange& ex = c->ex;
  if (ex.resp_head_done || ex.resp_started) return false;
  // A connection that never came up (refused, connect timeout, failed TLS handshake) carried
  // no byte of the request, so any request may go to another member (Envoy connect-failure,
  // nginx proxy_next_upstream error). Once the request went out, only idempotent requests
  // without a body: the member may have acted on it.
  const bool sent = ex.up != nullptr && ex.up->connected;
  if (sent && (!isIdempotent(ex.method) || ex.req_body != BodyKind::kNone)) return false;
  if (ex.up != nullptr && ex.up->in != nullptr && !ex.up->in->empty()) return false;
  uint32_t max = 1 + ex.pool->cfg->upstream.retries;
  return ex.attempts < std::min<uint32_t>(max, kMaxAttempts);
}

}  // namespace

// The upstream failed before any response byte: retry elsewhere or answer 502/504.
void upstreamFailed(ClientConn* c, bool timeout) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  // Connect failures were counted where they were seen; a pooled connection that the member
  // had already closed says nothing about the member.
  if (ex.up != nullptr && ex.up->connected && !ex.up->reused) memberFailed(ex);
  if (canRetry(c)) {
    w->mutableCounters().upstream_rq_retry.inc();
    ex.pool->stats->rq_retry.inc();
    // A pooled connection the member had already closed says nothing about the member:
    // the retry may go to it again, on a fresh connection.
    if (ex.up != nullptr && ex.up->reused && ex.exclude_count > 0) --ex.exclude_count;
    releaseUpstream(c, false);
    ex.req_head_sent = 0;
    ex.req_sent = false;
    assignUpstream(c);
    return;
  }
  localReply(c, timeout ? LocalReply::kGatewayTimeout : LocalReply::kBadGateway,
             ex.req_done && ex.req_fwd == 0 && !c->peer_eof);
}

void upstreamConnectFailed(ClientConn* c) {
  c->worker->mutableCounters().upstream_cx_connect_fail.inc();
  memberStats(c->ex)->cx_connect_fail.inc();
  memberFailed(c->ex);
}

void upstreamRetryUnprocessed(ClientConn* c, bool same_member) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  uint32_t max = std::min<uint32_t>(1 + ex.pool->cfg->upstream.retries, kMaxAttempts);
  if (ex.resp_started || ex.attempts >= max) {
    localReply(c, LocalReply::kBadGateway, ex.req_done && ex.req_fwd == 0 && !c->peer_eof);
    return;
  }
  w->mutableCounters().upstream_rq_retry.inc();
  ex.pool->stats->rq_retry.inc();
  if (same_member && ex.exclude_count > 0) --ex.exclude_count;
  releaseUpstream(c, false);
  ex.req_head_sent = 0;
  ex.req_sent = false;
  assignUpstream(c);
}

namespace {

void flushUpstream(ClientConn* c) {
  Exchange& ex = c->ex;
  UpstreamConn* u = ex.up;
  if (u != nullptr && u->h2_stream) {
    h2UpstreamFlush(c);
    return;
  }
  if (u == nullptr || !u->connected) return;
  iovec iov[2];
  int n = 0;
  uint32_t head_left = 0;
  if (ex.req_head != nullptr && ex.req_head_sent < ex.req_head->end) {
    head_left = ex.req_head->end - ex.req_head_sent;
    iov[n++] = {ex.req_head->data() + ex.req_head_sent, head_left};
  }
  if (ex.req_fwd > 0) iov[n++] = {c->in->begin(), ex.req_fwd};
  if (n > 0) {
    ssize_t wr = upstreamSendv(u, iov, n);
    if (wr < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        setUpWrite(u, true);
        return;
      }
      upstreamFailed(c, false);
      return;
    }
    size_t k = static_cast<size_t>(wr);
    memberStats(ex)->bytes_in.inc(k);
    size_t from_head = std::min<size_t>(k, head_left);
    ex.req_head_sent += static_cast<uint32_t>(from_head);
    k -= from_head;
    if (k > 0) {
      c->in->start += static_cast<uint32_t>(k);
      ex.req_fwd -= static_cast<uint32_t>(k);
    }
  }
  bool all_out =
      (ex.req_head == nullptr || ex.req_head_sent == ex.req_head->end) && ex.req_fwd == 0;
  setUpWrite(u, !all_out);
  if (all_out && ex.req_done) ex.req_sent = true;
  // Backpressure: read more from the client only while its buffer has room.
  if (c->state == ClientState::kExchange && !c->peer_eof) {
    if (c->in != nullptr && c->in->room() == 0) c->in->compact();
    setClientRead(c, c->in == nullptr || c->in->room() > 0);
  }
}

// Picks a member and an upstream connection for the exchange, and starts sending.
bool assignUpstream(ClientConn* c) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  PoolView* p = ex.pool;
  for (;;) {
    PickInput in;
    in.hash = ex.hash;
    in.active = p->active.data();
    in.exclude = ex.tried;
    in.exclude_count = ex.exclude_count;
    in.now = w->now();
    int32_t m = p->balancer->pick(in);
    if (m < 0) {
      if (ex.attempts == 0) p->stats->no_healthy_member.inc();
      localReply(c, ex.attempts == 0 ? LocalReply::kNoHealthyMember : LocalReply::kBadGateway,
                 ex.req_done && ex.req_fwd == 0);
      return false;
    }
    ++ex.attempts;
    ex.member = m;
    if (ex.exclude_count < kMaxAttempts) ex.tried[ex.exclude_count++] = m;
    ++p->active[m];
    MemberWorkerStats* ms = p->member_stats[m];
    ms->rq_total.inc();
    ms->rq_active.inc();
    MemberSlot* s = p->slots[m];
    // No connection to `m` could even be started: counted against it; true when another
    // member may be tried, false once the client has its 502.
    auto startFailed = [&] {
      w->mutableCounters().upstream_cx_connect_fail.inc();
      ms->cx_connect_fail.inc();
      memberFailed(ex);
      --p->active[m];
      ms->rq_active.dec();
      if (canRetry(c)) {
        w->mutableCounters().upstream_rq_retry.inc();
        p->stats->rq_retry.inc();
        return true;
      }
      localReply(c, LocalReply::kBadGateway, ex.req_done && ex.req_fwd == 0);
      return false;
    };
    if (ex.up_h2) {
      int err = 0;
      UpstreamConn* st = h2AttachStream(c, s, p, m, &err);
      if (st == nullptr) {  // no connection could even be started
        if (startFailed()) continue;
        return false;
      }
      ex.up = st;
      flushUpstream(c);
      return true;
    }
    UpstreamConn* u = s->idle_head;
    // Pools naming the same address share its slot: a pooled connection is only reused by a
    // pool with the same upstream TLS context (or none).
    // (The SSL holds a reference on its context, so the pointer comparison is sound.)
    for (int look = 0; u != nullptr; u = u->next_idle) {
      SSL_CTX* idle_ctx = u->ssl != nullptr ? SSL_get_SSL_CTX(u->ssl) : nullptr;
      if (idle_ctx == p->tls) break;
      if (++look == 8) u = nullptr;  // mixed pools on one address are rare: look a little
      if (u == nullptr) break;
    }
    if (u != nullptr) {
      unlinkIdle(s, u);
      u->client = c;
      ex.up = u;
      w->mutableCounters().upstream_cx_reused.inc();
      flushUpstream(c);
      return true;
    }
    int err = 0;
    u = connectUpstream(w, s, p, &err, onUpstreamRead, onUpstreamWrite);
    if (u == nullptr) {
      if (startFailed()) continue;
      return false;
    }
    u->client = c;
    u->stats_owner = p->member_blocks[m];
    u->stats = ms;
    ms->cx_total.inc();
    ms->cx_active.inc();
    ex.up = u;
    if (u->connected) {
      flushUpstream(c);
    } else {
      ex.connect_deadline = w->now() + p->cfg->upstream.connect_timeout;
      setDeadline(c, std::min(ex.connect_deadline, c->deadline));
    }
    return true;
  }
}

// A complete request head is at the start of c->in: route it and start the exchange.
// The client IP's request bucket (limits.requests_per_second_per_ip); HTTP/2 streams draw
// from their connection's. False sets ex.retry_after_s.
bool admitRequestRate(ClientConn* c, const config::Listener& l) {
  const ClientConn* owner = c->parent != nullptr ? c->parent : c;
  if (owner->ip_table == nullptr) return true;  // not tracked (table full, or no limit at accept)
  const config::ClientLimits& lim = l.client_limits;
  const int64_t interval = 1000000000 / lim.requests_per_second_per_ip;
  const uint32_t burst =
      lim.request_burst_per_ip > 0 ? lim.request_burst_per_ip : lim.requests_per_second_per_ip;
  int64_t wait_ns = 0;
  if (owner->ip_table->admitRequest(owner->ip_slot, c->worker->now().time_since_epoch().count(),
                                    interval, burst, &wait_ns)) {
    return true;
  }
  c->ex.retry_after_s =
      static_cast<uint32_t>(std::max<int64_t>(1, (wait_ns + 999999999) / 1000000000));
  return false;
}

void startExchange(ClientConn* c, const RequestHead& h, uint32_t head_bytes) {
  Worker* w = c->worker;
  WorkerCounters& k = w->mutableCounters();
  const ListenerView& lv = c->view->listeners[c->listener];
  const config::Listener& l = *lv.cfg;
  Exchange& ex = c->ex;
  ex = Exchange();
  ex.started = w->now();
  ex.method = h.method;
  ex.client_keep_alive = h.keep_alive;
  ex.client_http10 = h.version_minor == 0;
  ex.req_body = h.body;
  ex.req_remaining = h.body == BodyKind::kContentLength ? h.content_length : 0;
  ex.req_done =
      h.body == BodyKind::kNone || (h.body == BodyKind::kContentLength && h.content_length == 0);
  ex.state_in_exchange = true;
  c->state = ClientState::kExchange;
  c->head_started = MonoTime{};
  k.downstream_rq_total.inc();
  k.downstream_rq_active.inc();
  lv.stats->rq_total.inc();
  lv.stats->rq_active.inc();
  setDeadline(c, ex.started + l.timeouts.request);

  if (l.client_limits.requests_per_second_per_ip > 0 && !admitRequestRate(c, l)) {
    lv.stats->limited[static_cast<int>(LimitReason::kRequestRate)].inc();
    c->in->start += head_bytes;
    localReply(c, LocalReply::kTooManyRequests, ex.req_done);
    return;
  }

  const RouteView* rv = nullptr;
  for (const RouteView& r : lv.routes) {
    if (routeMatches(*r.route, h.host, h.path)) {
      rv = &r;
      break;
    }
  }
  if (rv == nullptr) {
    c->in->start += head_bytes;
    localReply(c, LocalReply::kNotFound, ex.req_done);
    return;
  }
  if (h.method == Method::kConnect || h.upgrade) {
    // Tunnels (CONNECT, Upgrade) are not proxied by the HTTP/1.1 path.
    c->in->start += head_bytes;
    localReply(c, LocalReply::kNotImplemented, false);
    return;
  }
  if (h.body == BodyKind::kContentLength && l.limits.max_request_body_bytes != 0 &&
      h.content_length > l.limits.max_request_body_bytes) {
    c->in->start += head_bytes;
    localReply(c, LocalReply::kBodyTooLarge, false);
    return;
  }
  ex.pool = rv->pool;
  ex.up_h2 = ex.pool->cfg->upstream.protocol == config::UpstreamProtocol::kH2;
  ex.pool->stats->rq_total.inc();
  if (ex.pool->state->refuse) {  // too few healthy members and the pool says refuse
    ex.pool->stats->no_healthy_member.inc();
    c->in->start += head_bytes;
    localReply(c, LocalReply::kNoHealthyMember, ex.req_done && ex.req_remaining == 0);
    return;
  }
  ex.req_head = w->buffers().get();
  if (!buildUpstreamHead(c, h, ex.req_head)) {
    c->in->start += head_bytes;
    localReply(c, LocalReply::kHeaderTooLarge, false);
    return;
  }
  config::BalanceAlgorithm algo = ex.pool->cfg->balance;
  if (algo == config::BalanceAlgorithm::kMaglev || algo == config::BalanceAlgorithm::kRingHash) {
    ex.hash = affinityHash(c, h, ex.pool->cfg->hash);
  }
  c->in->start += head_bytes;  // the head is no longer needed: req_head holds its rewrite
  if (!frameRequestBody(c)) return;
  assignUpstream(c);
}

}  // namespace

// Parses and starts requests while the connection is between exchanges.
void processHeads(ClientConn* c) {
  Worker* w = c->worker;
  if (c->in_process) return;  // an outer call is looping already
  if (c->first_request && c->stream == nullptr && c->in != nullptr && !c->in->empty()) {
    // HTTP/2 with prior knowledge starts with the connection preface instead of a request.
    H2Preface p = h2CheckPreface(c->in->begin(), c->in->size());
    if (p == H2Preface::kPartial) return;
    if (p == H2Preface::kYes && !c->tls && listenerCfg(c).http2.enabled) {
      h2Start(c);
      return;
    }
  }
  c->in_process = true;
  while (c->view != nullptr && c->state == ClientState::kHead) {
    if (c->in == nullptr || c->in->empty()) {
      releaseIfEmpty(w->buffers(), c->in);
      if (w->draining()) closeClient(c);
      break;
    }
    if (c->view != w->view()) {  // a new snapshot: requests from now on use it
      SnapshotView* nv = w->view();
      int li = nv->listenerIndex(listenerCfg(c).name);
      if (li < 0) {
        closeClient(c);
        break;
      }
      w->retainView(nv);
      w->releaseView(c->view);
      c->view = nv;
      c->listener = li;
    }
    const ListenerView& lv = c->view->listeners[c->listener];
    RequestHead& h = w->requestHead();
    ParseOutcome o = parseRequestHead(c->in->begin(), c->in->size(), lv.limits, &h);
    if (o.state == ParseState::kIncomplete) {
      if (c->head_started == MonoTime{}) {
        c->head_started = w->now();
        setDeadline(c, w->now() + lv.cfg->timeouts.request_header);
      }
      if (c->in->room() == 0) c->in->compact();
      break;
    }
    if (o.state == ParseState::kError) {
      w->mutableCounters().downstream_cx_protocol_error.inc();
      localReply(c, replyForParseStatus(o.error_status), false);
      break;
    }
    c->first_request = false;
    startExchange(c, h, o.head_bytes);
  }
  c->in_process = false;
}

void requestBodyArrived(ClientConn* c) {
  if (c->ex.req_done || c->state != ClientState::kExchange) return;
  if (!frameRequestBody(c)) return;
  flushUpstream(c);
}

namespace {

// --- response side --------------------------------------------------------------------------

// HTTP/1.0 clients cannot take chunked coding (RFC 9112 section 6.1): strip the framing in
// place, keeping only chunk-data, and end the body by closing. Data runs move with one memmove
// each; only framing bytes go through the decoder one at a time. Rare path.
bool dechunkResponseBody(ClientConn* c) {
  Exchange& ex = c->ex;
  return dechunkInPlace(ex.up->in, ex.resp_chunks, ex.resp_fwd, ex.resp_done);
}

// Extends ex.resp_fwd over newly read response-body bytes. False on a framing error.
bool frameResponseBody(ClientConn* c) {
  Exchange& ex = c->ex;
  UpstreamConn* u = ex.up;
  if (ex.resp_done || u == nullptr || u->in == nullptr) return true;
  uint32_t avail = u->in->size() - ex.resp_fwd;
  if (avail == 0) return true;
  switch (ex.resp_body) {
    case BodyKind::kContentLength: {
      uint32_t take = static_cast<uint32_t>(std::min<uint64_t>(avail, ex.resp_remaining));
      ex.resp_fwd += take;
      ex.resp_remaining -= take;
      if (ex.resp_remaining == 0) ex.resp_done = true;
      return true;
    }
    case BodyKind::kChunked: {
      if (ex.resp_dechunk) return dechunkResponseBody(c);
      ChunkedDecoder::Step s = ex.resp_chunks.feed(u->in->begin() + ex.resp_fwd, avail);
      if (s.error) return false;
      ex.resp_fwd += static_cast<uint32_t>(s.consumed);
      if (s.done) ex.resp_done = true;
      return true;
    }
    case BodyKind::kUntilClose:
      ex.resp_fwd += avail;
      return true;
    case BodyKind::kNone:
      ex.resp_done = true;
      return true;
  }
  return true;
}

// Writes the client-facing response head into c->out.
bool buildClientHead(ClientConn* c, const ResponseHead& r) {
  IoBuffer* b = ensureOut(c);
  b->compact();
  HeadWriter out{b->data() + b->end, b->data() + b->cap};
  char status[4] = {static_cast<char>('0' + r.status / 100),
                    static_cast<char>('0' + r.status / 10 % 10),
                    static_cast<char>('0' + r.status % 10), ' '};
  out.put("HTTP/1.1 ");
  out.put(std::string_view(status, 4));
  out.put(r.reason);
  out.put("\r\n");
  for (uint32_t i = 0; i < r.header_count; ++i) {
    if (r.isHopByHop(i)) continue;
    out.field(r.headers[i].name, r.headers[i].value);
  }
  if (r.body == BodyKind::kChunked && !c->ex.resp_dechunk) {
    out.put("transfer-encoding: chunked\r\n");
  }
  if (!c->ex.client_keep_alive) {
    out.put("connection: close\r\n");
  } else if (c->ex.client_http10) {
    out.put("connection: keep-alive\r\n");
  }
  out.put("\r\n");
  if (!out.ok) return false;
  b->end = static_cast<uint32_t>(out.p - b->data());
  return true;
}

}  // namespace

void upstreamInput(ClientConn* c) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  UpstreamConn* u = ex.up;
  while (!ex.resp_head_done) {
    ResponseHead& r = w->responseHead();
    const ListenerView& lv = c->view->listeners[c->listener];
    ParseOutcome o = parseResponseHead(u->in->begin(), u->in->size(), lv.limits, ex.method, &r);
    if (o.state == ParseState::kIncomplete) {
      if (u->in->room() == 0) u->in->compact();
      if (u->in->room() == 0) {
        localReply(c, LocalReply::kBadGateway, false);
        return;
      }
      return;
    }
    if (o.state == ParseState::kError) {
      localReply(c, LocalReply::kBadGateway, false);
      return;
    }
    if (r.status < 200) {
      // Interim responses (100 Continue, 103 Early Hints) pass to 1.1 clients as they are.
      if (r.status == 101) {
        localReply(c, LocalReply::kBadGateway, false);
        return;
      }
      if (c->stream == nullptr) appendOut(c, u->in->begin(), o.head_bytes);
      u->in->start += o.head_bytes;
      if (u->in->empty()) break;
      continue;
    }
    ex.resp_head_done = true;
    ex.status = r.status;
    ex.resp_body = r.body;
    ex.resp_remaining = r.body == BodyKind::kContentLength ? r.content_length : 0;
    ex.up_keep_alive = r.keep_alive;
    if (r.body == BodyKind::kUntilClose || !ex.req_done || c->peer_eof || w->draining()) {
      ex.client_keep_alive = false;
    }
    if (r.body == BodyKind::kChunked && ex.client_http10) {
      ex.resp_dechunk = true;
      ex.client_keep_alive = false;  // the body now ends with the connection
    }
    if (c->stream != nullptr) {
      // HTTP/2: the head becomes a HEADERS frame; DATA frames carry the payload only.
      ex.resp_dechunk = r.body == BodyKind::kChunked;
      u->in->start += o.head_bytes;
      bool no_body = r.body == BodyKind::kNone ||
                     (r.body == BodyKind::kContentLength && r.content_length == 0);
      if (no_body) ex.resp_done = true;
      countResponse(c, r.status);
      memberStats(ex)->responses_by_class[r.status / 100 > 5 ? 5 : r.status / 100].inc();
      if (r.status >= 500) {
        memberFailed(ex);
      } else {
        memberSucceeded(ex);
      }
      ex.resp_started = true;
      if (ex.req_head != nullptr) {
        w->buffers().put(ex.req_head);
        ex.req_head = nullptr;
      }
      if (!h2SubmitResponse(c, r, !no_body)) {
        closeClient(c);
        return;
      }
      continue;
    }
    bool rewrite = r.version_minor != 1 || !ex.client_keep_alive || ex.client_http10;
    for (uint32_t i = 0; !rewrite && i < (r.header_count + 63) / 64; ++i) {
      rewrite = r.hop_by_hop_mask[i] != 0;
    }
    if (rewrite) {
      if (!buildClientHead(c, r)) {
        localReply(c, LocalReply::kBadGateway, false);
        return;
      }
      u->in->start += o.head_bytes;
    } else {
      ex.resp_fwd = o.head_bytes;  // forwarded as received, straight from u->in
    }
    if (r.body == BodyKind::kNone ||
        (r.body == BodyKind::kContentLength && r.content_length == 0)) {
      ex.resp_done = true;
    }
    countResponse(c, r.status);
    memberStats(ex)->responses_by_class[r.status / 100 > 5 ? 5 : r.status / 100].inc();
    if (r.status >= 500) {
      memberFailed(ex);
    } else {
      memberSucceeded(ex);
    }
    ex.resp_started = true;
    if (ex.req_head != nullptr) {  // no retry after a response: the rewritten head can go
      w->buffers().put(ex.req_head);
      ex.req_head = nullptr;
    }
  }
  if (!frameResponseBody(c)) {
    w->mutableCounters().upstream_reset_mid_response.inc();
    flushClient(c);
    closeClient(c);
    return;
  }
  flushClient(c);
}

void upstreamEof(ClientConn* c, bool reset) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  if (!ex.resp_head_done) {
    bool partial = ex.up->in != nullptr && !ex.up->in->empty();
    if (partial || !ex.resp_started) {
      if (partial) {
        localReply(c, LocalReply::kBadGateway, false);
      } else {
        upstreamFailed(c, false);
      }
      return;
    }
  }
  if (ex.resp_body == BodyKind::kUntilClose && !reset) {
    setUpRead(ex.up, false);  // EOF stays readable; do not spin on it while the client drains
    ex.resp_done = true;
    ex.client_keep_alive = false;
    flushClient(c);
    return;
  }
  // The member closed in the middle of a response: the client gets what was framed, then a
  // close, so it can tell the response is truncated.
  w->mutableCounters().upstream_reset_mid_response.inc();
  ex.up_keep_alive = false;
  flushClient(c);
  if (c->view != nullptr && c->state != ClientState::kClosing) closeClient(c);
}

// --- completion -----------------------------------------------------------------------------

void finishExchange(ClientConn* c) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  bool reusable = ex.up_keep_alive && ex.req_sent && ex.resp_body != BodyKind::kUntilClose;
  releaseUpstream(c, reusable);
  if (ex.req_head != nullptr) {
    w->buffers().put(ex.req_head);
    ex.req_head = nullptr;
  }
  endRequest(c);
  if (c->stream != nullptr) {  // one request per stream: the stream ends, not the connection
    c->state = ClientState::kClosing;
    h2StreamExchangeDone(c);
    return;
  }
  releaseIfEmpty(w->buffers(), c->out);
  if (!ex.client_keep_alive || c->peer_eof || w->draining() || !ex.req_done || ex.req_fwd > 0) {
    closeAfterFlush(c);
    return;
  }
  c->state = ClientState::kHead;
  c->ex = Exchange();  // between requests the exchange is clean (local replies look at it)
  c->head_started = MonoTime{};
  setDeadline(c, w->now() + listenerCfg(c).timeouts.idle);
  if (c->in != nullptr && c->in->room() == 0) c->in->compact();
  setClientRead(c, true);
  releaseIfEmpty(w->buffers(), c->in);
  processHeads(c);  // pipelined requests already buffered
}

namespace {

void flushClient(ClientConn* c) {
  Worker* w = c->worker;
  Exchange& ex = c->ex;
  UpstreamConn* u = ex.up;
  if (c->stream != nullptr) {
    h2StreamFlush(c);
    return;
  }
  iovec iov[2];
  int n = 0;
  uint32_t out_left = c->out != nullptr ? c->out->size() : 0;
  if (out_left > 0) iov[n++] = {c->out->begin(), out_left};
  if (u != nullptr && ex.resp_fwd > 0) iov[n++] = {u->in->begin(), ex.resp_fwd};
  if (n > 0) {
    ssize_t wr = clientSendv(c, iov, n);
    if (wr < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        setClientWrite(c, true);
        return;
      }
      closeClient(c);  // the client went away
      return;
    }
    size_t k = static_cast<size_t>(wr);
    size_t from_out = std::min<size_t>(k, out_left);
    if (from_out > 0) c->out->start += static_cast<uint32_t>(from_out);
    k -= from_out;
    if (k > 0) {
      u->in->start += static_cast<uint32_t>(k);
      ex.resp_fwd -= static_cast<uint32_t>(k);
    }
  }
  bool all_out = (c->out == nullptr || c->out->empty()) && (u == nullptr || ex.resp_fwd == 0);
  setClientWrite(c, !all_out);
  if (!all_out) {
    // Backpressure: stop reading the member while its buffer is full.
    if (u != nullptr && u->in->room() == 0) {
      u->in->compact();
      if (u->in->room() == 0) setUpRead(u, false);
    }
    return;
  }
  if (c->out != nullptr) releaseIfEmpty(w->buffers(), c->out);
  if (c->state == ClientState::kClosing) {
    if (!c->shut_wr) {
      if (c->ssl != nullptr) SSL_shutdown(c->ssl);  // close_notify, best effort
      ::shutdown(c->fd, SHUT_WR);  // lingering close: let the client read the reply first
      c->shut_wr = true;
      setClientRead(c, true);
    }
    return;
  }
  if (c->state == ClientState::kExchange && ex.resp_done) {
    finishExchange(c);
    return;
  }
  if (u != nullptr) {
    if (u->in != nullptr && u->in->room() == 0) u->in->compact();
    setUpRead(u, true);
  }
}

// --- event callbacks ------------------------------------------------------------------------

void onClientRead(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<ClientConn*>(arg);
  Worker* w = c->worker;
  w->refreshNow();
  if (c->ssl != nullptr && !c->tls_done) {
    tlsHandshake(c);
    if (c->view == nullptr || !c->tls_done) return;
  }
  if (c->h2 != nullptr) {
    h2OnReadable(c);
    return;
  }
  if (c->state == ClientState::kClosing) {  // discard until the client closes too
    char sink[4096];
    ssize_t n =
        c->ssl != nullptr ? clientRecv(c, sink, sizeof(sink)) : ::read(fd, sink, sizeof(sink));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) closeClient(c);
    return;
  }
  if (c->in == nullptr) c->in = w->buffers().get();
  if (c->in->room() == 0) c->in->compact();
  if (c->in->room() == 0) {
    setClientRead(c, false);
    return;
  }
  ssize_t n = clientRecv(c, c->in->data() + c->in->end, c->in->room());
  if (n > 0) {
    c->in->end += static_cast<uint32_t>(n);
    if (c->ssl != nullptr && SSL_has_pending(c->ssl) && c->read_enabled) {
      event_active(&c->rev, EV_READ, 1);  // more decrypted bytes than fit this time
    }
    if (c->state == ClientState::kHead) {
      processHeads(c);
      return;
    }
    // kExchange: more request body, or the next pipelined request (kept for later).
    if (!c->ex.req_done) {
      if (!frameRequestBody(c)) return;
      flushUpstream(c);
    } else if (c->in->room() == 0) {
      c->in->compact();
      if (c->in->room() == 0) setClientRead(c, false);
    }
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  // EOF or error from the client.
  if (n == 0 && c->state == ClientState::kExchange && c->ex.req_done) {
    c->peer_eof = true;  // half-close after a whole request: still answer it
    setClientRead(c, false);
    return;
  }
  closeClient(c);
}

void onClientWrite(evutil_socket_t fd, short, void* arg) {
  auto* c = static_cast<ClientConn*>(arg);
  c->worker->refreshNow();
  if (c->ssl != nullptr && !c->tls_done) {
    tlsHandshake(c);
    if (c->view != nullptr && c->tls_done) onClientRead(fd, EV_READ, c);  // bytes may be waiting
    return;
  }
  if (c->tls_read_wants_write) {
    c->tls_read_wants_write = false;
    onClientRead(fd, EV_READ, c);
    if (c->view == nullptr) return;
  }
  if (c->h2 != nullptr) {
    h2OnWritable(c);
    return;
  }
  flushClient(c);
}

// Advances the TLS handshake; on completion picks HTTP/2 or HTTP/1.1 by ALPN.
void tlsHandshake(ClientConn* c) {
  ERR_clear_error();
  int rc = SSL_do_handshake(c->ssl);
  ListenerWorkerStats* ls = listenerStats(c);
  if (rc == 1) {
    c->tls_done = true;
    forgetTicketKeys(c->ssl);
    ls->tls_handshakes.inc();
    if (SSL_session_reused(c->ssl)) ls->tls_resumed.inc();
    setClientWrite(c, false);
    setClientRead(c, true);
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(c->ssl, &proto, &len);
    if (len == 2 && proto[0] == 'h' && proto[1] == '2' && listenerCfg(c).http2.enabled) {
      h2Start(c);
    }
    return;
  }
  switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      setClientWrite(c, false);
      return;
    case SSL_ERROR_WANT_WRITE:
      setClientWrite(c, true);
      return;
    default:
      ls->tls_handshake_failures.inc();
      closeClient(c);
      return;
  }
}

void onClientTimer(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<ClientConn*>(arg);
  Worker* w = c->worker;
  MonoTime now = w->refreshNow();
  c->timer_armed = false;
  if (now < c->deadline) {
    setDeadline(c, c->deadline);
    return;
  }
  if (c->h2 != nullptr) {
    h2OnTimeout(c);
    return;
  }
  switch (c->state) {
    case ClientState::kHead:
      if ((c->in != nullptr && !c->in->empty()) || c->first_request) {
        // Slowloris: a head that did not arrive whole in time (or never began).
        listenerStats(c)->limited[static_cast<int>(LimitReason::kRequestHeaderTimeout)].inc();
      }
      if (c->in != nullptr && !c->in->empty()) {
        localReply(c, LocalReply::kRequestTimeout, false);
      } else {
        w->mutableCounters().downstream_cx_idle_timeout.inc();
        closeClient(c);
      }
      return;
    case ClientState::kExchange: {
      Exchange& ex = c->ex;
      MonoTime request_deadline = ex.started + listenerCfg(c).timeouts.request;
      bool connecting = ex.up != nullptr && !ex.up->connected;
      if (connecting && now >= ex.connect_deadline && now < request_deadline) {
        w->mutableCounters().upstream_cx_connect_fail.inc();
        memberStats(ex)->cx_connect_fail.inc();
        memberFailed(ex);
        setDeadline(c, request_deadline);
        upstreamFailed(c, true);
        return;
      }
      if (now < request_deadline) {
        setDeadline(
            c, connecting ? std::min(ex.connect_deadline, request_deadline) : request_deadline);
        return;
      }
      if (ex.resp_started) {
        closeClient(c);
      } else {
        if (ex.up != nullptr) memberFailed(ex);
        localReply(c, LocalReply::kGatewayTimeout, false);
      }
      return;
    }
    case ClientState::kClosing:
      closeClient(c);
      return;
  }
}

void onUpstreamRead(evutil_socket_t, short, void* arg) {
  auto* u = static_cast<UpstreamConn*>(arg);
  Worker* w = u->worker;
  w->refreshNow();
  ClientConn* c = u->client;
  if (c == nullptr) {  // idle in the pool: the member closed it (or sent junk)
    if (u->ssl != nullptr) {
      // TLS 1.3 servers send session tickets after the handshake: those are no reason to
      // give the connection up; application bytes or a close are.
      char sink[256];
      ssize_t n = upstreamRecv(u, sink, sizeof(sink));
      if (n < 0 && errno == EAGAIN) return;
    }
    closeIdleUpstream(u);
    return;
  }
  if (!u->connected) {  // the TLS handshake wants to read
    upstreamConnecting(u, c);
    return;
  }
  if (u->in == nullptr) u->in = w->buffers().get();
  if (u->in->room() == 0) u->in->compact();
  if (u->in->room() == 0) {
    setUpRead(u, false);
    return;
  }
  ssize_t n = upstreamRecv(u, u->in->data() + u->in->end, u->in->room());
  if (n > 0) {
    u->in->end += static_cast<uint32_t>(n);
    memberStats(c->ex)->bytes_out.inc(static_cast<uint64_t>(n));
    upstreamInput(c);
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  upstreamEof(c, n < 0);
}

void onUpstreamWrite(evutil_socket_t, short, void* arg) {
  auto* u = static_cast<UpstreamConn*>(arg);
  Worker* w = u->worker;
  w->refreshNow();
  ClientConn* c = u->client;
  if (c == nullptr) {
    setUpWrite(u, false);
    return;
  }
  if (!u->connected) {
    upstreamConnecting(u, c);
    return;
  }
  flushUpstream(c);
}

// Connect (and TLS handshake) progress; once through, the request goes out.
void upstreamConnecting(UpstreamConn* u, ClientConn* c) {
  Worker* w = u->worker;
  if (!u->tcp_connected) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      w->mutableCounters().upstream_cx_connect_fail.inc();
      memberStats(c->ex)->cx_connect_fail.inc();
      memberFailed(c->ex);
      upstreamFailed(c, false);
      return;
    }
    u->tcp_connected = true;
  }
  if (u->ssl != nullptr) {
    ERR_clear_error();
    int rc = SSL_do_handshake(u->ssl);
    if (rc != 1) {
      int e = SSL_get_error(u->ssl, rc);
      if (e == SSL_ERROR_WANT_READ) {
        setUpWrite(u, false);
        return;
      }
      if (e == SSL_ERROR_WANT_WRITE) {
        setUpWrite(u, true);
        return;
      }
      // A failed handshake (certificate not trusted, name mismatch, no common version) is a
      // connect failure: the member cannot be used.
      w->mutableCounters().upstream_cx_connect_fail.inc();
      memberStats(c->ex)->cx_connect_fail.inc();
      memberFailed(c->ex);
      upstreamFailed(c, false);
      return;
    }
  }
  u->connected = true;
  c->deadline = c->ex.started + listenerCfg(c).timeouts.request;  // lazily re-armed
  flushUpstream(c);
}

}  // namespace

void acceptClient(Worker* w, int fd, const sockaddr* peer, socklen_t peer_len, int listener,
                  int32_t ip_slot) {
  auto* c = new ClientConn();
  c->fd = fd;
  c->ip_slot = ip_slot;
  c->ip_table = ip_slot >= 0 ? w->view()->listeners[listener].clients : nullptr;
  c->worker = w;
  c->view = w->view();
  w->retainView(c->view);
  c->listener = listener;
  SocketAddress a(peer, peer_len);
  c->ip_len = static_cast<uint8_t>(a.ipToChars(c->ip, sizeof(c->ip)));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  event_assign(&c->rev, w->base(), fd, EV_READ | EV_PERSIST, onClientRead, c);
  event_assign(&c->wev, w->base(), fd, EV_WRITE | EV_PERSIST, onClientWrite, c);
  evtimer_assign(&c->timer, w->base(), onClientTimer, c);
  w->addClient(c);
  listenerStats(c)->cx_total.inc();
  listenerStats(c)->cx_active.inc();
  const ListenerView& lv = c->view->listeners[listener];
  if (lv.tls != nullptr) {
    c->tls = true;
    c->ssl = lv.tls->newSsl(fd, c->view->snap->ticket_keys.get());
    if (c->ssl == nullptr) {
      lv.stats->tls_handshake_failures.inc();
      closeClient(c);
      return;
    }
  }
  setClientRead(c, true);
  // A new connection must send its whole first request head within the request-header
  // timeout, counted from the accept (a slowloris cannot restart it with its first byte).
  c->head_started = w->now();
  setDeadline(c, w->now() + listenerCfg(c).timeouts.request_header);
}

void closeClient(ClientConn* c) {
  if (c->view == nullptr) return;  // closed already
  Worker* w = c->worker;
  if (c->h2 != nullptr) h2Close(c);  // its streams first
  releaseUpstream(c, false);
  Exchange& ex = c->ex;
  if (ex.req_head != nullptr) w->buffers().put(ex.req_head);
  ex.req_head = nullptr;
  endRequest(c);
  if (c->in != nullptr) w->buffers().put(c->in);
  if (c->out != nullptr) w->buffers().put(c->out);
  c->in = c->out = nullptr;
  event_del(&c->timer);
  if (c->stream != nullptr) {  // an HTTP/2 stream: no socket of its own
    h2StreamClosed(c);
    w->releaseView(c->view);
    c->view = nullptr;
    w->deferDelete(c);
    return;
  }
  listenerStats(c)->cx_active.dec();
  if (c->ip_table != nullptr) c->ip_table->releaseConnection(c->ip_slot);
  c->ip_table = nullptr;
  event_del(&c->rev);
  event_del(&c->wev);
  if (c->ssl != nullptr) {
    SSL_free(c->ssl);
    c->ssl = nullptr;
  }
  ::close(c->fd);
  c->fd = -1;
  w->releaseView(c->view);
  c->view = nullptr;
  w->clientClosed(c);
  w->deferDelete(c);
}

ClientConn* newStreamConn(ClientConn* parent, int32_t id) {
  Worker* w = parent->worker;
  SnapshotView* v = w->view();
  int li = v == parent->view ? parent->listener : v->listenerIndex(listenerCfg(parent).name);
  if (li < 0) return nullptr;
  auto* s = new ClientConn();
  s->worker = w;
  s->view = v;
  w->retainView(v);
  s->listener = li;
  s->parent = parent;
  s->stream = new H2StreamState();
  s->stream->id = id;
  s->tls = parent->tls;
  s->first_request = false;
  std::memcpy(s->ip, parent->ip, sizeof(s->ip));
  s->ip_len = parent->ip_len;
  evtimer_assign(&s->timer, w->base(), onClientTimer, s);
  return s;
}

bool clientIsIdle(const ClientConn* c) {
  if (c->h2 != nullptr) return false;  // drained with GOAWAY instead (h2Drain)
  return c->state == ClientState::kHead && (c->in == nullptr || c->in->empty());
}

void closeIdleUpstream(UpstreamConn* u) {
  unlinkIdle(u->slot, u);
  destroyUpstream(u);
}

}  // namespace scalegate::l7proxy
