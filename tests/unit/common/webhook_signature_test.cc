#include "common/webhook_signature.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace scalegate {
namespace {

WallTime at(int64_t unix_seconds) { return WallTime(std::chrono::seconds(unix_seconds)); }

WebhookKey key(std::string_view secret) {
  auto k = WebhookKey::fromSecret(secret);
  EXPECT_TRUE(k.isOk()) << k.status().toString();
  return std::move(k).value();
}

TEST(Base64, RoundTripsEveryLength) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 7) {
    auto back = base64Decode(base64Encode(all.substr(0, n)));
    ASSERT_TRUE(back.isOk());
    EXPECT_EQ(*back, all.substr(0, n));
  }
}

TEST(Base64, DecodeIsStrict) {
  EXPECT_FALSE(base64Decode("Zg=").isOk());       // length
  EXPECT_FALSE(base64Decode("Z===").isOk());      // padding too early
  EXPECT_FALSE(base64Decode("Zg==Zg==").isOk());  // padding in the middle
  EXPECT_FALSE(base64Decode("Zm9*").isOk());      // alphabet
  EXPECT_FALSE(base64Decode("Zm9 ").isOk());      // whitespace
}

// The Standard Webhooks libraries' own test vector (reference autoscale.md section 7.5).
TEST(WebhookKey, SignsTheStandardWebhooksVector) {
  WebhookKey k = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  EXPECT_EQ(k.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookKey, SignsTheDerivedVector) {
  WebhookKey k = key("whsec_YXV0b3NjYWxlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=");
  const std::string body = R"({"type":"scale.out","data":{"old":2,"new":3}})";
  EXPECT_EQ(k.sign("msg_01", 1700000000, body), "v1,STow6HHAlM5WeUB7k9hHEcbbyu6Q+LW+JIhSVPf2ByU=");
  // The same raw key given without the whsec_ wrapping signs the same way.
  EXPECT_EQ(key("autoscale-test-secret-0123456789").sign("msg_01", 1700000000, body),
            k.sign("msg_01", 1700000000, body));
}

TEST(WebhookKey, RejectsBadSecrets) {
  EXPECT_FALSE(WebhookKey::fromSecret("").isOk());
  EXPECT_FALSE(WebhookKey::fromSecret("whsec_").isOk());
  auto bad = WebhookKey::fromSecret("whsec_not base64!");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("base64"), std::string::npos);
}

class Verify : public ::testing::Test {
 protected:
  WebhookKey k_ = key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  const std::string id_ = "msg_p5jXN8AQM9LWM0D4loKWxJek";
  const std::string ts_ = "1614265330";
  const std::string body_ = R"({"test": 2432232314})";
  const std::string sig_ = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
  const WallTime now_ = at(1614265330 + 10);
};

TEST_F(Verify, AcceptsTheVector) { EXPECT_TRUE(k_.verify(id_, ts_, sig_, body_, now_).isOk()); }

TEST_F(Verify, AcceptsAnyMatchingEntryOfAList) {
  const std::string list = "v1a,aGVsbG8= v1,Zm9vYmFyYmF6 " + sig_ + "  v2,xyz";
  EXPECT_TRUE(k_.verify(id_, ts_, list, body_, now_).isOk());
}

TEST_F(Verify, RefusesTampering) {
  Status body = k_.verify(id_, ts_, sig_, R"({"test": 2432232315})", now_);
  EXPECT_EQ(body.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(body.message(), "no matching signature");
  EXPECT_FALSE(k_.verify("msg_other", ts_, sig_, body_, now_).isOk());
  EXPECT_FALSE(k_.verify(id_, "1614265331", sig_, body_, now_).isOk());
  std::string flipped = sig_;
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(k_.verify(id_, ts_, flipped, body_, now_).isOk());
  EXPECT_FALSE(k_.verify(id_, ts_, sig_.substr(0, sig_.size() - 1), body_, now_).isOk());
  EXPECT_FALSE(key("whsec_YXV0b3NjYWxl").verify(id_, ts_, sig_, body_, now_).isOk());
  Status no_v1 = k_.verify(id_, ts_, "v1a,abc", body_, now_);
  EXPECT_EQ(no_v1.message(), "no v1 signature in webhook-signature");
}

TEST_F(Verify, RefusesTimestampsOutsideTheTolerance) {
  const int64_t ts = 1614265330;
  EXPECT_TRUE(k_.verify(id_, ts_, sig_, body_, at(ts + 300)).isOk());
  EXPECT_TRUE(k_.verify(id_, ts_, sig_, body_, at(ts - 300)).isOk());
  Status old = k_.verify(id_, ts_, sig_, body_, at(ts + 301));
  EXPECT_NE(old.message().find("too old"), std::string::npos) << old.message();
  Status future = k_.verify(id_, ts_, sig_, body_, at(ts - 301));
  EXPECT_NE(future.message().find("too new"), std::string::npos) << future.message();
  EXPECT_TRUE(k_.verify(id_, ts_, sig_, body_, at(ts + 3600), std::chrono::hours(2)).isOk());
}

TEST_F(Verify, RefusesMissingOrMalformedHeaders) {
  EXPECT_EQ(k_.verify("", ts_, sig_, body_, now_).message(), "missing webhook-id header");
  EXPECT_EQ(k_.verify(id_, "", sig_, body_, now_).message(), "missing webhook-timestamp header");
  EXPECT_EQ(k_.verify(id_, ts_, "", body_, now_).message(), "missing webhook-signature header");
  EXPECT_EQ(k_.verify(id_, "16142653x0", sig_, body_, now_).message(),
            "webhook-timestamp is not unix seconds");
  EXPECT_FALSE(k_.verify(id_, "-5", sig_, body_, now_).isOk());
}

class SecretFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sg_secret_XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void write(const std::string& text) { std::ofstream(path_, std::ios::binary) << text; }
  std::string path_;
};

TEST_F(SecretFile, TrimsTrailingNewlines) {
  write("whsec_abc=\r\n\n");
  auto s = readSecretFile(path_);
  ASSERT_TRUE(s.isOk());
  EXPECT_EQ(*s, "whsec_abc=");
  write(" keep leading space\n");
  EXPECT_EQ(*readSecretFile(path_), " keep leading space");
}

TEST_F(SecretFile, ClearErrors) {
  write("\n");
  auto empty = readSecretFile(path_);
  ASSERT_FALSE(empty.isOk());
  EXPECT_EQ(empty.status().message(), "secret file " + path_ + " is empty");
  auto missing = readSecretFile(path_ + ".nope");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "secret file " + path_ + ".nope: does not exist");
}

}  // namespace
}  // namespace scalegate
