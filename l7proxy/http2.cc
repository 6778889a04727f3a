#include "l7proxy/http2.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "l7proxy/connection.h"
#include "l7proxy/worker.h"

namespace scalegate::l7proxy {

struct H2Session {
  nghttp2_session* ng = nullptr;
  ClientConn* conn = nullptr;
  ClientConn* streams = nullptr;  // stream connections, linked through next/prev
  uint32_t active = 0;
  event send_ev;  // one send per loop pass, however many streams flushed
  bool send_scheduled = false;
  bool goaway = false;  // GOAWAY submitted
  bool in_send = false;
  bool closing = false;  // h2Close is tearing it down
  // Rapid-reset defence: RST_STREAMs allowed, refilled at reset_rate per second.
  double reset_tokens = 0;
  MonoTime reset_refilled{};
  std::string overflow;           // frames that did not fit in the out buffer (rare)
  std::vector<int32_t> to_reset;  // streams to reset once no nghttp2 callback is running
  // Streams whose request head is complete, started once the bytes of this read are all
  // processed: a stream opened and reset in the same read never reaches a member.
  std::vector<int32_t> to_start;
};

namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kPrefaceLen = sizeof(kPreface) - 1;
constexpr size_t kMaxDataChunk = 16384;

const config::Listener& listenerOf(const ClientConn* c) {
  return *c->view->listeners[c->listener].cfg;
}
ListenerWorkerStats* statsOf(const ClientConn* c) { return c->view->listeners[c->listener].stats; }

void h2Send(ClientConn* c);

void onSendEvent(evutil_socket_t, short, void* arg) {
  auto* c = static_cast<ClientConn*>(arg);
  if (c->h2 == nullptr) return;
  c->h2->send_scheduled = false;
  c->worker->refreshNow();
  h2Send(c);
}

void scheduleSend(H2Session* h) {
  if (h->send_scheduled || h->closing) return;
  h->send_scheduled = true;
  event_active(&h->send_ev, EV_WRITE, 1);
}

ClientConn* streamOf(nghttp2_session* ng, int32_t id) {
  return static_cast<ClientConn*>(nghttp2_session_get_stream_user_data(ng, id));
}

// Appends to the stream's request buffer; false when it does not fit.
bool appendIn(ClientConn* s, const char* p, size_t n) {
  if (s->in == nullptr) s->in = s->worker->buffers().get();
  if (s->in->room() < n) s->in->compact();
  if (s->in->room() < n) return false;
  std::memcpy(s->in->data() + s->in->end, p, n);
  s->in->end += static_cast<uint32_t>(n);
  return true;
}

// Pseudo-header values wait in s->out (unused until a response) for the request line.
bool keepPseudo(ClientConn* s, const uint8_t* v, size_t n, uint32_t* at, uint32_t* len) {
  if (s->out == nullptr) s->out = s->worker->buffers().get();
  if (s->out->room() < n) return false;
  *at = s->out->end;
  *len = static_cast<uint32_t>(n);
  std::memcpy(s->out->data() + s->out->end, v, n);
  s->out->end += static_cast<uint32_t>(n);
  return true;
}

std::string_view pseudo(ClientConn* s, uint32_t at, uint32_t len) {
  if (s->out == nullptr || len == 0) return {};
  return std::string_view(s->out->data() + at, len);
}

bool writeRequestLine(ClientConn* s) {
  H2StreamState& st = *s->stream;
  st.line_written = true;
  std::string_view method = pseudo(s, st.method_at, st.method_len);
  std::string_view path = pseudo(s, st.path_at, st.path_len);
  if (method == "CONNECT") path = pseudo(s, st.authority_at, st.authority_len);
  if (method.empty() || path.empty()) return false;
  return appendIn(s, method.data(), method.size()) && appendIn(s, " ", 1) &&
         appendIn(s, path.data(), path.size()) && appendIn(s, " HTTP/1.1\r\n", 11);
}

// --- nghttp2 callbacks (session side) --------------------------------------------------------

int onBeginHeaders(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<ClientConn*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  ClientConn* s = newStreamConn(c, frame->hd.stream_id);
  if (s == nullptr) {
    nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  H2Session* h = c->h2;
  s->prev = nullptr;
  s->next = h->streams;
  if (h->streams != nullptr) h->streams->prev = s;
  h->streams = s;
  ++h->active;
  statsOf(c)->h2_streams.inc();
  nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, s);
  return 0;
}

int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
             const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* c = static_cast<ClientConn*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  ClientConn* s = streamOf(c->h2->ng, frame->hd.stream_id);
  if (s == nullptr) return 0;
  H2StreamState& st = *s->stream;
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers are not forwarded
  const ListenerView& lv = s->view->listeners[s->listener];
  st.header_bytes += static_cast<uint32_t>(std::min<size_t>(namelen + valuelen + 32, 1u << 20));
  ++st.header_count;
  if (st.header_bytes > lv.limits.max_head_bytes || st.header_count > lv.limits.max_headers) {
    st.too_large = true;
    // Far past the limit (an HPACK bomb): stop decoding into this stream at all.
    if (st.header_bytes > 4 * lv.limits.max_head_bytes)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
  }
  if (st.too_large) return 0;
  std::string_view n(reinterpret_cast<const char*>(name), namelen);
  if (!n.empty() && n[0] == ':') {
    bool ok = true;
    if (n == ":method") {
      ok = keepPseudo(s, value, valuelen, &st.method_at, &st.method_len);
    } else if (n == ":path") {
      ok = keepPseudo(s, value, valuelen, &st.path_at, &st.path_len);
    } else if (n == ":authority") {
      ok = keepPseudo(s, value, valuelen, &st.authority_at, &st.authority_len);
    }
    if (!ok) st.too_large = true;
    return 0;
  }
  if (!st.line_written && !writeRequestLine(s)) {
    st.too_large = true;
    return 0;
  }
  if (n == "host") st.host_seen = true;
  if (n == "content-length") st.length_seen = true;
  if (!(appendIn(s, n.data(), n.size()) && appendIn(s, ": ", 2) &&
        appendIn(s, reinterpret_cast<const char*>(value), valuelen) && appendIn(s, "\r\n", 2))) {
    st.too_large = true;
  }
  return 0;
}

