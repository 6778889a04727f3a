#include "config/loader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

namespace scalegate::config {
namespace {

using namespace std::chrono_literals;

std::string examplePath(const char* name) {
  return (std::filesystem::path(__FILE__).parent_path() / "../../../config/examples" / name)
      .lexically_normal()
      .string();
}

LoadResult load(std::string_view text) { return loadConfigText(text, "web.yaml"); }

// A valid file with a placeholder where each test puts more YAML.
std::string withPools(std::string_view pools) {
  return std::string(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web:
)") + std::string(pools);
}

// True when some error has exactly this "file:line: key: message" text.
::testing::AssertionResult hasError(const LoadResult& r, const std::string& text) {
  for (const auto& e : r.errors) {
    if (e.toString() == text) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no error \"" << text << "\"; got:\n" << r.errorText();
}

// True when some error is on `line`, names `key` and has `fragment` in its message.
::testing::AssertionResult hasErrorLike(const LoadResult& r, int line, const std::string& key,
                                        const std::string& fragment) {
  for (const auto& e : r.errors) {
    if (e.line == line && e.key == key && e.message.find(fragment) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
  }
  return ::testing::AssertionFailure() << "no error at line " << line << " key " << key
                                       << " containing \"" << fragment << "\"; got:\n"
                                       << r.errorText();
}

TEST(Loader, LocalExample) {
  LoadResult r = loadConfigFile(examplePath("local.yaml"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Config& c = r.config;
  EXPECT_EQ(c.admin.listen.toString(), "127.0.0.1:9900");
  EXPECT_EQ(c.log.level, LogLevel::kInfo);
  ASSERT_EQ(c.listeners.size(), 1u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.name, "web");
  EXPECT_EQ(l.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(l.listen.toString(), "127.0.0.1:8080");
  ASSERT_EQ(l.routes.size(), 1u);
  EXPECT_EQ(l.routes[0].path_prefix, "/");
  EXPECT_EQ(l.routes[0].pool, "web");
  ASSERT_EQ(c.pools.count("web"), 1u);
  const Pool& p = c.pools.at("web");
  EXPECT_EQ(p.name, "web");
  EXPECT_EQ(p.balance, BalanceAlgorithm::kLeastRequest);
  EXPECT_EQ(p.upstream.retries, 1u);
  // The demo's pool starts empty: autoscale asks the local scaler for its instances.
  EXPECT_TRUE(p.members.empty());
  EXPECT_TRUE(p.autoscale.enabled);
  EXPECT_EQ(p.autoscale.min, 2u);
  EXPECT_EQ(p.autoscale.max, 6u);
  EXPECT_EQ(p.autoscale.rules.size(), 2u);
  EXPECT_EQ(p.autoscale.scaler.url, "http://127.0.0.1:9800/hooks");
  EXPECT_EQ(p.autoscale.zones.size(), 3u);
  EXPECT_TRUE(p.health.enabled);
  EXPECT_EQ(p.health.type, HealthCheckType::kHttp);
  EXPECT_EQ(p.health.path, "/health");
  EXPECT_EQ(p.health.rise, 2u);
  EXPECT_EQ(p.health.fall, 2u);
  EXPECT_EQ(p.slow_start, std::chrono::seconds(5));
  EXPECT_EQ(c.admin.token_file, "/tmp/scalegate-demo/admin.token");
}

TEST(Loader, FullExampleSetsEveryKey) {
  LoadResult r = loadConfigFile(examplePath("full.yaml"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Config& c = r.config;
  EXPECT_EQ(c.admin.token_file, "/etc/scalegate/admin.token");
  EXPECT_EQ(c.admin.state_file, "/var/lib/scalegate/state.json");
  EXPECT_EQ(c.admin.max_request_body_bytes, 64u << 10);
  EXPECT_EQ(c.drain_timeout, 30s);
  ASSERT_EQ(c.listeners.size(), 3u);
  EXPECT_TRUE(c.dataplane.enabled);
  ASSERT_EQ(c.dataplane.ports.size(), 1u);
  EXPECT_EQ(c.dataplane.ports[0].device, "net_af_packet0,iface=eth1");
  EXPECT_EQ(c.dataplane.flow_table_size, 1u << 20);
  EXPECT_EQ(c.dataplane.udp_timeout, 30s);
  const Listener& web = c.listeners[0];
  ASSERT_EQ(web.routes.size(), 3u);
  EXPECT_EQ(web.routes[0].host, "api.example.com");
  EXPECT_EQ(web.routes[0].path_prefix, "/v2/");
  EXPECT_EQ(web.routes[1].host, "*.example.com");
  EXPECT_EQ(web.limits.max_request_body_bytes, 10u << 20);
  EXPECT_EQ(web.limits.max_uri_bytes, 8u << 10);
  EXPECT_EQ(web.request_id_header, "x-request-id");
  EXPECT_EQ(web.routes[0].where.line, 27);
  const Listener& db = c.listeners[1];
  EXPECT_EQ(db.protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(db.pool, "db");
  EXPECT_EQ(db.tcp.idle, 1h);
  EXPECT_EQ(db.tcp.connect, 5s);
  EXPECT_EQ(db.tcp.proxy_protocol, ProxyProtocol::kNone);
  EXPECT_TRUE(db.tcp.splice);
  EXPECT_EQ(c.pools.at("db").proxy_protocol, ProxyProtocol::kV2);
  const Listener& vip = c.listeners[2];
  EXPECT_EQ(vip.protocol, ListenerProtocol::kL4);
  EXPECT_EQ(vip.vip.toString(), "10.0.0.10:80");
  EXPECT_EQ(vip.vip_proto, IpProto::kTcp);
  EXPECT_EQ(vip.mode, L4Mode::kNat);

  const Pool& p = c.pools.at("web");
  EXPECT_EQ(p.balance, BalanceAlgorithm::kMaglev);
  EXPECT_EQ(p.hash.source, HashSource::kHeader);
  EXPECT_EQ(p.hash.name, "x-user-id");
  EXPECT_EQ(p.slow_start, 30s);
  EXPECT_TRUE(p.health.enabled);
  EXPECT_EQ(p.health.type, HealthCheckType::kHttp);
  EXPECT_EQ(p.health.host, "web.internal");
  ASSERT_EQ(p.health.expect.size(), 2u);
  EXPECT_EQ(p.health.expect[0].lo, 200);
  EXPECT_EQ(p.health.expect[0].hi, 200);
  EXPECT_EQ(p.health.expect[1].lo, 300);
  EXPECT_EQ(p.health.expect[1].hi, 399);
  EXPECT_EQ(p.health.jitter, 200ms);
  EXPECT_EQ(p.health.fast_interval, 500ms);
  EXPECT_TRUE(p.outlier.enabled);
  EXPECT_EQ(p.outlier.consecutive_failures, 5u);
  EXPECT_EQ(p.outlier.base_ejection, 30s);
  EXPECT_EQ(p.outlier.max_ejection, 300s);
  EXPECT_EQ(p.outlier.max_ejection_percent, 10u);
  EXPECT_EQ(p.low_health.threshold_percent, 50u);
  EXPECT_EQ(p.low_health.action, LowHealthAction::kSpreadAll);
  EXPECT_EQ(p.drain_timeout, 30s);
  ASSERT_EQ(p.members.size(), 2u);
  EXPECT_EQ(p.members[1].fault_domain, 1u);
  const AutoscaleConfig& a = p.autoscale;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.min, 2u);
  EXPECT_EQ(a.max, 20u);
  EXPECT_EQ(a.default_capacity, 2u);
  EXPECT_EQ(a.scaler.url, "http://127.0.0.1:9800/hooks");
  EXPECT_EQ(a.scaler.secret_file, "/etc/scalegate/scaler.secret");
  ASSERT_EQ(a.rules.size(), 3u);
  EXPECT_EQ(a.rules[0].op, CompareOp::kGt);
  EXPECT_EQ(a.rules[0].threshold, 75);
  EXPECT_EQ(a.rules[0].action.kind, ScaleAction::Kind::kIncrease);
  EXPECT_EQ(a.rules[0].action.value, 2u);
  EXPECT_EQ(a.rules[1].op, CompareOp::kLt);
  EXPECT_EQ(a.rules[1].window, 10min);
  EXPECT_EQ(a.rules[1].action.kind, ScaleAction::Kind::kDecreasePercent);
  ASSERT_TRUE(a.target.has_value());
  EXPECT_EQ(a.target->metric, "requests_per_second_per_member");
  EXPECT_EQ(a.target->value, 400);
  EXPECT_TRUE(a.repair.enabled);
  EXPECT_EQ(a.repair.action, RepairAction::kReplace);
  EXPECT_EQ(a.rules[2].direction, ScaleDirection::kOut);
  EXPECT_EQ(a.profiles.size(), 2u);
  EXPECT_EQ(a.profiles[1].schedule.kind, ProfileSchedule::Kind::kFixed);
  EXPECT_EQ(a.zones.size(), 2u);
  EXPECT_EQ(a.upgrade.batch.value, 20u);
  EXPECT_EQ(p.members[0].version, "v1");
  EXPECT_EQ(c.pools.at("api").members[0].address.toString(), "[2001:db8::10]:8080");
  EXPECT_EQ(c.pools.at("db").health.type, HealthCheckType::kTcp);
}

TEST(Loader, DesignDocExample) {
  LoadResult r = load(R"(
admin:   { listen: 127.0.0.1:9900, token_file: /etc/scalegate/admin.token }
listeners:
  - { name: web, protocol: http, listen: 0.0.0.0:8080, routes: [ { path_prefix: /, pool: web } ] }
  - { name: vip, protocol: l4, vip: 10.0.0.10:80/tcp, pool: web, mode: nat }   # DPDK
pools:
  web:
    mode: uniform                      # uniform | flexible (members may differ in weight/size)
    balance: least_request             # round_robin | least_request | random | maglev | ring_hash
    health: { type: http, path: /health, interval: 2s, timeout: 1s, rise: 2, fall: 3 }
    members: [ { id: vm-0, address: 127.0.0.1:9001, zone: "1", fault_domain: 0, weight: 1 } ]
    autoscale:
      capacity: { min: 2, max: 20, default: 2 }
      scaler:   { url: http://127.0.0.1:9800/hooks, secret_file: scaler.secret }
      rules:    [ { metric: cpu, statistic: avg, window: 5m, op: ">", threshold: 75,
                    action: { increase: 2 }, cooldown: 5m } ]
      target:   { metric: requests_per_second_per_member, value: 400 }
      repair:   { grace: 10m, action: replace }
      scale_in: { policy: default, drain: 30s }      # default | newest | oldest
dataplane: # not in DESIGN.md's example: what its l4 listener needs
  ports: [ { device: "net_af_packet0,iface=eth1", gateway_mac: "02:00:00:00:00:01" } ]
  local_addresses: [10.0.0.2]
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  EXPECT_EQ(r.config.pools.at("web").balance, BalanceAlgorithm::kLeastRequest);
  EXPECT_EQ(r.config.pools.at("web").autoscale.rules.size(), 1u);
}

TEST(Loader, Defaults) {
  LoadResult r = load(withPools("    members: []\n"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Config& c = r.config;
  EXPECT_EQ(c.path, "web.yaml");
  EXPECT_EQ(c.admin.listen.toString(), "127.0.0.1:9900");
  EXPECT_EQ(c.workers, 0u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.protocol, ListenerProtocol::kHttp);
  EXPECT_EQ(l.routes[0].path_prefix, "/");
  EXPECT_EQ(l.routes[0].host, "");
  EXPECT_TRUE(l.xff);
  EXPECT_EQ(l.limits.max_request_header_bytes, 16u * 1024);
  EXPECT_EQ(l.where.file, "web.yaml");
  EXPECT_EQ(l.where.line, 2);
  const Pool& p = c.pools.at("web");
  EXPECT_TRUE(p.members.empty());
  EXPECT_EQ(p.maglev_table_size, 65537u);
  EXPECT_EQ(p.where.line, 4);
}

TEST(Loader, PresenceEnablesHealthAutoscaleAndRepair) {
  LoadResult r = load(withPools(R"(    health: {}
    autoscale:
      scaler: { url: "https://scaler.example.com/hooks" }
      repair: {}
)"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Pool& p = r.config.pools.at("web");
  EXPECT_TRUE(p.health.enabled);
  EXPECT_EQ(p.health.type, HealthCheckType::kTcp);
  EXPECT_TRUE(p.autoscale.enabled);
  EXPECT_TRUE(p.autoscale.repair.enabled);
  EXPECT_FALSE(p.autoscale.target.has_value());
}

TEST(Loader, BadDurationNamesFileLineAndKey) {
  LoadResult r = load(withPools(R"(    health:
      type: http
      interval: 5 parsecs
)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:7: pools.web.health.interval: bad duration \"5 parsecs\": "
                       "unknown unit \"parsecs\" (use ns, us, ms, s, m, h or d)"));
}

TEST(Loader, RouteToUnknownPool) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes: [ { pool: web }, { path_prefix: /api, pool: api } ]
pools:
  web: {}
)");
  EXPECT_TRUE(hasError(r,
                       "web.yaml:4: listeners[0].routes[1].pool: unknown pool \"api\" "
                       "(pools: web)"));
  EXPECT_EQ(r.errors.size(), 1u);
}

TEST(Loader, UnknownKeysAtEveryLevel) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    colour: blue
    routes: [ { pool: web, weight: 2 } ]
    limits: { max_body: 1k }
pools:
  web:
    health: { intervl: 2s }
    members: [ { id: a, address: 10.0.0.1:80, rack: 3 } ]
    autoscale:
      scaler: { url: http://s/, token: x }
      rules: [ { metric: cpu, op: ">", threshold: 1, action: { grow: 1 } } ]
bogus: 1
)");
  EXPECT_TRUE(hasErrorLike(r, 4, "listeners[0].colour", "unknown key \"colour\" (allowed: name,"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].routes[0].weight", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].limits.max_body", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.health.intervl", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web.members[0].rack", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 12, "pools.web.autoscale.scaler.token", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.autoscale.rules[0].action.grow", "unknown key"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:14: bogus: unknown key \"bogus\" (allowed: admin, log, "
                       "workers, drain_timeout, listeners, pools, dataplane)"));
}

TEST(Loader, CollectsAllErrorsSortedByLine) {
  LoadResult r = load(R"(workers: 300
log: { level: loud, format: xml }
drain_timeout: 10
listeners:
  - { name: web, listen: 127.0.0.1:99999, routes: [ { pool: nope } ] }
)");
  EXPECT_TRUE(hasError(r, "web.yaml:1: workers: 300 is out of range (0..256)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:2: log.level: invalid value \"loud\" (expected one of: debug, "
                       "info, warn, error)"));
  EXPECT_TRUE(hasErrorLike(r, 2, "log.format", "invalid value \"xml\""));
  EXPECT_TRUE(hasErrorLike(r, 3, "drain_timeout", "missing unit"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].listen", "bad port"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].routes[0].pool", "no pools are defined"));
  EXPECT_EQ(r.errors.size(), 6u) << r.errorText();
  for (size_t i = 1; i < r.errors.size(); ++i) EXPECT_LE(r.errors[i - 1].line, r.errors[i].line);
}

TEST(Loader, WrongTypes) {
  LoadResult r = load(R"(admin: 127.0.0.1:9900
listeners:
  - name: [web]
    listen: 127.0.0.1:8080
    forwarded_headers: maybe
    routes: { pool: web }
pools: [ web ]
)");
  EXPECT_TRUE(hasError(r, "web.yaml:1: admin: expected a map, got a single value"));
  EXPECT_TRUE(hasError(r, "web.yaml:3: listeners[0].name: expected a name, got a list"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].forwarded_headers", "expected true or false"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].routes", "expected a list of routes, got a map"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools", "expected a map, got a list"));
}

TEST(Loader, NumbersMustBeWholeAndInRange) {
  LoadResult r = load(withPools(R"(    upstream: { retries: 6, max_idle_per_member: 1.5 }
    members:
      - { id: a, address: 10.0.0.1:80, weight: -1, fault_domain: 256 }
      - { id: b, address: 10.0.0.2:80, weight: 1000001 }
)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.upstream.retries", "6 is out of range (0..5)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.upstream.max_idle_per_member",
                           "expected a whole number in 0..100000, got \"1.5\""));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.members[0].weight", "-1 is out of range"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.members[0].fault_domain", "256 is out of range"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.members[1].weight", "out of range"));
}

TEST(Loader, DuplicateNames) {
  LoadResult r = load(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
  - { name: web, listen: 127.0.0.1:8081, routes: [ { pool: web } ] }
pools:
  web:
    members:
      - { id: a, address: 10.0.0.1:80 }
      - { id: a, address: 10.0.0.2:80 }
      - { id: b, address: 10.0.0.1:80 }
  web:
    members: []
)");
  EXPECT_TRUE(hasError(r,
                       "web.yaml:3: listeners[1].name: duplicate listener name \"web\" (first "
                       "at line 2)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:8: pools.web.members[1].id: duplicate member id \"a\" (first "
                       "at line 7)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:9: pools.web.members[2].address: duplicate member address "
                       "10.0.0.1:80 (first at line 7)"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web", "duplicate key \"web\" (first at line 5)"));
}

TEST(Loader, DuplicateListenAddresses) {
  LoadResult r = load(R"(admin: { listen: 127.0.0.1:9000 }
listeners:
  - { name: a, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
  - { name: b, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
  - { name: c, listen: "*:8080", routes: [ { pool: web } ] }
  - { name: d, protocol: tcp, listen: 127.0.0.1:9000, pool: web }
  - { name: e, listen: "[::1]:8080", routes: [ { pool: web } ] }
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(r, 4, "listeners[1].listen", "conflicts with listeners[0]"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[2].listen", "conflicts with listeners[0]"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[3].listen", "is also admin.listen"));
  EXPECT_EQ(r.errors.size(), 3u) << r.errorText();
}

TEST(Loader, ListenerNamesAndProtocols) {
  LoadResult r = load(R"(listeners:
  - { name: "web site", listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
  - { name: t, protocol: tcp, listen: 127.0.0.1:8081, routes: [ { pool: web } ] }
  - { name: v, protocol: l4, listen: 127.0.0.1:8082, pool: web }
  - { name: h, protocol: http, listen: 127.0.0.1:8083, pool: web, routes: [] }
  - { name: q, protocol: quic, listen: 127.0.0.1:8084, routes: [ { pool: web } ] }
  - { listen: 127.0.0.1:8085, routes: [ { pool: web } ] }
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(r, 2, "listeners[0].name", "bad name \"web site\""));
  EXPECT_TRUE(hasErrorLike(r, 3, "listeners[1].routes", "not used by protocol tcp"));
  EXPECT_TRUE(hasErrorLike(r, 3, "listeners[1].pool", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 4, "listeners[2].listen", "not used by protocol l4"));
  EXPECT_TRUE(hasErrorLike(r, 4, "listeners[2].vip", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[3].pool", "not used by protocol http"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[3].routes", "at least one route"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[4].protocol", "invalid value \"quic\""));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[5].name", "missing required key"));
}

TEST(Loader, TcpListener) {
  LoadResult r = load(R"(listeners:
  - name: db
    protocol: tcp
    listen: 127.0.0.1:5432
    pool: db
    timeouts: { idle: 2h, connect: 3s, send: 45s }
    proxy_protocol: v2
    splice: false
  - { name: plain, protocol: tcp, listen: 127.0.0.1:5433, pool: pp }
pools:
  db: { balance: least_request }
  pp: { proxy_protocol: v2 }
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Listener& l = r.config.listeners[0];
  EXPECT_EQ(l.protocol, ListenerProtocol::kTcp);
  EXPECT_EQ(l.pool, "db");
  EXPECT_EQ(l.tcp.idle, 2h);
  EXPECT_EQ(l.tcp.connect, 3s);
  EXPECT_EQ(l.tcp.send, 45s);
  EXPECT_EQ(l.tcp.proxy_protocol, ProxyProtocol::kV2);
  EXPECT_FALSE(l.tcp.splice);
  const Listener& d = r.config.listeners[1];
  EXPECT_EQ(d.tcp.idle, 1h);
  EXPECT_EQ(d.tcp.connect, 0s);  // the pool's upstream.connect_timeout
  EXPECT_EQ(d.tcp.send, 5min);
  EXPECT_EQ(d.tcp.proxy_protocol, ProxyProtocol::kNone);
  EXPECT_TRUE(d.tcp.splice);
  EXPECT_EQ(r.config.pools.at("pp").proxy_protocol, ProxyProtocol::kV2);
  EXPECT_EQ(r.config.pools.at("db").proxy_protocol, ProxyProtocol::kNone);
}

TEST(Loader, TcpListenerErrors) {
  LoadResult r = load(R"(listeners:
  - name: a
    protocol: tcp
    listen: 127.0.0.1:5432
    pool: db
    timeouts: { idle: 0s, request: 5s, connect: soon }
    proxy_protocol: v1
    splice: maybe
    limits: { max_headers: 10 }
  - { name: h, listen: 127.0.0.1:8080, routes: [ { pool: pp } ], proxy_protocol: v2 }
  - { name: v, protocol: l4, vip: 10.0.0.1:80, pool: db, splice: true }
pools:
  db: {}
  pp: { proxy_protocol: v2 }
)");
  EXPECT_TRUE(hasError(r, "web.yaml:6: listeners[0].timeouts.idle: must be greater than 0, got "
                          "\"0s\""));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].timeouts.request",
                           "unknown key \"request\" (allowed: idle, connect, send)"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].timeouts.connect", "soon"));
  EXPECT_TRUE(hasError(r, "web.yaml:7: listeners[0].proxy_protocol: invalid value \"v1\" "
                          "(expected one of: none, v2)"));
  EXPECT_TRUE(hasErrorLike(r, 8, "listeners[0].splice", "expected true or false"));
  EXPECT_TRUE(
      hasErrorLike(r, 9, "listeners[0].limits.max_headers", "not used by protocol tcp listeners"));
  EXPECT_TRUE(hasErrorLike(r, 10, "listeners[1].proxy_protocol",
                           "not used by protocol http listeners (only by tcp)"));
  EXPECT_TRUE(hasErrorLike(r, 11, "listeners[2].splice", "not used by protocol l4 listeners"));
  EXPECT_TRUE(hasError(r, "web.yaml:14: pools.pp.proxy_protocol: only tcp listeners send a PROXY "
                          "header, but http listener \"h\" uses this pool"));
  // The l4 listener also lacks the dataplane section it needs.
  EXPECT_TRUE(hasErrorLike(r, 11, "listeners[2].protocol", "add a top-level \"dataplane:\""));
  EXPECT_EQ(r.errors.size(), 10u) << r.errorText();
}

TEST(Loader, HttpListenerDetails) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - { host: "Shop.Example.COM", path_prefix: api, pool: web }
      - { host: "bad host", pool: web }
    limits: { max_request_header_bytes: 2M, max_headers: 0 }
    timeouts: { idle: 0s, request: 1 minute }
    request_id_header: "x request id"
  - name: web2
    listen: 127.0.0.1:8081
    routes: [ { host: "*.Example.com", pool: web } ]
    limits: { max_request_header_bytes: 4k, max_uri_bytes: 8k }
    request_id_header: X-Trace
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].routes[0].path_prefix", "must start with /"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].routes[1].host", "bad host"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].limits.max_request_header_bytes",
                           "2M is out of range (1k..1M)"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].limits.max_headers", "out of range (1..256)"));
  EXPECT_TRUE(hasErrorLike(r, 8, "listeners[0].timeouts.idle", "must be greater than 0"));
  EXPECT_TRUE(hasErrorLike(r, 8, "listeners[0].timeouts.request", "unknown unit \"minute\""));
  EXPECT_TRUE(hasErrorLike(r, 9, "listeners[0].request_id_header", "bad header name"));
  EXPECT_TRUE(hasErrorLike(r, 13, "listeners[1].limits.max_uri_bytes",
                           "must not exceed max_request_header_bytes (4k)"));
  EXPECT_EQ(r.errors.size(), 8u) << r.errorText();
  EXPECT_EQ(r.config.listeners[0].routes[0].host, "shop.example.com");
  EXPECT_EQ(r.config.listeners[1].routes[0].host, "*.example.com");
  EXPECT_EQ(r.config.listeners[1].request_id_header, "x-trace");
}

TEST(Loader, AbuseLimitsAndAccess) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes: [ { pool: web } ]
    limits: { max_connections: 500, max_connections_per_ip: 20, requests_per_second_per_ip: 50,
              request_burst_per_ip: 100 }
    timeouts: { send: 5s }
    access: { allow: [ 10.0.0.0/8, "2001:db8::/32" ], deny: [ 10.9.0.0/16 ] }
  - name: db
    protocol: tcp
    listen: 127.0.0.1:5432
    pool: web
    limits: { max_connections_per_ip: 4 }
    access: { deny: [ 192.0.2.7 ] }
  - { name: defaults, listen: 127.0.0.1:8081, routes: [ { pool: web } ] }
pools: { web: {} }
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Listener& web = r.config.listeners[0];
  EXPECT_EQ(web.client_limits.max_connections, 500u);
  EXPECT_EQ(web.client_limits.max_connections_per_ip, 20u);
  EXPECT_EQ(web.client_limits.requests_per_second_per_ip, 50u);
  EXPECT_EQ(web.client_limits.request_burst_per_ip, 100u);
  EXPECT_TRUE(web.client_limits.perIp());
  EXPECT_EQ(web.timeouts.send, 5s);
  EXPECT_EQ(web.access.allow.size(), 2u);
  EXPECT_EQ(web.access.deny.size(), 1u);
  EXPECT_TRUE(web.access.admitsV4(0x0a010203));   // 10.1.2.3
  EXPECT_FALSE(web.access.admitsV4(0x0a090001));  // 10.9.0.1: denied
  EXPECT_FALSE(web.access.admitsV4(0x0b000001));  // 11.0.0.1: not allowed
  const Listener& db = r.config.listeners[1];
  EXPECT_EQ(db.client_limits.max_connections_per_ip, 4u);
  EXPECT_EQ(db.client_limits.max_connections, 100000u);
  EXPECT_TRUE(db.access.allow.empty());
  EXPECT_FALSE(db.access.admitsV4(0xc0000207));
  EXPECT_TRUE(db.access.admitsV4(0xc0000208));
  const Listener& d = r.config.listeners[2];
  EXPECT_EQ(d.client_limits.max_connections, 100000u);
  EXPECT_EQ(d.client_limits.max_connections_per_ip, 0u);
  EXPECT_EQ(d.client_limits.requests_per_second_per_ip, 0u);
  EXPECT_FALSE(d.client_limits.perIp());
  EXPECT_EQ(d.timeouts.send, 30s);
  EXPECT_FALSE(d.access.enabled());
}

TEST(Loader, AbuseLimitsAndAccessErrors) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes: [ { pool: web } ]
    limits: { max_connections: 10, max_connections_per_ip: 11, request_burst_per_ip: 5 }
    timeouts: { send: 0s }
    access: { allow: [ 10.0.0.1/8, "2001:db8::/200", nonsense ], block: [] }
  - name: db
    protocol: tcp
    listen: 127.0.0.1:5432
    pool: web
    limits: { requests_per_second_per_ip: 5, max_connections: -1 }
    access: { deny: 10.0.0.0/8 }
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].limits.max_connections_per_ip",
                           "must not exceed max_connections (10)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[0].limits.request_burst_per_ip",
                           "needs requests_per_second_per_ip"));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].timeouts.send", "must be greater than 0"));
  EXPECT_TRUE(
      hasErrorLike(r, 7, "listeners[0].access.allow[0]", "bad CIDR \"10.0.0.1/8\": host bits set"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].access.allow[1]", "IPv6 prefix length above 128"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].access.allow[2]", "expected an IPv4 or IPv6"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].access.block", "unknown key"));
  EXPECT_TRUE(hasErrorLike(r, 12, "listeners[1].limits.requests_per_second_per_ip",
                           "not used by protocol tcp listeners"));
  EXPECT_TRUE(hasErrorLike(r, 12, "listeners[1].limits.max_connections", "out of range"));
  EXPECT_TRUE(hasErrorLike(r, 13, "listeners[1].access.deny", "expected a list of CIDR"));
  EXPECT_EQ(r.errors.size(), 10u) << r.errorText();
}

