#include "control/admin_server.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "config/loader.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

constexpr char kToken[] = "s3cret-token";

constexpr char kConfig[] = R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
    mode: flexible  # members differ in weight
    balance: least_request
    health: { type: http, path: /health }
    drain_timeout: 10s
    members:
      - { id: vm-0, address: 10.0.0.1:80, zone: "1" }
      - { id: vm-1, address: 10.0.0.2:80, zone: "2", fault_domain: 1, weight: 3 }
  other: {}
)";

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;

  Json json() const { return Json::parse(body, nullptr, false); }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::string errorMessage() const {
    Json j = json();
    if (!j.is_object() || !j.contains("error")) return "<no error object: " + body + ">";
    return j["error"].value("message", "");
  }
  int errorCode() const {
    Json j = json();
    if (!j.is_object() || !j.contains("error")) return -1;
    return j["error"].value("code", -1);
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Response parseResponse(const std::string& raw) {
  Response r;
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return r;
  std::string head = raw.substr(0, head_end);
  r.body = raw.substr(head_end + 4);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  if (status_line.size() >= 12) r.status = std::atoi(status_line.c_str() + 9);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string::npos) end = head.size();
    std::string line = head.substr(pos, end - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[lower(line.substr(0, colon))] = value;
    }
    pos = end + 2;
  }
  return r;
}

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    config::LoadResult loaded = config::loadConfigText(kConfig, "admin_test.yaml");
    ASSERT_TRUE(loaded.ok()) << loaded.errorText();
    reg_.applyConfig(std::make_shared<const config::Config>(std::move(loaded.config)));
    AdminServer::Hooks hooks;
    hooks.metrics = [] { return std::string("scalegate_up 1\n"); };
    hooks.ready = [this] { return ready_; };
    hooks.changed = [this] {
      ++changed_calls_;
      return changed_status_;
    };
    server_ = std::make_unique<AdminServer>(base_, reg_, std::move(hooks));
    server_->setToken(kToken);
    auto addr = SocketAddress::parse("127.0.0.1:0");
    ASSERT_TRUE(addr.isOk());
    Status st = server_->listen(*addr);
    ASSERT_TRUE(st.isOk()) << st.toString();
    ASSERT_TRUE(server_->boundAddress().valid());
    ASSERT_NE(server_->boundAddress().port(), 0);
  }

  void TearDown() override {
    server_.reset();
    if (base_ != nullptr) event_base_free(base_);
  }

  // Sends raw bytes over a real TCP connection and reads until the server closes it, running
  // the server's event loop in between (client and server share this thread).
  Response roundTrip(const std::string& raw) {
    const SocketAddress addr = server_->boundAddress();
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0);
    int rc = ::connect(fd, addr.sockaddrPtr(), addr.sockaddrLen());
    EXPECT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
    std::string in;
    size_t sent = 0;
    bool done = false;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_, EVLOOP_NONBLOCK);
      if (sent < raw.size()) {
        ssize_t n = ::send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
          sent = raw.size();  // the server stopped reading: read what it answered
        }
      }
      char buf[65536];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) {
        done = true;
      }
      if (!done) {
        pollfd p{fd, POLLIN, 0};
        ::poll(&p, 1, 1);
      }
    }
    ::close(fd);
    EXPECT_TRUE(done) << "no complete answer to:\n" << raw.substr(0, 200);
    return parseResponse(in);
  }

  Response request(const std::string& method, const std::string& target,
                   const std::string& body = "", const char* authorization = nullptr,
                   bool with_auth = true) {
    std::string raw = method + " " + target + " HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n";
    if (with_auth) {
      raw += std::string("Authorization: ") +
             (authorization != nullptr ? authorization : std::string("Bearer ") + kToken) + "\r\n";
    }
    if (!body.empty() || method == "PUT" || method == "POST") {
      raw += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n";
    }
    raw += "\r\n" + body;
    return roundTrip(raw);
  }
  Response get(const std::string& target) { return request("GET", target); }

  ManualClock clock_;
  PoolRegistry reg_{2, clock_};
  event_base* base_ = nullptr;
  std::unique_ptr<AdminServer> server_;
  bool ready_ = true;
  int changed_calls_ = 0;
  Status changed_status_;
};