// The request head is complete: finish the HTTP/1.1 rewrite and start the exchange.
void requestHeadDone(ClientConn* s, bool end_stream) {
  H2StreamState& st = *s->stream;
  st.end_stream = end_stream;
  bool ok = !st.too_large && (st.line_written || writeRequestLine(s));
  if (ok && !st.host_seen && st.authority_len > 0) {
    std::string_view a = pseudo(s, st.authority_at, st.authority_len);
    ok = appendIn(s, "host: ", 6) && appendIn(s, a.data(), a.size()) && appendIn(s, "\r\n", 2);
  }
  if (ok && !end_stream && !st.length_seen) {
    st.chunked = true;  // a body of unknown length goes upstream chunked
    ok = appendIn(s, "transfer-encoding: chunked\r\n", 28);
  }
  ok = ok && appendIn(s, "\r\n", 2);
  if (s->out != nullptr) {  // the pseudo-header scratch is done with
    s->worker->buffers().put(s->out);
    s->out = nullptr;
  }
  if (!ok) {
    // Counted like an HTTP/1.1 head over the limits; the exchange is not started.
    s->state = ClientState::kExchange;
    localReply(s, LocalReply::kHeaderTooLarge, false);
    return;
  }
  s->parent->h2->to_start.push_back(s->stream->id);
}

void requestBodyEnd(ClientConn* s) {
  H2StreamState& st = *s->stream;
  if (st.end_stream) return;
  st.end_stream = true;
  if (st.chunked && !appendIn(s, "0\r\n\r\n", 5)) {
    closeClient(s);
    return;
  }
  if (s->state == ClientState::kExchange) requestBodyArrived(s);
}

