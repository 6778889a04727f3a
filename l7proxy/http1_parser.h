#pragma once
// Strict, zero-copy, allocation-free HTTP/1.1 message-head parser (RFC 9112) for the L7 hot path,
// plus a streaming validator for the chunked transfer-coding.
//
// Who calls it: L7 workers (any thread; every function here is pure over the bytes it is given).
// How: the worker reads into its connection buffer and calls parseRequestHead() /
// parseResponseHead() with the *whole unconsumed buffer* after every read. The result is
// kIncomplete until the head (through the blank line) is present, kComplete with head_bytes, or
// kError as soon as the bytes already seen are invalid (a bad byte or line is rejected at once; the
// parser never waits for the end of the head to reject it). Every string_view in the output points
// into the caller's buffer (except RequestHead::path, which may be the static "/" for an
// absolute-form target without a path) and is valid while that buffer is. Each call re-scans the
// buffer from its start: cost is linear in len and nothing is kept between calls (a peer that
// trickles a head one byte per read costs O(max_head_bytes^2) in total; bound reads per head if
// that matters).
//
// Rules enforced (request errors in brackets; every response error is 502):
//  Request line
//   - method = token, then exactly one SP, request-target, one SP, HTTP-version, CRLF      [400]
//   - request-target: bytes 0x21..0x7E only (no SP, CTL, DEL, non-ASCII), no '#'          [400]
//     forms: origin-form "/..."; absolute-form "http://" / "https://" authority [path]
//     (scheme case-insensitive, no userinfo, non-empty host; `host` comes from it);
//     authority-form "host:port" only and always with CONNECT; "*" only with OPTIONS      [400]
//   - request-target longer than max_uri_bytes (reported as soon as it is seen)            [414]
//   - version exactly "HTTP/1.0" or "HTTP/1.1"; any other "HTTP/d.d"                       [505]
//     anything else                                                                        [400]
//   - up to kMaxLeadingEmptyLines CRLFs before the request line are skipped (and counted in
//     head_bytes); more                                                                    [400]
//  Lines and fields
//   - CRLF only: a bare LF or bare CR anywhere in the head                                 [400]
//   - NUL and other CTLs (HTAB allowed in field values only), DEL                          [400]
//   - obs-fold (a field line starting with SP/HTAB, also the first one)                    [400]
//   - field name: non-empty token; whitespace between name and colon                       [400]
//   - field value: OWS trimmed on both sides; obs-text (0x80..0xFF) allowed
//  Framing (RFC 9112 section 6)
//   - Content-Length: 1*DIGIT, <= 2^62; several fields or a comma list only if every
//     element is identical; empty element, sign, inner space, hex                          [400]
//   - Transfer-Encoding with Content-Length (either order)                                 [400]
//   - Transfer-Encoding in an HTTP/1.0 request                                             [400]
//   - Transfer-Encoding whose final coding is not "chunked"                                [400]
//     (responses: body = kUntilClose), "chunked" listed more than once                     [400]
//     "chunked" not last, e.g. "chunked, gzip"                                             [400]
//   - any coding other than chunked before it, e.g. "gzip, chunked"                        [501]
//     (responses: accepted, body = kChunked, the coding is forwarded untouched)
//   - responses: CL+TE -> 502; TE in an HTTP/1.0 response -> 502 (faulty framing);
//     1xx/204/304, HEAD requests and 2xx to CONNECT -> kNone; neither CL nor TE -> kUntilClose
//  Host (requests)
//   - required in HTTP/1.1 (also with absolute-form); at most one                          [400]
//   - value: empty, or a reg-name/IPv4 (ALPHA DIGIT -._~!$&'()*+;= and %XX; no ',') or
//     an [IPv6] literal, with an optional ":port" of 1..5 digits <= 65535                 [400]
//  Limits
//   - head longer than max_head_bytes, reported as soon as that many bytes are buffered
//     without the end of the head                                                          [431]
//   - more than min(max_headers, kMaxHeaderFields) fields                                  [431]
//  Connection semantics
//   - keep_alive: 1.1 unless a Connection "close" token; 1.0 only with "keep-alive" and no
//     "close"; responses delimited by close are never keep-alive
//   - hop-by-hop fields (hop_by_hop_mask): Connection, Keep-Alive, Proxy-Connection, TE,
//     Transfer-Encoding, Upgrade, and every field named by a Connection token, except
//     Host and Content-Length, which a Connection token can never remove (removing them
//     would change routing or framing downstream). NB: Transfer-Encoding is in the mask, but
//     ChunkedDecoder forwards chunked bytes verbatim, so a proxy that drops hop-by-hop fields
//     must re-emit "Transfer-Encoding: chunked" when body == kChunked.
//   - expect_continue: "Expect: 100-continue" in an HTTP/1.1 request (ignored in 1.0, RFC 9110
//     section 10.1.1)
//   - upgrade: a Connection "upgrade" token and an Upgrade field are both present
//
// ChunkedDecoder (RFC 9112 section 7.1), errors are sticky:
//   - chunk-size: 1..16 HEXDIG, no sign, "0x" or leading whitespace; sizes >= 2^62 rejected
//     (so no downstream parser can read it as negative)
//   - chunk-ext: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), at most
//     kMaxChunkLineBytes per chunk-size line
//   - exactly CRLF after chunk-data; last-chunk "0" [ext] CRLF, trailer field lines (same rules
//     as header lines, at most kMaxTrailerBytes in total), CRLF
//   - bare LF / bare CR anywhere in the framing is an error
//   - works for any split of the input, down to one byte per feed()

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace scalegate::l7proxy {

struct HeaderField {
  std::string_view name;
  std::string_view value;  // trimmed of leading and trailing OWS
};

enum class BodyKind : uint8_t {
  kNone,
  kContentLength,  // also for "Content-Length: 0"
  kChunked,
  kUntilClose,  // responses only: the body ends when the upstream closes
};

struct ParseLimits {
  uint32_t max_head_bytes = 16384;
  uint32_t max_headers = 100;  // capped at kMaxHeaderFields
  uint32_t max_uri_bytes = 8192;
};

enum class ParseState : uint8_t { kIncomplete, kComplete, kError };

struct ParseOutcome {
  ParseState state = ParseState::kIncomplete;
  uint16_t error_status = 0;           // on kError: 400, 414, 431, 501, 505 (requests); 502
  const char* error_reason = nullptr;  // on kError: static string naming the rule
  uint32_t head_bytes = 0;    // on kComplete: bytes of the head incl. the final CRLF CRLF (and any
                              // skipped leading CRLFs)
  uint32_t error_offset = 0;  // on kError: offset of the byte (or start of the element) at fault
};

enum class Method : uint8_t {
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kOptions,
  kTrace,
  kPatch,
  kConnect,
  kOther,
};

// GET HEAD PUT DELETE OPTIONS TRACE (RFC 9110 section 9.2.2).
bool isIdempotent(Method m);

inline constexpr uint32_t kMaxHeaderFields = 256;
// Empty lines (CRLF) accepted and skipped before a request line (RFC 9112 section 2.2).
inline constexpr uint32_t kMaxLeadingEmptyLines = 4;
// Content-Length may be at most this; a chunk-size must stay below it.
inline constexpr uint64_t kMaxBodyLength = uint64_t{1} << 62;

struct RequestHead {
  Method method;
  std::string_view method_text;
  std::string_view target;
  // target up to '?'; absolute-form: the path part ("/" if empty); authority-form: "".
  std::string_view path;
  uint8_t version_minor;  // 0 or 1
  // authority of absolute-form / CONNECT's target, else the Host field; "" if absent
  std::string_view host;
  BodyKind body;            // kNone, kContentLength or kChunked
  uint64_t content_length;  // when kContentLength
  bool keep_alive;
  bool expect_continue;
  bool upgrade;
  uint32_t header_count;
  HeaderField headers[kMaxHeaderFields];
  uint64_t hop_by_hop_mask[kMaxHeaderFields / 64];  // bit i: headers[i] is hop-by-hop

  bool isHopByHop(uint32_t i) const;
  // Index of the first field whose name equals `lowercase_name` case-insensitively, or -1.
  int32_t findHeader(std::string_view lowercase_name) const;
};

// Parses the request head at the start of data[0..len). On kComplete fills *out (only the first
// header_count entries of headers[] are written). On other states *out is unspecified.
ParseOutcome parseRequestHead(const char* data, size_t len, const ParseLimits& limits,
                              RequestHead* out);

struct ResponseHead {
  uint16_t status;
  uint8_t version_minor;
  std::string_view reason;  // may be empty
  BodyKind body;  // kNone for 1xx/204/304 or HEAD/CONNECT-2xx requests; kUntilClose if no CL/TE
  uint64_t content_length;
  bool keep_alive;
  uint32_t header_count;
  HeaderField headers[kMaxHeaderFields];
  uint64_t hop_by_hop_mask[kMaxHeaderFields / 64];

  bool isHopByHop(uint32_t i) const;
  int32_t findHeader(std::string_view lowercase_name) const;
};

// Parses the response head at the start of data[0..len); request_method is the method of the
// request it answers (HEAD responses and 2xx to CONNECT have no body). Invalid -> kError, 502.
ParseOutcome parseResponseHead(const char* data, size_t len, const ParseLimits& limits,
                               Method request_method, ResponseHead* out);

// Case-insensitive ASCII compare of s against an already-lowercase name.
bool equalsLowercase(std::string_view s, std::string_view lowercase);

// Validates chunked transfer-coding bytes as they stream through the proxy (the bytes are
// forwarded verbatim; this only checks framing and finds the end of the message). One per
// message direction of a connection; worker thread.
class ChunkedDecoder {
 public:
  static constexpr uint32_t kMaxChunkLineBytes = 4096;  // chunk-size line incl. extensions
  static constexpr uint32_t kMaxTrailerBytes = 16384;   // all trailer lines together

  struct Step {
    size_t consumed = 0;  // bytes of data[] that belong to this message
    bool done = false;    // the final CRLF after the trailers has been consumed
    bool error = false;   // framing is invalid; sticky until reset()
    const char* error_reason = nullptr;
  };

  // Consumes data[0..len); `consumed` == len unless the message ends inside the span (then the
  // count up to and including the final CRLF) or an error is found (then the offset of the bad
  // byte). After done or error, further feeds consume nothing and repeat the result.
  Step feed(const char* data, size_t len);
  uint64_t payloadBytes() const { return payload_bytes_; }  // chunk-data bytes seen so far
  // Chunk-data bytes that come next before any framing byte (0 when framing comes next), so a
  // caller that strips the framing can take whole data runs at once.
  uint64_t dataBytesAhead() const;
  bool done() const;
  bool failed() const;
  void reset();

 private:
  enum class State : uint8_t;

  uint64_t remaining_ = 0;      // chunk-size being read, then chunk-data bytes still to come
  uint64_t payload_bytes_ = 0;  // chunk-data bytes seen so far
  const char* error_reason_ = nullptr;
  uint32_t line_bytes_ = 0;  // bytes of the current chunk-size line, or of all trailers
  State state_{};            // zero is the start of a chunk-size line
  uint8_t size_digits_ = 0;
};

static_assert(sizeof(ChunkedDecoder) <= 32);

}  // namespace scalegate::l7proxy
