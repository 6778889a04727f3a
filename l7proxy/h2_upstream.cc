#include "l7proxy/h2_upstream.h"

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "l7proxy/connection.h"
#include "l7proxy/http2.h"
#include "l7proxy/worker.h"

namespace scalegate::l7proxy {

// One HTTP/2 connection to a member. Owned by its socket's UpstreamConn (`conn->h2`); freed by
// the worker's deferred deletion after the socket closed, so a pointer held during a loop pass
// stays valid (check `dead`).
struct H2Upstream {
  nghttp2_session* ng = nullptr;
  UpstreamConn* conn = nullptr;  // the socket
  MemberSlot* slot = nullptr;
  SSL_CTX* ctx = nullptr;             // pools with another upstream TLS context use other sessions
  UpstreamConn* streams = nullptr;    // attached streams (submitted or waiting)
  UpstreamConn* wait_head = nullptr;  // streams not yet submitted, oldest first
  UpstreamConn* wait_tail = nullptr;
  UpstreamConn* ready = nullptr;  // streams with news for their exchange
  IoBuffer* out = nullptr;        // frames on their way to the socket
  std::string overflow;           // frames that did not fit `out` (rare)
  uint32_t attached = 0;
  uint32_t open = 0;  // submitted and not closed
  uint32_t max_streams = 100;
  int32_t goaway_last_id = INT32_MAX;
  MonoTime idle_since{};
  event send_ev;  // one send per loop pass, however many streams flushed
  event timer;    // connect (and handshake) timeout
  bool send_scheduled = false;
  bool in_send = false;
  bool in_ready = false;
  bool up = false;        // connected, TLS and ALPN done
  bool retiring = false;  // takes no new streams (GOAWAY, drain, member removed)
  bool dead = false;      // socket closed, streams detached
};

namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr uint32_t kChunkHead = 10;   // "xxxxxxxx\r\n": fixed width, filled when the chunk closes
constexpr uint32_t kTailReserve = 7;  // "\r\n" closing a chunk + "0\r\n\r\n"

void onSessionRead(evutil_socket_t fd, short what, void* arg);
void onSessionWrite(evutil_socket_t fd, short what, void* arg);
void scheduleSend(H2Upstream* h);
void sessionFail(H2Upstream* h, bool never_up);

uint32_t capacity(const H2Upstream* h) {
  uint32_t remote =
      nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return std::min(h->max_streams, remote);
}

// --- intrusive lists ---------------------------------------------------------------------------

void linkStream(H2Upstream* h, UpstreamConn* u) {
  u->h2s.prev = nullptr;
  u->h2s.next = h->streams;
  if (h->streams != nullptr) h->streams->h2s.prev = u;
  h->streams = u;
  u->h2s.attached = true;
  u->h2 = h;
  ++h->attached;
}

void pushWait(H2Upstream* h, UpstreamConn* u) {
  u->h2s.waiting = true;
  u->h2s.next_wait = nullptr;
  u->h2s.prev_wait = h->wait_tail;
  if (h->wait_tail != nullptr) {
    h->wait_tail->h2s.next_wait = u;
  } else {
    h->wait_head = u;
  }
  h->wait_tail = u;
}

void unlinkWait(H2Upstream* h, UpstreamConn* u) {
  if (!u->h2s.waiting) return;
  u->h2s.waiting = false;
  if (u->h2s.prev_wait != nullptr) {
    u->h2s.prev_wait->h2s.next_wait = u->h2s.next_wait;
  } else {
    h->wait_head = u->h2s.next_wait;
  }
  if (u->h2s.next_wait != nullptr) {
    u->h2s.next_wait->h2s.prev_wait = u->h2s.prev_wait;
  } else {
    h->wait_tail = u->h2s.prev_wait;
  }
  u->h2s.next_wait = u->h2s.prev_wait = nullptr;
}

void markReady(H2Upstream* h, UpstreamConn* u) {
  if (u->h2s.in_ready) return;
  u->h2s.in_ready = true;
  u->h2s.prev_ready = nullptr;
  u->h2s.next_ready = h->ready;
  if (h->ready != nullptr) h->ready->h2s.prev_ready = u;
  h->ready = u;
}

void unlinkReady(H2Upstream* h, UpstreamConn* u) {
  if (!u->h2s.in_ready) return;
  u->h2s.in_ready = false;
  if (u->h2s.prev_ready != nullptr) {
    u->h2s.prev_ready->h2s.next_ready = u->h2s.next_ready;
  } else {
    h->ready = u->h2s.next_ready;
  }
  if (u->h2s.next_ready != nullptr) u->h2s.next_ready->h2s.prev_ready = u->h2s.prev_ready;
  u->h2s.next_ready = u->h2s.prev_ready = nullptr;
}

// Takes the stream off its session (it keeps its buffer and exchange).
void detach(H2Upstream* h, UpstreamConn* u) {
  unlinkWait(h, u);
  unlinkReady(h, u);
  if (u->h2s.prev != nullptr) {
    u->h2s.prev->h2s.next = u->h2s.next;
  } else {
    h->streams = u->h2s.next;
  }
  if (u->h2s.next != nullptr) u->h2s.next->h2s.prev = u->h2s.prev;
  u->h2s.next = u->h2s.prev = nullptr;
  u->h2s.attached = false;
  u->h2 = nullptr;
  --h->attached;
  if (h->attached == 0) h->idle_since = h->conn->worker->now();
}

UpstreamConn* takeStream(Worker* w) {
  std::vector<UpstreamConn*>& free_list = w->h2StreamFreeList();
  if (!free_list.empty()) {
    UpstreamConn* u = free_list.back();
    free_list.pop_back();
    return u;
  }
  auto* u = new UpstreamConn();
  u->worker = w;
  u->h2_stream = true;
  return u;
}

void recycleStream(UpstreamConn* u) {
  Worker* w = u->worker;
  if (u->in != nullptr) {
    w->buffers().put(u->in);
    u->in = nullptr;
  }
  u->client = nullptr;
  u->slot = nullptr;
  u->stats = nullptr;
  u->h2 = nullptr;
  u->h2s = H2UpStream();
  w->h2StreamFreeList().push_back(u);
}

UpstreamConn* streamOf(H2Upstream* h, int32_t id) {
  auto* u = static_cast<UpstreamConn*>(nghttp2_session_get_stream_user_data(h->ng, id));
  if (u == nullptr || u->h2 != h || u->h2s.id != id) return nullptr;
  return u;
}

// --- the stream's response buffer --------------------------------------------------------------

// Room for n more bytes plus `reserve` in the stream's buffer (compacting if needed).
bool roomFor(UpstreamConn* u, size_t n, size_t reserve) {
  if (u->in == nullptr) u->in = u->worker->buffers().get();
  if (u->in->room() < n + reserve) u->in->compact();  // chunk_at is relative to start: stays
  return u->in->room() >= n + reserve;
}

bool put(UpstreamConn* u, std::string_view a, std::string_view b = {}, std::string_view c = {},
         std::string_view d = {}) {
  size_t n = a.size() + b.size() + c.size() + d.size();
  if (!roomFor(u, n, kTailReserve)) return false;
  char* p = u->in->data() + u->in->end;
  for (std::string_view s : {a, b, c, d}) {
    if (s.empty()) continue;  // a default string_view has no data pointer
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  u->in->end += static_cast<uint32_t>(n);
  return true;
}

// Closes the open chunk and, after the last DATA, ends the chunked body (room was reserved).
void finishChunks(UpstreamConn* u) {
  H2UpStream& st = u->h2s;
  if (st.chunk_open) {
    h2ChunkSizeField(st.chunk_len, u->in->begin() + st.chunk_at);
    std::memcpy(u->in->data() + u->in->end, "\r\n", 2);
    u->in->end += 2;
    st.chunk_open = false;
  }
  if (st.end_seen && st.chunked && !st.end_written && u->in != nullptr) {
    std::memcpy(u->in->data() + u->in->end, "0\r\n\r\n", 5);
    u->in->end += 5;
    st.end_written = true;
  }
}

void failStream(H2Upstream* h, UpstreamConn* u) {
  u->h2s.overflow = true;
  nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, u->h2s.id, NGHTTP2_INTERNAL_ERROR);
  markReady(h, u);
}

// The final response head is complete: say how its body is delimited.
void finishHead(H2Upstream* h, UpstreamConn* u, bool end_stream) {
  H2UpStream& st = u->h2s;
  bool bodiless = st.status == 204 || st.status == 304 || u->client->ex.method == Method::kHead;
  bool ok = true;
  if (!st.has_length && !bodiless) {
    if (end_stream) {
      ok = put(u, "content-length: 0\r\n");
    } else {
      ok = put(u, "transfer-encoding: chunked\r\n");
      st.chunked = true;
    }
  }
  if (!ok || !put(u, "\r\n")) {
    failStream(h, u);
    return;
  }
  st.head_done = true;
}

// --- nghttp2 callbacks -------------------------------------------------------------------------

int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  UpstreamConn* u = streamOf(h, frame->hd.stream_id);
  if (u == nullptr || u->h2s.head_done || u->h2s.overflow) return 0;  // trailers are dropped
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  std::string_view v(reinterpret_cast<const char*>(value), valuelen);
  bool ok = true;
  if (n == ":status") {
    if (v.size() != 3) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    u->h2s.status = static_cast<uint16_t>((v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0'));
    ok = put(u, "HTTP/1.1 ", v, " ", h2ReasonPhrase(u->h2s.status)) && put(u, "\r\n");
  } else if (!n.empty() && n[0] != ':') {
    if (n == "content-length") u->h2s.has_length = true;
    ok = put(u, n, ": ", v, "\r\n");
  }
  if (!ok) failStream(h, u);
  return 0;
}

int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_GOAWAY:
      h->retiring = true;
      h->goaway_last_id = frame->goaway.last_stream_id;
      return 0;
    case NGHTTP2_HEADERS: {
      UpstreamConn* u = streamOf(h, frame->hd.stream_id);
      if (u == nullptr) return 0;
      bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (!u->h2s.head_done && !u->h2s.overflow) {
        if (u->h2s.status == 0) {
          failStream(h, u);
        } else if (u->h2s.status < 200) {
          if (!put(u, "\r\n")) failStream(h, u);  // interim response: the HTTP/1.1 path decides
          u->h2s.status = 0;
        } else {
          finishHead(h, u, end);
        }
      }
      if (end) u->h2s.end_seen = true;
      markReady(h, u);
      return 0;
    }
    case NGHTTP2_DATA: {
      UpstreamConn* u = streamOf(h, frame->hd.stream_id);
      if (u == nullptr) return 0;
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        u->h2s.end_seen = true;
        markReady(h, u);
      }
      return 0;
    }
    default:
      return 0;
  }
}

int onDataChunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len,
                void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  UpstreamConn* u = streamOf(h, id);
  H2UpStream* st = u != nullptr ? &u->h2s : nullptr;
  if (st == nullptr || st->overflow || !st->head_done || (!st->chunked && !st->has_length)) {
    nghttp2_session_consume(ng, id, len);  // nobody takes these bytes: give the window back
    return 0;
  }
  size_t framing = st->chunked && !st->chunk_open ? kChunkHead : 0;
  if (!roomFor(u, len + framing, kTailReserve)) {
    // Only a member that splits its window into tiny frames gets here (framing overhead).
    nghttp2_session_consume(ng, id, len);
    failStream(h, u);
    return 0;
  }
  if (framing > 0) {
    st->chunk_at = u->in->size();
    std::memcpy(u->in->data() + u->in->end, "00000000\r\n", kChunkHead);
    u->in->end += kChunkHead;
    st->chunk_open = true;
    st->chunk_len = 0;
  }
  std::memcpy(u->in->data() + u->in->end, data, len);
  u->in->end += static_cast<uint32_t>(len);
  if (st->chunk_open) st->chunk_len += static_cast<uint32_t>(len);
  st->unconsumed += static_cast<uint32_t>(len);
  markReady(h, u);
  return 0;
}

int onStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  UpstreamConn* u = streamOf(h, id);
  if (u == nullptr || u->h2s.closed) return 0;
  u->h2s.closed = true;
  u->h2s.close_code = error_code;
  --h->open;
  if (error_code == NGHTTP2_REFUSED_STREAM || id > h->goaway_last_id) u->h2s.unprocessed = true;
  if (!u->h2s.end_seen) markReady(h, u);
  return 0;
}