TEST_F(AdminServerTest, HealthzReadyzMetricsNeedNoToken) {
  Response r = request("GET", "/healthz", "", nullptr, /*with_auth=*/false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.json(), (Json{{"status", "ok"}}));

  r = request("GET", "/readyz", "", nullptr, false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["status"], "ready");
  ready_ = false;
  r = request("GET", "/readyz", "", nullptr, false);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.json()["status"], "not_ready");

  r = request("GET", "/metrics", "", nullptr, false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.body, "scalegate_up 1\n");

  r = request("HEAD", "/healthz", "", nullptr, false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");

  r = request("POST", "/healthz", "{}", nullptr, false);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(r.errorCode(), 405);
  r = request("DELETE", "/metrics", "", nullptr, false);
  EXPECT_EQ(r.status, 405);
  r = request("PUT", "/readyz", "", nullptr, false);
  EXPECT_EQ(r.status, 405);
}

TEST_F(AdminServerTest, UnknownPathsAre404) {
  for (const char* path : {"/", "/nope", "/v1", "/v1/", "/v1/pool", "/v1/pools/", "/v1/pools/web/",
                           "/v1/pools/web/nodes", "/v1/pools/web/members/vm-0/stop",
                           "/v1/pools/web/members/vm-0/drain/x", "/v1/pools//members"}) {
    Response r = get(path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.errorCode(), 404) << path << " " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json") << path;
  }
}

TEST_F(AdminServerTest, V1NeedsTheBearerToken) {
  Response r = request("GET", "/v1/pools", "", nullptr, /*with_auth=*/false);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.errorCode(), 401);
  EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"scalegate\"");

  for (const char* bad :
       {"Bearer wrong", "Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer S3CRET-TOKEN",
        "Basic czNjcmV0LXRva2Vu", "Bearer", "Bearer ", "s3cret-token", "Bearers3cret-token"}) {
    r = request("GET", "/v1/pools", "", bad);
    EXPECT_EQ(r.status, 401) << bad;
    EXPECT_EQ(r.header("www-authenticate").rfind("Bearer", 0), 0u) << bad;
  }
  r = request("GET", "/v1/pools", "", "Bearer wrong");
  EXPECT_NE(r.header("www-authenticate").find("invalid_token"), std::string::npos);

  // Nothing about pools leaks before the token is checked, nor is anything changed.
  r = request("GET", "/v1/pools/secret-pool", "", "Bearer wrong");
  EXPECT_EQ(r.status, 401);
  r = request("PUT", "/v1/pools/web/members/vm-9", R"({"address":"10.0.0.9:80"})", "Bearer x");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(reg_.findPool("web")->find("vm-9"), nullptr);
  EXPECT_EQ(changed_calls_, 0);

  // The scheme is case-insensitive; spaces around the token are ignored.
  EXPECT_EQ(request("GET", "/v1/pools", "", "bearer s3cret-token").status, 200);
  EXPECT_EQ(request("GET", "/v1/pools", "", "BEARER   s3cret-token ").status, 200);

  // No token configured: every /v1 request is refused, even one presenting an empty token.
  server_->setToken("");
  r = request("GET", "/v1/pools");
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.errorMessage().find("no admin token"), std::string::npos) << r.body;
  EXPECT_EQ(request("GET", "/v1/pools", "", "Bearer ").status, 401);
  EXPECT_EQ(request("GET", "/v1/pools", "", "Bearer").status, 401);
  // The open endpoints stay open.
  EXPECT_EQ(request("GET", "/healthz", "", nullptr, false).status, 200);
}