int onFrameRecv(nghttp2_session* ng, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<ClientConn*>(user);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS: {
      ClientConn* s = streamOf(ng, frame->hd.stream_id);
      if (s == nullptr) return 0;
      bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
      if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        requestHeadDone(s, end);
      } else if (end) {
        requestBodyEnd(s);  // trailers end the body
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
      ClientConn* s = streamOf(ng, frame->hd.stream_id);
      if (s != nullptr) requestBodyEnd(s);
      return 0;
    }
    case NGHTTP2_RST_STREAM: {
      statsOf(c)->h2_resets_received.inc();
      H2Session* h = c->h2;
      const config::Http2Settings& cfg = listenerOf(c).http2;
      MonoTime now = c->worker->now();
      double elapsed = std::chrono::duration<double>(now - h->reset_refilled).count();
      h->reset_refilled = now;
      h->reset_tokens =
          std::min<double>(cfg.reset_burst, h->reset_tokens + elapsed * cfg.reset_rate);
      if (h->reset_tokens >= 1) {
        h->reset_tokens -= 1;
        return 0;
      }
      // CVE-2023-44487: streams opened and cancelled faster than any client needs. Stop
      // reading at once; GOAWAY ENHANCE_YOUR_CALM goes out, then the connection closes.
      if (!h->goaway) {
        h->goaway = true;
        nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    default:
      return 0;
  }
}

int onDataChunk(nghttp2_session* ng, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  ClientConn* s = streamOf(ng, id);
  bool started = s != nullptr && s->state == ClientState::kExchange;
  bool pending = s != nullptr && s->state == ClientState::kHead;  // waits in to_start
  if (s == nullptr || s->ex.resp_done || s->stream->complete || (started && s->ex.req_done) ||
      (!started && !pending)) {
    nghttp2_session_consume(ng, id, len);  // nobody wants it: the window goes back at once
    return 0;
  }
  H2StreamState& st = *s->stream;
  char size[24];
  int size_n = st.chunked ? std::snprintf(size, sizeof(size), "%zx\r\n", len) : 0;
  size_t need = len + (st.chunked ? static_cast<size_t>(size_n) + 2 : 0);
  if (pending && s->in != nullptr && s->in->cap - s->in->size() < need) {
    processHeads(s);  // the head must leave the buffer to make room for the body
    if (s->view == nullptr || s->state != ClientState::kExchange || s->ex.resp_done) {
      nghttp2_session_consume(ng, id, len);
      return 0;
    }
  }
  bool ok = true;
  if (st.chunked) ok = appendIn(s, size, static_cast<size_t>(size_n));
  ok = ok && appendIn(s, reinterpret_cast<const char*>(data), len);
  if (st.chunked) ok = ok && appendIn(s, "\r\n", 2);
  st.unacked += static_cast<uint32_t>(len);
  if (!ok) {
    // Only tiny DATA frames with chunked framing can outgrow the window's worth of buffer.
    statsOf(s)->h2_protocol_errors.inc();
    closeClient(s);
    return 0;
  }
  if (s->state == ClientState::kExchange) requestBodyArrived(s);
  return 0;
}

int onStreamClose(nghttp2_session* ng, int32_t id, uint32_t, void*) {
  ClientConn* s = streamOf(ng, id);
  if (s == nullptr) return 0;
  s->stream->closed = true;
  nghttp2_session_set_stream_user_data(ng, id, nullptr);
  closeClient(s);  // ends an exchange still running (the client reset the stream)
  return 0;
}

int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<ClientConn*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    statsOf(c)->h2_goaways_sent.inc();
    if (frame->goaway.error_code != NGHTTP2_NO_ERROR) statsOf(c)->h2_protocol_errors.inc();
  }
  return 0;
}