// A request HEADERS frame that could not go out (GOAWAY received, ids exhausted).
int onFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int, void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  UpstreamConn* u = streamOf(h, frame->hd.stream_id);
  if (u == nullptr || u->h2s.closed) return 0;
  u->h2s.closed = true;
  u->h2s.unprocessed = true;
  --h->open;
  markReady(h, u);
  return 0;
}

// Drops the request-body bytes already sent from the client's buffer: from now on the request
// cannot be sent again.
void commitBody(UpstreamConn* u) {
  H2UpStream& st = u->h2s;
  if (st.body_sent == 0) return;
  ClientConn* c = u->client;
  c->in->start += st.body_sent;
  c->ex.req_fwd -= st.body_sent;
  st.body_sent = 0;
  st.body_taken = true;
  // Backpressure, released: the client's buffer has room again.
  if (c->state == ClientState::kExchange && !c->peer_eof) {
    if (c->in->room() == 0) c->in->compact();
    setClientRead(c, c->in->room() > 0);
  }
}

// The data provider: request-body bytes straight from the client's buffer. A body that is
// whole in the buffer stays there until the response starts, so a stream the member refuses
// (or leaves above its GOAWAY) can be sent again; a longer one leaves as it goes out.
ssize_t readRequestBody(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                        nghttp2_data_source* src, void* user) {
  auto* h = static_cast<H2Upstream*>(user);
  auto* u = static_cast<UpstreamConn*>(src->ptr);
  if (u->h2 != h || u->h2s.id != id || u->client == nullptr) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  ClientConn* c = u->client;
  Exchange& ex = c->ex;
  H2UpStream& st = u->h2s;
  size_t n = std::min<size_t>(length, ex.req_fwd - st.body_sent);
  if (n > 0) {
    std::memcpy(buf, c->in->begin() + st.body_sent, n);
    st.body_sent += static_cast<uint32_t>(n);
    if (!ex.req_done || st.head_done || c->in->room() == 0) commitBody(u);
  }
  if (ex.req_done && ex.req_fwd == st.body_sent) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    ex.req_sent = true;
  } else if (n == 0) {
    st.body_deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

// --- requests ----------------------------------------------------------------------------------

nghttp2_nv nv(std::string_view name, std::string_view value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

// Turns the exchange's rewritten HTTP/1.1 head into HEADERS (+ a data provider for the body).
bool submitStream(H2Upstream* h, UpstreamConn* u) {
  ClientConn* c = u->client;
  Exchange& ex = c->ex;
  if (ex.req_head == nullptr) return false;
  RequestHead& rh = c->worker->h2SubmitHead();
  ParseLimits limits;
  limits.max_head_bytes = ex.req_head->cap;
  limits.max_headers = kMaxHeaderFields;
  limits.max_uri_bytes = ex.req_head->cap;
  ParseOutcome o = parseRequestHead(ex.req_head->data(), ex.req_head->end, limits, &rh);
  if (o.state != ParseState::kComplete) return false;
  nghttp2_nv nva[kMaxHeaderFields + 4];
  size_t n = 0;
  nva[n++] = nv(":method", rh.method_text);
  nva[n++] = nv(":scheme", h->ctx != nullptr ? std::string_view("https") : "http");
  if (!rh.host.empty()) nva[n++] = nv(":authority", rh.host);
  nva[n++] = nv(":path", rh.target);
  for (uint32_t i = 0; i < rh.header_count; ++i) {
    if (rh.isHopByHop(i)) continue;
    const HeaderField& f = rh.headers[i];
    // HTTP/2 field names are lowercase; the head is ours, so lowercase it in place.
    auto* name = const_cast<char*>(f.name.data());
    for (size_t k = 0; k < f.name.size(); ++k) {
      if (name[k] >= 'A' && name[k] <= 'Z') name[k] = static_cast<char>(name[k] + 32);
    }
    if (h2ConnectionSpecific(f.name)) continue;
    nva[n++] = nv(f.name, f.value);
  }
  bool has_body = !(ex.req_done && ex.req_fwd == 0);
  nghttp2_data_provider prd;
  prd.source.ptr = u;
  prd.read_callback = readRequestBody;
  int32_t id = nghttp2_submit_request(h->ng, nullptr, nva, n, has_body ? &prd : nullptr, u);
  if (id < 0) return false;
  u->h2s.submitted = true;
  u->h2s.id = id;
  ++h->open;
  ex.req_head_sent = ex.req_head->end;
  if (!has_body) ex.req_sent = true;
  return true;
}

void submitWaiting(H2Upstream* h) {
  if (!h->up || h->retiring || h->dead) return;
  uint32_t cap = capacity(h);
  while (h->wait_head != nullptr && h->open < cap) {
    UpstreamConn* u = h->wait_head;
    unlinkWait(h, u);
    if (!submitStream(h, u)) {  // stream ids ran out (or a head we cannot send)
      u->h2s.closed = true;
      u->h2s.unprocessed = true;
      markReady(h, u);
      h->retiring = true;
    }
  }
}

// Hands what the member sent to each stream's exchange (never inside an nghttp2 callback).
void processReady(H2Upstream* h) {
  if (h->in_ready) return;
  h->in_ready = true;
  while (h->ready != nullptr && !h->dead) {
    UpstreamConn* u = h->ready;
    unlinkReady(h, u);
    if (u->in != nullptr) finishChunks(u);
    ClientConn* c = u->client;
    if (u->h2s.overflow) {
      upstreamEof(c, true);
      continue;
    }
    if (u->h2s.head_done) commitBody(u);  // the member took the request
    if (u->in != nullptr && !u->in->empty()) {
      upstreamInput(c);
      if (c->ex.up != u || u->h2 != h) continue;  // the exchange is over or moved on
    }
    if (u->h2s.closed && !u->h2s.end_seen) {
      bool whole =
          !u->h2s.body_taken && !c->ex.resp_started && (u->in == nullptr || u->in->empty());
      if (u->h2s.unprocessed && whole) {
        upstreamRetryUnprocessed(c, true);
      } else {
        upstreamEof(c, true);
      }
    }
  }
  // No new streams here (GOAWAY, drain): what still waits goes to another connection.
  while (h->retiring && !h->dead && h->wait_head != nullptr) {
    UpstreamConn* u = h->wait_head;
    detach(h, u);
    upstreamRetryUnprocessed(u->client, true);
  }
  h->in_ready = false;
}

// --- the socket --------------------------------------------------------------------------------

// Writes `out` and `overflow`. False when the socket is full or the session failed.
bool writeOut(H2Upstream* h) {
  UpstreamConn* u = h->conn;
  uint32_t out_left = h->out != nullptr ? h->out->size() : 0;
  if (out_left == 0 && h->overflow.empty()) return true;
  iovec iov[2];
  int n = 0;
  if (out_left > 0) iov[n++] = {h->out->begin(), out_left};
  if (!h->overflow.empty()) iov[n++] = {h->overflow.data(), h->overflow.size()};
  ssize_t wr = upstreamSendv(u, iov, n);
  if (wr < 0) {
    if (errno == EAGAIN || errno == EINTR) {
      setUpWrite(u, true);
      return false;
    }
    sessionFail(h, false);
    return false;
  }
  auto k = static_cast<size_t>(wr);
  if (u->stats != nullptr) u->stats->bytes_in.inc(k);
  size_t from_out = std::min<size_t>(k, out_left);
  if (from_out > 0) h->out->start += static_cast<uint32_t>(from_out);
  k -= from_out;
  if (k > 0) h->overflow.erase(0, k);
  if ((h->out != nullptr && !h->out->empty()) || !h->overflow.empty()) {
    setUpWrite(u, true);
    return false;
  }
  releaseIfEmpty(u->worker->buffers(), h->out);
  setUpWrite(u, false);
  return true;
}

// Closes a session with no streams, saying GOAWAY if it can.
void sessionClose(H2Upstream* h) {
  if (h->dead) return;
  if (h->up && !h->in_send) {
    nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(h->ng, &data);
    if (n > 0 && h->out == nullptr && h->overflow.empty()) {
      iovec iov{const_cast<uint8_t*>(data), static_cast<size_t>(n)};
      (void)upstreamSendv(h->conn, &iov, 1);  // best effort: the socket closes next
    }
  }
  sessionFail(h, false);
}

void sessionSend(H2Upstream* h) {
  if (h->in_send || h->dead || !h->up) return;
  h->in_send = true;
  submitWaiting(h);
  Worker* w = h->conn->worker;
  for (int round = 0; round < 64; ++round) {
    if (!writeOut(h)) {
      h->in_send = false;
      return;
    }
    if (!nghttp2_session_want_write(h->ng)) break;
    if (h->out == nullptr) h->out = w->buffers().get();
    IoBuffer* b = h->out;
    b->compact();
    bool produced = false;
    if (!h2TakeOutput(h->ng, b, &h->overflow, &produced)) {
      h->in_send = false;
      sessionFail(h, false);
      return;
    }
    if (!produced && b->empty() && h->overflow.empty()) break;
  }
  h->in_send = false;
  if (!writeOut(h)) return;
  if (h->ready != nullptr) processReady(h);  // streams refused while sending
  if (h->dead) return;
  // Retiring, or opened for a member the current view no longer names (a request that
  // started under an older view), or the worker drains: close once nothing uses it.
  if (h->attached == 0 && (h->retiring || !h->slot->in_view || w->draining())) sessionClose(h);
}

void onSendEvent(evutil_socket_t, short, void* arg) {
  auto* h = static_cast<H2Upstream*>(arg);
  h->send_scheduled = false;
  if (h->dead) return;
  h->conn->worker->refreshNow();
  sessionSend(h);
}

void scheduleSend(H2Upstream* h) {
  if (h->send_scheduled || h->dead) return;
  h->send_scheduled = true;
  event_active(&h->send_ev, EV_WRITE, 1);
}

// The socket closed, failed or never came up: detach every stream and tell its exchange.
void sessionFail(H2Upstream* h, bool never_up) {
  if (h->dead) return;
  h->dead = true;
  h->retiring = true;
  MemberSlot* s = h->slot;
  UpstreamConn* conn = h->conn;
  if (conn->prev_idle != nullptr) {
    conn->prev_idle->next_idle = conn->next_idle;
  } else {
    s->h2_sessions = conn->next_idle;
  }
  if (conn->next_idle != nullptr) conn->next_idle->prev_idle = conn->prev_idle;
  conn->next_idle = conn->prev_idle = nullptr;
  --s->h2_session_count;
  event_del(&h->send_ev);
  evtimer_del(&h->timer);
  while (h->streams != nullptr) {
    UpstreamConn* u = h->streams;
    bool submitted = u->h2s.submitted;
    detach(h, u);
    ClientConn* c = u->client;
    if (u->h2s.end_seen) {  // the whole response is here; it drains on its own
      if (u->in != nullptr) finishChunks(u);
      if (u->in != nullptr && !u->in->empty()) upstreamInput(c);
      continue;
    }
    if (never_up || !submitted) {
      upstreamRetryUnprocessed(c, !never_up);
    } else {
      upstreamEof(c, true);
    }
  }
  destroyUpstream(conn);  // the session itself goes with the socket (h2FreeSession)
}

void sessionConnectFailed(H2Upstream* h) {
  UpstreamConn* first = h->streams;
  if (first != nullptr && first->client != nullptr) {
    upstreamConnectFailed(first->client);
  } else {
    h->conn->worker->mutableCounters().upstream_cx_connect_fail.inc();
    if (h->conn->stats != nullptr) h->conn->stats->cx_connect_fail.inc();
  }
  sessionFail(h, true);
}

void sessionUp(H2Upstream* h) {
  h->up = true;
  h->conn->connected = true;
  evtimer_del(&h->timer);
  h->idle_since = h->conn->worker->now();
  setUpWrite(h->conn, false);
  scheduleSend(h);
}

// Connect and TLS handshake progress; with TLS the member must pick ALPN h2.
void sessionConnecting(H2Upstream* h) {
  UpstreamConn* u = h->conn;
  if (!u->tcp_connected) {
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      sessionConnectFailed(h);
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
      sessionConnectFailed(h);
      return;
    }
    const unsigned char* proto = nullptr;
    unsigned int plen = 0;
    SSL_get0_alpn_selected(u->ssl, &proto, &plen);
    if (plen != 2 || proto[0] != 'h' || proto[1] != '2') {
      if (!h->slot->h2_alpn_warned) {
        h->slot->h2_alpn_warned = true;
        SG_LOG(kWarn,
               "upstream %s: TLS ALPN did not select h2 (pool upstream.protocol is h2); "
               "counting its connections as connect failures",
               h->slot->address.toString().c_str());
      }
      sessionConnectFailed(h);
      return;
    }
  }
  sessionUp(h);
}

void onSessionRead(evutil_socket_t, short, void* arg) {
  auto* u = static_cast<UpstreamConn*>(arg);
  H2Upstream* h = u->h2;
  Worker* w = u->worker;
  w->refreshNow();
  if (h == nullptr || h->dead) return;
  if (!h->up) {
    sessionConnecting(h);
    return;
  }
  if (u->in == nullptr) u->in = w->buffers().get();
  for (int i = 0; i < 16; ++i) {
    ssize_t n = upstreamRecv(u, u->in->data(), u->in->cap);
    if (n > 0) {
      if (u->stats != nullptr) u->stats->bytes_out.inc(static_cast<uint64_t>(n));
      ssize_t rv = nghttp2_session_mem_recv(h->ng, reinterpret_cast<const uint8_t*>(u->in->data()),
                                            static_cast<size_t>(n));
      if (rv < 0) {  // the member broke the protocol: nghttp2 queued a GOAWAY
        sessionSend(h);
        sessionFail(h, false);
        return;
      }
      processReady(h);
      if (h->dead) return;
      if (static_cast<uint32_t>(n) < u->in->cap) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    sessionFail(h, false);  // the member closed or reset the connection
    return;
  }
  if (u->in != nullptr) {
    w->buffers().put(u->in);
    u->in = nullptr;
  }
  scheduleSend(h);
}

void onSessionWrite(evutil_socket_t, short, void* arg) {
  auto* u = static_cast<UpstreamConn*>(arg);
  H2Upstream* h = u->h2;
  u->worker->refreshNow();
  if (h == nullptr || h->dead) {
    setUpWrite(u, false);
    return;
  }
  if (!h->up) {
    sessionConnecting(h);
    return;
  }
  sessionSend(h);
}

void onSessionTimer(evutil_socket_t, short, void* arg) {
  auto* h = static_cast<H2Upstream*>(arg);
  h->conn->worker->refreshNow();
  if (!h->up && !h->dead) sessionConnectFailed(h);
}

H2Upstream* openSession(Worker* w, MemberSlot* s, PoolView* p, int m, int* err) {
  UpstreamConn* conn = connectUpstream(w, s, p, err, onSessionRead, onSessionWrite);
  if (conn == nullptr) return nullptr;
  if (conn->ssl != nullptr) {
    // http/1.1 is offered too, so a member without HTTP/2 completes the handshake (rather than
    // failing it with no_application_protocol) and the log can say what went wrong.
    static const unsigned char kAlpnH2[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(conn->ssl, kAlpnH2, sizeof(kAlpnH2));
  }
  const config::UpstreamSettings& us = p->cfg->upstream;
  auto* h = new H2Upstream();
  h->conn = conn;
  h->slot = s;
  h->ctx = p->tls;
  h->max_streams = us.h2_max_streams_per_connection;
  conn->h2 = h;
  conn->stats_owner = p->member_blocks[m];
  conn->stats = p->member_stats[m];
  conn->stats->cx_total.inc();
  conn->stats->cx_active.inc();

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onStreamClose);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, onFrameNotSend);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, h->max_streams);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_session_client_new2(&h->ng, cbs, h, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  // A stream's buffer holds its response head and one window of payload (worker.cc sizes
  // buffers for that), so heads are capped at what is left.
  uint32_t head_cap = w->buffers().bufferBytes() - kH2UpstreamWindow - 2048;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kH2UpstreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, head_cap},
  };
  nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
  // The connection window covers every stream's window: one slow client never stalls others.
  uint64_t conn_window = uint64_t{kH2UpstreamWindow} * h->max_streams;
  nghttp2_session_set_local_window_size(
      h->ng, NGHTTP2_FLAG_NONE, 0,
      static_cast<int32_t>(std::min<uint64_t>(conn_window, INT32_MAX)));
  event_assign(&h->send_ev, w->base(), -1, 0, onSendEvent, h);
  evtimer_assign(&h->timer, w->base(), onSessionTimer, h);

  conn->prev_idle = nullptr;
  conn->next_idle = s->h2_sessions;
  if (s->h2_sessions != nullptr) s->h2_sessions->prev_idle = conn;
  s->h2_sessions = conn;
  ++s->h2_session_count;
  if (conn->connected) {
    sessionUp(h);
  } else {
    auto us_ = std::chrono::duration_cast<std::chrono::microseconds>(us.connect_timeout).count();
    timeval tv{static_cast<time_t>(us_ / 1000000), static_cast<suseconds_t>(us_ % 1000000)};
    evtimer_add(&h->timer, &tv);
  }
  return h;
}

