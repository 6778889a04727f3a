#include "l7proxy/http1_parser.h"

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace scalegate::l7proxy {
namespace {

using namespace std::string_view_literals;

// An exact-size heap copy, so ASan catches any read past the bytes handed to the parser.
class Bytes {
 public:
  explicit Bytes(std::string_view s)
      : size_(s.size()), data_(new char[s.size() == 0 ? 1 : s.size()]) {
    std::memcpy(data_.get(), s.data(), s.size());
  }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  size_t size_;
  std::unique_ptr<char[]> data_;
};

class Http1ParserTest : public ::testing::Test {
 protected:
  ParseOutcome parseRequest(std::string_view s, ParseLimits limits = {}) {
    bytes_ = std::make_unique<Bytes>(s);
    return parseRequestHead(bytes_->data(), bytes_->size(), limits, req_.get());
  }
  ParseOutcome parseResponse(std::string_view s, Method method = Method::kGet,
                             ParseLimits limits = {}) {
    bytes_ = std::make_unique<Bytes>(s);
    return parseResponseHead(bytes_->data(), bytes_->size(), limits, method, resp_.get());
  }
  // Expects a request error with the given status (and reason, when given).
  void expectRequestError(std::string_view s, uint16_t status, const char* reason = nullptr) {
    const ParseOutcome r = parseRequest(s);
    EXPECT_EQ(r.state, ParseState::kError) << testing::PrintToString(std::string(s));
    EXPECT_EQ(r.error_status, status)
        << testing::PrintToString(std::string(s))
        << " reason: " << (r.error_reason ? r.error_reason : "(none)");
    if (reason != nullptr && r.error_reason != nullptr) {
      EXPECT_STREQ(r.error_reason, reason) << testing::PrintToString(std::string(s));
    }
  }
  void expectResponseError(std::string_view s, Method method = Method::kGet) {
    const ParseOutcome r = parseResponse(s, method);
    EXPECT_EQ(r.state, ParseState::kError) << testing::PrintToString(std::string(s));
    EXPECT_EQ(r.error_status, 502) << testing::PrintToString(std::string(s));
  }
  void expectComplete(std::string_view s) {
    const ParseOutcome r = parseRequest(s);
    ASSERT_EQ(r.state, ParseState::kComplete)
        << testing::PrintToString(std::string(s))
        << " reason: " << (r.error_reason ? r.error_reason : "(none)");
    EXPECT_EQ(r.head_bytes, s.size());
  }

  std::unique_ptr<RequestHead> req_ = std::make_unique<RequestHead>();
  std::unique_ptr<ResponseHead> resp_ = std::make_unique<ResponseHead>();
  std::unique_ptr<Bytes> bytes_;
};

constexpr std::string_view kGet =
    "GET /index.html?q=1&r=2 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: curl/8.0\r\n"
    "Accept: */*\r\n"
    "X-Trace:  \t spaced value \t \r\n"
    "\r\n";

// ---- Valid requests ------------------------------------------------------------------------

TEST_F(Http1ParserTest, GetWithHeaders) {
  const ParseOutcome r = parseRequest(kGet);
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, kGet.size());
  EXPECT_EQ(req_->method, Method::kGet);
  EXPECT_EQ(req_->method_text, "GET");
  EXPECT_EQ(req_->target, "/index.html?q=1&r=2");
  EXPECT_EQ(req_->path, "/index.html");
  EXPECT_EQ(req_->version_minor, 1);
  EXPECT_EQ(req_->host, "www.example.com");
  EXPECT_EQ(req_->body, BodyKind::kNone);
  EXPECT_TRUE(req_->keep_alive);
  EXPECT_FALSE(req_->expect_continue);
  EXPECT_FALSE(req_->upgrade);
  ASSERT_EQ(req_->header_count, 4u);
  EXPECT_EQ(req_->headers[0].name, "Host");
  EXPECT_EQ(req_->headers[1].name, "User-Agent");
  EXPECT_EQ(req_->headers[1].value, "curl/8.0");
  EXPECT_EQ(req_->headers[2].value, "*/*");
  EXPECT_EQ(req_->headers[3].value, "spaced value");
  EXPECT_EQ(req_->findHeader("user-agent"), 1);
  EXPECT_EQ(req_->findHeader("x-trace"), 3);
  EXPECT_EQ(req_->findHeader("cookie"), -1);
  for (uint32_t i = 0; i < req_->header_count; ++i) EXPECT_FALSE(req_->isHopByHop(i));
  // Outputs point into the caller's buffer.
  EXPECT_EQ(req_->target.data(), bytes_->data() + 4);
}

TEST_F(Http1ParserTest, PathStopsAtFirstQuestionMarkAnywhereInTheTarget) {
  for (size_t pad = 0; pad < 40; ++pad) {
    const std::string path = "/" + std::string(pad, 'p');
    expectComplete("GET " + path + "?a=1?b HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req_->path, path);
    expectComplete("GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n");
    EXPECT_EQ(req_->path, path);
  }
}

TEST_F(Http1ParserTest, LongFieldNamesAndValues) {
  // Exercises the 16-byte scanning steps and their byte-wise tails.
  for (size_t n = 1; n < 40; ++n) {
    const std::string name = "X" + std::string(n, 'n');
    const std::string value = std::string(n, 'v') + "\t" + std::string(n, 'w');
    expectComplete("GET / HTTP/1.1\r\nHost: h\r\n" + name + ": " + value + "\r\n\r\n");
    EXPECT_EQ(req_->headers[1].name, name);
    EXPECT_EQ(req_->headers[1].value, value);
    expectRequestError("GET / HTTP/1.1\r\nHost: h\r\n" + name + "{: v\r\n\r\n", 400,
                       "invalid character in field name");
    expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: " + value + "\x01\r\n\r\n", 400,
                       "control character in field value");
  }
}

TEST_F(Http1ParserTest, EmptyValueAndObsTextAndHtabInsideValue) {
  expectComplete(
      "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Utf8: caf\xc3\xa9\r\nX-Tab: a\tb\r\n\r\n");
  EXPECT_EQ(req_->headers[1].value, "");
  EXPECT_EQ(req_->headers[2].value, "caf\xc3\xa9");
  EXPECT_EQ(req_->headers[3].value, "a\tb");
}

TEST_F(Http1ParserTest, MethodsAndIdempotency) {
  struct Case {
    std::string_view text;
    Method method;
    bool idempotent;
  };
  const Case cases[] = {{"GET", Method::kGet, true},         {"HEAD", Method::kHead, true},
                        {"POST", Method::kPost, false},      {"PUT", Method::kPut, true},
                        {"DELETE", Method::kDelete, true},   {"OPTIONS", Method::kOptions, true},
                        {"TRACE", Method::kTrace, true},     {"PATCH", Method::kPatch, false},
                        {"PROPFIND", Method::kOther, false}, {"get", Method::kOther, false}};
  for (const Case& c : cases) {
    const std::string s = std::string(c.text) + " /x HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(parseRequest(s).state, ParseState::kComplete) << c.text;
    EXPECT_EQ(req_->method, c.method) << c.text;
    EXPECT_EQ(req_->method_text, c.text);
    EXPECT_EQ(isIdempotent(c.method), c.idempotent) << c.text;
  }
  EXPECT_FALSE(isIdempotent(Method::kConnect));
}

TEST_F(Http1ParserTest, PipelinedRequestsHeadBytesExact) {
  const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string second = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
  const std::string all = first + second + "abc" + first;
  ParseOutcome r = parseRequest(all);
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, first.size());
  EXPECT_EQ(req_->path, "/a");

  size_t off = r.head_bytes;
  r = parseRequest(std::string_view(all).substr(off));
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, second.size());
  EXPECT_EQ(req_->body, BodyKind::kContentLength);
  EXPECT_EQ(req_->content_length, 3u);
  off += r.head_bytes + req_->content_length;

  r = parseRequest(std::string_view(all).substr(off));
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, first.size());
  EXPECT_EQ(off + r.head_bytes, all.size());
}

