#pragma once
// Client (downstream) and upstream connections of one worker, and the HTTP/1.1 exchange that
// ties them together. Worker thread only.
//
// Bytes move without copies where they can: request body bytes are written to the upstream
// straight out of the client's read buffer, response bytes straight out of the upstream's.
// Only message heads are rewritten (into a small buffer). A side whose peer cannot take more
// stops reading (backpressure) until the peer's socket drains.

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "common/clock.h"
#include "l7proxy/http1_parser.h"
#include "l7proxy/io_buffer.h"
#include "l7proxy/stats.h"

namespace scalegate::l7proxy {

class Worker;
struct SnapshotView;
struct PoolView;
struct MemberSlot;
struct ClientConn;
struct H2Session;
class ClientTable;
struct H2Upstream;
struct UpstreamConn;

inline constexpr int kMaxAttempts = 6;

// What an HTTP/2 stream towards a member keeps (h2_upstream.cc). The stream is an UpstreamConn
// without a socket whose `in` receives the member's response rewritten as HTTP/1.1 bytes.
struct H2UpStream {
  UpstreamConn* next = nullptr;  // the session's attached streams
  UpstreamConn* prev = nullptr;
  UpstreamConn* next_wait = nullptr;  // the session's streams not yet submitted (FIFO)
  UpstreamConn* prev_wait = nullptr;
  UpstreamConn* next_ready = nullptr;  // the session's streams with news for their exchange
  UpstreamConn* prev_ready = nullptr;
  int32_t id = 0;           // nghttp2 stream id once submitted
  uint32_t unconsumed = 0;  // DATA payload received, not yet given back as window
  uint32_t body_sent = 0;   // request-body bytes at the start of client->in already sent but
                            // kept there until the response starts (replay if refused)
  uint32_t chunk_at = 0;    // open chunk: offset of its size field from in->start
  uint32_t chunk_len = 0;   // open chunk: payload bytes so far
  uint32_t close_code = 0;  // RST_STREAM / GOAWAY error code when closed early
  uint16_t status = 0;      // :status of the head being received
  bool attached = false;    // linked into a live session
  bool waiting = false;     // in the session's wait list
  bool in_ready = false;
  bool submitted = false;
  bool body_deferred = false;  // the data provider waits for request-body bytes
  bool body_taken = false;     // request-body bytes went to nghttp2 (no transparent retry)
  bool head_done = false;      // the final response head is in `in`
  bool has_length = false;     // the response carries content-length
  bool chunked = false;        // the response body is framed chunked in `in`
  bool chunk_open = false;
  bool end_seen = false;  // END_STREAM from the member
  bool end_written = false;
  bool closed = false;       // nghttp2 closed the stream
  bool overflow = false;     // the response did not fit the stream's buffer
  bool unprocessed = false;  // refused / above the GOAWAY id: the member did not process it
};

struct UpstreamConn {
  int fd = -1;
  Worker* worker = nullptr;
  MemberSlot* slot = nullptr;
  ClientConn* client = nullptr;  // null while idle in the pool
  UpstreamConn* next_idle = nullptr;
  UpstreamConn* prev_idle = nullptr;
  IoBuffer* in = nullptr;  // response bytes
  MonoTime idle_since{};
  std::shared_ptr<MemberStats> stats_owner;  // keeps `stats` valid while the connection lives
  MemberWorkerStats* stats = nullptr;        // of the member that opened it, this worker's slot
  bool connected = false;                    // TCP connected and, with TLS, the handshake done
  bool tcp_connected = false;                // TLS: the handshake may start
  bool reused = false;                       // carried an earlier request
  SSL* ssl = nullptr;                        // TLS to the member (the pool's upstream.tls)
  bool read_enabled = false;
  bool write_armed = false;
  bool h2_stream = false;    // an HTTP/2 stream (no socket) on session `h2`
  H2Upstream* h2 = nullptr;  // HTTP/2: the session this connection carries or belongs to
  H2UpStream h2s;            // h2_stream only
  event rev;
  event wev;
};

enum class ClientState : uint8_t {
  kHead,      // waiting for or reading a request head (idle when no bytes are buffered)
  kExchange,  // a request is being proxied
  kClosing,   // flushing the last bytes, then close
};

// One request/response through the proxy.
struct Exchange {
  PoolView* pool = nullptr;
  int32_t member = -1;
  UpstreamConn* up = nullptr;
  IoBuffer* req_head = nullptr;  // the rewritten request head (kept for retries)
  uint32_t req_head_sent = 0;
  uint32_t req_fwd = 0;        // framed request-body bytes in client->in not yet written
  uint64_t req_remaining = 0;  // content-length bytes still to frame
  uint64_t req_body_bytes = 0;
  ChunkedDecoder req_chunks;
  ChunkedDecoder resp_chunks;
  uint64_t resp_remaining = 0;
  uint32_t resp_fwd = 0;  // framed response bytes in up->in not yet written
  uint16_t status = 0;
  uint32_t retry_after_s = 0;  // a 429 local reply's Retry-After
  BodyKind req_body = BodyKind::kNone;
  BodyKind resp_body = BodyKind::kNone;
  Method method = Method::kGet;
  bool req_done = false;  // every request byte framed
  bool req_sent = false;  // ...and written
  bool resp_head_done = false;
  bool resp_done = false;     // every response byte framed
  bool resp_started = false;  // a response byte went to the client
  bool client_keep_alive = true;
  bool client_http10 = false;      // HTTP/1.0 client: keep-alive must be said explicitly
  bool resp_dechunk = false;       // chunked response to an HTTP/1.0 client: strip the framing
  bool up_keep_alive = false;      // the member's response allows reusing its connection
  bool state_in_exchange = false;  // counted in downstream_rq_active
  bool up_h2 = false;  // the pool speaks HTTP/2 to members: request bodies lose chunked framing
  uint8_t attempts = 0;
  uint32_t exclude_count = 0;  // entries of tried[] the balancer must skip
  uint64_t hash = 0;           // affinity key hash (maglev / ring_hash)
  int32_t tried[kMaxAttempts] = {};
  MonoTime started{};
  MonoTime connect_deadline{};
};

// What an HTTP/2 stream keeps while its request head is being received and its response
// sent (http2.cc). Unused on HTTP/1.1 connections.
struct H2StreamState {
  int32_t id = 0;
  uint32_t unacked = 0;       // DATA payload received, not yet given back as window
  uint32_t header_bytes = 0;  // name + value + 32 per field (RFC 9113 section 6.5.2)
  uint32_t header_count = 0;
  // Pseudo-header values (offset, length) in the connection's `out` buffer, which serves as
  // scratch until the request line is written (pseudo-headers precede regular fields).
  uint32_t method_at = 0, method_len = 0;
  uint32_t path_at = 0, path_len = 0;
  uint32_t authority_at = 0, authority_len = 0;
  bool line_written = false;  // the request line is in `in`
  bool host_seen = false;
  bool length_seen = false;  // the client sent content-length
  bool chunked = false;      // the request body is sent upstream chunked (no content-length)
  bool end_stream = false;   // the client finished the request
  bool too_large = false;    // header limits exceeded: answer 431
  bool submitted = false;    // response HEADERS submitted
  bool has_body = false;     // ...with a data provider
  bool deferred = false;     // the data provider waits for bytes
  bool closed = false;       // nghttp2 closed the stream
  bool complete = false;     // the whole response went to nghttp2
};

struct ClientConn {
  int fd = -1;
  Worker* worker = nullptr;
  SnapshotView* view = nullptr;
  int listener = -1;  // index in view->listeners
  ClientConn* next = nullptr;
  ClientConn* prev = nullptr;
  IoBuffer* in = nullptr;   // request bytes
  IoBuffer* out = nullptr;  // bytes to send before any response body (heads, local replies)
  ClientState state = ClientState::kHead;
  bool read_enabled = false;
  bool write_armed = false;
  bool peer_eof = false;  // the client half-closed; close after the current response
  bool timer_armed = false;
  bool in_process = false;  // processHeads() is on the stack
  bool shut_wr = false;     // our side is shut down; waiting for the client's close
  uint8_t ip_len = 0;
  MonoTime deadline{};      // when the current phase times out
  MonoTime timer_at{};      // when the armed timer fires (lazy re-arming)
  MonoTime head_started{};  // first byte of the current head (the first: accept time)
  MonoTime send_since{};    // write pending: when it last made progress (timeouts.send)
  int32_t ip_slot = -1;     // slot in the listener's ClientTable (per-IP limits), -1 none
  ClientTable* ip_table = nullptr;
  Exchange ex;
  char ip[46] = {};              // client address as text, for X-Forwarded-For
  SSL* ssl = nullptr;            // TLS connection (null: cleartext)
  H2Session* h2 = nullptr;       // this connection speaks HTTP/2 (http2.cc)
  ClientConn* parent = nullptr;  // this is a stream of parent's HTTP/2 connection (no fd)
  H2StreamState* stream = nullptr;
  bool tls = false;       // arrived over TLS (X-Forwarded-Proto: https)
  bool tls_done = false;  // handshake complete
  bool tls_read_wants_write = false;
  bool first_request = true;  // nothing parsed yet (h2c prior-knowledge detection)
  event rev;
  event wev;
  event timer;
};

// Accepts a new client socket on worker `w` for listener index `listener`. `ip_slot`: the
// client's slot in the listener's ClientTable holding one connection count, or -1.
void acceptClient(Worker* w, int fd, const sockaddr* peer, socklen_t peer_len, int listener,
                  int32_t ip_slot);
// Closes a client connection now (drain, shutdown).
void closeClient(ClientConn* c);
// True when the connection has no request in progress and no buffered bytes.
bool clientIsIdle(const ClientConn* c);
// Closes an idle pooled upstream connection.
void closeIdleUpstream(UpstreamConn* u);

// --- shared with http2.cc (worker thread) ----------------------------------------------------
// Client transport (TLS or cleartext): bytes read, 0 on EOF, -1 with errno (EAGAIN: try later).
ssize_t clientRecv(ClientConn* c, char* p, size_t n);
ssize_t clientSendv(ClientConn* c, const iovec* iov, int n);
void setClientRead(ClientConn* c, bool on);
void setClientWrite(ClientConn* c, bool on);
void setDeadline(ClientConn* c, MonoTime d);
void setUpRead(UpstreamConn* u, bool on);
// Parses and starts the request whose HTTP/1.1 head is in c->in (streams use it too).
void processHeads(ClientConn* c);
// More request-body bytes arrived in c->in: frame them and send them upstream.
void requestBodyArrived(ClientConn* c);
// The response went out whole: release the upstream, count, end the request.
void finishExchange(ClientConn* c);
void localReply(ClientConn* c, LocalReply why, bool keep_open);

// --- shared with h2_upstream.cc (worker thread) ---------------------------------------------
// Opens a non-blocking connection (and TLS client state) to slot `s` for pool `p`; the socket's
// events call on_read / on_write with the connection. Null with *err = errno on failure.
UpstreamConn* connectUpstream(Worker* w, MemberSlot* s, const PoolView* p, int* err,
                              event_callback_fn on_read, event_callback_fn on_write);
// Closes the connection's socket now; the object is freed at the end of the loop pass.
void destroyUpstream(UpstreamConn* u);
void setUpWrite(UpstreamConn* u, bool on);
// Upstream transport (TLS or cleartext), like clientRecv / clientSendv.
ssize_t upstreamRecv(UpstreamConn* u, char* p, size_t n);
ssize_t upstreamSendv(UpstreamConn* u, const iovec* iov, int n);
// New response bytes are in c->ex.up->in: parse the head, frame the body, send to the client.
void upstreamInput(ClientConn* c);
// The upstream ended (reset: abnormally) before the response was framed whole.
void upstreamEof(ClientConn* c, bool reset);
// The upstream failed before any response byte: retry (idempotent) or answer 502/504.
void upstreamFailed(ClientConn* c, bool timeout);
// Counts a failed connect (or handshake) to the exchange's member.
void upstreamConnectFailed(ClientConn* c);
// The member did not process the request (refused stream, above a GOAWAY's last stream id, or
// a connection that never came up) and every request byte is still here: try again for any
// method within the pool's retry budget; `same_member` lets the balancer pick it again.
void upstreamRetryUnprocessed(ClientConn* c, bool same_member);

}  // namespace scalegate::l7proxy
