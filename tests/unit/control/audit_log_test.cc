#include "control/audit_log.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace scalegate::control {
namespace {

using Json = nlohmann::json;

AuditRecord sample(std::string_view body) {
  AuditRecord r;
  r.at = WallTime(std::chrono::milliseconds(1700000000123));
  r.remote = "127.0.0.1:50000";
  r.token = tokenIdentity("s3cret");
  r.method = "PUT";
  r.path = "/v1/pools/web/members/vm-1";
  r.body = body;
  r.status = 201;
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(AuditLog, TokenIdentityIsAShortDigestNeverTheToken) {
  EXPECT_EQ(tokenIdentity("s3cret"), "sha256:1ec1c26b50d5");
  EXPECT_EQ(tokenIdentity(""), "none");
  EXPECT_NE(tokenIdentity("a"), tokenIdentity("b"));
}

TEST(AuditLog, LineHasEveryFieldAndASmallJsonBody) {
  std::string line = auditLine(sample(R"({"address":"10.0.0.5:80","zone":"1"})"));
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  Json j = Json::parse(line);
  EXPECT_EQ(j["time"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["remote"], "127.0.0.1:50000");
  EXPECT_EQ(j["token"], tokenIdentity("s3cret"));
  EXPECT_EQ(j["method"], "PUT");
  EXPECT_EQ(j["path"], "/v1/pools/web/members/vm-1");
  EXPECT_EQ(j["status"], 201);
  EXPECT_EQ(j["body"]["address"], "10.0.0.5:80");
  EXPECT_EQ(j["body_bytes"], 36);
  EXPECT_EQ(j["body_sha256"].get<std::string>().size(), 64u);
  EXPECT_FALSE(j.contains("error"));
  EXPECT_FALSE(j.contains("client_cert"));
  EXPECT_EQ(line.find("s3cret"), std::string::npos);
}

TEST(AuditLog, LargeOrNonJsonBodiesAreOnlyDigested) {
  std::string big = "{\"x\":\"" + std::string(2000, 'a') + "\"}";
  Json j = Json::parse(auditLine(sample(big)));
  EXPECT_FALSE(j.contains("body"));
  EXPECT_EQ(j["body_bytes"], big.size());
  Json t = Json::parse(auditLine(sample("not json")));
  EXPECT_FALSE(t.contains("body"));
  Json e = Json::parse(auditLine(sample("")));
  EXPECT_FALSE(e.contains("body"));
  // sha256 of nothing.
  EXPECT_EQ(e["body_sha256"], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(AuditLog, RefusedCallsCarryTheError) {
  AuditRecord r = sample("");
  r.status = 401;
  r.error = "invalid bearer token";
  r.client_cert = "/CN=operator";
  Json j = Json::parse(auditLine(r));
  EXPECT_EQ(j["error"], "invalid bearer token");
  EXPECT_EQ(j["client_cert"], "/CN=operator");
}

TEST(AuditLog, AppendsOneLinePerCallToAPrivateFile) {
  char dir[] = "/tmp/sg-audit-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/a.audit.log";
  {
    std::ofstream pre(path);
    pre << "{\"earlier\":true}\n";
  }
  AuditLog log;
  ASSERT_TRUE(log.open(path).isOk());
  log.write(sample("{}"));
  AuditRecord second = sample("");
  second.method = "DELETE";
  log.write(second);
  EXPECT_EQ(log.lines(), 2u);
  EXPECT_EQ(log.errors(), 0u);
  std::string text = slurp(path);
  std::istringstream lines(text);
  std::string l1, l2, l3;
  std::getline(lines, l1);
  std::getline(lines, l2);
  std::getline(lines, l3);
  EXPECT_EQ(l1, "{\"earlier\":true}");
  EXPECT_EQ(Json::parse(l2)["method"], "PUT");
  EXPECT_EQ(Json::parse(l3)["method"], "DELETE");
  unlink(path.c_str());
  rmdir(dir);
}

TEST(AuditLog, OpenErrorNamesThePath) {
  AuditLog log;
  Status st = log.open("/nonexistent-dir-sg/x.audit.log");
  ASSERT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("/nonexistent-dir-sg/x.audit.log"), std::string::npos);
  EXPECT_NE(st.message().find("No such file or directory"), std::string::npos);
  EXPECT_FALSE(log.isOpen());
}

TEST(AuditLog, DefaultPathIsNextToTheStateFile) {
  config::Config cfg;
  cfg.path = "/etc/scalegate/edge.yaml";
  EXPECT_EQ(auditLogPath(cfg, "/var/lib/sg/edge.state.json"), "/var/lib/sg/edge.audit.log");
  cfg.admin.audit_log = "/var/log/sg-audit.log";
  EXPECT_EQ(auditLogPath(cfg, "/var/lib/sg/edge.state.json"), "/var/log/sg-audit.log");
  cfg.admin.audit_log = "off";
  EXPECT_EQ(auditLogPath(cfg, "/var/lib/sg/edge.state.json"), "");
}

}  // namespace
}  // namespace scalegate::control
