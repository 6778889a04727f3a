#include "l7proxy/http1_parser.h"

#include <array>
#include <bit>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace scalegate::l7proxy {
namespace {

// ---- Character classes -------------------------------------------------------------------

enum CharClass : uint8_t {
  kTchar = 1 << 0,     // token character (RFC 9110 section 5.6.2)
  kHexDigit = 1 << 1,  // HEXDIG
  kHostChar = 1 << 2,  // reg-name character except '%' (and ',', rejected on purpose)
  kQdText = 1 << 3,    // qdtext of a quoted-string (RFC 9110 section 5.6.4)
};

constexpr std::array<uint8_t, 256> makeCharClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] |= kTchar | kHexDigit | kHostChar;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kTchar | kHostChar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kTchar | kHostChar;
  for (int c = 'a'; c <= 'f'; ++c) t[c] |= kHexDigit;
  for (int c = 'A'; c <= 'F'; ++c) t[c] |= kHexDigit;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] |= kTchar;
  // unreserved "-._~" and sub-delims "!$&'()*+;=" (',' left out: it reads as a list separator).
  for (char c : std::string_view("-._~!$&'()*+;=")) t[static_cast<uint8_t>(c)] |= kHostChar;
  t['\t'] |= kQdText;
  t[' '] |= kQdText;
  t[0x21] |= kQdText;
  for (int c = 0x23; c <= 0x5B; ++c) t[c] |= kQdText;
  for (int c = 0x5D; c <= 0x7E; ++c) t[c] |= kQdText;
  for (int c = 0x80; c <= 0xFF; ++c) t[c] |= kQdText;
  return t;
}

constexpr std::array<uint8_t, 256> kCharClass = makeCharClasses();

constexpr std::array<char, 256> makeLower() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return t;
}

constexpr std::array<char, 256> kLower = makeLower();

inline uint8_t classOf(char c) { return kCharClass[static_cast<uint8_t>(c)]; }
inline bool isTchar(char c) { return classOf(c) & kTchar; }
inline bool isHex(char c) { return classOf(c) & kHexDigit; }
inline bool isDigit(char c) { return c >= '0' && c <= '9'; }
inline bool isOws(char c) { return c == ' ' || c == '\t'; }
// CTL (0x00..0x1F) or DEL.
inline bool isCtl(char c) {
  const auto u = static_cast<uint8_t>(c);
  return u < 0x20 || u == 0x7F;
}
inline uint32_t hexValue(char c) {
  const auto u = static_cast<uint8_t>(c);
  return u <= '9' ? u - '0' : (u | 0x20) - 'a' + 10;
}

// ---- Scanning ----------------------------------------------------------------------------
// The hot loops look at 16 bytes per step (SSE2 is part of the x86-64 baseline); other targets
// take the byte loop.

// First byte in [p, end) that is a CTL or DEL; end if none.
const char* findCtl(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i k1f = _mm_set1_epi8(0x1F);
  const __m128i kdel = _mm_set1_epi8(0x7F);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, k1f), v);  // v <= 0x1F
    const __m128i del = _mm_cmpeq_epi8(v, kdel);
    const int mask = _mm_movemask_epi8(_mm_or_si128(low, del));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && !isCtl(*p)) ++p;
  return p;
}

// Request-target scan: first byte in [p, end) outside 0x21..0x7E or equal to '#'; end if none.
// *query is set to the first '?' before that byte, or nullptr.
const char* findTargetEnd(const char* p, const char* end, const char** query) {
  *query = nullptr;
#if defined(__SSE2__)
  const __m128i k20 = _mm_set1_epi8(0x20);
  const __m128i k7f = _mm_set1_epi8(0x7F);
  const __m128i hash = _mm_set1_epi8('#');
  const __m128i question = _mm_set1_epi8('?');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, k20), v);
    const __m128i high = _mm_cmpeq_epi8(_mm_max_epu8(v, k7f), v);
    const auto stop = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(low, high), _mm_cmpeq_epi8(v, hash))));
    if (*query == nullptr) {
      const auto q = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, question)));
      // Bits of q below the lowest bit of stop (all of q when stop == 0).
      const unsigned before_stop = stop == 0 ? q : q & ((stop & (0u - stop)) - 1);
      if (before_stop != 0) *query = p + __builtin_ctz(before_stop);
    }
    if (stop != 0) return p + __builtin_ctz(stop);
    p += 16;
  }
#endif
  for (; p < end; ++p) {
    const auto u = static_cast<uint8_t>(*p);
    if (u <= 0x20 || u >= 0x7F || u == '#') break;
    if (u == '?' && *query == nullptr) *query = p;
  }
  return p;
}

#if defined(__SSE2__)
// Lanes of v whose unsigned byte value lies in [lo, hi].
inline __m128i inRange(__m128i v, char lo, char hi) {
  const __m128i shifted = _mm_sub_epi8(v, _mm_set1_epi8(lo));
  return _mm_cmpeq_epi8(_mm_min_epu8(shifted, _mm_set1_epi8(static_cast<char>(hi - lo))), shifted);
}
#endif