TEST(Loader, RequestIdHeaderCanBeDisabled) {
  LoadResult r = load(R"(listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ], request_id_header: "",
      forwarded_headers: false }
pools: { web: {} }
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  EXPECT_EQ(r.config.listeners[0].request_id_header, "");
  EXPECT_FALSE(r.config.listeners[0].xff);
}

TEST(Loader, L4Vips) {
  LoadResult r = load(R"(listeners:
  - { name: a, protocol: l4, vip: 10.0.0.10:53/udp, pool: web, mode: dsr }
  - { name: b, protocol: l4, vip: "[2001:db8::1]:80", pool: web }
  - { name: c, protocol: l4, vip: 10.0.0.10:53/sctp, pool: web }
  - { name: d, protocol: l4, vip: 10.0.0.10:53/udp, pool: web, mode: tunnel }
  - { name: e, protocol: l4, vip: "10.0.0.10", pool: web }
pools: { web: {} }
dataplane: { ports: [ { device: net_null0, gateway_mac: "02:00:00:00:00:01" } ], local_addresses: [10.0.0.2] }
)");
  EXPECT_TRUE(hasErrorLike(r, 3, "listeners[1].vip", "serves IPv4 VIPs only"));
  EXPECT_TRUE(hasErrorLike(r, 4, "listeners[2].vip", "unknown protocol \"sctp\""));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[3].vip", "is also used by listeners[0]"));
  EXPECT_TRUE(hasErrorLike(r, 5, "listeners[3].mode", "invalid value \"tunnel\""));
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[4].vip", "missing port"));
  EXPECT_EQ(r.errors.size(), 5u) << r.errorText();
  const auto& ls = r.config.listeners;
  EXPECT_EQ(ls[0].vip_proto, IpProto::kUdp);
  EXPECT_EQ(ls[0].mode, L4Mode::kDsr);
  EXPECT_EQ(ls[1].vip.toString(), "[2001:db8::1]:80");
  EXPECT_EQ(ls[1].vip_proto, IpProto::kTcp);
}

