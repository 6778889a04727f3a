#pragma once
// Client (downstream) and upstream connections of one worker, and the HTTP/1.1 exchange that
// ties them together. Worker thread only.
//
// Bytes move without copies where they can: request body bytes are written to the upstream
// straight out of the client's read buffer, response bytes straight out of the upstream's.
// Only message heads are rewritten (into a small buffer). A side whose peer cannot take more
// stops reading (backpressure) until the peer's socket drains.

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

inline constexpr int kMaxAttempts = 6;

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

}  // namespace scalegate::l7proxy
