#include "common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <string>

namespace scalegate {
namespace {

// Captures log output through a pipe; restores stderr and default settings afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe(fds_), 0);
    ASSERT_EQ(fcntl(fds_[0], F_SETFL, O_NONBLOCK), 0);
    setLogFd(fds_[1]);
    setLogLevel(LogLevel::kDebug);
    setLogFormat(LogFormat::kText);
  }
  void TearDown() override {
    setLogFd(2);
    setLogLevel(LogLevel::kInfo);
    setLogFormat(LogFormat::kText);
    close(fds_[0]);
    close(fds_[1]);
  }
  std::string drain() {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds_[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }

  int fds_[2] = {-1, -1};
};

const char kTs[] = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)";

TEST_F(LogTest, TextLine) {
  SG_LOG(kInfo, "listening on %s port %d", "127.0.0.1", 8080);
  std::string out = drain();
  EXPECT_TRUE(std::regex_match(
      out, std::regex(std::string(kTs) + " INFO listening on 127\\.0\\.0\\.1 port 8080\n")))
      << out;
}

TEST_F(LogTest, TextFieldsAreKeyValue) {
  logEvent(LogLevel::kWarn, "reload_failed", {{"file", "/etc/sg.yaml"}, {"error", "bad key"}});
  std::string out = drain();
  EXPECT_TRUE(std::regex_match(
      out,
      std::regex(std::string(kTs) + " WARN reload_failed file=/etc/sg\\.yaml error=\"bad key\"\n")))
      << out;
}

TEST_F(LogTest, TextStaysOnOneLine) {
  logEvent(LogLevel::kInfo, "two\nlines", {{"k", "a\"b\nc"}});
  std::string out = drain();
  EXPECT_NE(out.find("two\\nlines k=\"a\\\"b\\nc\"\n"), std::string::npos) << out;
  EXPECT_EQ(out.find('\n'), out.size() - 1);
}

TEST_F(LogTest, JsonLine) {
  setLogFormat(LogFormat::kJson);
  logEvent(LogLevel::kError, "say \"hi\"\n", {{"pool", "web"}, {"ctl", std::string("\x01", 1)}});
  std::string out = drain();
  EXPECT_TRUE(std::regex_match(
      out, std::regex(std::string(R"(\{"ts":")") + kTs +
                      R"(","level":"error","msg":"say \\"hi\\"\\n","pool":"web","ctl":"\\u0001"\}
)"))) << out;
}

TEST_F(LogTest, JsonReplacesInvalidUtf8) {
  setLogFormat(LogFormat::kJson);
  logEvent(LogLevel::kInfo, "caf\xc3\xa9 \xff", {});
  std::string out = drain();
  EXPECT_NE(out.find("\"msg\":\"caf\xc3\xa9 \xef\xbf\xbd\""), std::string::npos) << out;
}

TEST_F(LogTest, LevelFilters) {
  setLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(logEnabled(LogLevel::kInfo));
  EXPECT_TRUE(logEnabled(LogLevel::kError));
  SG_LOG(kInfo, "hidden");
  logEvent(LogLevel::kDebug, "hidden", {});
  EXPECT_EQ(drain(), "");
  SG_LOG(kError, "shown");
  EXPECT_NE(drain().find("ERROR shown"), std::string::npos);
}

TEST_F(LogTest, LongMessagesAreNotTruncated) {
  std::string big(5000, 'x');
  SG_LOG(kInfo, "%s!", big.c_str());
  std::string out = drain();
  EXPECT_NE(out.find(big + "!\n"), std::string::npos);
}

TEST(LogParse, LevelsAndFormats) {
  LogLevel level = LogLevel::kInfo;
  EXPECT_TRUE(parseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_TRUE(parseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
  EXPECT_FALSE(parseLogLevel("verbose", &level));
  EXPECT_EQ(level, LogLevel::kError);
  LogFormat format = LogFormat::kText;
  EXPECT_TRUE(parseLogFormat("json", &format));
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_FALSE(parseLogFormat("xml", &format));
}

}  // namespace
}  // namespace scalegate