// First byte in [p, end) that is not a tchar; end if none. Used for methods and field names.
const char* findNonTchar(const char* p, const char* end) {
#if defined(__SSE2__)
  // Outside 0x21..0x7E nothing is a tchar; inside, the exceptions are  " ( ) , / : ; < = > ? @
  // [ \ ] { }  which form these ranges.
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i bad = _mm_or_si128(inRange(v, 0x00, 0x20), inRange(v, 0x7F, static_cast<char>(0xFF)));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
    bad = _mm_or_si128(bad, inRange(v, '(', ')'));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(',')));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('/')));
    bad = _mm_or_si128(bad, inRange(v, ':', '@'));
    bad = _mm_or_si128(bad, inRange(v, '[', ']'));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('{')));
    bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('}')));
    const int mask = _mm_movemask_epi8(bad);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end && isTchar(*p)) ++p;
  return p;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<uint8_t>(a[i])] != kLower[static_cast<uint8_t>(b[i])]) return false;
  }
  return true;
}

// Calls fn(element) for every non-empty, OWS-trimmed element of a comma-separated list
// (RFC 9110 section 5.6.1: empty elements are ignored). Stops early if fn returns false.
template <typename Fn>
bool forEachListElement(std::string_view list, Fn&& fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view element = trimOws(list.substr(0, comma));
    if (!element.empty() && !fn(element)) return false;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return true;
}

// ---- Field-value grammars ----------------------------------------------------------------

enum class ContentLengthParse : uint8_t { kOk, kInvalid, kConflict };

// Content-Length = 1*DIGIT, or a list of identical values ("42, 42"). Empty elements, signs,
// inner whitespace and values above kMaxBodyLength are invalid.
ContentLengthParse parseContentLength(std::string_view v, uint64_t* out) {
  bool have = false;
  uint64_t first = 0;
  size_t i = 0;
  const size_t n = v.size();
  for (;;) {
    const size_t start = i;
    uint64_t value = 0;
    while (i < n && isDigit(v[i])) {
      const uint64_t d = static_cast<uint64_t>(v[i] - '0');
      if (value > (kMaxBodyLength - d) / 10) return ContentLengthParse::kInvalid;
      value = value * 10 + d;
      ++i;
    }
    if (i == start) return ContentLengthParse::kInvalid;
    if (have && value != first) return ContentLengthParse::kConflict;
    have = true;
    first = value;
    while (i < n && isOws(v[i])) ++i;
    if (i == n) break;
    if (v[i] != ',') return ContentLengthParse::kInvalid;
    ++i;
    while (i < n && isOws(v[i])) ++i;
  }
  *out = first;
  return ContentLengthParse::kOk;
}

bool isValidPort(std::string_view port) {
  if (port.empty() || port.size() > 5) return false;
  uint32_t value = 0;
  for (char c : port) {
    if (!isDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  return value <= 65535;
}

// uri-host [ ":" port ] (RFC 3986 section 3.2): reg-name / IPv4address / "[" IPv6 "]".
bool isValidAuthority(std::string_view a, bool require_port) {
  size_t i = 0;
  const size_t n = a.size();
  if (n == 0) return false;
  if (a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    bool colon = false;
    for (size_t j = 1; j < close; ++j) {
      const char c = a[j];
      if (c == ':') {
        colon = true;
      } else if (!isHex(c) && c != '.') {
        return false;
      }
    }
    if (!colon) return false;
    i = close + 1;
  } else {
    for (;;) {
      while (i < n && (classOf(a[i]) & kHostChar)) ++i;
      if (i == n || a[i] != '%') break;
      if (i + 2 >= n || !isHex(a[i + 1]) || !isHex(a[i + 2])) return false;
      i += 3;
    }
    if (i == 0) return false;
  }
  if (i == n) return !require_port;
  if (a[i] != ':') return false;
  return isValidPort(a.substr(i + 1));
}

Method classifyMethod(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "HEAD") return Method::kHead;
      if (m == "POST") return Method::kPost;
      break;
    case 5:
      if (m == "TRACE") return Method::kTrace;
      if (m == "PATCH") return Method::kPatch;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "OPTIONS") return Method::kOptions;
      if (m == "CONNECT") return Method::kConnect;
      break;
    default:
      break;
  }
  return Method::kOther;
}

enum class FieldName : uint8_t {
  kOther,
  kHost,
  kContentLength,
  kTransferEncoding,
  kConnection,
  kKeepAlive,
  kProxyConnection,
  kTe,
  kUpgrade,
  kExpect,
};

// name == lower ignoring ASCII case, for a name already known to be a token of lower.size()
// bytes and a lower made of lowercase letters and '-': OR-ing 0x20 lowercases a letter, and the
// only other byte that maps onto a letter or '-' is CR (0x0D -> '-'), which no token contains.
inline bool tokenIs(std::string_view name, std::string_view lower) {
  size_t i = 0;
  const size_t n = lower.size();
  for (; i + 8 <= n; i += 8) {
    uint64_t a;
    uint64_t b;
    std::memcpy(&a, name.data() + i, 8);
    std::memcpy(&b, lower.data() + i, 8);
    if ((a | 0x2020202020202020ull) != b) return false;
  }
  for (; i < n; ++i) {
    if ((name[i] | 0x20) != lower[i]) return false;
  }
  return true;
}