TEST(Loader, DataplaneSection) {
  LoadResult r = load(R"(listeners:
  - { name: v, protocol: l4, vip: 10.0.0.10:80/tcp, pool: web }
pools: { web: {} }
dataplane:
  eal_args: [--no-huge, -m, "512"]
  main_lcore: 2
  lcores: [0, 3]
  ports:
    - { device: "net_af_packet0,iface=eth1", gateway_mac: "02:aa:bb:cc:dd:0F" }
    - { device: "0000:03:00.0", gateway_mac: "02:00:00:00:00:02" }
  local_addresses: [10.0.0.2, 10.0.0.3]
  mbufs: 16383
  queue_size: 512
  flow_table_size: 4M
  nat_ports: 2000-3999
  flow_timeouts: { syn: 5s, established: 1h, closing: 2s, udp: 1m }
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const DataplaneConfig& d = r.config.dataplane;
  EXPECT_TRUE(d.enabled);
  EXPECT_EQ(d.eal_args, (std::vector<std::string>{"--no-huge", "-m", "512"}));
  EXPECT_EQ(d.main_lcore, 2u);
  EXPECT_EQ(d.lcores, (std::vector<uint32_t>{0, 3}));
  ASSERT_EQ(d.ports.size(), 2u);
  EXPECT_EQ(d.ports[0].device, "net_af_packet0,iface=eth1");
  const uint8_t mac[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x0f};
  EXPECT_EQ(std::memcmp(d.ports[0].gateway_mac, mac, 6), 0);
  EXPECT_EQ(d.ports[1].device, "0000:03:00.0");
  ASSERT_EQ(d.local_addresses.size(), 2u);
  EXPECT_EQ(d.local_addresses[1].ipString(), "10.0.0.3");
  EXPECT_EQ(d.mbufs, 16383u);
  EXPECT_EQ(d.queue_size, 512u);
  EXPECT_EQ(d.flow_table_size, 4u << 20);
  EXPECT_EQ(d.nat_port_min, 2000u);
  EXPECT_EQ(d.nat_port_max, 3999u);
  EXPECT_EQ(d.syn_timeout, 5s);
  EXPECT_EQ(d.established_timeout, 3600s);
  EXPECT_EQ(d.closing_timeout, 2s);
  EXPECT_EQ(d.udp_timeout, 60s);

  // Defaults, and no dataplane without the section.
  LoadResult plain =
      load(R"(listeners: [ { name: w, listen: 127.0.0.1:8080, routes: [ { pool: web } ] } ]
pools: { web: {} }
)");
  ASSERT_TRUE(plain.ok()) << plain.errorText();
  EXPECT_FALSE(plain.config.dataplane.enabled);
  EXPECT_EQ(plain.config.dataplane.lcores, (std::vector<uint32_t>{1}));
  EXPECT_EQ(plain.config.dataplane.flow_table_size, 1u << 20);
}

TEST(Loader, DataplaneErrors) {
  LoadResult r = load(R"(listeners:
  - { name: v, protocol: l4, vip: 10.0.0.10:80/tcp, pool: web }
pools: { web: {} }
dataplane:
  lcores: [0, 1, 1]
  ports:
    - { device: "net_null0", gateway_mac: "02:00:00:00:00" }
    - { gateway_mac: "02:00:00:00:00:01" }
    - { device: "net null1" }
  local_addresses: [10.0.0.2, "::1", 0.0.0.0]
  nat_ports: 5000-4000
  flow_table_size: 1
  flow_timeouts: { syn: 0s, idle: 5s }
)");
  EXPECT_TRUE(hasErrorLike(r, 5, "dataplane.lcores[0]", "is the main_lcore"));
  EXPECT_TRUE(hasErrorLike(r, 5, "dataplane.lcores[2]", "listed twice"));
  EXPECT_TRUE(hasErrorLike(r, 7, "dataplane.ports[0].gateway_mac", "bad MAC address"));
  EXPECT_TRUE(hasErrorLike(r, 8, "dataplane.ports[1].device", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 9, "dataplane.ports[2].device", "bad device"));
  EXPECT_TRUE(hasErrorLike(r, 9, "dataplane.ports[2].gateway_mac", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 10, "dataplane.local_addresses[1]", "specific IPv4 address"));
  EXPECT_TRUE(hasErrorLike(r, 10, "dataplane.local_addresses[2]", "specific IPv4 address"));
  EXPECT_TRUE(hasErrorLike(r, 11, "dataplane.nat_ports", "bad port range"));
  EXPECT_TRUE(hasErrorLike(r, 12, "dataplane.flow_table_size", "out of range"));
  EXPECT_TRUE(hasErrorLike(r, 13, "dataplane.flow_timeouts.syn", "greater than 0"));
  EXPECT_TRUE(hasErrorLike(r, 13, "dataplane.flow_timeouts.idle", "unknown key"));

  // An l4 listener needs the section; nat needs SNAT addresses.
  LoadResult none = load(R"(listeners:
  - { name: v, protocol: l4, vip: 10.0.0.10:80/tcp, pool: web }
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(none, 2, "listeners[0].protocol", "add a top-level \"dataplane:\""));
  LoadResult no_snat = load(R"(listeners:
  - { name: v, protocol: l4, vip: 10.0.0.10:80/tcp, pool: web, mode: nat }
  - { name: d, protocol: l4, vip: 10.0.0.11:80/tcp, pool: web, mode: dsr }
pools: { web: {} }
dataplane: { ports: [ { device: net_null0, gateway_mac: "02:00:00:00:00:01" } ] }
)");
  EXPECT_TRUE(hasErrorLike(no_snat, 2, "listeners[0].mode", "needs dataplane.local_addresses"));
  EXPECT_EQ(no_snat.errors.size(), 1u) << no_snat.errorText();
  LoadResult no_ports = load(R"(listeners:
  - { name: d, protocol: l4, vip: 10.0.0.11:80/tcp, pool: web, mode: dsr }
pools: { web: {} }
dataplane: { lcores: [1] }
)");
  EXPECT_TRUE(hasErrorLike(no_ports, 4, "dataplane.ports", "at least one port"));
}

TEST(Loader, PoolSettings) {
  LoadResult r = load(withPools(R"(    mode: elastic
    balance: fastest
    maglev_table_size: 1000
    slow_start: -5s
  other.pool-1:
    balance: round_robin
    hash: { source: client_ip }
  "bad name":
    balance: ring_hash
    hash: { source: header }
  cookie:
    balance: ring_hash
    hash: { source: cookie, name: "SESSION" }
  ip:
    balance: maglev
    hash: { source: client_ip, name: x }
)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.mode",
                           "invalid value \"elastic\" (expected one of: "
                           "uniform, flexible)"));
  EXPECT_TRUE(hasErrorLike(r, 6, "pools.web.balance", "invalid value \"fastest\""));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.maglev_table_size", "1000 is not a prime number"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.slow_start", "negative"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.other.pool-1.hash", "not used by balance round_robin"));
  EXPECT_TRUE(hasErrorLike(r, 12, "pools.bad name", "bad pool name"));
  EXPECT_TRUE(hasErrorLike(r, 14, "pools.bad name.hash.name", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 20, "pools.ip.hash.name", "not used by source client_ip"));
  EXPECT_EQ(r.errors.size(), 8u) << r.errorText();
  EXPECT_EQ(r.config.pools.at("cookie").hash.name, "SESSION");
  EXPECT_EQ(r.config.pools.at("cookie").hash.source, HashSource::kCookie);
}

