#include "l7proxy/h2_upstream.h"

#include <gtest/gtest.h>

#include <string>

#include "l7proxy/http1_parser.h"

namespace scalegate::l7proxy {
namespace {

TEST(H2Upstream, ReasonPhrases) {
  EXPECT_EQ(h2ReasonPhrase(200), "OK");
  EXPECT_EQ(h2ReasonPhrase(204), "No Content");
  EXPECT_EQ(h2ReasonPhrase(404), "Not Found");
  EXPECT_EQ(h2ReasonPhrase(299), "Success");  // by class when not listed
  EXPECT_EQ(h2ReasonPhrase(599), "Server Error");
  EXPECT_EQ(h2ReasonPhrase(999), "Unknown");
}

TEST(H2Upstream, ConnectionSpecificFields) {
  for (const char* name : {"host", "connection", "keep-alive", "proxy-connection",
                           "transfer-encoding", "upgrade", "te"}) {
    EXPECT_TRUE(h2ConnectionSpecific(name)) << name;
  }
  for (const char* name : {"content-length", "x-forwarded-for", "accept", "hosts", "tee"}) {
    EXPECT_FALSE(h2ConnectionSpecific(name)) << name;
  }
}

// The rewrite of an HTTP/2 response without content-length: a head with chunked framing and
// fixed-width chunk-size fields, which the HTTP/1.1 response parser and chunked decoder (the
// path the bytes take next) must accept as they are.
TEST(H2Upstream, RewrittenChunkedResponseParses) {
  std::string bytes = "HTTP/1.1 200 ";
  bytes += h2ReasonPhrase(200);
  bytes += "\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
  const size_t head_len = bytes.size();
  for (uint32_t n : {1u, 10u, 16384u}) {
    char field[8];
    h2ChunkSizeField(n, field);
    bytes.append(field, 8);
    bytes += "\r\n";
    bytes.append(n, 'x');
    bytes += "\r\n";
  }
  bytes += "0\r\n\r\n";
  ResponseHead r;
  ParseOutcome o = parseResponseHead(bytes.data(), bytes.size(), ParseLimits{}, Method::kGet, &r);
  ASSERT_EQ(o.state, ParseState::kComplete);
  EXPECT_EQ(o.head_bytes, head_len);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.reason, "OK");
  EXPECT_EQ(r.body, BodyKind::kChunked);
  EXPECT_TRUE(r.keep_alive);
  ChunkedDecoder d;
  ChunkedDecoder::Step s = d.feed(bytes.data() + head_len, bytes.size() - head_len);
  EXPECT_FALSE(s.error) << (s.error_reason ? s.error_reason : "");
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.consumed, bytes.size() - head_len);
  EXPECT_EQ(d.payloadBytes(), 1u + 10u + 16384u);
}

TEST(H2Upstream, ChunkSizeFieldIsFixedWidthHex) {
  char f[8];
  h2ChunkSizeField(0x4000, f);
  EXPECT_EQ(std::string(f, 8), "00004000");
  h2ChunkSizeField(0xdeadbeef, f);
  EXPECT_EQ(std::string(f, 8), "deadbeef");
}

}  // namespace
}  // namespace scalegate::l7proxy