// The data provider: response payload from s->out (local replies), then the member's buffer.
ssize_t readBody(nghttp2_session* ng, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                 nghttp2_data_source*, void*) {
  ClientConn* s = streamOf(ng, id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  Exchange& ex = s->ex;
  length = std::min(length, kMaxDataChunk);
  size_t n = 0;
  if (s->out != nullptr && !s->out->empty()) {
    size_t take = std::min<size_t>(length, s->out->size());
    std::memcpy(buf, s->out->begin(), take);
    s->out->start += static_cast<uint32_t>(take);
    n += take;
    releaseIfEmpty(s->worker->buffers(), s->out);
  }
  UpstreamConn* u = ex.up;
  if (n < length && u != nullptr && u->in != nullptr && ex.resp_fwd > 0) {
    size_t take = std::min<size_t>(length - n, ex.resp_fwd);
    std::memcpy(buf + n, u->in->begin(), take);
    u->in->start += static_cast<uint32_t>(take);
    ex.resp_fwd -= static_cast<uint32_t>(take);
    n += take;
  }
  if (u != nullptr && u->in != nullptr && !ex.resp_done) {
    if (u->in->room() == 0) u->in->compact();
    setUpRead(u, u->in->room() > 0);  // room again: read the member on
  }
  bool drained = (s->out == nullptr || s->out->empty()) && ex.resp_fwd == 0;
  if (ex.resp_done && drained) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    s->stream->complete = true;
    finishExchange(s);
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    s->stream->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

// Writes what the out buffer (and overflow) hold. False when the socket is full or closed.
bool writeOut(ClientConn* c) {
  H2Session* h = c->h2;
  uint32_t out_left = c->out != nullptr ? c->out->size() : 0;
  if (out_left == 0 && h->overflow.empty()) return true;
  iovec iov[2];
  int n = 0;
  if (out_left > 0) iov[n++] = {c->out->begin(), out_left};
  if (!h->overflow.empty()) iov[n++] = {h->overflow.data(), h->overflow.size()};
  ssize_t wr = clientSendv(c, iov, n);
  if (wr < 0) {
    if (errno == EAGAIN || errno == EINTR) {
      setClientWrite(c, true);
      setClientRead(c, false);  // backpressure: no more requests while answers pile up
      return false;
    }
    closeClient(c);
    return false;
  }
  size_t k = static_cast<size_t>(wr);
  size_t from_out = std::min<size_t>(k, out_left);
  if (from_out > 0) c->out->start += static_cast<uint32_t>(from_out);
  k -= from_out;
  if (k > 0) h->overflow.erase(0, k);
  if ((c->out != nullptr && !c->out->empty()) || !h->overflow.empty()) {
    setClientWrite(c, true);
    setClientRead(c, false);
    return false;
  }
  releaseIfEmpty(c->worker->buffers(), c->out);
  setClientWrite(c, false);
  if (nghttp2_session_want_read(h->ng)) setClientRead(c, true);
  return true;
}

void h2Send(ClientConn* c) {
  H2Session* h = c->h2;
  if (h == nullptr || h->in_send) return;
  h->in_send = true;
  for (int round = 0; round < 64; ++round) {
    if (!writeOut(c)) {
      if (c->h2 != nullptr) h->in_send = false;
      return;
    }
    if (!h->to_reset.empty()) {
      std::vector<int32_t> ids;
      ids.swap(h->to_reset);
      for (int32_t id : ids)
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
    }
    if (!nghttp2_session_want_write(h->ng)) break;
    if (c->out == nullptr) c->out = c->worker->buffers().get();
    IoBuffer* b = c->out;
    b->compact();
    bool produced = false;
    if (!h2TakeOutput(h->ng, b, &h->overflow, &produced)) {
      h->in_send = false;
      closeClient(c);
      return;
    }
    if (!produced && b->empty() && h->overflow.empty()) break;
  }
  h->in_send = false;
  if (!writeOut(c)) return;
  if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
    closeClient(c);  // GOAWAY went out and no stream is left
  }
}

// Feeds c->in to nghttp2. False when the connection was closed.
bool processInput(ClientConn* c) {
  H2Session* h = c->h2;
  if (c->in == nullptr || c->in->empty()) return true;
  ssize_t rv = nghttp2_session_mem_recv(h->ng, reinterpret_cast<const uint8_t*>(c->in->begin()),
                                        c->in->size());
  if (c->h2 == nullptr) return false;  // a callback closed the connection
  if (rv < 0) {
    // nghttp2 queued a GOAWAY for most errors: try to send it, then close.
    if (!h->goaway) {
      nghttp2_session_terminate_session(h->ng, NGHTTP2_PROTOCOL_ERROR);
      h->goaway = true;
    }
    h2Send(c);
    if (c->view != nullptr) closeClient(c);
    return false;
  }
  c->in->start += static_cast<uint32_t>(rv);
  releaseIfEmpty(c->worker->buffers(), c->in);
  std::vector<int32_t> ids;
  ids.swap(h->to_start);
  for (int32_t id : ids) {
    ClientConn* s = streamOf(h->ng, id);
    if (s != nullptr && s->view != nullptr && s->state == ClientState::kHead) processHeads(s);
  }
  if (h->to_start.empty()) {
    ids.clear();
    ids.swap(h->to_start);  // keep the capacity
  }
  return true;
}

}  // namespace