FieldName classifyFieldName(std::string_view name) {
  switch (name.size()) {
    case 2:
      if (tokenIs(name, "te")) return FieldName::kTe;
      break;
    case 4:
      if (tokenIs(name, "host")) return FieldName::kHost;
      break;
    case 6:
      if (tokenIs(name, "expect")) return FieldName::kExpect;
      break;
    case 7:
      if (tokenIs(name, "upgrade")) return FieldName::kUpgrade;
      break;
    case 10:
      if (tokenIs(name, "connection")) return FieldName::kConnection;
      if (tokenIs(name, "keep-alive")) return FieldName::kKeepAlive;
      break;
    case 14:
      if (tokenIs(name, "content-length")) return FieldName::kContentLength;
      break;
    case 16:
      if (tokenIs(name, "proxy-connection")) return FieldName::kProxyConnection;
      break;
    case 17:
      if (tokenIs(name, "transfer-encoding")) return FieldName::kTransferEncoding;
      break;
    default:
      break;
  }
  return FieldName::kOther;
}

// What the field lines say about framing and the connection, gathered while they are parsed.
struct FieldFacts {
  uint64_t content_length = 0;
  std::string_view host;
  uint32_t host_count = 0;
  bool has_content_length = false;
  bool has_transfer_encoding = false;
  bool te_chunked_seen = false;
  bool te_chunked_last = false;
  bool te_other_before_chunked = false;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool conn_names_fields = false;  // a Connection token other than close/keep-alive/upgrade
  bool has_upgrade_field = false;
  bool expect_continue = false;
};

inline void setBit(uint64_t* mask, uint32_t i) { mask[i >> 6] |= uint64_t{1} << (i & 63); }
inline bool testBit(const uint64_t* mask, uint32_t i) { return (mask[i >> 6] >> (i & 63)) & 1; }

// ---- The head parser shared by requests and responses --------------------------------------

class HeadParser {
 public:
  HeadParser(const char* data, size_t len, const ParseLimits& limits, bool is_response)
      : begin_(data),
        end_(data + (len < limits.max_head_bytes ? len : limits.max_head_bytes)),
        limits_(limits),
        at_size_limit_(len >= limits.max_head_bytes),
        is_response_(is_response) {}

  const ParseOutcome& outcome() const { return outcome_; }

  bool parseRequestLine(RequestHead* out, const char** cursor);
  bool parseStatusLine(ResponseHead* out, const char** cursor);
  template <typename Head>
  bool parseFields(const char* p, uint8_t version_minor, Head* out, FieldFacts* facts);
  template <typename Head>
  void markFieldsNamedByConnection(Head* out) const;

  bool fail(uint16_t status, const char* reason, const char* at) {
    outcome_.state = ParseState::kError;
    outcome_.error_status = is_response_ ? 502 : status;
    outcome_.error_reason = reason;
    outcome_.error_offset = static_cast<uint32_t>(at - begin_);
    return false;
  }

 private:
  // The bytes ran out before the head did: wait for more, unless the size limit is reached.
  bool needMore() {
    if (at_size_limit_) return fail(431, "head exceeds max_head_bytes", end_);
    outcome_.state = ParseState::kIncomplete;
    return false;
  }
  // Expects CRLF at p; on success *next is past it.
  bool expectCrlf(const char* p, const char** next) {
    if (p == end_) return needMore();
    if (*p == '\n') return fail(400, "bare LF", p);
    if (*p != '\r') return fail(400, "malformed line ending", p);
    if (p + 1 == end_) return needMore();
    if (p[1] != '\n') return fail(400, "bare CR", p);
    *next = p + 2;
    return true;
  }
  // "HTTP/" DIGIT "." DIGIT at p, checked byte by byte so a mismatch is reported as soon as it
  // arrives. On success *major/*minor are set and *next points past it.
  bool parseVersion(const char* p, int* major, int* minor, const char** next);
  bool applyField(FieldName kind, std::string_view value, uint8_t version_minor, FieldFacts* facts,
                  const char* at);
  bool applyTransferEncoding(std::string_view value, FieldFacts* facts, const char* at);
  bool applyConnection(std::string_view value, FieldFacts* facts);

  const char* const begin_;
  const char* const end_;  // scanning stops here: min(len, max_head_bytes)
  const ParseLimits& limits_;
  const bool at_size_limit_;
  const bool is_response_;
  ParseOutcome outcome_;
};