std::vector<H2Upstream*> sessionsOf(MemberSlot* s) {
  std::vector<H2Upstream*> out;
  for (UpstreamConn* c = s->h2_sessions; c != nullptr; c = c->next_idle) out.push_back(c->h2);
  return out;
}

}  // namespace

// HTTP/2 has no reason phrase; HTTP/1.1 clients get a conventional one (some tools count a
// status only when a phrase is present).
std::string_view h2ReasonPhrase(uint16_t status) {
  switch (status) {
    case 100:
      return "Continue";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      break;
  }
  static constexpr std::string_view kByClass[] = {"Unknown",     "Informational", "Success",
                                                  "Redirection", "Client Error",  "Server Error"};
  return kByClass[status / 100 <= 5 ? status / 100 : 0];
}

void h2ChunkSizeField(uint32_t n, char out[8]) {
  for (int i = 7; i >= 0; --i) out[7 - i] = kHex[(n >> (4 * i)) & 0xf];
}

bool h2ConnectionSpecific(std::string_view name) {
  return name == "host" || name == "connection" || name == "keep-alive" ||
         name == "proxy-connection" || name == "transfer-encoding" || name == "upgrade" ||
         name == "te";
}

UpstreamConn* h2AttachStream(ClientConn* c, MemberSlot* s, PoolView* p, int m, int* err) {
  Worker* w = c->worker;
  H2Upstream* best = nullptr;
  H2Upstream* least = nullptr;
  uint32_t count = 0;
  for (UpstreamConn* sc = s->h2_sessions; sc != nullptr; sc = sc->next_idle) {
    H2Upstream* h = sc->h2;
    if (h->retiring || h->ctx != p->tls) continue;
    ++count;
    if (h->attached < capacity(h)) {
      best = h;
      break;
    }
    if (least == nullptr || h->attached < least->attached) least = h;
  }
  if (best != nullptr) {
    w->mutableCounters().upstream_cx_reused.inc();
  } else if (count < p->cfg->upstream.h2_max_connections_per_member) {
    best = openSession(w, s, p, m, err);
    if (best == nullptr) return nullptr;
  } else {
    best = least;  // every connection is full: wait for a stream there
  }
  UpstreamConn* u = takeStream(w);
  u->client = c;
  u->slot = s;
  u->stats = p->member_stats[m];
  u->connected = true;  // connect timeouts are the session's (its timer), not the exchange's
  u->tcp_connected = true;
  u->reused = false;
  linkStream(best, u);
  return u;
}