TEST_F(AdminServerTest, ListsPools) {
  MemberRecord* vm1 = reg_.findPool("web")->find("vm-1");
  vm1->health = HealthState::kUnhealthy;
  ASSERT_TRUE(reg_.drainMember("web", "vm-0", std::nullopt).isOk());
  Response r = get("/v1/pools");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  Json j = r.json();
  ASSERT_TRUE(j["pools"].is_array());
  ASSERT_EQ(j["pools"].size(), 2u);
  EXPECT_EQ(j["pools"][0]["name"], "other");
  EXPECT_EQ(j["pools"][0]["member_count"], 0);
  const Json& web = j["pools"][1];
  EXPECT_EQ(web["name"], "web");
  EXPECT_EQ(web["balance"], "least_request");
  EXPECT_EQ(web["member_count"], 2);
  EXPECT_EQ(web["healthy_count"], 1);
  EXPECT_EQ(web["draining_count"], 1);
  EXPECT_EQ(web["drained_count"], 0);
  EXPECT_EQ(web["ejected_count"], 0);
  EXPECT_EQ(request("POST", "/v1/pools", "{}").status, 405);
  EXPECT_EQ(request("POST", "/v1/pools", "{}").header("allow"), "GET, HEAD");
}

TEST_F(AdminServerTest, ShowsAPoolWithEveryMember) {
  MemberRecord* vm0 = reg_.findPool("web")->find("vm-0");
  vm0->health = HealthState::kHealthy;
  vm0->probes_ok = 7;
  vm0->load["cpu"] = 42.5;
  vm0->app_health = "Healthy";
  ProbeOutcome probe;
  probe.ok = true;
  probe.http_status = 200;
  probe.duration = 1500us;
  vm0->last_probe = probe;
  vm0->last_probe_at = clock_.wallNow();
  vm0->stats->per_worker[0].rq_active.inc(2);
  vm0->stats->per_worker[1].rq_active.inc(1);
  vm0->stats->per_worker[0].rq_total.inc(10);
  vm0->stats->per_worker[1].rq_total.inc(5);
  MemberRecord* vm1 = reg_.findPool("web")->find("vm-1");
  vm1->ejected = true;
  vm1->ejected_until = clock_.now() + 30s;

  Response r = get("/v1/pools/web");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  EXPECT_EQ(j["name"], "web");
  EXPECT_EQ(j["member_count"], 2);
  EXPECT_EQ(j["healthy_count"], 1);
  EXPECT_EQ(j["ejected_count"], 1);
  EXPECT_EQ(j["drain_timeout_ms"], 10000);
  EXPECT_EQ(j["health_checks"], true);
  ASSERT_EQ(j["members"].size(), 2u);
  const Json& m = j["members"][0];
  EXPECT_EQ(m["id"], "vm-0");
  EXPECT_EQ(m["address"], "10.0.0.1:80");
  EXPECT_EQ(m["zone"], "1");
  EXPECT_EQ(m["fault_domain"], 0);
  EXPECT_EQ(m["weight"], 1);
  EXPECT_EQ(m["origin"], "config");
  EXPECT_EQ(m["health"], "healthy");
  EXPECT_EQ(m["probe_healthy"], true);
  EXPECT_EQ(m["drain"], "none");
  EXPECT_EQ(m["ejected"], false);
  EXPECT_EQ(m["load"]["cpu"], 42.5);
  EXPECT_EQ(m["app_health"], "Healthy");
  EXPECT_EQ(m["probes_ok"], 7);
  EXPECT_EQ(m["in_flight"], 3);
  EXPECT_EQ(m["requests_total"], 15);
  EXPECT_EQ(m["added_at"], "2023-11-14T22:13:20.000Z");
  ASSERT_TRUE(m["last_probe"].is_object());
  EXPECT_EQ(m["last_probe"]["ok"], true);
  EXPECT_EQ(m["last_probe"]["status"], 200);
  EXPECT_EQ(m["last_probe"]["error"], "");
  EXPECT_EQ(m["last_probe"]["duration_ms"], 1.5);
  EXPECT_EQ(m["last_probe"]["at"], "2023-11-14T22:13:20.000Z");
  const Json& m1 = j["members"][1];
  EXPECT_EQ(m1["id"], "vm-1");
  EXPECT_EQ(m1["weight"], 3);
  EXPECT_EQ(m1["health"], "unknown");
  EXPECT_EQ(m1["ejected"], true);
  EXPECT_EQ(m1["ejected_for_ms"], 30000);
  EXPECT_TRUE(m1["last_probe"].is_null());

  r = get("/v1/pools/web/members");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["members"].size(), 2u);

  r = get("/v1/pools/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.errorMessage(), "pool \"nope\" not found");
  EXPECT_EQ(get("/v1/pools/nope/members/vm-0").status, 404);
  EXPECT_EQ(request("DELETE", "/v1/pools/web").status, 405);
}

