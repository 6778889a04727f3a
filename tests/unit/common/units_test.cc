#include "common/units.h"

#include <gtest/gtest.h>

namespace scalegate {
namespace {

using namespace std::chrono_literals;

Duration mustParse(std::string_view text) {
  auto r = parseDuration(text);
  EXPECT_TRUE(r.isOk()) << text << ": " << r.status().toString();
  return r.isOk() ? *r : Duration(-1);
}

TEST(ParseDuration, SingleUnits) {
  EXPECT_EQ(mustParse("7ns"), 7ns);
  EXPECT_EQ(mustParse("7us"), 7us);
  EXPECT_EQ(mustParse("250ms"), 250ms);
  EXPECT_EQ(mustParse("10s"), 10s);
  EXPECT_EQ(mustParse("5m"), 5min);
  EXPECT_EQ(mustParse("2h"), 2h);
  EXPECT_EQ(mustParse("2d"), 48h);
  EXPECT_EQ(mustParse("0s"), 0s);
}

TEST(ParseDuration, ZeroNeedsNoUnit) { EXPECT_EQ(mustParse("0"), 0s); }

TEST(ParseDuration, Chained) {
  EXPECT_EQ(mustParse("1m30s"), 90s);
  EXPECT_EQ(mustParse("1h30m"), 90min);
  EXPECT_EQ(mustParse("1d2h3m4s5ms"), 24h + 2h + 3min + 4s + 5ms);
}

TEST(ParseDuration, Decimals) {
  EXPECT_EQ(mustParse("1.5s"), 1500ms);
  EXPECT_EQ(mustParse("0.25s"), 250ms);
  EXPECT_EQ(mustParse(".5s"), 500ms);
  EXPECT_EQ(mustParse("1.5h"), 90min);
  EXPECT_EQ(mustParse("1m0.5s"), 60500ms);
}

TEST(ParseDuration, RejectsBareNumbers) {
  auto r = parseDuration("10");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("missing unit"), std::string::npos);
  EXPECT_FALSE(parseDuration("1m30").isOk());
  EXPECT_FALSE(parseDuration("1.5").isOk());
}

TEST(ParseDuration, RejectsNegatives) {
  EXPECT_FALSE(parseDuration("-1s").isOk());
  EXPECT_FALSE(parseDuration("1m-30s").isOk());
}

TEST(ParseDuration, RejectsJunk) {
  for (const char* junk : {"", " ", "s", "abc", "1x", "1.s", "1..5s", "1s!", "1sms", "0x10s"}) {
    EXPECT_FALSE(parseDuration(junk).isOk()) << junk;
  }
}

TEST(ParseDuration, UnknownUnitIsNamed) {
  auto r = parseDuration("5 parsecs");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().message(),
            "bad duration \"5 parsecs\": unknown unit \"parsecs\" "
            "(use ns, us, ms, s, m, h or d)");
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_FALSE(parseDuration("99999999999999999999s").isOk());
  EXPECT_FALSE(parseDuration("200000d").isOk());
  EXPECT_FALSE(parseDuration("106751d106751d").isOk());
  EXPECT_TRUE(parseDuration("100000d").isOk());
}

TEST(FormatDuration, ShortestExactForms) {
  EXPECT_EQ(formatDuration(0s), "0s");
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(250ms), "250ms");
  EXPECT_EQ(formatDuration(1500ms), "1.5s");
  EXPECT_EQ(formatDuration(2h), "2h");
  EXPECT_EQ(formatDuration(48h), "2d");
  EXPECT_EQ(formatDuration(7us), "7us");
  EXPECT_EQ(formatDuration(7ns), "7ns");
  EXPECT_EQ(formatDuration(-5s), "-5s");
}

TEST(FormatDuration, RoundTrips) {
  for (Duration d : {Duration(1), Duration(999), Duration(1001), Duration(61'000'000'001)}) {
    EXPECT_EQ(mustParse(formatDuration(d)), d) << formatDuration(d);
  }
  for (Duration d : {Duration(1h + 1ms), Duration(36h + 1us), Duration(5min + 1500ms)}) {
    EXPECT_EQ(mustParse(formatDuration(d)), d) << formatDuration(d);
  }
}

uint64_t mustParseSize(std::string_view text) {
  auto r = parseSize(text);
  EXPECT_TRUE(r.isOk()) << text << ": " << r.status().toString();
  return r.isOk() ? *r : 0;
}

TEST(ParseSize, Bytes) {
  EXPECT_EQ(mustParseSize("0"), 0u);
  EXPECT_EQ(mustParseSize("512"), 512u);
  EXPECT_EQ(mustParseSize("512B"), 512u);
}

TEST(ParseSize, BinaryMultiples) {
  EXPECT_EQ(mustParseSize("16k"), 16u * 1024);
  EXPECT_EQ(mustParseSize("16K"), 16u * 1024);
  EXPECT_EQ(mustParseSize("4M"), 4u * 1024 * 1024);
  EXPECT_EQ(mustParseSize("1G"), 1024u * 1024 * 1024);
  EXPECT_EQ(mustParseSize("2T"), 2ull << 40);
  EXPECT_EQ(mustParseSize("16KiB"), 16u * 1024);
  EXPECT_EQ(mustParseSize("16kB"), 16u * 1024);
  EXPECT_EQ(mustParseSize("8MiB"), 8u * 1024 * 1024);
}

TEST(ParseSize, RejectsJunk) {
  for (const char* junk : {"", "k", "-1", "-1k", "1.5M", "12q", "1kk", "1Bi", "1 parsec", "0x10"}) {
    EXPECT_FALSE(parseSize(junk).isOk()) << junk;
  }
}

TEST(ParseSize, RejectsOverflow) {
  EXPECT_FALSE(parseSize("99999999999999999999").isOk());
  EXPECT_FALSE(parseSize("16777216T").isOk());
  EXPECT_EQ(mustParseSize("18446744073709551615"), 18446744073709551615ull);
}

}  // namespace
}  // namespace scalegate