TEST_F(Http1ParserTest, ByteByByteFeedingGivesSameResult) {
  const std::string s = std::string(kGet) + "GET /next HTTP/1.1\r\n";
  for (size_t k = 0; k < kGet.size(); ++k) {
    const ParseOutcome r = parseRequest(std::string_view(s).substr(0, k));
    ASSERT_EQ(r.state, ParseState::kIncomplete) << "prefix " << k;
  }
  for (size_t k = kGet.size(); k <= s.size(); ++k) {
    const ParseOutcome r = parseRequest(std::string_view(s).substr(0, k));
    ASSERT_EQ(r.state, ParseState::kComplete) << "prefix " << k;
    EXPECT_EQ(r.head_bytes, kGet.size());
    EXPECT_EQ(req_->header_count, 4u);
    EXPECT_EQ(req_->headers[3].value, "spaced value");
  }
}

TEST_F(Http1ParserTest, ErrorsAreReportedAsSoonAsTheBadByteArrives) {
  // Every prefix that contains the bad byte already fails; shorter ones are incomplete.
  struct Case {
    std::string_view text;
    size_t bad_at;
  };
  const Case cases[] = {
      {"GET /a\nHTTP/1.1\r\nHost: h\r\n\r\n", 6},               // bare LF in request line
      {"GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 23},          // bare LF in header
      {"GET / HTTP/1.1\r\nX: a\0b\r\nHost: h\r\n\r\n"sv, 20},   // NUL in value
      {"GET / HTTP/1.1\r\nX : y\r\nHost: h\r\n\r\n", 17},       // space before colon
      {"GET / HTTP/1.1\r\nX: y\r\n z\r\nHost: h\r\n\r\n", 22},  // obs-fold
      {"GET / HTTP/1.1\r\nX: y\rz\r\nHost: h\r\n\r\n", 21},     // bare CR
      {"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 4},                // two SPs
      {"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 14},               // junk after version
  };
  for (const Case& c : cases) {
    for (size_t k = 0; k <= c.bad_at; ++k) {
      const ParseOutcome r = parseRequest(c.text.substr(0, k));
      EXPECT_EQ(r.state, ParseState::kIncomplete)
          << testing::PrintToString(std::string(c.text)) << " prefix " << k;
    }
    const ParseOutcome r = parseRequest(c.text.substr(0, c.bad_at + 1));
    EXPECT_EQ(r.state, ParseState::kError) << testing::PrintToString(std::string(c.text));
    EXPECT_EQ(r.error_status, 400);
  }
}

TEST_F(Http1ParserTest, LeadingEmptyLinesAreSkippedAndCounted) {
  const std::string_view s = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const ParseOutcome r = parseRequest(s);
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, s.size());
  EXPECT_EQ(req_->method_text, "GET");
  expectComplete("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
  expectRequestError("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                     "too many empty lines before request-line");
  expectRequestError("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare LF");
  EXPECT_EQ(parseRequest("\r\n\r").state, ParseState::kIncomplete);
}

TEST_F(Http1ParserTest, AbsoluteForm) {
  expectComplete("GET http://api.example.com:8080/v1/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n");
  EXPECT_EQ(req_->host, "api.example.com:8080");
  EXPECT_EQ(req_->path, "/v1/x");
  EXPECT_EQ(req_->target, "http://api.example.com:8080/v1/x?y=1");

  expectComplete("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
  EXPECT_EQ(req_->host, "example.com");
  EXPECT_EQ(req_->path, "/");
  expectComplete("GET http://[::1]:80?q HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(req_->host, "[::1]:80");
  EXPECT_EQ(req_->path, "/");
  // HTTP/1.0 needs no Host; the authority still becomes host.
  expectComplete("GET http://h/p HTTP/1.0\r\n\r\n");
  EXPECT_EQ(req_->host, "h");

  expectRequestError("GET http://user@h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                     "userinfo in request-target");
  expectRequestError("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET ftp://h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid request-target");
  expectRequestError("GET h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid request-target");
}

TEST_F(Http1ParserTest, AuthorityFormOnlyWithConnect) {
  expectComplete("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  EXPECT_EQ(req_->method, Method::kConnect);
  EXPECT_EQ(req_->host, "example.com:443");
  EXPECT_EQ(req_->path, "");
  expectRequestError("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", 400);  // no port
  expectRequestError("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                     "CONNECT requires authority-form");
  expectRequestError("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST_F(Http1ParserTest, AsteriskFormOnlyWithOptions) {
  expectComplete("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(req_->target, "*");
  expectRequestError("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "asterisk-form is only for OPTIONS");
}

// ---- Request line errors -------------------------------------------------------------------

TEST_F(Http1ParserTest, RequestLineErrors) {
  expectRequestError(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "empty method");
  expectRequestError("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
  expectRequestError("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "empty request-target");
  expectRequestError("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET /\r\n\r\n", 400, "missing HTTP-version");  // HTTP/0.9
  expectRequestError("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400,
                     "invalid character in request-target");
  expectRequestError("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400, "fragment in request-target");
  expectRequestError("GET / http/1.1\r\nHost: h\r\n\r\n", 400, "malformed HTTP-version");
  expectRequestError("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
  expectRequestError("GET / FOO\r\nHost: h\r\n\r\n", 400);
}

TEST_F(Http1ParserTest, UnsupportedVersionIs505) {
  expectRequestError("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "unsupported HTTP version");
  expectRequestError("GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505);
  expectRequestError("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
  expectRequestError("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
}

TEST_F(Http1ParserTest, LongTargetIs414EvenBeforeTheLineEnds) {
  ParseLimits limits;
  limits.max_uri_bytes = 16;
  ParseOutcome r = parseRequest("GET /0123456789abcde HTTP/1.1\r\nHost: h\r\n\r\n", limits);
  EXPECT_EQ(r.state, ParseState::kComplete);  // exactly 16 bytes
  r = parseRequest("GET /0123456789abcdef HTTP/1.1\r\nHost: h\r\n\r\n", limits);
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 414);
  r = parseRequest("GET /0123456789abcdef", limits);  // incomplete line, already too long
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 414);
  r = parseRequest("GET /0123456789abcde", limits);
  EXPECT_EQ(r.state, ParseState::kIncomplete);
}

// ---- Line endings and characters -----------------------------------------------------------

TEST_F(Http1ParserTest, BareLfAndBareCr) {
  expectRequestError("GET / HTTP/1.1\nHost: h\r\n\r\n", 400, "bare LF");
  expectRequestError("GET /\n HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare LF");
  expectRequestError("GET\n/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare LF");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\n\r\n", 400, "bare LF");
  expectRequestError("GET / HTTP/1.1\r\nHost\n: h\r\n\r\n", 400, "bare LF");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\n\n", 400, "bare LF");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n", 400, "bare LF");
  expectRequestError("GET / HTTP/1.1\rHost: h\r\n\r\n", 400, "bare CR");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400, "bare CR");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400, "bare CR");
  expectRequestError("GET / HTTP/1.1\r\nX: a\rb\r\nHost: h\r\n\r\n", 400, "bare CR");
}

TEST_F(Http1ParserTest, ControlCharacters) {
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"sv, 400,
                     "control character in field value");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n", 400);
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: a\x1b[0m\r\n\r\n", 400);
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX\0: a\r\n\r\n"sv, 400);
  expectRequestError("GET\0/ HTTP/1.1\r\nHost: h\r\n\r\n"sv, 400);
}

TEST_F(Http1ParserTest, FieldLineSyntax) {
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n folded\r\n\r\n", 400, "obs-fold");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\tfolded\r\n\r\n", 400, "obs-fold");
  expectRequestError("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, "obs-fold");  // first line
  expectRequestError("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400,
                     "whitespace between field name and colon");
  expectRequestError("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400,
                     "whitespace between field name and colon");
  expectRequestError("GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n", 400, "empty field name");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400,
                     "field line without colon");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n", 400,
                     "invalid character in field name");
  expectRequestError("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: z\r\n\r\n", 400);
}

// ---- Content-Length / Transfer-Encoding (request smuggling) -------------------------------

TEST_F(Http1ParserTest, ContentLength) {
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n");
  EXPECT_EQ(req_->body, BodyKind::kContentLength);
  EXPECT_EQ(req_->content_length, 42u);
  EXPECT_FALSE(req_->isHopByHop(1));
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(req_->body, BodyKind::kContentLength);
  EXPECT_EQ(req_->content_length, 0u);
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 007\r\n\r\n");
  EXPECT_EQ(req_->content_length, 7u);
  // Identical duplicates and lists are tolerated (RFC 9112 section 6.3).
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
  EXPECT_EQ(req_->content_length, 5u);
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5,5\r\n\r\n");
  EXPECT_EQ(req_->content_length, 5u);
  expectComplete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n");
  EXPECT_EQ(req_->content_length, kMaxBodyLength);
}

TEST_F(Http1ParserTest, ContentLengthSmuggling) {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\n";
  expectRequestError(head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
                     "conflicting content-length values");
  expectRequestError(head + "Content-Length: 5, 6\r\n\r\n", 400,
                     "conflicting content-length values");
  expectRequestError(head + "Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\n", 400);
  expectRequestError(head + "Content-Length: +5\r\n\r\n", 400, "invalid content-length");
  expectRequestError(head + "Content-Length: -5\r\n\r\n", 400, "invalid content-length");
  expectRequestError(head + "Content-Length:  5 5\r\n\r\n", 400, "invalid content-length");
  expectRequestError(head + "Content-Length: 0x5\r\n\r\n", 400, "invalid content-length");
  expectRequestError(head + "Content-Length: 5a\r\n\r\n", 400);
  expectRequestError(head + "Content-Length:\r\n\r\n", 400);
  expectRequestError(head + "Content-Length: 5,\r\n\r\n", 400);
  expectRequestError(head + "Content-Length: ,5\r\n\r\n", 400);
  expectRequestError(head + "Content-Length: 4611686018427387905\r\n\r\n", 400);
  expectRequestError(head + "Content-Length: 99999999999999999999999\r\n\r\n", 400);
}

TEST_F(Http1ParserTest, ContentLengthWithTransferEncodingBothOrders) {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\n";
  expectRequestError(head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                     "content-length with transfer-encoding");
  expectRequestError(head + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
                     "content-length with transfer-encoding");
  expectRequestError(head + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400);
}

TEST_F(Http1ParserTest, TransferEncoding) {
  const std::string head = "POST / HTTP/1.1\r\nHost: h\r\n";
  expectComplete(head + "Transfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(req_->body, BodyKind::kChunked);
  EXPECT_TRUE(req_->isHopByHop(1));
  expectComplete(head + "transfer-encoding: CHUNKED\r\n\r\n");
  EXPECT_EQ(req_->body, BodyKind::kChunked);
  expectComplete(head + "Transfer-Encoding: , chunked ,\r\n\r\n");  // empty list elements
  EXPECT_EQ(req_->body, BodyKind::kChunked);

  expectRequestError(head + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
                     "chunked listed more than once");
  expectRequestError(head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                     "chunked listed more than once");
  expectRequestError(head + "Transfer-Encoding: xchunked\r\n\r\n", 400,
                     "transfer-encoding does not end in chunked");
  expectRequestError(head + "Transfer-Encoding: chunkedx\r\n\r\n", 400);
  expectRequestError(head + "Transfer-Encoding: gzip\r\n\r\n", 400);
  expectRequestError(head + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400,
                     "chunked is not the final transfer-coding");
  expectRequestError(head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
  expectRequestError(head + "Transfer-Encoding:\r\n\r\n", 400);
  expectRequestError(head + "Transfer-Encoding: chu nked\r\n\r\n", 400);
  expectRequestError(head + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
                     "unsupported transfer-coding");
  expectRequestError(head + "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
  expectRequestError(head + "Transfer-Encoding: identity, chunked\r\n\r\n", 501);
}

TEST_F(Http1ParserTest, TransferEncodingInHttp10Request) {
  expectRequestError("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                     "transfer-encoding in HTTP/1.0 request");
  expectRequestError(
      "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400);
}

// ---- Host ------------------------------------------------------------------------------------

TEST_F(Http1ParserTest, Host) {
  expectRequestError("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "missing host");
  expectRequestError("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple host fields");
  expectRequestError("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "multiple host fields");
  expectComplete("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(req_->host, "");
  expectComplete("GET / HTTP/1.1\r\nHost:\r\n\r\n");  // empty authority (RFC 9110 section 7.2)
  EXPECT_EQ(req_->host, "");

  for (std::string_view good :
       {"example.com", "example.com:8080", "10.0.0.1", "10.0.0.1:80", "[::1]", "[2001:db8::1]:443",
        "a-b_c~d.e", "xn--n3h.example", "%41bc", "EXAMPLE.COM"}) {
    expectComplete("GET / HTTP/1.1\r\nHost: " + std::string(good) + "\r\n\r\n");
    EXPECT_EQ(req_->host, good);
  }
  for (std::string_view bad :
       {"exa mple.com", "a/b", "user@host", "a,b", "host:", "host:99999", "host:8a", ":80", "[::1",
        "[zz::1]", "[1.2.3.4]", "a:1:2", "h%4", "h%zz", "a\\b", "a\"b", "[::1]x"}) {
    expectRequestError("GET / HTTP/1.1\r\nHost: " + std::string(bad) + "\r\n\r\n", 400,
                       "invalid host");
  }
}

// ---- Limits ----------------------------------------------------------------------------------

TEST_F(Http1ParserTest, HeadSizeLimitIs431EvenBeforeTheHeadEnds) {
  ParseLimits limits;
  limits.max_head_bytes = 64;
  const std::string ok =
      "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(64 - 32, 'a') + "\r\n\r\n";
  ASSERT_EQ(ok.size(), 64u);
  EXPECT_EQ(parseRequest(ok, limits).state, ParseState::kComplete);
  const std::string big =
      "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(64 - 30, 'a') + "\r\n\r\n";
  ParseOutcome r = parseRequest(big, limits);
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 431);
  // Incomplete but already at the limit.
  r = parseRequest(std::string_view(big).substr(0, 64), limits);
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 431);
  r = parseRequest(std::string_view(big).substr(0, 63), limits);
  EXPECT_EQ(r.state, ParseState::kIncomplete);
  // Default limit: 16 KiB of one header without CRLF.
  r = parseRequest("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(20000, 'a'));
  EXPECT_EQ(r.error_status, 431);
}

TEST_F(Http1ParserTest, TooManyHeadersIs431) {
  ParseLimits limits;
  limits.max_headers = 3;
  EXPECT_EQ(parseRequest("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", limits).state,
            ParseState::kComplete);
  const ParseOutcome r =
      parseRequest("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits);
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 431);
  EXPECT_STREQ(r.error_reason, "too many header fields");

  // max_headers above kMaxHeaderFields is capped.
  limits.max_headers = 100000;
  limits.max_head_bytes = 1 << 20;
  std::string s = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (uint32_t i = 1; i < kMaxHeaderFields; ++i) s += "X: y\r\n";
  EXPECT_EQ(parseRequest(s + "\r\n", limits).state, ParseState::kComplete);
  EXPECT_EQ(req_->header_count, kMaxHeaderFields);
  EXPECT_EQ(parseRequest(s + "X: y\r\n\r\n", limits).error_status, 431);
}

// ---- Connection semantics ----------------------------------------------------------------

TEST_F(Http1ParserTest, KeepAliveSemantics) {
  expectComplete("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_TRUE(req_->keep_alive);
  expectComplete("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(req_->keep_alive);
  expectComplete("GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n");
  EXPECT_FALSE(req_->keep_alive);
  expectComplete("GET / HTTP/1.0\r\n\r\n");
  EXPECT_FALSE(req_->keep_alive);
  expectComplete("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(req_->keep_alive);
  expectComplete("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(req_->keep_alive);
}

TEST_F(Http1ParserTest, HopByHopMask) {
  expectComplete(
      "GET / HTTP/1.1\r\n"
      "Host: h\r\n"                           // 0
      "Connection: keep-alive, X-Foo\r\n"     // 1 hop
      "Keep-Alive: timeout=5\r\n"             // 2 hop
      "X-Foo: 1\r\n"                          // 3 hop (named by Connection)
      "Proxy-Connection: keep-alive\r\n"      // 4 hop
      "TE: trailers\r\n"                      // 5 hop
      "Trailer: X-Checksum\r\n"               // 6 end-to-end
      "x-foo: 2\r\n"                          // 7 hop (case-insensitive)
      "X-Bar: 3\r\n"                          // 8
      "Upgrade: websocket\r\n"                // 9 hop
      "Connection: Content-Length, host\r\n"  // 10 hop, but names nothing removable
      "Content-Length: 0\r\n"                 // 11 never hop-by-hop
      "\r\n");
  const bool expected[] = {false, true, true,  true, true, true,
                           false, true, false, true, true, false};
  ASSERT_EQ(req_->header_count, std::size(expected));
  for (uint32_t i = 0; i < req_->header_count; ++i) {
    EXPECT_EQ(req_->isHopByHop(i), expected[i]) << i << " " << req_->headers[i].name;
  }
  EXPECT_FALSE(req_->isHopByHop(kMaxHeaderFields));
  EXPECT_FALSE(req_->upgrade);  // Connection has no "upgrade" token
  EXPECT_EQ(req_->host, "h");
}

TEST_F(Http1ParserTest, UpgradeAndExpect) {
  expectComplete(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_TRUE(req_->upgrade);
  expectComplete("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n");
  EXPECT_FALSE(req_->upgrade);
  expectComplete("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_FALSE(req_->upgrade);
  expectComplete("PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 9\r\n\r\n");
  EXPECT_TRUE(req_->expect_continue);
  expectComplete("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
  EXPECT_FALSE(req_->expect_continue);  // ignored in HTTP/1.0
}

TEST(EqualsLowercaseTest, Basics) {
  EXPECT_TRUE(equalsLowercase("Content-LENGTH", "content-length"));
  EXPECT_TRUE(equalsLowercase("", ""));
  EXPECT_FALSE(equalsLowercase("Host", "hosts"));
  EXPECT_FALSE(equalsLowercase("H\x0dst", "h-st"));
  EXPECT_FALSE(equalsLowercase("hOsT", "HOST"));  // the second argument must be lowercase
}

// ---- Responses -------------------------------------------------------------------------------

TEST_F(Http1ParserTest, ResponseWithContentLength) {
  const std::string_view s =
      "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n\r\nhello world!";
  const ParseOutcome r = parseResponse(s);
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head_bytes, s.size() - 12);
  EXPECT_EQ(resp_->status, 200);
  EXPECT_EQ(resp_->version_minor, 1);
  EXPECT_EQ(resp_->reason, "OK");
  EXPECT_EQ(resp_->body, BodyKind::kContentLength);
  EXPECT_EQ(resp_->content_length, 12u);
  EXPECT_TRUE(resp_->keep_alive);
  EXPECT_EQ(resp_->findHeader("server"), 1);
}

TEST_F(Http1ParserTest, ResponseBodyRules) {
  struct Case {
    std::string_view text;
    Method method;
    BodyKind body;
    bool keep_alive;
  };
  const Case cases[] = {
      {"HTTP/1.1 204 No Content\r\n\r\n", Method::kGet, BodyKind::kNone, true},
      {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", Method::kGet, BodyKind::kNone,
       true},
      {"HTTP/1.1 100 Continue\r\n\r\n", Method::kPut, BodyKind::kNone, true},
      {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
       Method::kGet, BodyKind::kNone, true},
      {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", Method::kHead, BodyKind::kNone, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::kHead, BodyKind::kNone,
       true},
      {"HTTP/1.1 200 Connection established\r\n\r\n", Method::kConnect, BodyKind::kNone, true},
      {"HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", Method::kConnect, BodyKind::kContentLength,
       true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::kGet, BodyKind::kChunked,
       true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Method::kGet,
       BodyKind::kChunked, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", Method::kGet, BodyKind::kUntilClose,
       false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Method::kGet,
       BodyKind::kUntilClose, false},
      {"HTTP/1.1 200 OK\r\n\r\n", Method::kGet, BodyKind::kUntilClose, false},
      {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::kGet, BodyKind::kContentLength,
       false},
      {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", Method::kGet,
       BodyKind::kContentLength, true},
      {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", Method::kGet,
       BodyKind::kContentLength, false},
  };
  for (const Case& c : cases) {
    const ParseOutcome r = parseResponse(c.text, c.method);
    ASSERT_EQ(r.state, ParseState::kComplete)
        << testing::PrintToString(std::string(c.text)) << (r.error_reason ? r.error_reason : "");
    EXPECT_EQ(r.head_bytes, c.text.size());
    EXPECT_EQ(resp_->body, c.body) << testing::PrintToString(std::string(c.text));
    EXPECT_EQ(resp_->keep_alive, c.keep_alive) << testing::PrintToString(std::string(c.text));
  }
}

TEST_F(Http1ParserTest, ResponseStatusLine) {
  ASSERT_EQ(parseResponse("HTTP/1.1 200 \r\n\r\n").state, ParseState::kComplete);
  EXPECT_EQ(resp_->reason, "");
  ASSERT_EQ(parseResponse("HTTP/1.1 200\r\n\r\n").state, ParseState::kComplete);
  EXPECT_EQ(resp_->reason, "");
  EXPECT_EQ(resp_->status, 200);
  ASSERT_EQ(parseResponse("HTTP/1.0 404 Not\tFound \xff\r\n\r\n").state, ParseState::kComplete);
  EXPECT_EQ(resp_->reason, "Not\tFound \xff");
  EXPECT_EQ(resp_->version_minor, 0);

  expectResponseError("HTTP/2.0 200 OK\r\n\r\n");
  expectResponseError("HTTP/1.2 200 OK\r\n\r\n");
  expectResponseError("http/1.1 200 OK\r\n\r\n");
  expectResponseError("HTTP/1.1 20 OK\r\n\r\n");
  expectResponseError("HTTP/1.1 2000 OK\r\n\r\n");
  expectResponseError("HTTP/1.1 099 OK\r\n\r\n");
  expectResponseError("HTTP/1.1 600 OK\r\n\r\n");
  expectResponseError("HTTP/1.1  200 OK\r\n\r\n");
  expectResponseError("HTTP/1.1 200 O\x01K\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nX: a\nb\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nX : a\r\n\r\n");
  expectResponseError("\r\nHTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(parseResponse("HTTP/1.1 200 OK\r\n").state, ParseState::kIncomplete);
  EXPECT_EQ(parseResponse("HTTP/1.1 2").state, ParseState::kIncomplete);
}

TEST_F(Http1ParserTest, ResponseFramingErrorsAre502) {
  expectResponseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
  expectResponseError("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
  expectResponseError("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  ParseLimits limits;
  limits.max_head_bytes = 32;
  const ParseOutcome r =
      parseResponse("HTTP/1.1 200 OK\r\nX: 0123456789abcdef\r\n\r\n", Method::kGet, limits);
  EXPECT_EQ(r.state, ParseState::kError);
  EXPECT_EQ(r.error_status, 502);
}

TEST_F(Http1ParserTest, ResponseHopByHop) {
  ASSERT_EQ(parseResponse("HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nX-B: 2\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n")
                .state,
            ParseState::kComplete);
  EXPECT_TRUE(resp_->isHopByHop(0));
  EXPECT_TRUE(resp_->isHopByHop(1));
  EXPECT_FALSE(resp_->isHopByHop(2));
  EXPECT_TRUE(resp_->isHopByHop(3));
}

TEST_F(Http1ParserTest, ResponseByteByByte) {
  const std::string_view s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n5\r\n";
  const size_t head = s.size() - 3;
  for (size_t k = 0; k < head; ++k) {
    ASSERT_EQ(parseResponse(s.substr(0, k)).state, ParseState::kIncomplete) << k;
  }
  for (size_t k = head; k <= s.size(); ++k) {
    const ParseOutcome r = parseResponse(s.substr(0, k));
    ASSERT_EQ(r.state, ParseState::kComplete) << k;
    EXPECT_EQ(r.head_bytes, head);
    EXPECT_EQ(resp_->body, BodyKind::kChunked);
  }
}

// ---- ChunkedDecoder ----------------------------------------------------------------------------

struct ChunkedResult {
  size_t consumed = 0;
  bool done = false;
  bool error = false;
  std::string reason;
  uint64_t payload = 0;
};

ChunkedResult feedAll(std::string_view s) {
  ChunkedDecoder d;
  const Bytes b(s);
  const ChunkedDecoder::Step st = d.feed(b.data(), b.size());
  return {st.consumed, st.done, st.error, st.error_reason ? st.error_reason : "", d.payloadBytes()};
}

ChunkedResult feedBytewise(std::string_view s) {
  ChunkedDecoder d;
  ChunkedResult r;
  for (size_t i = 0; i < s.size(); ++i) {
    const Bytes b(s.substr(i, 1));
    const ChunkedDecoder::Step st = d.feed(b.data(), 1);
    r.consumed += st.consumed;
    if (st.error) {
      r.error = true;
      r.reason = st.error_reason;
      break;
    }
    if (st.done) {
      r.done = true;
      break;
    }
  }
  r.payload = d.payloadBytes();
  return r;
}

void expectChunkedOk(std::string_view s, uint64_t payload, size_t message_bytes) {
  for (const ChunkedResult& r : {feedAll(s), feedBytewise(s)}) {
    EXPECT_FALSE(r.error) << testing::PrintToString(std::string(s)) << " " << r.reason;
    EXPECT_TRUE(r.done) << testing::PrintToString(std::string(s));
    EXPECT_EQ(r.consumed, message_bytes) << testing::PrintToString(std::string(s));
    EXPECT_EQ(r.payload, payload);
  }
}

void expectChunkedError(std::string_view s, const char* reason = nullptr) {
  for (const ChunkedResult& r : {feedAll(s), feedBytewise(s)}) {
    EXPECT_TRUE(r.error) << testing::PrintToString(std::string(s));
    EXPECT_FALSE(r.done);
    if (reason != nullptr) {
      EXPECT_EQ(r.reason, reason) << testing::PrintToString(std::string(s));
    }
  }
}

TEST(ChunkedDecoderTest, ValidBodies) {
  expectChunkedOk("0\r\n\r\n", 0, 5);
  expectChunkedOk("5\r\nhello\r\n0\r\n\r\n", 5, 15);
  const std::string_view s =
      "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\nGET / HTTP/1.1";
  expectChunkedOk(s, 31, s.size() - 14);
  expectChunkedOk("000005\r\nhello\r\n0000\r\n\r\n", 5, 23);
  expectChunkedOk("a\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: \t\r\n\r\n", 10, 36);
  expectChunkedOk("5;ext\r\nhello\r\n0;a=b;c=\"q \\\"x\\\" y\"\r\n\r\n", 5, 37);
  expectChunkedOk("5 ; ext = val ;e2\r\nhello\r\n0\r\n\r\n", 5, 31);
  expectChunkedOk("4\r\n\r\n\r\n\r\n0\r\n\r\n", 4, 14);  // CRLFs as chunk-data
}

TEST(ChunkedDecoderTest, LargeChunkSpansFeeds) {
  ChunkedDecoder d;
  std::string s = "FFFFFFFFFFFF\r\n";
  ChunkedDecoder::Step st = d.feed(s.data(), s.size());
  EXPECT_EQ(st.consumed, s.size());
  EXPECT_FALSE(st.done);
  EXPECT_FALSE(st.error);
  const std::string blob(1 << 16, 'x');
  st = d.feed(blob.data(), blob.size());
  EXPECT_EQ(st.consumed, blob.size());
  EXPECT_EQ(d.payloadBytes(), blob.size());
  d.reset();
  EXPECT_EQ(d.payloadBytes(), 0u);
  s = "3\r\nabc\r\n0\r\n\r\nextra";
  st = d.feed(s.data(), s.size());
  EXPECT_TRUE(st.done);
  EXPECT_EQ(st.consumed, s.size() - 5);
  EXPECT_TRUE(d.done());
  st = d.feed(s.data(), s.size());  // nothing more belongs to this message
  EXPECT_TRUE(st.done);
  EXPECT_EQ(st.consumed, 0u);
}

TEST(ChunkedDecoderTest, BadChunkSizes) {
  expectChunkedError("g\r\nx\r\n0\r\n\r\n", "invalid chunk size");
  expectChunkedError("-1\r\nx\r\n0\r\n\r\n", "invalid chunk size");
  expectChunkedError("+1\r\nx\r\n0\r\n\r\n", "invalid chunk size");
  expectChunkedError("00000000000000001\r\nx\r\n0\r\n\r\n",
                     "chunk size has more than 16 hex digits");
  expectChunkedError("10000000000000000\r\n", "chunk size has more than 16 hex digits");
  expectChunkedError("FFFFFFFFFFFFFFFF\r\n", "chunk size too large");
  expectChunkedError("4000000000000000\r\n", "chunk size too large");
  expectChunkedError("0x10\r\n", "invalid chunk size");
  expectChunkedError(" 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
  expectChunkedError("\t5\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
  expectChunkedError("5 \r\nhello\r\n0\r\n\r\n", "whitespace not followed by chunk extension");
  expectChunkedError("\r\n");
  expectChunkedError("5x\r\nhello\r\n0\r\n\r\n");
}

TEST(ChunkedDecoderTest, FramingErrors) {
  expectChunkedError("5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF after chunk data");
  expectChunkedError("5\r\nhello0\r\n\r\n", "missing CRLF after chunk data");
  expectChunkedError("5\r\nhello\rX0\r\n\r\n", "missing CRLF after chunk data");
  expectChunkedError("5\r\nhello\n0\r\n\r\n", "missing CRLF after chunk data");
  expectChunkedError("5\nhello\r\n0\r\n\r\n", "bare LF in chunked framing");
  expectChunkedError("5;a\nhello\r\n0\r\n\r\n", "bare LF in chunked framing");
  expectChunkedError("5\rhello\r\n0\r\n\r\n", "bare CR in chunked framing");
  expectChunkedError("0\r\n\n", "bare LF in chunked framing");
  expectChunkedError("0\r\n\rX", "bare CR in chunked framing");
  expectChunkedError("0\r\nX: y\n\r\n", "bare LF in chunked framing");
  expectChunkedError("0\r\nX: y\rZ\r\n\r\n", "bare CR in chunked framing");
}

TEST(ChunkedDecoderTest, ExtensionAndTrailerErrors) {
  expectChunkedError("5;\r\nhello\r\n0\r\n\r\n", "invalid chunk extension");
  expectChunkedError("5;=v\r\nhello\r\n0\r\n\r\n", "invalid chunk extension");
  expectChunkedError("5;a=\r\nhello\r\n0\r\n\r\n", "invalid chunk extension value");
  expectChunkedError("5;a=\"x\r\nhello\r\n0\r\n\r\n");
  expectChunkedError("5;a=b c\r\nhello\r\n0\r\n\r\n");
  expectChunkedError("5;a\x01\r\nhello\r\n0\r\n\r\n");
  expectChunkedError("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
  expectChunkedError("5;" + std::string(ChunkedDecoder::kMaxChunkLineBytes, 'a') + "\r\n",
                     "chunk-size line too long");
  expectChunkedError("0\r\n X: y\r\n\r\n", "obs-fold in trailer");
  expectChunkedError("0\r\nX : y\r\n\r\n", "whitespace between trailer field name and colon");
  expectChunkedError("0\r\n: y\r\n\r\n", "empty trailer field name");
  expectChunkedError("0\r\nX: a\0b\r\n\r\n"sv, "control character in trailer value");
  expectChunkedError("0\r\nNoColon\r\n\r\n", "invalid trailer field name");
  std::string big = "0\r\n";
  for (int i = 0; i < 200; ++i) big += "X-Trailer: " + std::string(90, 'v') + "\r\n";
  expectChunkedError(big + "\r\n", "trailer section too long");
}

TEST(ChunkedDecoderTest, ErrorIsSticky) {
  ChunkedDecoder d;
  const std::string_view bad = "zz";
  ChunkedDecoder::Step st = d.feed(bad.data(), bad.size());
  EXPECT_TRUE(st.error);
  EXPECT_EQ(st.consumed, 0u);
  const std::string_view good = "0\r\n\r\n";
  st = d.feed(good.data(), good.size());
  EXPECT_TRUE(st.error);
  EXPECT_TRUE(d.failed());
  d.reset();
  st = d.feed(good.data(), good.size());
  EXPECT_TRUE(st.done);
  EXPECT_EQ(st.consumed, good.size());
}

TEST(ChunkedDecoderTest, EverySplitPointAgrees) {
  const std::string_view s =
      "1a;x=\"y\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\nNEXT";
  for (size_t k = 0; k <= s.size(); ++k) {
    ChunkedDecoder d;
    ChunkedDecoder::Step a = d.feed(s.data(), k);
    size_t consumed = a.consumed;
    bool done = a.done;
    if (!done) {
      ChunkedDecoder::Step b = d.feed(s.data() + k, s.size() - k);
      consumed += b.consumed;
      done = b.done;
      EXPECT_FALSE(b.error);
    }
    EXPECT_TRUE(done) << k;
    EXPECT_EQ(consumed, s.size() - 4) << k;
    EXPECT_EQ(d.payloadBytes(), 29u);
  }
}

TEST(ChunkedDecoderTest, SizeIsSmall) { EXPECT_LE(sizeof(ChunkedDecoder), 32u); }

}  // namespace
}  // namespace scalegate::l7proxy
