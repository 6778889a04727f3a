#include "control/load_report.h"

#include <gtest/gtest.h>

#include <string>

namespace scalegate::control {
namespace {

using Values = std::map<std::string, double>;

TEST(LoadHeaderTest, PairsSeparatedByCommaOrSemicolon) {
  LoadReport r = parseLoadHeader("cpu=0.82, mem=0.61;queue=12 ;  io_wait = 1e-3");
  EXPECT_EQ(r.values, (Values{{"cpu", 0.82}, {"mem", 0.61}, {"queue", 12}, {"io_wait", 0.001}}));
  EXPECT_EQ(r.app_health, "");
}

TEST(LoadHeaderTest, NamesAreLowerCased) {
  EXPECT_EQ(parseLoadHeader("CPU=1,Mem_2=2").values, (Values{{"cpu", 1}, {"mem_2", 2}}));
}

TEST(LoadHeaderTest, BadPairsAreSkipped) {
  LoadReport r = parseLoadHeader(
      "cpu=0.5, =1, noequals, mem=, q=abc, r=1x, bad-name=3, sp ace=4, n=nan, i=inf, "
      "big=1e999, x=+1, ok=-2, , ;, " +
      std::string(33, 'a') + "=1, " + std::string(32, 'b') + "=2");
  EXPECT_EQ(r.values, (Values{{"cpu", 0.5}, {"ok", -2}, {std::string(32, 'b'), 2}}));
}

TEST(LoadHeaderTest, EmptyAndGarbage) {
  EXPECT_TRUE(parseLoadHeader("").values.empty());
  EXPECT_TRUE(parseLoadHeader(",,,;;").values.empty());
  EXPECT_TRUE(parseLoadHeader(std::string("\0\xff=1", 4)).values.empty());
}

TEST(LoadHeaderTest, LaterValueWinsAndAtMost32) {
  EXPECT_EQ(parseLoadHeader("cpu=1, cpu=2").values, (Values{{"cpu", 2}}));
  std::string many;
  for (int i = 0; i < 40; ++i) many += "v" + std::to_string(i) + "=" + std::to_string(i) + ",";
  LoadReport r = parseLoadHeader(many);
  EXPECT_EQ(r.values.size(), kMaxLoadValues);
  EXPECT_EQ(r.values.count("v0"), 1u);
  EXPECT_EQ(r.values.count("v31"), 1u);
  EXPECT_EQ(r.values.count("v32"), 0u);
  // A full report still updates names it has.
  addLoadHeader("v0=100, new=1", &r);
  EXPECT_EQ(r.values["v0"], 100);
  EXPECT_EQ(r.values.count("new"), 0u);
}

TEST(LoadBodyTest, JsonNumbersAndCustom) {
  LoadReport r;
  EXPECT_TRUE(parseLoadBody(
      R"({"cpu": 0.82, "mem": 0.61, "queue": 12, "name": "vm-1", "up": true, "list": [1],
          "custom": {"sessions": 40, "deep": {"x": 1}}, "Metrics": {"RPS": 7}})",
      "application/json", &r));
  EXPECT_EQ(r.values,
            (Values{{"cpu", 0.82}, {"mem", 0.61}, {"queue", 12}, {"sessions", 40}, {"rps", 7}}));
  EXPECT_EQ(r.app_health, "");
}

TEST(LoadBodyTest, ContentTypeOrBrace) {
  LoadReport r;
  EXPECT_TRUE(parseLoadBody(" \r\n{\"cpu\": 1}", "text/plain", &r));
  EXPECT_EQ(r.values, (Values{{"cpu", 1}}));
  LoadReport s;
  EXPECT_TRUE(parseLoadBody("{\"cpu\": 2}", "Application/JSON; charset=utf-8", &s));
  EXPECT_TRUE(parseLoadBody("{\"cpu\": 2}", "application/health+json", &s));
  LoadReport t;
  EXPECT_FALSE(parseLoadBody("cpu=1", "text/plain", &t));
  EXPECT_FALSE(parseLoadBody("[1, 2]", "application/json", &t));
  EXPECT_FALSE(parseLoadBody("\"x\"", "application/json", &t));
  EXPECT_FALSE(parseLoadBody("", "application/json", &t));
  EXPECT_FALSE(parseLoadBody("{\"cpu\": 1", "application/json", &t));
  EXPECT_FALSE(parseLoadBody("{\"cpu\": NaN}", "", &t));
  EXPECT_TRUE(t.values.empty());
}