TEST_F(AdminServerTest, GetsOneMember) {
  Response r = get("/v1/pools/web/members/vm-1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["id"], "vm-1");
  EXPECT_EQ(r.json()["fault_domain"], 1);
  r = get("/v1/pools/web/members/vm-9");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.errorMessage(), "member \"vm-9\" not found in pool \"web\"");
  r = request("PATCH", "/v1/pools/web/members/vm-1", "{}");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD, PUT, DELETE");
  EXPECT_EQ(request("POST", "/v1/pools/web/members/vm-1", "{}").status, 405);
}

TEST_F(AdminServerTest, PutCreatesAndUpdatesMembers) {
  Response r = request("PUT", "/v1/pools/web/members/vm-7",
                       R"({"address":"10.0.0.7:80","zone":"3","fault_domain":2,"weight":4})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.header("location"), "/v1/pools/web/members/vm-7");
  Json j = r.json();
  EXPECT_EQ(j["id"], "vm-7");
  EXPECT_EQ(j["address"], "10.0.0.7:80");
  EXPECT_EQ(j["zone"], "3");
  EXPECT_EQ(j["fault_domain"], 2);
  EXPECT_EQ(j["weight"], 4);
  EXPECT_EQ(j["origin"], "api");
  EXPECT_EQ(changed_calls_, 1);
  const MemberRecord* m = reg_.findPool("web")->find("vm-7");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->spec.weight, 4u);

  // Absent fields keep their values.
  r = request("PUT", "/v1/pools/web/members/vm-7", R"({"weight":0})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["weight"], 0);
  EXPECT_EQ(r.json()["zone"], "3");
  EXPECT_EQ(reg_.findPool("web")->find("vm-7")->spec.weight, 0u);
  EXPECT_EQ(changed_calls_, 2);

  // Re-weighting a config member.
  r = request("PUT", "/v1/pools/web/members/vm-0", R"({"weight":9})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["origin"], "config");
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->spec.weight, 9u);

  // A new member with defaults.
  r = request("PUT", "/v1/pools/other/members/o-1", R"({"address":"[::1]:9000"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json()["weight"], 1);
  EXPECT_EQ(r.json()["zone"], "");
  EXPECT_EQ(r.json()["address"], "[::1]:9000");
}

TEST_F(AdminServerTest, PutRejectsBadBodies) {
  struct Case {
    const char* target;
    const char* body;
    int status;
    const char* fragment;
  };
  const Case cases[] = {
      {"/v1/pools/web/members/vm-7", "", 400, "body is required"},
      {"/v1/pools/web/members/vm-7", "{", 400, "not valid JSON"},
      {"/v1/pools/web/members/vm-7", "[1,2]", 400, "JSON object"},
      {"/v1/pools/web/members/vm-7", R"({"zone":"1"})", 400, "address is required"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","colour":"red"})", 400,
       "unknown field \"colour\""},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","id":"vm-7"})", 400,
       "unknown field \"id\""},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7"})", 400, "bad address"},
      {"/v1/pools/web/members/vm-7", R"({"address":"0.0.0.0:80"})", 400, "bad member address"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:0"})", 400, "bad member address"},
      {"/v1/pools/web/members/vm-7", R"({"address":7})", 400, "address must be a string"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","weight":1000001})", 400,
       "weight must be a whole number in 0..1000000"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","weight":-1})", 400, "weight"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","weight":1.5})", 400, "weight"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","weight":"2"})", 400, "weight"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","fault_domain":256})", 400,
       "fault_domain"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80","zone":5})", 400, "zone"},
      {"/v1/pools/web/members/bad%20id", R"({"address":"10.0.0.7:80"})", 400, "bad member id"},
      {"/v1/pools/web/members/vm-7", R"({"address":"10.0.0.2:80"})", 409,
       "already used by member \"vm-1\""},
      {"/v1/pools/web/members/vm-0", R"({"address":"10.0.0.2:80"})", 409, "already used"},
      {"/v1/pools/nope/members/vm-7", R"({"address":"10.0.0.7:80"})", 404,
       "pool \"nope\" not found"},
  };
  for (const Case& c : cases) {
    Response r = request("PUT", c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    EXPECT_EQ(r.errorCode(), c.status) << r.body;
    EXPECT_NE(r.errorMessage().find(c.fragment), std::string::npos)
        << c.body << " -> " << r.errorMessage();
  }
  EXPECT_EQ(reg_.findPool("web")->find("vm-7"), nullptr);
  EXPECT_EQ(reg_.findPool("web")->find("vm-0")->spec.address.toString(), "10.0.0.1:80");
  EXPECT_EQ(changed_calls_, 0);
}

TEST_F(AdminServerTest, DeleteRemovesMembers) {
  ASSERT_EQ(request("PUT", "/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80"})").status,
            201);
  Response r = request("DELETE", "/v1/pools/web/members/vm-7");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["id"], "vm-7");
  EXPECT_EQ(reg_.findPool("web")->find("vm-7"), nullptr);
  EXPECT_EQ(changed_calls_, 2);
  r = request("DELETE", "/v1/pools/web/members/vm-7");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(changed_calls_, 2);
  // A config member too.
  EXPECT_EQ(request("DELETE", "/v1/pools/web/members/vm-0").status, 200);
  EXPECT_EQ(reg_.findPool("web")->find("vm-0"), nullptr);
  EXPECT_EQ(request("DELETE", "/v1/pools/nope/members/vm-0").status, 404);
}