bool HeadParser::parseVersion(const char* p, int* major, int* minor, const char** next) {
  if (std::endian::native == std::endian::little && end_ - p >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    uint64_t http10;
    std::memcpy(&http10, "HTTP/1.0", 8);
    // "HTTP/1.0" and "HTTP/1.1" differ only in the lowest bit of the last byte.
    if ((word & ~(uint64_t{1} << 56)) == http10) {
      *major = 1;
      *minor = static_cast<int>((word >> 56) & 1);
      *next = p + 8;
      return true;
    }
  }
  static constexpr char kPrefix[] = "HTTP/";
  for (int i = 0; i < 8; ++i, ++p) {
    if (p == end_) return needMore();
    const char c = *p;
    bool ok;
    if (i < 5) {
      ok = c == kPrefix[i];
    } else if (i == 6) {
      ok = c == '.';
    } else {
      ok = isDigit(c);
    }
    if (!ok) return fail(400, c == '\n' ? "bare LF" : "malformed HTTP-version", p);
  }
  *major = p[-3] - '0';
  *minor = p[-1] - '0';
  *next = p;
  return true;
}

bool HeadParser::parseRequestLine(RequestHead* out, const char** cursor) {
  const char* p = begin_;
  // RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before the request-line.
  for (uint32_t empty_lines = 0;; ++empty_lines) {
    if (p == end_) return needMore();
    if (*p == '\n') return fail(400, "bare LF", p);
    if (*p != '\r') break;
    if (empty_lines == kMaxLeadingEmptyLines) {
      return fail(400, "too many empty lines before request-line", p);
    }
    if (!expectCrlf(p, &p)) return false;
  }

  const char* method = p;
  p = findNonTchar(p, end_);
  if (p == end_) return needMore();
  if (*p != ' ' || p == method) {
    if (*p == '\n') return fail(400, "bare LF", p);
    return fail(400, p == method ? "empty method" : "invalid character in method", p);
  }
  out->method_text = std::string_view(method, static_cast<size_t>(p - method));
  out->method = classifyMethod(out->method_text);
  ++p;

  const char* target = p;
  // Look no further than one byte past max_uri_bytes, so 414 is reported as early as possible.
  const size_t room = static_cast<size_t>(end_ - target);
  const char* scan_end = room > limits_.max_uri_bytes ? target + limits_.max_uri_bytes + 1 : end_;
  const char* query = nullptr;
  p = findTargetEnd(target, scan_end, &query);
  if (p == scan_end) {
    if (static_cast<size_t>(p - target) > limits_.max_uri_bytes) {
      return fail(414, "request-target exceeds max_uri_bytes", target);
    }
    return needMore();
  }
  if (*p != ' ') {
    if (*p == '\n') return fail(400, "bare LF", p);
    if (*p == '#') return fail(400, "fragment in request-target", p);
    if (*p == '\r' && p != target) return fail(400, "missing HTTP-version", p);
    return fail(400, p == target ? "empty request-target" : "invalid character in request-target",
                p);
  }
  if (p == target) return fail(400, "empty request-target", p);
  out->target = std::string_view(target, static_cast<size_t>(p - target));
  ++p;

  int major = 0;
  int minor = 0;
  const char* version = p;
  if (!parseVersion(p, &major, &minor, &p)) return false;
  if (!expectCrlf(p, &p)) return false;
  if (major != 1 || minor > 1) return fail(505, "unsupported HTTP version", version);
  out->version_minor = static_cast<uint8_t>(minor);

  // request-target forms (RFC 9112 section 3.2).
  const std::string_view t = out->target;
  out->host = {};
  if (t[0] == '/') {
    if (out->method == Method::kConnect) {
      return fail(400, "CONNECT requires authority-form", target);
    }
    out->path = query == nullptr ? t : t.substr(0, static_cast<size_t>(query - target));
  } else if (t == "*") {
    if (out->method != Method::kOptions) {
      return fail(400, "asterisk-form is only for OPTIONS", target);
    }
    out->path = t;
  } else if (out->method == Method::kConnect) {
    if (!isValidAuthority(t, /*require_port=*/true)) {
      return fail(400, "invalid authority-form request-target", target);
    }
    out->host = t;
    out->path = t.substr(0, 0);
  } else {
    size_t scheme_len = 0;
    if (t.size() > 7 && equalsLowercase(t.substr(0, 7), "http://")) {
      scheme_len = 7;
    } else if (t.size() > 8 && equalsLowercase(t.substr(0, 8), "https://")) {
      scheme_len = 8;
    } else {
      return fail(400, "invalid request-target", target);
    }
    const std::string_view rest = t.substr(scheme_len);
    const size_t authority_end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, authority_end);
    if (authority.find('@') != std::string_view::npos) {
      return fail(400, "userinfo in request-target", target);
    }
    if (!isValidAuthority(authority, /*require_port=*/false)) {
      return fail(400, "invalid authority in request-target", target);
    }
    out->host = authority;
    if (authority_end == std::string_view::npos || rest[authority_end] == '?') {
      out->path = "/";
    } else {
      const std::string_view path = rest.substr(authority_end);
      out->path = path.substr(0, path.find('?'));
    }
  }
  *cursor = p;
  return true;
}