bool h2TakeOutput(nghttp2_session* ng, IoBuffer* b, std::string* overflow, bool* produced) {
  while (b->room() >= 1024 && overflow->empty()) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(ng, &data);
    if (n < 0) return false;
    if (n == 0) break;
    *produced = true;
    if (b->room() >= static_cast<size_t>(n)) {
      std::memcpy(b->data() + b->end, data, static_cast<size_t>(n));
      b->end += static_cast<uint32_t>(n);
    } else {
      overflow->append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
  }
  return true;
}

H2Preface h2CheckPreface(const char* data, size_t n) {
  size_t m = std::min(n, kPrefaceLen);
  if (std::memcmp(data, kPreface, m) != 0) return H2Preface::kNo;
  return m == kPrefaceLen ? H2Preface::kYes : H2Preface::kPartial;
}

void h2Start(ClientConn* c) {
  Worker* w = c->worker;
  const ListenerView& lv = c->view->listeners[c->listener];
  const config::Http2Settings& cfg = lv.cfg->http2;
  auto* h = new H2Session();
  h->conn = c;
  c->h2 = h;
  c->first_request = false;
  c->state = ClientState::kExchange;  // never "idle between requests" in HTTP/1.1's sense

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, onFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, onDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, onStreamClose);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, onFrameSend);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  // nghttp2's own bucket is the backstop (it answers INTERNAL_ERROR); ours, in onFrameRecv,
  // trips first and says ENHANCE_YOUR_CALM.
  nghttp2_option_set_stream_reset_rate_limit(opt, 2ull * cfg.reset_burst, 2ull * cfg.reset_rate);
  nghttp2_option_set_max_continuations(opt, cfg.max_continuations);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_session_server_new2(&h->ng, cbs, c, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  // A stream's request bytes wait in one buffer until the member takes them, so the window a
  // stream gets is what that buffer can hold.
  uint32_t window = std::min<uint32_t>(cfg.initial_window_bytes, w->buffers().bufferBytes() - 2048);
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lv.limits.max_head_bytes},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
  // The connection window covers many streams at once (each stream is bounded above).
  nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, 1 << 20);
  event_assign(&h->send_ev, w->base(), -1, 0, onSendEvent, c);
  h->reset_tokens = cfg.reset_burst;
  h->reset_refilled = w->now();
  lv.stats->h2_connections.inc();
  setDeadline(c, w->now() + lv.cfg->timeouts.idle);
  setClientRead(c, true);
  if (!processInput(c)) return;
  h2Send(c);
}

void h2OnReadable(ClientConn* c) {
  Worker* w = c->worker;
  if (c->in == nullptr) c->in = w->buffers().get();
  if (c->in->room() == 0) c->in->compact();
  ssize_t n = clientRecv(c, c->in->data() + c->in->end, c->in->room());
  if (n > 0) {
    c->in->end += static_cast<uint32_t>(n);
    // SSL_read returns one record at a time: take what else is there while the buffer has
    // room, so a burst of small records costs one pass through nghttp2, not one each.
    for (int i = 0; c->ssl != nullptr && i < 16 && c->in->room() > 0; ++i) {
      ssize_t more = clientRecv(c, c->in->data() + c->in->end, c->in->room());
      if (more <= 0) break;
      c->in->end += static_cast<uint32_t>(more);
    }
    if (c->ssl != nullptr && SSL_has_pending(c->ssl)) event_active(&c->rev, EV_READ, 1);
    if (c->view != w->view() && !c->h2->goaway &&
        w->view()->listenerIndex(listenerOf(c).name) < 0) {
      h2Drain(c);  // a reload removed the listener: finish what is open, take nothing new
    }
    if (!processInput(c)) return;
    scheduleSend(c->h2);
    return;
  }
  releaseIfEmpty(w->buffers(), c->in);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  closeClient(c);  // the client closed or reset the connection
}