TEST(LoadBodyTest, MalformedLeavesTheReportUnchanged) {
  LoadReport r = parseLoadHeader("cpu=0.5");
  EXPECT_FALSE(parseLoadBody("{\"mem\": 1, ", "application/json", &r));
  EXPECT_EQ(r.values, (Values{{"cpu", 0.5}}));
}

TEST(LoadBodyTest, ExistingAndTopLevelValuesWin) {
  LoadReport r = parseLoadHeader("cpu=0.5");
  EXPECT_TRUE(
      parseLoadBody(R"({"cpu": 0.9, "q": 1, "custom": {"q": 2, "cpu": 3, "s": 4}})", "", &r));
  EXPECT_EQ(r.values, (Values{{"cpu", 0.5}, {"q", 1}, {"s", 4}}));
}

TEST(LoadBodyTest, AtMost32Values) {
  std::string body = "{";
  for (int i = 0; i < 50; ++i) body += "\"k" + std::to_string(i) + "\": 1,";
  body += "\"custom\": {\"z\": 1}}";
  LoadReport r;
  EXPECT_TRUE(parseLoadBody(body, "", &r));
  EXPECT_EQ(r.values.size(), kMaxLoadValues);
}

TEST(LoadBodyTest, DeepNestingIsRefused) {
  std::string deep = "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}";
  LoadReport r;
  EXPECT_FALSE(parseLoadBody(deep, "application/json", &r));
  // Brackets inside strings do not count.
  EXPECT_TRUE(parseLoadBody("{\"s\": \"" + std::string(100, '[') + "\\\"\", \"cpu\": 1}", "", &r));
  EXPECT_EQ(r.values, (Values{{"cpu", 1}}));
}

TEST(LoadBodyTest, OversizedBodyIsNotParsed) {
  std::string body = "{\"cpu\": 1, \"pad\": \"" + std::string(kMaxLoadBodyBytes, 'x') + "\"}";
  LoadReport r;
  EXPECT_FALSE(parseLoadBody(body, "application/json", &r));
}

TEST(AppHealthTest, RichBodyStates) {
  struct Case {
    const char* body;
    const char* want;
  } cases[] = {
      {R"({"ApplicationHealthState": "Healthy"})", "Healthy"},
      {R"({"applicationHealthState": "unhealthy"})", "Unhealthy"},
      {R"({"APPLICATIONHEALTHSTATE": "INITIALIZING"})", "Initializing"},
      {R"({"ApplicationHealthState": "Unknown"})", "Unknown"},
      {R"({"ApplicationHealthState": "Healthy "})", "Unknown"},
      {R"({"ApplicationHealthState": "ok"})", "Unknown"},
      {R"({"ApplicationHealthState": 1})", "Unknown"},
      {R"({"ApplicationHealthState": null})", "Unknown"},
      {R"({"cpu": 1})", ""},
  };
  for (const auto& c : cases) {
    LoadReport r;
    EXPECT_TRUE(parseLoadBody(c.body, "application/json", &r)) << c.body;
    EXPECT_EQ(r.app_health, c.want) << c.body;
  }
  LoadReport r;
  EXPECT_TRUE(parseLoadBody(R"({"ApplicationHealthState": "Healthy", "cpu": 0.4})", "", &r));
  EXPECT_EQ(r.app_health, "Healthy");
  EXPECT_EQ(r.values, (Values{{"cpu", 0.4}}));
}

TEST(AppHealthTest, Canonical) {
  EXPECT_STREQ(canonicalAppHealth("healthy"), "Healthy");
  EXPECT_STREQ(canonicalAppHealth("uNhEaLtHy"), "Unhealthy");
  EXPECT_STREQ(canonicalAppHealth(""), "Unknown");
  EXPECT_STREQ(canonicalAppHealth(std::string_view("Healthy\0", 8)), "Unknown");
}

TEST(LoadNameTest, Charset) {
  EXPECT_TRUE(isLoadName("cpu"));
  EXPECT_TRUE(isLoadName("a_1"));
  EXPECT_TRUE(isLoadName(std::string(32, 'z')));
  EXPECT_FALSE(isLoadName(""));
  EXPECT_FALSE(isLoadName("CPU"));
  EXPECT_FALSE(isLoadName("a-b"));
  EXPECT_FALSE(isLoadName(std::string(33, 'z')));
}

}  // namespace
}  // namespace scalegate::control