bool HeadParser::parseStatusLine(ResponseHead* out, const char** cursor) {
  const char* p = begin_;
  int major = 0;
  int minor = 0;
  if (!parseVersion(p, &major, &minor, &p)) return false;
  if (p == end_) return needMore();
  if (*p != ' ') return fail(502, "malformed status-line", p);
  if (major != 1 || minor > 1) return fail(502, "unsupported HTTP version", begin_);
  ++p;
  uint32_t status = 0;
  for (int i = 0; i < 3; ++i, ++p) {
    if (p == end_) return needMore();
    if (!isDigit(*p)) return fail(502, "malformed status code", p);
    status = status * 10 + static_cast<uint32_t>(*p - '0');
  }
  if (status < 100 || status > 599) return fail(502, "status code out of range", p - 3);
  if (p == end_) return needMore();
  const char* reason = p;
  if (*p == ' ') {
    reason = ++p;
    for (;;) {
      p = findCtl(p, end_);
      if (p == end_) return needMore();
      if (*p != '\t') break;
      ++p;
    }
  }
  out->reason = std::string_view(reason, static_cast<size_t>(p - reason));
  if (!expectCrlf(p, &p)) return false;
  out->status = static_cast<uint16_t>(status);
  out->version_minor = static_cast<uint8_t>(minor);
  *cursor = p;
  return true;
}

template <typename Head>
bool HeadParser::parseFields(const char* p, uint8_t version_minor, Head* out, FieldFacts* facts) {
  const uint32_t max_fields =
      limits_.max_headers < kMaxHeaderFields ? limits_.max_headers : kMaxHeaderFields;
  uint32_t count = 0;
  for (;;) {
    if (p == end_) return needMore();
    const char first = *p;
    if (first == '\r') {
      const char* next = nullptr;
      if (!expectCrlf(p, &next)) return false;
      out->header_count = count;
      outcome_.state = ParseState::kComplete;
      outcome_.head_bytes = static_cast<uint32_t>(next - begin_);
      return true;
    }

    const char* name = p;
    p = findNonTchar(p, end_);
    if (p == end_) return needMore();
    if (*p != ':' || p == name) {
      if (*p == '\n') return fail(400, "bare LF", p);
      if (p == name) {
        if (isOws(first)) return fail(400, "obs-fold", p);
        if (first == ':') return fail(400, "empty field name", p);
        return fail(400, "invalid character in field name", p);
      }
      if (isOws(*p)) return fail(400, "whitespace between field name and colon", p);
      if (*p == '\r') return fail(400, "field line without colon", p);
      return fail(400, "invalid character in field name", p);
    }
    if (count == max_fields) return fail(431, "too many header fields", name);
    const std::string_view name_view(name, static_cast<size_t>(p - name));
    ++p;

    while (p < end_ && isOws(*p)) ++p;
    const char* value = p;
    for (;;) {
      p = findCtl(p, end_);
      if (p == end_) return needMore();
      if (*p != '\t') break;
      ++p;
    }
    if (*p == '\n') return fail(400, "bare LF", p);
    if (*p != '\r') return fail(400, "control character in field value", p);
    const char* value_end = p;
    if (!expectCrlf(p, &p)) return false;
    while (value_end > value && isOws(value_end[-1])) --value_end;
    const std::string_view value_view(value, static_cast<size_t>(value_end - value));

    out->headers[count] = HeaderField{name_view, value_view};
    const FieldName kind = classifyFieldName(name_view);
    if (kind != FieldName::kOther) {
      if (kind != FieldName::kHost && kind != FieldName::kContentLength &&
          kind != FieldName::kExpect) {
        setBit(out->hop_by_hop_mask, count);
      }
      if (!applyField(kind, value_view, version_minor, facts, name)) return false;
    }
    ++count;
  }
}

bool HeadParser::applyField(FieldName kind, std::string_view value, uint8_t version_minor,
                            FieldFacts* facts, const char* at) {
  switch (kind) {
    case FieldName::kHost:
      if (is_response_) return true;
      if (++facts->host_count > 1) return fail(400, "multiple host fields", at);
      if (!value.empty() && !isValidAuthority(value, /*require_port=*/false)) {
        return fail(400, "invalid host", at);
      }
      facts->host = value;
      return true;
    case FieldName::kContentLength: {
      if (facts->has_transfer_encoding) {
        return fail(400, "content-length with transfer-encoding", at);
      }
      uint64_t length = 0;
      const ContentLengthParse r = parseContentLength(value, &length);
      if (r == ContentLengthParse::kInvalid) return fail(400, "invalid content-length", at);
      if (r == ContentLengthParse::kConflict ||
          (facts->has_content_length && facts->content_length != length)) {
        return fail(400, "conflicting content-length values", at);
      }
      facts->has_content_length = true;
      facts->content_length = length;
      return true;
    }
    case FieldName::kTransferEncoding:
      if (version_minor == 0) {
        // RFC 9112 section 6.1: framing of an HTTP/1.0 message with Transfer-Encoding is faulty.
        return fail(400,
                    is_response_ ? "transfer-encoding in HTTP/1.0 response"
                                 : "transfer-encoding in HTTP/1.0 request",
                    at);
      }
      if (facts->has_content_length) return fail(400, "content-length with transfer-encoding", at);
      facts->has_transfer_encoding = true;
      return applyTransferEncoding(value, facts, at);
    case FieldName::kConnection:
      return applyConnection(value, facts);
    case FieldName::kUpgrade:
      facts->has_upgrade_field = true;
      return true;
    case FieldName::kExpect:
      if (!is_response_ && version_minor == 1 && equalsLowercase(value, "100-continue")) {
        facts->expect_continue = true;
      }
      return true;
    default:
      return true;
  }
}