void h2OnWritable(ClientConn* c) { h2Send(c); }

void h2OnTimeout(ClientConn* c) {
  H2Session* h = c->h2;
  if (h->active > 0) {
    setDeadline(c, c->worker->now() + listenerOf(c).timeouts.idle);
    return;
  }
  if (h->goaway) {  // the client did not go away in time after ours
    closeClient(c);
    return;
  }
  c->worker->mutableCounters().downstream_cx_idle_timeout.inc();
  h2Drain(c);
  setDeadline(c, c->worker->now() + std::chrono::seconds(5));
}

void h2Drain(ClientConn* c) {
  H2Session* h = c->h2;
  if (h == nullptr || h->goaway) return;
  h->goaway = true;
  nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                        NGHTTP2_NO_ERROR, nullptr, 0);
  scheduleSend(h);
}

void h2Close(ClientConn* c) {
  H2Session* h = c->h2;
  h->closing = true;
  event_del(&h->send_ev);
  while (h->streams != nullptr) {
    ClientConn* s = h->streams;
    s->stream->closed = true;
    closeClient(s);  // unlinks itself
  }
  c->h2 = nullptr;
  nghttp2_session_del(h->ng);
  delete h;
}

bool h2SubmitResponse(ClientConn* s, const ResponseHead& r, bool has_body) {
  H2Session* h = s->parent->h2;
  H2StreamState& st = *s->stream;
  if (h == nullptr || st.closed) return false;
  // nghttp2 copies names and values; names must be lowercase in HTTP/2.
  IoBuffer* scratch = s->worker->buffers().get();
  nghttp2_nv nva[kMaxHeaderFields + 1];
  size_t n = 0;
  char status[3] = {static_cast<char>('0' + r.status / 100),
                    static_cast<char>('0' + r.status / 10 % 10),
                    static_cast<char>('0' + r.status % 10)};
  nva[n++] = {reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
              reinterpret_cast<uint8_t*>(status), 7, 3, NGHTTP2_NV_FLAG_NONE};
  for (uint32_t i = 0; i < r.header_count; ++i) {
    if (r.isHopByHop(i)) continue;
    std::string_view name = r.headers[i].name;
    std::string_view value = r.headers[i].value;
    if (scratch->room() < name.size()) break;
    char* lower = scratch->data() + scratch->end;
    for (size_t k = 0; k < name.size(); ++k) {
      char ch = name[k];
      lower[k] = ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch;
    }
    scratch->end += static_cast<uint32_t>(name.size());
    nva[n++] = {reinterpret_cast<uint8_t*>(lower),
                reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                value.size(), NGHTTP2_NV_FLAG_NONE};
  }
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = readBody;
  int rv = nghttp2_submit_response(h->ng, st.id, nva, n, has_body ? &prd : nullptr);
  s->worker->buffers().put(scratch);
  if (rv != 0) return false;
  st.submitted = true;
  st.has_body = has_body;
  scheduleSend(h);
  return true;
}

