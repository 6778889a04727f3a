#pragma once
// HTTP/2 from clients (nghttp2 server sessions). Worker thread only.
//
// A connection turns into an HTTP/2 session when TLS negotiates ALPN "h2" or a cleartext
// connection opens with the client preface (h2c prior knowledge). Each request stream becomes
// a stream connection (a ClientConn with no socket, `parent` = the session's connection) whose
// `in` buffer receives the request rewritten as an HTTP/1.1 head (+ body), so routing,
// balancing, retries, timeouts, X-Forwarded-* and counters are those of the HTTP/1.1 path.
//
//   socket ─► nghttp2_session_mem_recv ─► on_header: "name: value\r\n" ─► stream.in
//                                       └► on_frame_recv(HEADERS): processHeads(stream)
//                                       └► on_data_chunk_recv: body ─► stream.in ─► upstream
//   upstream response head ─► h2SubmitResponse (HEADERS) ; body (de-chunked) ─► data provider
//   nghttp2_session_mem_send ─► out buffer ─► socket (one write per loop pass)
//
// Flow control both ways: request DATA window is given back (nghttp2_session_consume) only as
// the bytes go upstream; the data provider reads the upstream buffer only as far as the
// client's window allows, and a full upstream buffer stops reading the member.
// Defences: max concurrent streams and header list size (SETTINGS, enforced), RST_STREAM rate
// (token bucket, GOAWAY ENHANCE_YOUR_CALM), CONTINUATION count, header bytes counted as HPACK
// decodes them (431, or a stream reset past 4x the limit).

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace scalegate::l7proxy {

struct ClientConn;
struct IoBuffer;
struct ResponseHead;

// Moves what session `ng` has to send into `b` while `b` has 1 KiB of room, then into
// `overflow` (once overflow holds anything, nothing more goes to `b`, so bytes stay in order).
// Returns false on a session error; `*produced` tells whether any byte came. Shared by the
// client-side (http2.cc) and member-side (h2_upstream.cc) sessions.
bool h2TakeOutput(nghttp2_session* ng, IoBuffer* b, std::string* overflow, bool* produced);

enum class H2Preface { kNo, kPartial, kYes };
// Whether data[0..n) starts with (or is a prefix of) the HTTP/2 client connection preface.
H2Preface h2CheckPreface(const char* data, size_t n);

// --- the connection -----------------------------------------------------------------------
// Turns `c` into an HTTP/2 session; bytes already in c->in are processed.
void h2Start(ClientConn* c);
void h2OnReadable(ClientConn* c);
void h2OnWritable(ClientConn* c);
void h2OnTimeout(ClientConn* c);
// Sends GOAWAY (drain, reload); the connection closes after its last stream.
void h2Drain(ClientConn* c);
// Frees the session and its streams (from closeClient).
void h2Close(ClientConn* c);

// --- a stream (stream connections only) -----------------------------------------------------
// Creates the stream connection for `id` on session connection `parent`; null when the
// listener is gone.
ClientConn* newStreamConn(ClientConn* parent, int32_t id);
// The member's response head arrived: submit it as HEADERS. False when it cannot be sent.
bool h2SubmitResponse(ClientConn* s, const ResponseHead& r, bool has_body);
// A local reply (status, body already in s->out).
void h2SubmitLocalReply(ClientConn* s, uint16_t status);
// More response bytes are framed (or the response ended): let the data provider run.
void h2StreamFlush(ClientConn* s);
// Request-body bytes left s->in for the member: give the window back.
void h2StreamBodyConsumed(ClientConn* s);
// The exchange finished (response handed to nghttp2).
void h2StreamExchangeDone(ClientConn* s);
// The stream connection is closing (closeClient): reset the stream if still open, unlink.
void h2StreamClosed(ClientConn* s);

}  // namespace scalegate::l7proxy