bool HeadParser::applyTransferEncoding(std::string_view value, FieldFacts* facts, const char* at) {
  const char* reason = nullptr;
  forEachListElement(value, [&](std::string_view coding) {
    const bool chunked = equalsLowercase(coding, "chunked");
    if (chunked && facts->te_chunked_seen) {
      reason = "chunked listed more than once";
      return false;
    }
    if (!chunked && facts->te_chunked_seen && !is_response_) {
      // A request body must end with chunked (RFC 9112 section 6.3).
      reason = "chunked is not the final transfer-coding";
      return false;
    }
    if (chunked) {
      facts->te_chunked_seen = true;
    } else if (!facts->te_chunked_seen) {
      facts->te_other_before_chunked = true;
    }
    facts->te_chunked_last = chunked;
    return true;
  });
  if (reason != nullptr) return fail(400, reason, at);
  return true;
}

bool HeadParser::applyConnection(std::string_view value, FieldFacts* facts) {
  forEachListElement(value, [&](std::string_view option) {
    if (equalsLowercase(option, "close")) {
      facts->conn_close = true;
    } else if (equalsLowercase(option, "keep-alive")) {
      facts->conn_keep_alive = true;
    } else if (equalsLowercase(option, "upgrade")) {
      facts->conn_upgrade = true;
    } else {
      facts->conn_names_fields = true;
    }
    return true;
  });
  return true;
}

template <typename Head>
void HeadParser::markFieldsNamedByConnection(Head* out) const {
  for (uint32_t i = 0; i < out->header_count; ++i) {
    if (!equalsLowercase(out->headers[i].name, "connection")) continue;
    forEachListElement(out->headers[i].value, [&](std::string_view option) {
      for (uint32_t j = 0; j < out->header_count; ++j) {
        const std::string_view name = out->headers[j].name;
        if (!equalsIgnoreCase(name, option)) continue;
        // Never let a client or server strip routing or framing fields from the forwarded
        // message: the next hop would see a different request than this one.
        if (equalsLowercase(name, "host") || equalsLowercase(name, "content-length")) continue;
        setBit(out->hop_by_hop_mask, j);
      }
      return true;
    });
  }
}

}  // namespace

// ---- Public API ----------------------------------------------------------------------------

bool isIdempotent(Method m) {
  switch (m) {
    case Method::kGet:
    case Method::kHead:
    case Method::kPut:
    case Method::kDelete:
    case Method::kOptions:
    case Method::kTrace:
      return true;
    default:
      return false;
  }
}

bool equalsLowercase(std::string_view s, std::string_view lowercase) {
  if (s.size() != lowercase.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kLower[static_cast<uint8_t>(s[i])] != lowercase[i]) return false;
  }
  return true;
}

bool RequestHead::isHopByHop(uint32_t i) const {
  return i < kMaxHeaderFields && testBit(hop_by_hop_mask, i);
}

bool ResponseHead::isHopByHop(uint32_t i) const {
  return i < kMaxHeaderFields && testBit(hop_by_hop_mask, i);
}

int32_t RequestHead::findHeader(std::string_view lowercase_name) const {
  for (uint32_t i = 0; i < header_count; ++i) {
    if (equalsLowercase(headers[i].name, lowercase_name)) return static_cast<int32_t>(i);
  }
  return -1;
}

int32_t ResponseHead::findHeader(std::string_view lowercase_name) const {
  for (uint32_t i = 0; i < header_count; ++i) {
    if (equalsLowercase(headers[i].name, lowercase_name)) return static_cast<int32_t>(i);
  }
  return -1;
}

