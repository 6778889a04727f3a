#pragma once
// Client (downstream) and upstream connections of one worker, and the HTTP/1.1 exchange that
// ties them together. Worker thread only.
//
// Bytes move without copies where they can: request body bytes are written to the upstream
// straight out of the client's read buffer, response bytes straight out of the upstream's.
// Only message heads are rewritten (into a small buffer). A side whose peer cannot take more
// stops reading (backpressure) until the peer's socket drains.

#include <event2/event_struct.h>

#include <cstdint>
#include <memory>

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
  bool connected = false;
  bool reused = false;  // carried an earlier request
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
  MonoTime head_started{};  // first byte of the current head
  Exchange ex;
  char ip[46] = {};  // client address as text, for X-Forwarded-For
  event rev;
  event wev;
  event timer;
};

// Accepts a new client socket on worker `w` for listener index `listener`.
void acceptClient(Worker* w, int fd, const sockaddr* peer, socklen_t peer_len, int listener);
// Closes a client connection now (drain, shutdown).
void closeClient(ClientConn* c);
// True when the connection has no request in progress and no buffered bytes.
bool clientIsIdle(const ClientConn* c);
// Closes an idle pooled upstream connection.
void closeIdleUpstream(UpstreamConn* u);

}  // namespace scalegate::l7proxy