void h2SubmitLocalReply(ClientConn* s, uint16_t status) {
  H2Session* h = s->parent->h2;
  H2StreamState& st = *s->stream;
  if (h == nullptr || st.closed || st.submitted) {
    closeClient(s);
    return;
  }
  char code[3] = {static_cast<char>('0' + status / 100), static_cast<char>('0' + status / 10 % 10),
                  static_cast<char>('0' + status % 10)};
  char len[16];
  int len_n = std::snprintf(len, sizeof(len), "%u", s->out != nullptr ? s->out->size() : 0);
  nghttp2_nv nva[] = {
      {reinterpret_cast<uint8_t*>(const_cast<char*>(":status")), reinterpret_cast<uint8_t*>(code),
       7, 3, NGHTTP2_NV_FLAG_NONE},
      {reinterpret_cast<uint8_t*>(const_cast<char*>("content-type")),
       reinterpret_cast<uint8_t*>(const_cast<char*>("text/plain")), 12, 10, NGHTTP2_NV_FLAG_NONE},
      {reinterpret_cast<uint8_t*>(const_cast<char*>("content-length")),
       reinterpret_cast<uint8_t*>(len), 14, static_cast<size_t>(len_n), NGHTTP2_NV_FLAG_NONE},
      {reinterpret_cast<uint8_t*>(const_cast<char*>("retry-after")), nullptr, 11, 0,
       NGHTTP2_NV_FLAG_NONE},
  };
  char retry[16];
  size_t nv_count = 3;
  if (s->ex.retry_after_s > 0) {  // 429: when the client may try again
    int n = std::snprintf(retry, sizeof(retry), "%u", s->ex.retry_after_s);
    nva[3].value = reinterpret_cast<uint8_t*>(retry);
    nva[3].valuelen = static_cast<size_t>(n);
    nv_count = 4;
  }
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = readBody;
  if (nghttp2_submit_response(h->ng, st.id, nva, nv_count, &prd) != 0) {
    closeClient(s);
    return;
  }
  st.submitted = true;
  st.has_body = true;
  scheduleSend(h);
}

void h2StreamFlush(ClientConn* s) {
  H2Session* h = s->parent->h2;
  H2StreamState& st = *s->stream;
  if (h == nullptr || !st.submitted || st.closed) return;
  if (!st.has_body) {
    if (!st.complete) {
      st.complete = true;
      finishExchange(s);
    }
    scheduleSend(h);
    return;
  }
  if (st.deferred) {
    st.deferred = false;
    nghttp2_session_resume_data(h->ng, st.id);
  }
  UpstreamConn* u = s->ex.up;
  if (u != nullptr && u->in != nullptr && u->in->room() == 0) {
    u->in->compact();
    if (u->in->room() == 0) setUpRead(u, false);  // the client's window is the limit now
  }
  scheduleSend(h);
}

void h2StreamBodyConsumed(ClientConn* s) {
  H2Session* h = s->parent->h2;
  H2StreamState& st = *s->stream;
  if (h == nullptr || st.unacked == 0) return;
  uint32_t buffered = s->in != nullptr ? s->in->size() : 0;
  if (st.unacked <= buffered) return;
  nghttp2_session_consume(h->ng, st.id, st.unacked - buffered);
  st.unacked = buffered;
  scheduleSend(h);
}

void h2StreamExchangeDone(ClientConn* s) {
  H2Session* h = s->parent->h2;
  if (h == nullptr) return;
  // The answer is out but the client is still sending: stop it (RFC 9113 section 8.1).
  if (!s->stream->end_stream && !s->stream->closed) h->to_reset.push_back(s->stream->id);
  scheduleSend(h);
}

void h2StreamClosed(ClientConn* s) {
  ClientConn* c = s->parent;
  H2Session* h = c->h2;
  H2StreamState* st = s->stream;
  if (h != nullptr) {
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      h->streams = s->next;
    }
    if (s->next != nullptr) s->next->prev = s->prev;
    --h->active;
    if (!st->closed) {
      nghttp2_session_set_stream_user_data(h->ng, st->id, nullptr);
      nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    if (st->unacked > 0) nghttp2_session_consume(h->ng, st->id, st->unacked);
    if (h->active == 0) setDeadline(c, c->worker->now() + listenerOf(c).timeouts.idle);
    scheduleSend(h);
  }
  s->next = s->prev = nullptr;
  s->stream = nullptr;
  delete st;
}

}  // namespace scalegate::l7proxy