TEST(Loader, HealthChecks) {
  LoadResult r = load(withPools(R"(    health:
      type: http
      path: health
      expect: [200, "2xx", "300-399", "600", "abc", "299-200"]
      interval: 1s
      timeout: 1s
      rise: 0
      fall: 101
      initial_state: sick
  tcp:
    health: { path: /x, expect: 200 }
  h2:
    health: { type: https, expect: "200-204", timeout: 3s, initial_state: unhealthy }
)"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.health.path", "must start with /"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.health.expect[3]", "within 100..599"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.health.expect[4]", "bad status \"abc\""));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.health.expect[5]", "low to high"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web.health.timeout",
                           "timeout (1s) must be shorter than interval (1s)"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.health.rise", "out of range (1..100)"));
  EXPECT_TRUE(hasErrorLike(r, 12, "pools.web.health.fall", "out of range (1..100)"));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.health.initial_state", "invalid value \"sick\""));
  EXPECT_TRUE(hasErrorLike(r, 15, "pools.tcp.health.path", "not used by type tcp"));
  EXPECT_TRUE(hasErrorLike(r, 15, "pools.tcp.health.expect", "not used by type tcp"));
  EXPECT_TRUE(hasErrorLike(r, 17, "pools.h2.health.timeout", "shorter than interval (2s)"));
  EXPECT_EQ(r.errors.size(), 11u) << r.errorText();
  const HealthCheck& h2 = r.config.pools.at("h2").health;
  EXPECT_FALSE(h2.initially_healthy);
  ASSERT_EQ(h2.expect.size(), 1u);
  EXPECT_EQ(h2.expect[0].lo, 200);
  EXPECT_EQ(h2.expect[0].hi, 204);
}