TEST_F(AdminServerTest, DrainsMembers) {
  MemberRecord* vm0 = reg_.findPool("web")->find("vm-0");
  vm0->stats->per_worker[1].rq_active.inc();
  Response r = request("POST", "/v1/pools/web/members/vm-0/drain", R"({"timeout":"5s"})");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json()["drain"], "draining");
  EXPECT_EQ(r.json()["drain_deadline_in_ms"], 5000);
  EXPECT_EQ(changed_calls_, 1);
  vm0 = reg_.findPool("web")->find("vm-0");
  EXPECT_EQ(vm0->drain, DrainState::kDraining);
  EXPECT_EQ(vm0->drain_deadline, clock_.now() + 5s);

  vm0->stats->per_worker[1].rq_active.dec();
  EXPECT_TRUE(reg_.tickDrains(clock_.now()));
  r = request("POST", "/v1/pools/web/members/vm-0/drain", "");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json()["drain"], "drained");

  // No body: the pool's drain_timeout.
  r = request("POST", "/v1/pools/web/members/vm-1/drain", "");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(reg_.findPool("web")->find("vm-1")->drain_deadline, clock_.now() + 10s);

  EXPECT_EQ(request("POST", "/v1/pools/web/members/vm-9/drain", "").status, 404);
  EXPECT_EQ(request("POST", "/v1/pools/nope/members/vm-0/drain", "").status, 404);
  for (const char* body : {R"({"timeout":5})", R"({"timeout":"5 parsecs"})", R"({"timeout":"48h"})",
                           R"({"wait":"5s"})", "[]", "{"}) {
    r = request("POST", "/v1/pools/web/members/vm-0/drain", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  }
  r = get("/v1/pools/web/members/vm-0/drain");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "POST");
}