ParseOutcome parseRequestHead(const char* data, size_t len, const ParseLimits& limits,
                              RequestHead* out) {
  HeadParser parser(data, len, limits, /*is_response=*/false);
  out->header_count = 0;
  for (uint64_t& word : out->hop_by_hop_mask) word = 0;
  const char* p = nullptr;
  FieldFacts facts;
  if (!parser.parseRequestLine(out, &p)) return parser.outcome();
  if (!parser.parseFields(p, out->version_minor, out, &facts)) return parser.outcome();

  const char* const at = data;
  if (out->version_minor == 1 && facts.host_count == 0) {
    parser.fail(400, "missing host", at);
    return parser.outcome();
  }
  if (out->host.data() == nullptr) out->host = facts.host;  // absolute-/authority-form win

  if (facts.has_transfer_encoding) {
    if (!facts.te_chunked_last) {
      parser.fail(400, "transfer-encoding does not end in chunked", at);
      return parser.outcome();
    }
    if (facts.te_other_before_chunked) {
      parser.fail(501, "unsupported transfer-coding", at);
      return parser.outcome();
    }
    out->body = BodyKind::kChunked;
    out->content_length = 0;
  } else if (facts.has_content_length) {
    out->body = BodyKind::kContentLength;
    out->content_length = facts.content_length;
  } else {
    out->body = BodyKind::kNone;
    out->content_length = 0;
  }
  out->keep_alive =
      out->version_minor == 1 ? !facts.conn_close : facts.conn_keep_alive && !facts.conn_close;
  out->expect_continue = facts.expect_continue;
  out->upgrade = facts.conn_upgrade && facts.has_upgrade_field;
  if (facts.conn_names_fields) parser.markFieldsNamedByConnection(out);
  return parser.outcome();
}

ParseOutcome parseResponseHead(const char* data, size_t len, const ParseLimits& limits,
                               Method request_method, ResponseHead* out) {
  HeadParser parser(data, len, limits, /*is_response=*/true);
  out->header_count = 0;
  for (uint64_t& word : out->hop_by_hop_mask) word = 0;
  const char* p = nullptr;
  FieldFacts facts;
  if (!parser.parseStatusLine(out, &p)) return parser.outcome();
  if (!parser.parseFields(p, out->version_minor, out, &facts)) return parser.outcome();

  const uint16_t status = out->status;
  out->content_length = 0;
  if (status < 200 || status == 204 || status == 304 || request_method == Method::kHead ||
      (request_method == Method::kConnect && status < 300)) {
    out->body = BodyKind::kNone;
  } else if (facts.has_transfer_encoding) {
    out->body = facts.te_chunked_last ? BodyKind::kChunked : BodyKind::kUntilClose;
  } else if (facts.has_content_length) {
    out->body = BodyKind::kContentLength;
    out->content_length = facts.content_length;
  } else {
    out->body = BodyKind::kUntilClose;
  }
  const bool persistent =
      out->version_minor == 1 ? !facts.conn_close : facts.conn_keep_alive && !facts.conn_close;
  out->keep_alive = persistent && out->body != BodyKind::kUntilClose;
  if (facts.conn_names_fields) parser.markFieldsNamedByConnection(out);
  return parser.outcome();
}

// ---- ChunkedDecoder ------------------------------------------------------------------------

enum class ChunkedDecoder::State : uint8_t {
  kSizeStart = 0,   // first byte of a chunk-size line
  kSize,            // more HEXDIG, ';', BWS or CR
  kBwsBeforeSemi,   // BWS that must be followed by ';'
  kExtPreName,      // after ';': BWS, then a chunk-ext-name
  kExtName,         // in chunk-ext-name
  kExtPostName,     // BWS after a name: '=' or ';'
  kExtPreValue,     // after '=': BWS, then token or quoted-string
  kExtToken,        // in a token value
  kExtQuoted,       // in a quoted-string value
  kExtQuotedPair,   // after '\' in a quoted-string
  kExtAfterQuoted,  // after the closing quote
  kSizeLf,          // after the CR of a chunk-size line
  kData,            // chunk-data, remaining_ bytes to go
  kDataCr,          // CR after chunk-data
  kDataLf,          // LF after chunk-data
  kTrailerStart,    // first byte of a trailer line, or the CR of the final CRLF
  kTrailerName,
  kTrailerValue,
  kTrailerLf,
  kFinalLf,
  kDone,
  kError,
};

uint64_t ChunkedDecoder::dataBytesAhead() const { return state_ == State::kData ? remaining_ : 0; }

bool ChunkedDecoder::done() const { return state_ == State::kDone; }
bool ChunkedDecoder::failed() const { return state_ == State::kError; }
void ChunkedDecoder::reset() { *this = ChunkedDecoder(); }

