// Fuzz target for l7proxy/http1_parser.h: feeds arbitrary bytes to parseRequestHead,
// parseResponseHead and ChunkedDecoder, whole and split at a point chosen by the input, and checks
// the invariants the proxy relies on:
//   - head_bytes <= len; every string_view in the output lies inside the input;
//   - a proper prefix of a complete head is kIncomplete, and any prefix that reaches head_bytes
//     gives the same head; an error reported for a prefix is the one reported for the whole
//     (errors are reported as soon as the bad byte arrives, never depending on later bytes);
//   - ChunkedDecoder gives the same outcome fed in one span, in two spans, or one byte at a time.
// Input layout: byte 0 picks the split point, byte 1 the limits and request method, the rest is
// the message.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "l7proxy/http1_parser.h"

namespace {

using scalegate::l7proxy::BodyKind;
using scalegate::l7proxy::ChunkedDecoder;
using scalegate::l7proxy::kMaxHeaderFields;
using scalegate::l7proxy::Method;
using scalegate::l7proxy::ParseLimits;
using scalegate::l7proxy::ParseOutcome;
using scalegate::l7proxy::ParseState;
using scalegate::l7proxy::RequestHead;
using scalegate::l7proxy::ResponseHead;

#define SG_FUZZ_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

// An exact-size heap copy, so ASan sees any read past the bytes handed to the parser.
struct Buffer {
  explicit Buffer(const uint8_t* data, size_t size)
      : bytes(new char[size == 0 ? 1 : size]), len(size) {
    if (size != 0) std::memcpy(bytes.get(), data, size);
  }
  std::unique_ptr<char[]> bytes;
  size_t len;
};

// Scalar re-statements of the grammar, an oracle for the parser's SIMD scanners.
bool isTokenChar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!isTokenChar(c)) return false;
  }
  return true;
}
bool isCleanValue(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<uint8_t>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7F) return false;
  }
  return s.empty() ||
         (s.front() != ' ' && s.front() != '\t' && s.back() != ' ' && s.back() != '\t');
}
bool isCleanTarget(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<uint8_t>(c);
    if (u <= 0x20 || u >= 0x7F || u == '#') return false;
  }
  return !s.empty();
}

bool inside(std::string_view s, const char* data, size_t len) {
  if (s.empty()) return true;
  return s.data() >= data && s.data() + s.size() <= data + len;
}

// Offset of a view inside its buffer, or -1 for an empty view or the static "/" path.
int64_t offsetOf(std::string_view s, const char* data, size_t len) {
  if (s.empty() || !inside(s, data, len)) return -1;
  return s.data() - data;
}

bool sameView(std::string_view a, const char* da, size_t la, std::string_view b, const char* db,
              size_t lb) {
  return a.size() == b.size() && offsetOf(a, da, la) == offsetOf(b, db, lb) && a == b;
}

void checkOutcome(const ParseOutcome& r, size_t len) {
  SG_FUZZ_CHECK(r.head_bytes <= len);
  if (r.state == ParseState::kError) {
    SG_FUZZ_CHECK(r.error_status != 0);
    SG_FUZZ_CHECK(r.error_reason != nullptr);
  } else {
    SG_FUZZ_CHECK(r.error_status == 0);
  }
  if (r.state == ParseState::kComplete) SG_FUZZ_CHECK(r.head_bytes >= 4);
}

template <typename Head>
void checkFields(const Head& h, const char* data, size_t head_bytes) {
  SG_FUZZ_CHECK(h.header_count <= kMaxHeaderFields);
  for (uint32_t i = 0; i < h.header_count; ++i) {
    SG_FUZZ_CHECK(isToken(h.headers[i].name));
    SG_FUZZ_CHECK(isCleanValue(h.headers[i].value));
    SG_FUZZ_CHECK(inside(h.headers[i].name, data, head_bytes));
    SG_FUZZ_CHECK(inside(h.headers[i].value, data, head_bytes));
    const std::string_view name = h.headers[i].name;
    char lower[64];
    if (name.size() <= sizeof(lower)) {
      for (size_t j = 0; j < name.size(); ++j) {
        lower[j] = name[j] >= 'A' && name[j] <= 'Z' ? static_cast<char>(name[j] + 32) : name[j];
      }
      const int32_t found = h.findHeader(std::string_view(lower, name.size()));
      SG_FUZZ_CHECK(found >= 0 && static_cast<uint32_t>(found) <= i);
    }
  }
  for (uint32_t i = h.header_count; i < kMaxHeaderFields; ++i) SG_FUZZ_CHECK(!h.isHopByHop(i));
}

