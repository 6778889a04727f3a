#pragma once
// HTTP/2 towards pool members (`upstream.protocol: h2`; nghttp2 client sessions). Worker
// thread only.
//
// Per worker and member address a few long-lived sessions (MemberSlot::h2_sessions) carry many
// exchanges at once. An exchange's upstream is a stream: an UpstreamConn without a socket
// (`h2_stream`) whose `in` buffer receives the member's response rewritten as HTTP/1.1 bytes,
// so response parsing, framing, client writes, HTTP/2 clients, counters and timeouts are the
// HTTP/1.1 path's own.
//
//   exchange ─► h2AttachStream: a session with a free stream (min of the member's
//      │        SETTINGS_MAX_CONCURRENT_STREAMS and h2_max_streams_per_connection), else a new
//      │        connection (up to h2_max_connections_per_member), else wait in the least busy
//      ▼        session's FIFO
//   req_head (HTTP/1.1) ─parse─► HEADERS ; body from the client's buffer ─► data provider
//   session socket ─► nghttp2_session_mem_recv ─► on_header: "name: value\r\n" ─► stream.in
//                                              └► on_data_chunk: payload (chunked if no
//                                                 content-length) ─► stream.in
//   after each read: streams with news ─► upstreamInput() (the HTTP/1.1 response path)
//
// Flow control both ways: the data provider reads request bytes only as the member's window
// allows (a full client buffer stops reading the client); response DATA window is given back
// (nghttp2_session_consume) only as bytes leave the stream's buffer, which holds a head plus
// one window (kH2UpstreamWindow).
// Failures: refused streams, streams above a GOAWAY's last stream id, and streams that never
// went out are retried for any method (the member did not process them); a connection lost
// under a stream is an upstream reset (retry if idempotent and nothing was answered, else
// 502 or a truncated response). TLS members must pick ALPN "h2": otherwise the connection
// counts as a connect failure (logged once per worker and member) — no fallback to HTTP/1.1.

#include <cstdint>
#include <string_view>

#include "common/clock.h"

namespace scalegate::l7proxy {

struct ClientConn;
struct UpstreamConn;
struct MemberSlot;
struct PoolView;

// Per-stream receive window towards members; stream buffers are this much larger (worker.cc).
inline constexpr uint32_t kH2UpstreamWindow = 16 * 1024;

// Pure helpers of the response rewrite (unit-tested).
// A conventional reason phrase for an HTTP/1.1 status line (HTTP/2 carries none).
std::string_view h2ReasonPhrase(uint16_t status);
// Writes `n` as the fixed-width chunk-size field "xxxxxxxx" (8 lowercase hex digits).
void h2ChunkSizeField(uint32_t n, char out[8]);
// Request fields that HTTP/2 forbids or carries elsewhere (lowercase names).
bool h2ConnectionSpecific(std::string_view lowercase_name);

// Attaches a new stream for c's exchange to a session of slot `s` (pool `p`, member index `m`),
// opening a connection if needed. Null (with *err) when no connection could be started.
UpstreamConn* h2AttachStream(ClientConn* c, MemberSlot* s, PoolView* p, int m, int* err);
// flushUpstream() for a stream: submit the request, or more request body.
void h2UpstreamFlush(ClientConn* c);
// setUpRead() for a stream: `on` = the stream's buffer has room again, give back window.
void h2StreamReadable(UpstreamConn* u, bool on);
// releaseUpstream() for a stream: resets it if still open and returns it to the free list.
void h2ReleaseStream(UpstreamConn* u);

// Worker housekeeping. Each may close sessions (and so release the slot).
// Closes sessions idle (no stream) longer than the slot's idle_timeout.
void h2SweepSessions(MemberSlot* s, MonoTime now);
// No new streams on these sessions; each closes after its last stream (drain, member removed).
void h2DrainSessions(MemberSlot* s);
// Closes every session now (shutdown).
void h2CloseSessions(MemberSlot* s);
// Frees a closed session's nghttp2 state (from the worker's deferred deletion).
void h2FreeSession(UpstreamConn* conn);

}  // namespace scalegate::l7proxy