ChunkedDecoder::Step ChunkedDecoder::feed(const char* data, size_t len) {
  Step step;
  if (state_ == State::kDone) {
    step.done = true;
    return step;
  }
  if (state_ == State::kError) {
    step.error = true;
    step.error_reason = error_reason_;
    return step;
  }
  size_t i = 0;
  auto fail = [&](const char* reason) {
    state_ = State::kError;
    error_reason_ = reason;
    step.consumed = i;
    step.error = true;
    step.error_reason = reason;
    return step;
  };
  while (i < len) {
    if (state_ == State::kData) {
      const size_t avail = len - i;
      const size_t n = remaining_ < avail ? static_cast<size_t>(remaining_) : avail;
      i += n;
      remaining_ -= n;
      payload_bytes_ += n;
      if (remaining_ == 0) state_ = State::kDataCr;
      continue;
    }
    const char c = data[i];
    if (state_ < State::kData) {
      if (++line_bytes_ > kMaxChunkLineBytes) return fail("chunk-size line too long");
    } else if (state_ >= State::kTrailerStart) {
      if (++line_bytes_ > kMaxTrailerBytes) return fail("trailer section too long");
    }
    switch (state_) {
      case State::kSizeStart:
        if (!isHex(c)) return fail(c == '\n' ? "bare LF in chunked framing" : "invalid chunk size");
        remaining_ = hexValue(c);
        size_digits_ = 1;
        state_ = State::kSize;
        break;
      case State::kSize:
        if (isHex(c)) {
          if (size_digits_ == 16) return fail("chunk size has more than 16 hex digits");
          remaining_ = (remaining_ << 4) | hexValue(c);
          ++size_digits_;
          if (remaining_ >= kMaxBodyLength) return fail("chunk size too large");
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == ';') {
          state_ = State::kExtPreName;
        } else if (isOws(c)) {
          state_ = State::kBwsBeforeSemi;
        } else {
          return fail(c == '\n' ? "bare LF in chunked framing" : "invalid chunk size");
        }
        break;
      case State::kBwsBeforeSemi:
        if (c == ';') {
          state_ = State::kExtPreName;
        } else if (!isOws(c)) {
          return fail("whitespace not followed by chunk extension");
        }
        break;
      case State::kExtPreName:
        if (isTchar(c)) {
          state_ = State::kExtName;
        } else if (!isOws(c)) {
          return fail("invalid chunk extension");
        }
        break;
      case State::kExtName:
        if (isTchar(c)) break;
        if (c == '=') {
          state_ = State::kExtPreValue;
        } else if (c == ';') {
          state_ = State::kExtPreName;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (isOws(c)) {
          state_ = State::kExtPostName;
        } else {
          return fail(c == '\n' ? "bare LF in chunked framing" : "invalid chunk extension");
        }
        break;
      case State::kExtPostName:
        if (c == '=') {
          state_ = State::kExtPreValue;
        } else if (c == ';') {
          state_ = State::kExtPreName;
        } else if (!isOws(c)) {
          return fail("invalid chunk extension");
        }
        break;
      case State::kExtPreValue:
        if (c == '"') {
          state_ = State::kExtQuoted;
        } else if (isTchar(c)) {
          state_ = State::kExtToken;
        } else if (!isOws(c)) {
          return fail("invalid chunk extension value");
        }
        break;
      case State::kExtToken:
        if (isTchar(c)) break;
        if (c == ';') {
          state_ = State::kExtPreName;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (isOws(c)) {
          state_ = State::kBwsBeforeSemi;
        } else {
          return fail(c == '\n' ? "bare LF in chunked framing" : "invalid chunk extension value");
        }
        break;
      case State::kExtQuoted:
        if (c == '"') {
          state_ = State::kExtAfterQuoted;
        } else if (c == '\\') {
          state_ = State::kExtQuotedPair;
        } else if (!(classOf(c) & kQdText)) {
          return fail("invalid character in quoted chunk extension");
        }
        break;
      case State::kExtQuotedPair:
        if (c != '\t' && isCtl(c)) return fail("invalid character in quoted chunk extension");
        state_ = State::kExtQuoted;
        break;
      case State::kExtAfterQuoted:
        if (c == ';') {
          state_ = State::kExtPreName;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (isOws(c)) {
          state_ = State::kBwsBeforeSemi;
        } else {
          return fail(c == '\n' ? "bare LF in chunked framing" : "invalid chunk extension");
        }
        break;
      case State::kSizeLf:
        if (c != '\n') return fail("bare CR in chunked framing");
        if (remaining_ == 0) {
          state_ = State::kTrailerStart;
          line_bytes_ = 0;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kDataCr:
        if (c != '\r') return fail("missing CRLF after chunk data");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail("missing CRLF after chunk data");
        state_ = State::kSizeStart;
        line_bytes_ = 0;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kFinalLf;
        } else if (isTchar(c)) {
          state_ = State::kTrailerName;
        } else if (c == '\n') {
          return fail("bare LF in chunked framing");
        } else if (isOws(c)) {
          return fail("obs-fold in trailer");
        } else {
          return fail(c == ':' ? "empty trailer field name" : "invalid trailer field name");
        }
        break;
      case State::kTrailerName:
        if (isTchar(c)) break;
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (c == '\n') {
          return fail("bare LF in chunked framing");
        } else if (isOws(c)) {
          return fail("whitespace between trailer field name and colon");
        } else {
          return fail("invalid trailer field name");
        }
        break;
      case State::kTrailerValue:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          return fail("bare LF in chunked framing");
        } else if (c != '\t' && isCtl(c)) {
          return fail("control character in trailer value");
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail("bare CR in chunked framing");
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return fail("bare CR in chunked framing");
        state_ = State::kDone;
        step.consumed = i + 1;
        step.done = true;
        return step;
      default:
        return fail("internal: unexpected chunked state");
    }
    ++i;
  }
  step.consumed = len;
  return step;
}

}  // namespace scalegate::l7proxy