void h2UpstreamFlush(ClientConn* c) {
  UpstreamConn* u = c->ex.up;
  H2Upstream* h = u->h2;
  if (!u->h2s.attached || h == nullptr || u->h2s.waiting) return;
  if (!u->h2s.submitted) {
    if (!h->up || h->retiring || h->open >= capacity(h)) {
      pushWait(h, u);
      return;
    }
    if (!submitStream(h, u)) {
      localReply(c, LocalReply::kBadGateway, false);
      return;
    }
  } else if (u->h2s.body_deferred && (c->ex.req_fwd > 0 || c->ex.req_done)) {
    u->h2s.body_deferred = false;
    nghttp2_session_resume_data(h->ng, u->h2s.id);
  }
  scheduleSend(h);
}

void h2StreamReadable(UpstreamConn* u, bool on) {
  if (!on || !u->h2s.attached || u->h2s.id == 0) return;
  uint32_t buffered = u->in != nullptr ? u->in->size() : 0;
  if (u->h2s.unconsumed <= buffered) return;
  H2Upstream* h = u->h2;
  nghttp2_session_consume(h->ng, u->h2s.id, u->h2s.unconsumed - buffered);
  u->h2s.unconsumed = buffered;
  scheduleSend(h);
}

void h2ReleaseStream(UpstreamConn* u) {
  H2Upstream* h = u->h2;
  if (u->h2s.attached && h != nullptr) {
    detach(h, u);
    if (u->h2s.submitted && !u->h2s.closed) {
      nghttp2_session_set_stream_user_data(h->ng, u->h2s.id, nullptr);
      nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, u->h2s.id, NGHTTP2_CANCEL);
      --h->open;
    }
    if (u->h2s.unconsumed > 0) nghttp2_session_consume(h->ng, u->h2s.id, u->h2s.unconsumed);
    scheduleSend(h);
  }
  recycleStream(u);
}

void h2SweepSessions(MemberSlot* s, MonoTime now) {
  Duration idle = s->idle_timeout;
  for (H2Upstream* h : sessionsOf(s)) {
    if (h->dead) continue;
    if (h->up ? (h->attached == 0 && now - h->idle_since >= idle) : false) sessionClose(h);
  }
}

void h2DrainSessions(MemberSlot* s) {
  for (H2Upstream* h : sessionsOf(s)) {
    if (h->dead) continue;
    h->retiring = true;
    if (h->attached == 0) {
      sessionClose(h);
    } else {
      processReady(h);  // waiting streams move to another connection
    }
  }
}

void h2CloseSessions(MemberSlot* s) {
  for (H2Upstream* h : sessionsOf(s)) {
    if (!h->dead) sessionFail(h, false);
  }
}

void h2FreeSession(UpstreamConn* conn) {
  H2Upstream* h = conn->h2;
  conn->h2 = nullptr;
  if (h->ng != nullptr) nghttp2_session_del(h->ng);
  if (h->out != nullptr) conn->worker->buffers().put(h->out);
  delete h;
}

}  // namespace scalegate::l7proxy