void checkRequest(const RequestHead& h, const char* data, size_t head_bytes) {
  SG_FUZZ_CHECK(inside(h.method_text, data, head_bytes) && !h.method_text.empty());
  SG_FUZZ_CHECK(inside(h.target, data, head_bytes) && !h.target.empty());
  SG_FUZZ_CHECK(inside(h.path, data, head_bytes) || h.path == "/");
  SG_FUZZ_CHECK(isToken(h.method_text));
  SG_FUZZ_CHECK(isCleanTarget(h.target));
  if (h.target.front() == '/') SG_FUZZ_CHECK(h.path == h.target.substr(0, h.target.find('?')));
  SG_FUZZ_CHECK(inside(h.host, data, head_bytes));
  SG_FUZZ_CHECK(h.version_minor <= 1);
  SG_FUZZ_CHECK(h.body == BodyKind::kNone || h.body == BodyKind::kContentLength ||
                h.body == BodyKind::kChunked);
  SG_FUZZ_CHECK(h.content_length <= scalegate::l7proxy::kMaxBodyLength);
  checkFields(h, data, head_bytes);
}

void checkResponse(const ResponseHead& h, const char* data, size_t head_bytes) {
  SG_FUZZ_CHECK(h.status >= 100 && h.status <= 599);
  SG_FUZZ_CHECK(h.version_minor <= 1);
  SG_FUZZ_CHECK(inside(h.reason, data, head_bytes));
  for (char c : h.reason) {
    const auto u = static_cast<uint8_t>(c);
    SG_FUZZ_CHECK((u >= 0x20 || u == '\t') && u != 0x7F);
  }
  if (h.body == BodyKind::kUntilClose) SG_FUZZ_CHECK(!h.keep_alive);
  checkFields(h, data, head_bytes);
}

template <typename Head>
bool sameFields(const Head& a, const char* da, size_t la, const Head& b, const char* db,
                size_t lb) {
  if (a.header_count != b.header_count) return false;
  for (uint32_t i = 0; i < a.header_count; ++i) {
    if (!sameView(a.headers[i].name, da, la, b.headers[i].name, db, lb)) return false;
    if (!sameView(a.headers[i].value, da, la, b.headers[i].value, db, lb)) return false;
    if (a.isHopByHop(i) != b.isHopByHop(i)) return false;
  }
  return true;
}

// The prefix result must agree with the whole-input result.
void checkPrefix(const ParseOutcome& whole, const ParseOutcome& prefix, size_t prefix_len) {
  if (whole.state == ParseState::kComplete) {
    if (prefix_len < whole.head_bytes) {
      SG_FUZZ_CHECK(prefix.state == ParseState::kIncomplete);
    } else {
      SG_FUZZ_CHECK(prefix.state == ParseState::kComplete);
      SG_FUZZ_CHECK(prefix.head_bytes == whole.head_bytes);
    }
  } else if (prefix.state == ParseState::kError) {
    SG_FUZZ_CHECK(whole.state == ParseState::kError);
    SG_FUZZ_CHECK(whole.error_status == prefix.error_status);
    SG_FUZZ_CHECK(std::strcmp(whole.error_reason, prefix.error_reason) == 0);
    SG_FUZZ_CHECK(whole.error_offset == prefix.error_offset);
  } else {
    SG_FUZZ_CHECK(prefix.state == ParseState::kIncomplete);
  }
}

RequestHead g_request_a;
RequestHead g_request_b;
ResponseHead g_response_a;
ResponseHead g_response_b;

void fuzzRequest(const Buffer& whole, const Buffer& prefix, const ParseLimits& limits) {
  const ParseOutcome a = parseRequestHead(whole.bytes.get(), whole.len, limits, &g_request_a);
  checkOutcome(a, whole.len);
  const ParseOutcome b = parseRequestHead(prefix.bytes.get(), prefix.len, limits, &g_request_b);
  checkOutcome(b, prefix.len);
  checkPrefix(a, b, prefix.len);
  if (a.state == ParseState::kComplete) {
    checkRequest(g_request_a, whole.bytes.get(), a.head_bytes);
    if (b.state == ParseState::kComplete) {
      checkRequest(g_request_b, prefix.bytes.get(), b.head_bytes);
      const char* da = whole.bytes.get();
      const char* db = prefix.bytes.get();
      SG_FUZZ_CHECK(g_request_a.method == g_request_b.method);
      SG_FUZZ_CHECK(
          sameView(g_request_a.target, da, whole.len, g_request_b.target, db, prefix.len));
      SG_FUZZ_CHECK(g_request_a.path == g_request_b.path);
      SG_FUZZ_CHECK(sameView(g_request_a.host, da, whole.len, g_request_b.host, db, prefix.len));
      SG_FUZZ_CHECK(g_request_a.body == g_request_b.body);
      SG_FUZZ_CHECK(g_request_a.content_length == g_request_b.content_length);
      SG_FUZZ_CHECK(g_request_a.keep_alive == g_request_b.keep_alive);
      SG_FUZZ_CHECK(g_request_a.upgrade == g_request_b.upgrade);
      SG_FUZZ_CHECK(g_request_a.expect_continue == g_request_b.expect_continue);
      SG_FUZZ_CHECK(sameFields(g_request_a, da, whole.len, g_request_b, db, prefix.len));
    }
  }
}