TEST(Loader, Members) {
  LoadResult r = load(withPools(R"(    members:
      - { id: vm-0, address: 10.0.0.1 }
      - { id: vm-1, address: "vm1.internal:80" }
      - { id: "vm/2", address: 10.0.0.2:0 }
      - { address: 10.0.0.3:80 }
      - { id: vm-4 }
      - vm-5
)"));
  EXPECT_TRUE(hasErrorLike(r, 6, "pools.web.members[0].address", "missing port"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.members[1].address", "no DNS"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.members[2].id", "bad name"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.members[2].address", "port other than 0"));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.members[3].id", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web.members[4].address", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.members[5]", "expected a map"));
  EXPECT_EQ(r.errors.size(), 7u) << r.errorText();
}

TEST(Loader, Autoscale) {
  LoadResult r = load(withPools(R"(    autoscale:
      capacity: { min: 5, max: 3, default: 4 }
      scaler: { url: "ftp://x/hooks" }
      rules:
        - { metric: cpu, op: "=>", threshold: high, action: { increase: 1, decrease: 1 } }
        - { metric: cpu, op: ">", threshold: 1, action: { decrease_percent: 150 }, window: 0s }
        - { op: "<" }
      target: { metric: rps, value: 0 }
      repair: { grace: 1 hour, action: reboot }
      scale_in: { policy: random, drain: soon }
  other:
    autoscale:
      capacity: { min: 1, max: 1001 }
  third:
    autoscale:
      capacity: { min: 2, max: 4, default: 2 }
      scaler: { url: "http://127.0.0.1:9800" }
      rules: [ { metric: m, op: "<=", threshold: -1.5e1, action: { set: 9 } } ]
  fourth:
    autoscale:
      capacity: { min: 0, max: 1, default: 0 }
      scaler: { url: "https://[::1]:9800/h", secret_file: s }
      rules: [ { metric: m, op: ">=", threshold: 0, action: { set: 1 }, cooldown: 0 } ]
)"));
  EXPECT_TRUE(hasErrorLike(r, 6, "pools.web.autoscale.capacity", "need min <= default <= max"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.autoscale.scaler.url", "bad url \"ftp://x/hooks\""));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.autoscale.rules[0].op", "invalid value \"=>\""));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.autoscale.rules[0].threshold", "expected a number"));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.autoscale.rules[0].action", "exactly one of"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web.autoscale.rules[1].action.decrease_percent",
                           "out of range (1..100)"));
  EXPECT_TRUE(hasErrorLike(r, 10, "pools.web.autoscale.rules[1].window", "greater than 0"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.autoscale.rules[2].metric", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.autoscale.rules[2].threshold", "missing required"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.autoscale.rules[2].action", "missing required"));
  EXPECT_TRUE(hasErrorLike(r, 12, "pools.web.autoscale.target.value", "greater than 0"));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.autoscale.repair.grace", "unknown unit \"hour\""));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.autoscale.repair.action", "invalid value"));
  EXPECT_TRUE(hasErrorLike(r, 14, "pools.web.autoscale.scale_in.policy", "invalid value"));
  EXPECT_TRUE(hasErrorLike(r, 14, "pools.web.autoscale.scale_in.drain", "bad duration"));
  EXPECT_TRUE(hasErrorLike(r, 16, "pools.other.autoscale.scaler", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 17, "pools.other.autoscale.capacity.max", "out of range (1..1000)"));
  EXPECT_TRUE(
      hasErrorLike(r, 22, "pools.third.autoscale.rules[0].action.set", "9 is out of range (2..4)"));
  EXPECT_EQ(r.errors.size(), 18u) << r.errorText();
  const AutoscaleConfig& third = r.config.pools.at("third").autoscale;
  EXPECT_EQ(third.rules[0].op, CompareOp::kLe);
  EXPECT_EQ(third.rules[0].threshold, -15);
  const AutoscaleConfig& fourth = r.config.pools.at("fourth").autoscale;
  EXPECT_EQ(fourth.min, 0u);
  EXPECT_EQ(fourth.rules[0].action.kind, ScaleAction::Kind::kSetCount);
  EXPECT_EQ(fourth.rules[0].cooldown, 0s);
  EXPECT_EQ(fourth.scaler.url, "https://[::1]:9800/h");
}

TEST(Loader, SyntaxErrorIsOneErrorWithLine) {
  LoadResult r = load("listeners:\n  - name: web\n    listen: [127.0.0.1:8080\npools: {}\n");
  ASSERT_EQ(r.errors.size(), 1u) << r.errorText();
  EXPECT_GT(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find("YAML syntax error"), std::string::npos);
  LoadResult tabs = load("listeners:\n\t- name: web\n");
  ASSERT_EQ(tabs.errors.size(), 1u) << tabs.errorText();
  EXPECT_EQ(tabs.errors[0].line, 2);
}

TEST(Loader, EmptyFileAndNoListeners) {
  for (const char* text : {"", "\n", "# only a comment\n"}) {
    LoadResult r = load(text);
    EXPECT_TRUE(hasError(r, "web.yaml:1: listeners: no listeners: the file is empty")) << text;
  }
  LoadResult r = load("pools: { web: {} }\n");
  EXPECT_TRUE(hasErrorLike(r, 1, "listeners", "no listeners"));
  r = load("listeners: []\npools: { web: {} }\n");
  EXPECT_TRUE(hasErrorLike(r, 1, "listeners", "no listeners"));
  r = load("just a string\n");
  EXPECT_TRUE(hasErrorLike(r, 1, "", "expected a map of settings"));
}

TEST(Loader, StrangeInputNeverThrows) {
  for (const char* text :
       {"{", "[", "- - -", "? [a]: b\n", "listeners: *nope\n", "a: &x b\nc: *x\n",
        "listeners: [ [ [ ] ] ]\n", "listeners:\n  - !!binary aGVsbG8=\n", "\xff\xfe\x00",
        "pools: { web: { members: [ { id: a, address: 1.2.3.4:5, weight: 99999999999999999999 } ] "
        "} }"}) {
    LoadResult r = load(text);
    EXPECT_FALSE(r.ok()) << text;
  }
  std::string deep(5000, '[');
  EXPECT_FALSE(load(deep).ok());
}

TEST(Loader, MissingFile) {
  LoadResult r = loadConfigFile("/nonexistent/scalegate.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].toString(),
            "/nonexistent/scalegate.yaml: cannot open: No such file or directory");
}

TEST(Loader, ConfigErrorFormatting) {
  ConfigError e{"web.yaml", 3, "listeners[0].routes[0].pool", "unknown pool \"api\""};
  EXPECT_EQ(e.toString(), "web.yaml:3: listeners[0].routes[0].pool: unknown pool \"api\"");
  LoadResult r;
  r.errors.push_back(e);
  r.errors.push_back(ConfigError{"web.yaml", 0, "", "oops"});
  EXPECT_EQ(r.errorText(),
            "web.yaml:3: listeners[0].routes[0].pool: unknown pool \"api\"\nweb.yaml: oops\n");
}