TEST_F(AdminServerTest, ListsEvents) {
  const uint64_t before = reg_.events().empty() ? 0 : reg_.events().back().seq;
  for (int i = 0; i < 5; ++i) reg_.addEvent("test", "web", "vm-0", "event " + std::to_string(i));
  Response r = get("/v1/events?since=" + std::to_string(before) + "&limit=2");
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = r.json();
  ASSERT_EQ(j["events"].size(), 2u);
  EXPECT_EQ(j["events"][0]["seq"], before + 1);
  EXPECT_EQ(j["events"][0]["type"], "test");
  EXPECT_EQ(j["events"][0]["pool"], "web");
  EXPECT_EQ(j["events"][0]["member"], "vm-0");
  EXPECT_EQ(j["events"][0]["detail"], "event 0");
  EXPECT_EQ(j["events"][0]["at"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(j["events"][1]["detail"], "event 1");
  EXPECT_EQ(j["next_since"], before + 2);
  EXPECT_EQ(j["last_seq"], before + 5);
  EXPECT_EQ(j["truncated"], false);

  r = get("/v1/events?since=" + std::to_string(before + 2));
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.json()["events"].size(), 3u);
  EXPECT_EQ(r.json()["events"][2]["detail"], "event 4");

  // Without since: the latest N, oldest first.
  r = get("/v1/events?limit=2");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.json()["events"].size(), 2u);
  EXPECT_EQ(r.json()["events"][0]["detail"], "event 3");
  EXPECT_EQ(r.json()["events"][1]["detail"], "event 4");
  r = get("/v1/events");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["events"].back()["detail"], "event 4");

  // A poller that fell behind the ring learns it.
  for (size_t i = 0; i < PoolRegistry::kMaxEvents; ++i) reg_.addEvent("fill", "", "", "");
  r = get("/v1/events?since=1&limit=1");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["truncated"], true);
  EXPECT_EQ(r.json()["events"][0]["seq"], reg_.events().front().seq);

  for (const char* bad : {"/v1/events?since=x", "/v1/events?since=-1", "/v1/events?limit=0",
                          "/v1/events?limit=1001", "/v1/events?limit=", "/v1/events?colour=red"}) {
    r = get(bad);
    EXPECT_EQ(r.status, 400) << bad << " -> " << r.body;
  }
  EXPECT_EQ(request("DELETE", "/v1/events").status, 405);
  EXPECT_EQ(get("/v1/pools?limit=1").status, 400);
}

TEST_F(AdminServerTest, BodiesOverTheLimitAre413) {
  server_->setMaxBodyBytes(1024);
  std::string big = R"({"address":"10.0.0.7:80","zone":")" + std::string(2000, 'z') + "\"}";
  Response r = request("PUT", "/v1/pools/web/members/vm-7", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(reg_.findPool("web")->find("vm-7"), nullptr);
  // Chunked bodies are counted as they arrive.
  std::string raw = std::string("PUT /v1/pools/web/members/vm-7 HTTP/1.1\r\nHost: a\r\n") +
                    "Authorization: Bearer " + kToken +
                    "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  for (int i = 0; i < 3; ++i) raw += "200\r\n" + std::string(512, ' ') + "\r\n";
  raw += "0\r\n\r\n";
  EXPECT_EQ(roundTrip(raw).status, 413);
  // At the limit is fine (and then rejected for its content, not its size).
  std::string at_limit = R"({"address":"10.0.0.7:80","zone":")";
  at_limit += std::string(1024 - at_limit.size() - 2, 'z') + "\"}";
  ASSERT_EQ(at_limit.size(), 1024u);
  r = request("PUT", "/v1/pools/web/members/vm-7", at_limit);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.errorMessage().find("zone"), std::string::npos);
  // The default (64k) takes a larger body.
  server_->setMaxBodyBytes(64 * 1024);
  r = request("PUT", "/v1/pools/web/members/vm-7", big);
  EXPECT_EQ(r.status, 400);
}