void fuzzResponse(const Buffer& whole, const Buffer& prefix, const ParseLimits& limits,
                  Method method) {
  const ParseOutcome a =
      parseResponseHead(whole.bytes.get(), whole.len, limits, method, &g_response_a);
  checkOutcome(a, whole.len);
  if (a.state == ParseState::kError) SG_FUZZ_CHECK(a.error_status == 502);
  const ParseOutcome b =
      parseResponseHead(prefix.bytes.get(), prefix.len, limits, method, &g_response_b);
  checkOutcome(b, prefix.len);
  checkPrefix(a, b, prefix.len);
  if (a.state == ParseState::kComplete) {
    checkResponse(g_response_a, whole.bytes.get(), a.head_bytes);
    if (b.state == ParseState::kComplete) {
      SG_FUZZ_CHECK(g_response_a.status == g_response_b.status);
      SG_FUZZ_CHECK(g_response_a.body == g_response_b.body);
      SG_FUZZ_CHECK(g_response_a.content_length == g_response_b.content_length);
      SG_FUZZ_CHECK(g_response_a.keep_alive == g_response_b.keep_alive);
      SG_FUZZ_CHECK(sameFields(g_response_a, whole.bytes.get(), whole.len, g_response_b,
                               prefix.bytes.get(), prefix.len));
    }
  }
}

struct ChunkedRun {
  size_t consumed = 0;
  bool done = false;
  bool error = false;
  uint64_t payload = 0;
};

ChunkedRun runChunked(const char* data, size_t len, size_t split) {
  ChunkedDecoder d;
  ChunkedRun run;
  size_t offset = 0;
  while (offset < len) {
    const size_t n = split == 0 ? len - offset : (split < len - offset ? split : len - offset);
    const ChunkedDecoder::Step st = d.feed(data + offset, n);
    SG_FUZZ_CHECK(st.consumed <= n);
    run.consumed += st.consumed;
    if (st.error) {
      SG_FUZZ_CHECK(st.error_reason != nullptr);
      run.error = true;
      break;
    }
    if (st.done) {
      run.done = true;
      break;
    }
    SG_FUZZ_CHECK(st.consumed == n);
    offset += n;
  }
  run.payload = d.payloadBytes();
  SG_FUZZ_CHECK(run.payload <= run.consumed);
  return run;
}

void fuzzChunked(const Buffer& whole, size_t split) {
  const ChunkedRun a = runChunked(whole.bytes.get(), whole.len, 0);
  const ChunkedRun b = runChunked(whole.bytes.get(), whole.len, split == 0 ? 1 : split);
  SG_FUZZ_CHECK(a.consumed == b.consumed && a.done == b.done && a.error == b.error &&
                a.payload == b.payload);
  if (whole.len <= 4096) {
    const ChunkedRun c = runChunked(whole.bytes.get(), whole.len, 1);
    SG_FUZZ_CHECK(a.consumed == c.consumed && a.done == c.done && a.error == c.error &&
                  a.payload == c.payload);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t split_byte = data[0];
  const uint8_t mode = data[1];
  data += 2;
  size -= 2;

  ParseLimits limits;
  if (mode & 1) {
    // Small limits so the 414/431 paths are reachable with short inputs.
    limits.max_head_bytes = 32 + (mode >> 2) * 4;
    limits.max_headers = 1 + ((mode >> 4) & 7);
    limits.max_uri_bytes = 4 + ((mode >> 3) & 31);
  }
  static constexpr Method kMethods[] = {Method::kGet, Method::kHead, Method::kConnect,
                                        Method::kPost};
  const Method method = kMethods[(mode >> 1) & 3];

  const size_t split = size == 0 ? 0 : static_cast<size_t>(split_byte) * size / 255;
  const Buffer whole(data, size);
  const Buffer prefix(data, split);
  fuzzRequest(whole, prefix, limits);
  fuzzResponse(whole, prefix, limits, method);
  fuzzChunked(whole, split);
  return 0;
}