TEST(Loader, AdminStateFileAndBodyLimit) {
  LoadResult r = load(R"(admin:
  state_file: /tmp/sg.state.json
  max_request_body_bytes: 1M
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  EXPECT_EQ(r.config.admin.state_file, "/tmp/sg.state.json");
  EXPECT_EQ(r.config.admin.max_request_body_bytes, 1u << 20);

  LoadResult d = load(withPools("    {}\n"));
  ASSERT_TRUE(d.ok()) << d.errorText();
  EXPECT_EQ(d.config.admin.state_file, "");
  EXPECT_EQ(d.config.admin.max_request_body_bytes, 64u << 10);
}

TEST(Loader, AdminErrors) {
  LoadResult r = load(R"(admin:
  state_file: /var/lib/scalegate/
  max_request_body_bytes: 512
  statefile: x
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)");
  EXPECT_TRUE(hasErrorLike(r, 2, "admin.state_file", "bad state_file \"/var/lib/scalegate/\""));
  EXPECT_TRUE(
      hasError(r, "web.yaml:3: admin.max_request_body_bytes: 512 is out of range (1k..16M)"));
  EXPECT_TRUE(hasErrorLike(r, 4, "admin.statefile", "unknown key \"statefile\""));

  LoadResult big = load(R"(admin: { max_request_body_bytes: 17M }
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools: { web: {} }
)");
  EXPECT_TRUE(
      hasError(big, "web.yaml:1: admin.max_request_body_bytes: 17M is out of range (1k..16M)"));
}

TEST(Loader, AdminTlsAndAuditLog) {
  LoadResult r = load(R"(admin:
  listen: 127.0.0.1:9443
  tls: { cert_file: /etc/sg/admin.crt, key_file: /etc/sg/admin.key, client_ca_file: /etc/sg/ca.pem }
  audit_log: /var/log/scalegate/audit.log
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  EXPECT_TRUE(r.config.admin.tls.enabled);
  EXPECT_EQ(r.config.admin.tls.cert_file, "/etc/sg/admin.crt");
  EXPECT_EQ(r.config.admin.tls.key_file, "/etc/sg/admin.key");
  EXPECT_EQ(r.config.admin.tls.client_ca_file, "/etc/sg/ca.pem");
  EXPECT_EQ(r.config.admin.audit_log, "/var/log/scalegate/audit.log");

  LoadResult no_mtls =
      load(R"(admin: { tls: { cert_file: a.crt, key_file: a.key }, audit_log: "off" }
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools: { web: {} }
)");
  ASSERT_TRUE(no_mtls.ok()) << no_mtls.errorText();
  EXPECT_TRUE(no_mtls.config.admin.tls.enabled);
  EXPECT_EQ(no_mtls.config.admin.tls.client_ca_file, "");
  EXPECT_EQ(no_mtls.config.admin.audit_log, "off");

  LoadResult d = load(withPools("    {}\n"));
  ASSERT_TRUE(d.ok()) << d.errorText();
  EXPECT_FALSE(d.config.admin.tls.enabled);
  EXPECT_EQ(d.config.admin.audit_log, "");
}

TEST(Loader, AdminTlsErrors) {
  LoadResult r = load(R"(admin:
  tls:
    key_file: ""
    client_ca: x
  audit_log: /var/log/
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)");
  EXPECT_TRUE(hasErrorLike(r, 4, "admin.tls.client_ca", "unknown key \"client_ca\""));
  EXPECT_TRUE(hasErrorLike(r, 5, "admin.audit_log", "bad audit_log \"/var/log/\""));

  LoadResult missing = load(R"(admin:
  tls:
    key_file: ""
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools:
  web: {}
)");
  EXPECT_TRUE(hasErrorLike(missing, 2, "admin.tls.cert_file", "missing required key"));
  EXPECT_TRUE(hasErrorLike(missing, 3, "admin.tls.key_file", "bad key_file \"\""));

  LoadResult scalar = load(R"(admin: { tls: yes }
listeners:
  - { name: web, listen: 127.0.0.1:8080, routes: [ { pool: web } ] }
pools: { web: {} }
)");
  EXPECT_TRUE(hasErrorLike(scalar, 1, "admin.tls", "expected a map"));
}

TEST(Loader, OutlierLowHealthDrainTimeout) {
  LoadResult r = load(withPools(R"(    outlier:
      enabled: false
      consecutive_failures: 3
      base_ejection: 10s
      max_ejection: 1m
      max_ejection_percent: 100
    low_health: { threshold_percent: 0, action: refuse }
    drain_timeout: 5s
)"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Pool& p = r.config.pools.at("web");
  EXPECT_FALSE(p.outlier.enabled);
  EXPECT_EQ(p.outlier.consecutive_failures, 3u);
  EXPECT_EQ(p.outlier.base_ejection, 10s);
  EXPECT_EQ(p.outlier.max_ejection, 60s);
  EXPECT_EQ(p.outlier.max_ejection_percent, 100u);
  EXPECT_EQ(p.low_health.threshold_percent, 0u);
  EXPECT_EQ(p.low_health.action, LowHealthAction::kRefuse);
  EXPECT_EQ(p.drain_timeout, 5s);

  // Defaults when the keys are absent, and a bare 0 drain timeout.
  LoadResult d = load(withPools("    drain_timeout: 0\n    outlier: {}\n    low_health:\n"));
  ASSERT_TRUE(d.ok()) << d.errorText();
  const Pool& q = d.config.pools.at("web");
  EXPECT_TRUE(q.outlier.enabled);
  EXPECT_EQ(q.outlier.consecutive_failures, 5u);
  EXPECT_EQ(q.outlier.max_ejection, 300s);
  EXPECT_EQ(q.low_health.threshold_percent, 50u);
  EXPECT_EQ(q.low_health.action, LowHealthAction::kSpreadAll);
  EXPECT_EQ(q.drain_timeout, 0s);
}

TEST(Loader, OutlierLowHealthDrainTimeoutErrors) {
  // Lines: 1 listeners, 2 listener, 3 pools, 4 web, 5 outlier ...
  LoadResult r = load(withPools(R"(    outlier:
      enabled: maybe
      consecutive_failures: 0
      base_ejection: 0
      max_ejection: 5 parsecs
      max_ejection_percent: 101
      burst: 2
    low_health: { threshold_percent: 150, action: panic }
    drain_timeout: -1s
)"));
  EXPECT_TRUE(
      hasError(r, "web.yaml:6: pools.web.outlier.enabled: expected true or false, got \"maybe\""));
  EXPECT_TRUE(hasError(
      r, "web.yaml:7: pools.web.outlier.consecutive_failures: 0 is out of range (1..1000)"));
  EXPECT_TRUE(hasError(
      r, "web.yaml:8: pools.web.outlier.base_ejection: must be greater than 0, got \"0\""));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.outlier.max_ejection", "bad duration"));
  EXPECT_TRUE(hasError(
      r, "web.yaml:10: pools.web.outlier.max_ejection_percent: 101 is out of range (0..100)"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.outlier.burst", "unknown key \"burst\""));
  EXPECT_TRUE(hasError(
      r, "web.yaml:12: pools.web.low_health.threshold_percent: 150 is out of range (0..100)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:12: pools.web.low_health.action: invalid value \"panic\" "
                       "(expected one of: spread_all, refuse)"));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.drain_timeout", "bad duration"));

  LoadResult order = load(withPools("    outlier: { base_ejection: 1m, max_ejection: 30s }\n"));
  EXPECT_TRUE(hasError(order,
                       "web.yaml:5: pools.web.outlier.max_ejection: max_ejection (30s) must not be "
                       "shorter than base_ejection (1m)"));
  // The default max (300s) is checked against a configured base too.
  LoadResult base_only = load(withPools("    outlier:\n      base_ejection: 10m\n"));
  EXPECT_TRUE(hasError(base_only,
                       "web.yaml:6: pools.web.outlier.max_ejection: max_ejection (5m) must not be "
                       "shorter than base_ejection (10m)"));

  LoadResult not_map = load(withPools("    outlier: 5\n    low_health: [1]\n"));
  EXPECT_TRUE(hasErrorLike(not_map, 5, "pools.web.outlier", "expected a map"));
  EXPECT_TRUE(hasErrorLike(not_map, 6, "pools.web.low_health", "expected a map"));
}

TEST(Loader, BalanceNames) {
  EXPECT_STREQ(balanceName(BalanceAlgorithm::kRoundRobin), "round_robin");
  EXPECT_STREQ(balanceName(BalanceAlgorithm::kLeastRequest), "least_request");
  EXPECT_STREQ(balanceName(BalanceAlgorithm::kRandom), "random");
  EXPECT_STREQ(balanceName(BalanceAlgorithm::kMaglev), "maglev");
  EXPECT_STREQ(balanceName(BalanceAlgorithm::kRingHash), "ring_hash");
}

TEST(Loader, AutoscaleFullSetting) {
  LoadResult r = load(withPools(R"(    mode: flexible
    members:
      - { id: vm-1, address: 127.0.0.1:9001, zone: "1", weight: 2, version: v1, protected: true }
      - { id: vm-2, address: 127.0.0.1:9002, zone: "2", weight: 4, version: v2 }
    autoscale:
      evaluation_interval: 1s
      capacity: { min: 2, max: 20, default: 3 }
      scaler: { url: "http://127.0.0.1:9800/hooks", secret_file: s, format: azure, timeout: 2s,
                max_attempts: 5, max_backoff: 30s }
      rules:
        - { metric: cpu, statistic: count, aggregation: count, op: "!=", threshold: 0,
            action: { set: 5 }, direction: out, cooldown: 1m }
        - { metric: queue, statistic: sum, divide_per_instance: true, op: "<=", threshold: 3,
            action: { set: 2 } }
      target: { metric: rps, value: 400, tolerance: 0.2, scale_down_stabilization: 2m,
                window: 30s, statistic: max }
      profiles:
        - name: business
          capacity: { min: 4, max: 30, default: 4 }
          rules: [ { metric: cpu, op: ">", threshold: 70, action: { increase: 2 } } ]
          schedule: { days: [Mon, tuesday, FRI], start: "08:30", end: "24:00",
                      time_zone_offset: "-05:30" }
        - name: launch
          capacity: { min: 10, max: 10, default: 10 }
          schedule: { start: "2026-12-24T08:00:00+01:00", end: "2026-12-24T20:00:00.5Z" }
      repair: { grace: 5m, action: restart, max_percent: 10, suspend_after_failures: 2,
                suspend_for: 1h, timeout: 3m }
      scale_in: { policy: oldest, drain: 10s, prioritize_unhealthy: false }
      zones: ["1", "2", "3"]
      upgrade: { batch: 2, max_unhealthy: 50%, max_unhealthy_upgraded: 1, pause: 0s,
                 health_timeout: 1m }
)"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Pool& p = r.config.pools.at("web");
  EXPECT_EQ(p.members[0].version, "v1");
  EXPECT_TRUE(p.members[0].scale_in_protected);
  EXPECT_FALSE(p.members[1].scale_in_protected);
  const AutoscaleConfig& a = p.autoscale;
  EXPECT_EQ(a.evaluation_interval, 1s);
  EXPECT_EQ(a.default_capacity, 3u);
  EXPECT_EQ(a.scaler.format, ScalerFormat::kAzure);
  EXPECT_EQ(a.scaler.timeout, 2s);
  EXPECT_EQ(a.scaler.max_attempts, 5u);
  EXPECT_EQ(a.scaler.max_backoff, 30s);
  ASSERT_EQ(a.rules.size(), 2u);
  EXPECT_EQ(a.rules[0].statistic, MetricStatistic::kCount);
  EXPECT_EQ(a.rules[0].aggregation, TimeAggregation::kCount);
  EXPECT_EQ(a.rules[0].op, CompareOp::kNe);
  EXPECT_EQ(a.rules[0].direction, ScaleDirection::kOut);
  EXPECT_EQ(a.rules[1].direction, ScaleDirection::kIn);  // set + "<=": in
  EXPECT_TRUE(a.rules[1].divide_per_instance);
  ASSERT_TRUE(a.target.has_value());
  EXPECT_EQ(a.target->tolerance, 0.2);
  EXPECT_EQ(a.target->scale_down_stabilization, 2min);
  EXPECT_EQ(a.target->window, 30s);
  EXPECT_EQ(a.target->statistic, MetricStatistic::kMax);
  ASSERT_EQ(a.profiles.size(), 2u);
  const AutoscaleProfile& b = a.profiles[0];
  EXPECT_EQ(b.name, "business");
  EXPECT_EQ(b.min, 4u);
  EXPECT_EQ(b.max, 30u);
  EXPECT_EQ(b.rules.size(), 1u);
  EXPECT_EQ(b.schedule.kind, ProfileSchedule::Kind::kWeekly);
  EXPECT_EQ(b.schedule.days, (1u << 1) | (1u << 2) | (1u << 5));
  EXPECT_EQ(b.schedule.start_minute, 8u * 60 + 30);
  EXPECT_EQ(b.schedule.end_minute, 1440u);
  EXPECT_EQ(b.schedule.utc_offset_minutes, -330);
  const AutoscaleProfile& l = a.profiles[1];
  EXPECT_EQ(l.schedule.kind, ProfileSchedule::Kind::kFixed);
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::seconds>(l.schedule.start.time_since_epoch()).count(),
      1'798'095'600);  // 2026-12-24T07:00:00Z
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(l.schedule.end.time_since_epoch())
                .count(),
            1'798'142'400'500);
  EXPECT_TRUE(a.repair.enabled);
  EXPECT_EQ(a.repair.action, RepairAction::kRestart);
  EXPECT_EQ(a.repair.grace, 5min);
  EXPECT_EQ(a.repair.max_percent, 10u);
  EXPECT_EQ(a.repair.suspend_after_failures, 2u);
  EXPECT_EQ(a.repair.suspend_for, 1h);
  EXPECT_EQ(a.repair.timeout, 3min);
  EXPECT_EQ(a.scale_in.policy, ScaleInPolicy::kOldest);
  EXPECT_EQ(a.scale_in.drain, 10s);
  EXPECT_FALSE(a.scale_in.prioritize_unhealthy);
  EXPECT_EQ(a.zones, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(a.upgrade.batch.value, 2u);
  EXPECT_FALSE(a.upgrade.batch.percent);
  EXPECT_EQ(a.upgrade.max_unhealthy.value, 50u);
  EXPECT_TRUE(a.upgrade.max_unhealthy.percent);
  EXPECT_EQ(a.upgrade.max_unhealthy.of(9), 4u);
  EXPECT_EQ(a.upgrade.max_unhealthy_upgraded.of(100), 1u);
  EXPECT_EQ(a.upgrade.pause, 0s);
  EXPECT_EQ(a.upgrade.health_timeout, 1min);
}

TEST(Loader, AutoscaleDefaults) {
  LoadResult r = load(withPools(R"(    autoscale:
      scaler: { url: "http://127.0.0.1:9800/hooks" }
      target: { metric: cpu, value: 60 }
)"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const AutoscaleConfig& a = r.config.pools.at("web").autoscale;
  EXPECT_EQ(a.evaluation_interval, 30s);
  EXPECT_EQ(a.target->tolerance, 0.1);
  EXPECT_EQ(a.target->scale_down_stabilization, 5min);
  EXPECT_EQ(a.scaler.format, ScalerFormat::kScalegate);
  EXPECT_EQ(a.scaler.timeout, 5s);
  EXPECT_EQ(a.scaler.max_attempts, 8u);
  EXPECT_EQ(a.scaler.max_backoff, 60s);
  EXPECT_FALSE(a.repair.enabled);
  EXPECT_EQ(a.repair.max_percent, 5u);
  EXPECT_EQ(a.repair.suspend_after_failures, 3u);
  EXPECT_EQ(a.repair.suspend_for, 30min);
  EXPECT_EQ(a.repair.timeout, 10min);
  EXPECT_EQ(a.scale_in.policy, ScaleInPolicy::kDefault);
  EXPECT_TRUE(a.scale_in.prioritize_unhealthy);
  EXPECT_TRUE(a.zones.empty());
  EXPECT_EQ(a.upgrade.batch.value, 20u);
  EXPECT_TRUE(a.upgrade.batch.percent);
  EXPECT_EQ(a.upgrade.pause, 10s);
  EXPECT_EQ(a.upgrade.health_timeout, 5min);
  EXPECT_TRUE(a.profiles.empty());
}

TEST(Loader, AutoscaleNewKeyErrors) {
  LoadResult r = load(withPools(R"(    members:
      - { id: vm-1, address: 127.0.0.1:9001, zone: "4", protected: maybe }
    autoscale:
      evaluation_interval: 500ms
      scaler: { url: "http://127.0.0.1:9800/hooks", format: json, max_attempts: 0 }
      rules:
        - { metric: cpu, statistic: median, aggregation: p99, op: ">", threshold: 1,
            action: { increase: 1 }, direction: in }
        - { metric: cpu, op: "==", threshold: 1, action: { set: 1 } }
      target: { metric: rps, value: 10, tolerance: 1.5 }
      profiles:
        - { name: a, capacity: { min: 3, max: 2, default: 2 }, schedule: { start: "09:00" } }
        - name: b
          capacity: { min: 1, max: 2, default: 1 }
          schedule: { days: [Mon, Funday], start: "25:00", end: "9am", time_zone_offset: CET }
        - name: c
          capacity: { min: 1, max: 2, default: 1 }
          schedule: { start: "2026-12-24", end: "2026-12-23T00:00:00Z" }
        - name: c
          capacity: { min: 1, max: 2, default: 1 }
          schedule: { start: "2026-12-24T10:00:00Z", end: "2026-12-24T09:00:00Z" }
        - { name: d, schedule: { days: [], start: "10:00", end: "10:00" } }
      repair: { max_percent: 0, suspend_after_failures: 0, suspend_for: 0s }
      scale_in: { prioritize_unhealthy: sometimes }
      zones: ["1", "1", ""]
      upgrade: { batch: 0%, max_unhealthy: 101%, max_unhealthy_upgraded: "x%", health_timeout: 0s }
)"));
  EXPECT_TRUE(hasErrorLike(r, 6, "pools.web.members[0].protected", "expected true or false"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.autoscale.evaluation_interval", "between 1s and 1h"));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.autoscale.scaler.format", "invalid value \"json\""));
  EXPECT_TRUE(hasErrorLike(r, 9, "pools.web.autoscale.scaler.max_attempts", "out of range"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.autoscale.rules[0].statistic", "invalid value"));
  EXPECT_TRUE(hasErrorLike(r, 11, "pools.web.autoscale.rules[0].aggregation", "invalid value"));
  EXPECT_TRUE(hasErrorLike(r, 12, "pools.web.autoscale.rules[0].direction", "not used"));
  EXPECT_TRUE(hasErrorLike(r, 13, "pools.web.autoscale.rules[1].direction", "missing required"));
  EXPECT_TRUE(hasErrorLike(r, 14, "pools.web.autoscale.target.tolerance", "must be in 0..1"));
  EXPECT_TRUE(hasErrorLike(r, 16, "pools.web.autoscale.profiles[0].capacity", "min <= default"));
  EXPECT_TRUE(
      hasErrorLike(r, 16, "pools.web.autoscale.profiles[0].schedule.start", "bad time \"09:00\""));
  EXPECT_TRUE(hasErrorLike(r, 16, "pools.web.autoscale.profiles[0].schedule.end", "missing"));
  EXPECT_TRUE(hasErrorLike(r, 19, "pools.web.autoscale.profiles[1].schedule.days[1]",
                           "bad weekday \"Funday\""));
  EXPECT_TRUE(hasErrorLike(r, 19, "pools.web.autoscale.profiles[1].schedule.start",
                           "bad time of day \"25:00\""));
  EXPECT_TRUE(hasErrorLike(r, 19, "pools.web.autoscale.profiles[1].schedule.end",
                           "bad time of day \"9am\""));
  EXPECT_TRUE(hasErrorLike(r, 19, "pools.web.autoscale.profiles[1].schedule.time_zone_offset",
                           "time zone names are not supported"));
  EXPECT_TRUE(
      hasErrorLike(r, 22, "pools.web.autoscale.profiles[2].schedule.start", "expected RFC 3339"));
  EXPECT_TRUE(hasErrorLike(r, 25, "pools.web.autoscale.profiles[3].schedule.end",
                           "end must be after start"));
  EXPECT_TRUE(
      hasErrorLike(r, 23, "pools.web.autoscale.profiles[3].name", "duplicate profile name \"c\""));
  EXPECT_TRUE(hasErrorLike(r, 26, "pools.web.autoscale.profiles[4].capacity", "missing required"));
  EXPECT_TRUE(
      hasErrorLike(r, 26, "pools.web.autoscale.profiles[4].schedule.days", "at least one weekday"));
  EXPECT_TRUE(hasErrorLike(r, 26, "pools.web.autoscale.profiles[4].schedule.end", "end equals"));
  EXPECT_TRUE(hasErrorLike(r, 27, "pools.web.autoscale.repair.max_percent", "out of range"));
  EXPECT_TRUE(
      hasErrorLike(r, 27, "pools.web.autoscale.repair.suspend_after_failures", "out of range"));
  EXPECT_TRUE(hasErrorLike(r, 27, "pools.web.autoscale.repair.suspend_for", "greater than 0"));
  EXPECT_TRUE(hasErrorLike(r, 28, "pools.web.autoscale.scale_in.prioritize_unhealthy",
                           "expected true or false"));
  EXPECT_TRUE(hasErrorLike(r, 29, "pools.web.autoscale.zones[1]", "duplicate zone \"1\""));
  EXPECT_TRUE(hasErrorLike(r, 29, "pools.web.autoscale.zones[2]", "bad zone"));
  EXPECT_TRUE(hasErrorLike(r, 6, "pools.web.members[0].zone", "not one of autoscale.zones"));
  EXPECT_TRUE(hasErrorLike(r, 30, "pools.web.autoscale.upgrade.batch", "1%..100%"));
  EXPECT_TRUE(hasErrorLike(r, 30, "pools.web.autoscale.upgrade.max_unhealthy", "1%..100%"));
  EXPECT_TRUE(
      hasErrorLike(r, 30, "pools.web.autoscale.upgrade.max_unhealthy_upgraded", "got \"x%\""));
  EXPECT_TRUE(hasErrorLike(r, 30, "pools.web.autoscale.upgrade.health_timeout", "greater than 0"));
  EXPECT_EQ(r.errors.size(), 33u) << r.errorText();
}

TEST(Loader, UniformPoolMembersShareWeightAndVersion) {
  LoadResult r = load(withPools(R"(    members:
      - { id: vm-1, address: 127.0.0.1:9001, weight: 2, version: v1 }
      - { id: vm-2, address: 127.0.0.1:9002, weight: 2, version: v2 }
      - { id: vm-3, address: 127.0.0.1:9003, weight: 3, version: v1 }
)"));
  EXPECT_TRUE(hasError(r,
                       "web.yaml:7: pools.web.members[1].version: member \"vm-2\" has version "
                       "\"v2\" but \"vm-1\" has \"v1\": every member of a uniform pool runs "
                       "the same version (use mode: flexible)"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.members[2].weight",
                           "member \"vm-3\" has weight 3 but \"vm-1\" has 2"));
  EXPECT_EQ(r.errors.size(), 2u) << r.errorText();
  // The same members in a flexible pool are fine.
  LoadResult f = load(withPools(R"(    mode: flexible
    members:
      - { id: vm-1, address: 127.0.0.1:9001, weight: 2, version: v1 }
      - { id: vm-2, address: 127.0.0.1:9002, weight: 3, version: v2 }
)"));
  EXPECT_TRUE(f.ok()) << f.errorText();
}

TEST(Loader, TlsAndHttp2Settings) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8443
    routes: [ { pool: web } ]
    tls:
      certificates:
        - { cert: a.crt, key: a.key }
        - { cert: b.crt, key: b.key, default: true }
      min_version: "1.3"
      alpn: [ http/1.1 ]
      ticket_rotation: 30m
    http2: { max_concurrent_streams: 20, reset_burst: 50, reset_rate: 10 }
pools:
  web:
    members: []
)");
  ASSERT_TRUE(r.ok()) << r.errorText();
  const Listener& l = r.config.listeners[0];
  EXPECT_TRUE(l.tls.enabled);
  ASSERT_EQ(l.tls.certificates.size(), 2u);
  EXPECT_EQ(l.tls.certificates[1].cert_file, "b.crt");
  EXPECT_TRUE(l.tls.certificates[1].is_default);
  EXPECT_EQ(l.tls.min_version, TlsVersion::k13);
  EXPECT_EQ(l.tls.alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_EQ(l.tls.ticket_rotation, 30min);
  EXPECT_EQ(l.http2.max_concurrent_streams, 20u);
  EXPECT_EQ(l.http2.reset_burst, 50u);
  EXPECT_EQ(l.http2.reset_rate, 10u);
  EXPECT_FALSE(r.config.listeners[0].tls.session_tickets == false);
}

TEST(Loader, TlsErrors) {
  LoadResult r = load(R"(listeners:
  - name: web
    listen: 127.0.0.1:8443
    routes: [ { pool: web } ]
    tls:
      certificates: [ { cert: a.crt } ]
      min_version: "1.1"
      alpn: [ h3 ]
pools:
  web:
    members: []
)");
  EXPECT_TRUE(hasErrorLike(r, 6, "listeners[0].tls.certificates[0].key", "missing required key"));
  EXPECT_TRUE(hasErrorLike(r, 7, "listeners[0].tls.min_version", "bad min_version"));
  EXPECT_TRUE(hasErrorLike(r, 8, "listeners[0].tls.alpn[0]", "bad alpn protocol"));
}

TEST(Loader, UpstreamProtocol) {
  LoadResult d = load(withPools("    members: [ { id: a, address: 10.0.0.1:80 } ]\n"));
  ASSERT_TRUE(d.ok()) << d.errorText();
  const UpstreamSettings& du = d.config.pools.at("web").upstream;
  EXPECT_EQ(du.protocol, UpstreamProtocol::kHttp1);
  EXPECT_EQ(du.h2_max_streams_per_connection, 100u);
  EXPECT_EQ(du.h2_max_connections_per_member, 4u);

  LoadResult r = load(withPools(R"(    upstream:
      protocol: h2
      h2_max_streams_per_connection: 8
      h2_max_connections_per_member: 2
      tls: { ca_file: ca.pem, server_name: origin.test }
    members: [ { id: a, address: 10.0.0.1:443 } ]
)"));
  ASSERT_TRUE(r.ok()) << r.errorText();
  const UpstreamSettings& u = r.config.pools.at("web").upstream;
  EXPECT_EQ(u.protocol, UpstreamProtocol::kH2);
  EXPECT_EQ(u.h2_max_streams_per_connection, 8u);
  EXPECT_EQ(u.h2_max_connections_per_member, 2u);
  EXPECT_TRUE(u.tls);
}

TEST(Loader, UpstreamProtocolErrors) {
  LoadResult r = load(withPools(R"(    upstream: { protocol: h3 }
    members: [ { id: a, address: 10.0.0.1:80 } ]
)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.upstream.protocol", "h3"));

  r = load(withPools(R"(    upstream: { h2_max_streams_per_connection: 10, h2_max_connections_per_member: 2 }
    members: [ { id: a, address: 10.0.0.1:80 } ]
)"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.upstream.h2_max_streams_per_connection",
                           "not used with protocol http1"));
  EXPECT_TRUE(hasErrorLike(r, 5, "pools.web.upstream.h2_max_connections_per_member",
                           "not used with protocol http1"));

  r = load(withPools(R"(    upstream:
      protocol: h2
      h2_max_streams_per_connection: 0
      h2_max_connections_per_member: 1001
    members: [ { id: a, address: 10.0.0.1:80 } ]
)"));
  EXPECT_TRUE(hasErrorLike(r, 7, "pools.web.upstream.h2_max_streams_per_connection",
                           "0 is out of range (1..10000)"));
  EXPECT_TRUE(hasErrorLike(r, 8, "pools.web.upstream.h2_max_connections_per_member",
                           "1001 is out of range (1..1000)"));
}

}  // namespace
}  // namespace scalegate::config
