#include "l7proxy/tls.h"

#include <gtest/gtest.h>

#include <cstring>

#include "l7proxy/http2.h"

namespace scalegate::l7proxy {
namespace {

TEST(Sni, ExactAndWildcardNames) {
  EXPECT_TRUE(sniMatches("example.com", "example.com"));
  EXPECT_TRUE(sniMatches("example.com", "EXAMPLE.com"));
  EXPECT_FALSE(sniMatches("example.com", "www.example.com"));
  EXPECT_TRUE(sniMatches("*.example.com", "www.example.com"));
  EXPECT_TRUE(sniMatches("*.example.com", "WWW.Example.COM"));
  EXPECT_FALSE(sniMatches("*.example.com", "example.com"));      // the label is required
  EXPECT_FALSE(sniMatches("*.example.com", "a.b.example.com"));  // exactly one label
  EXPECT_FALSE(sniMatches("*.example.com", ".example.com"));     // an empty label is none
  EXPECT_FALSE(sniMatches("*.example.com", "wwwexample.com"));
  EXPECT_FALSE(sniMatches("*", "anything"));
}

TEST(Sni, PickPrefersExactOverWildcardThenFallsBack) {
  std::vector<std::vector<std::string>> names = {
      {"*.example.com"}, {"api.example.com", "api2.example.com"}, {"other.test"}};
  EXPECT_EQ(pickCertificate(names, "api.example.com", 2), 1);  // exact beats an earlier wildcard
  EXPECT_EQ(pickCertificate(names, "API2.example.com", 2), 1);
  EXPECT_EQ(pickCertificate(names, "www.example.com", 2), 0);
  EXPECT_EQ(pickCertificate(names, "other.test", 0), 2);
  EXPECT_EQ(pickCertificate(names, "nothing.test", 2), 2);  // the default
  EXPECT_EQ(pickCertificate(names, "", 1), 1);              // no SNI
  EXPECT_EQ(pickCertificate({}, "a.test", 0), 0);
}

TicketKey keyNamed(uint8_t tag) {
  TicketKey k;
  std::memset(k.name, tag, sizeof(k.name));
  std::memset(k.aes, tag + 1, sizeof(k.aes));
  return k;
}

TEST(TicketKeys, RotationKeepsNewestFirstAndDropsTheOldest) {
  auto r1 = rotateTicketKeys(nullptr, keyNamed(1), 3);
  ASSERT_EQ(r1->keys.size(), 1u);
  auto r2 = rotateTicketKeys(r1.get(), keyNamed(2), 3);
  auto r3 = rotateTicketKeys(r2.get(), keyNamed(3), 3);
  auto r4 = rotateTicketKeys(r3.get(), keyNamed(4), 3);
  ASSERT_EQ(r4->keys.size(), 3u);
  EXPECT_EQ(r4->keys[0].name[0], 4);  // seals new tickets
  EXPECT_EQ(r4->keys[1].name[0], 3);
  EXPECT_EQ(r4->keys[2].name[0], 2);
  uint8_t name[16];
  std::memset(name, 2, sizeof(name));
  EXPECT_EQ(r4->find(name), &r4->keys[2]);  // an older key still opens its tickets
  std::memset(name, 1, sizeof(name));
  EXPECT_EQ(r4->find(name), nullptr);  // retired
  EXPECT_NE(r3->find(name), nullptr);  // the previous ring is untouched (immutable)
}

TEST(TicketKeys, RandomKeysDiffer) {
  auto a = randomTicketKey();
  auto b = randomTicketKey();
  ASSERT_TRUE(a.isOk());
  ASSERT_TRUE(b.isOk());
  EXPECT_NE(std::memcmp(a.value().name, b.value().name, 16), 0);
  EXPECT_NE(std::memcmp(a.value().aes, b.value().aes, 32), 0);
}

TEST(TlsServerContext, MissingFilesAreReported) {
  config::ListenerTls cfg;
  cfg.enabled = true;
  cfg.certificates.push_back({"/nonexistent/cert.pem", "/nonexistent/key.pem", false, {}});
  auto r = TlsServerContext::build(cfg);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("/nonexistent/cert.pem"), std::string::npos);
}

TEST(Http2Preface, DetectsPrefixAndWhole) {
  const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  EXPECT_EQ(h2CheckPreface(preface, 24), H2Preface::kYes);
  EXPECT_EQ(h2CheckPreface(preface, 5), H2Preface::kPartial);
  std::string more = std::string(preface) + "\x00\x00\x00\x04";
  EXPECT_EQ(h2CheckPreface(more.data(), more.size()), H2Preface::kYes);
  EXPECT_EQ(h2CheckPreface("GET / HTTP/1.1\r\n", 16), H2Preface::kNo);
  EXPECT_EQ(h2CheckPreface("PRX", 3), H2Preface::kNo);
}

}  // namespace
}  // namespace scalegate::l7proxy