TEST_F(AdminServerTest, AFailedSaveIsReportedButTheChangeStands) {
  changed_status_ = ioError("cannot write state file /x/state.json: No space left on device");
  Response r = request("PUT", "/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80"})");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.errorCode(), 500);
  EXPECT_NE(r.errorMessage().find("in effect but was not saved"), std::string::npos) << r.body;
  EXPECT_NE(r.errorMessage().find("No space left"), std::string::npos) << r.body;
  EXPECT_NE(reg_.findPool("web")->find("vm-7"), nullptr);
  // The retry answers 200 once saving works again.
  changed_status_ = Status::ok();
  r = request("PUT", "/v1/pools/web/members/vm-7", R"({"address":"10.0.0.7:80"})");
  EXPECT_EQ(r.status, 200);
}

TEST_F(AdminServerTest, KeepAliveServesSeveralRequests) {
  std::string auth = std::string("Authorization: Bearer ") + kToken + "\r\n";
  std::string raw = "GET /v1/pools HTTP/1.1\r\nHost: a\r\n" + auth + "\r\n" +
                    "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  Response r = roundTrip(raw);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("HTTP/1.1 200"), std::string::npos) << "second answer missing: " << r.body;
  EXPECT_NE(r.body.find("{\"status\":\"ok\"}"), std::string::npos);
}

TEST_F(AdminServerTest, ListenErrors) {
  // Already listening.
  EXPECT_FALSE(server_->listen(server_->boundAddress()).isOk());
  // The port is taken.
  event_base* base = event_base_new();
  {
    AdminServer other(base, reg_, AdminServer::Hooks{});
    Status st = other.listen(server_->boundAddress());
    EXPECT_EQ(st.code(), StatusCode::kIo);
    EXPECT_NE(st.message().find("bind"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(server_->boundAddress().toString()), std::string::npos);
    EXPECT_FALSE(other.boundAddress().valid());
  }
  event_base_free(base);
}

TEST(AdminJson, ParseMemberBody) {
  MemberSpec spec;
  bool address_seen = false;
  ASSERT_TRUE(parseMemberBody(R"({"address":"10.0.0.1:80","zone":"a","fault_domain":3,"weight":0})",
                              &spec, &address_seen)
                  .isOk());
  EXPECT_TRUE(address_seen);
  EXPECT_EQ(spec.address.toString(), "10.0.0.1:80");
  EXPECT_EQ(spec.zone, "a");
  EXPECT_EQ(spec.fault_domain, 3u);
  EXPECT_EQ(spec.weight, 0u);
  // A failed parse leaves the spec alone.
  EXPECT_FALSE(parseMemberBody(R"({"weight":7,"x":1})", &spec, &address_seen).isOk());
  EXPECT_EQ(spec.weight, 0u);
  ASSERT_TRUE(parseMemberBody(R"({"weight":7})", &spec, &address_seen).isOk());
  EXPECT_FALSE(address_seen);
  EXPECT_EQ(spec.weight, 7u);
  EXPECT_EQ(spec.address.toString(), "10.0.0.1:80");

  std::optional<Duration> timeout;
  ASSERT_TRUE(parseDrainBody("  ", &timeout).isOk());
  EXPECT_FALSE(timeout.has_value());
  ASSERT_TRUE(parseDrainBody("{}", &timeout).isOk());
  EXPECT_FALSE(timeout.has_value());
  ASSERT_TRUE(parseDrainBody(R"({"timeout":"1m30s"})", &timeout).isOk());
  EXPECT_EQ(timeout, Duration(90s));
  ASSERT_TRUE(parseDrainBody(R"({"timeout":"0"})", &timeout).isOk());
  EXPECT_EQ(timeout, Duration(0));
}

}  // namespace
}  // namespace scalegate::control
