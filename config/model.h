#pragma once
// The domain model of scalegate's configuration (DESIGN.md "Configuration"). Plain values,
// filled by config/loader.h and validated there; every field has the default users get when
// the key is absent. Each struct remembers the YAML line it came from for error messages.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/clock.h"
#include "common/log.h"

namespace scalegate::config {

using namespace std::chrono_literals;

struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
};

struct AdminConfig {
  SocketAddress listen;    // default 127.0.0.1:9900
  std::string token_file;  // empty: /v1 endpoints refuse every request
  // Members added, removed, re-weighted or drained through the API are kept here (JSON,
  // written atomically) and reloaded at start. "" = next to the config file:
  // <config dir>/<config name>.state.json
  std::string state_file;
  uint64_t max_request_body_bytes = 64 * 1024;  // admin requests above it: 413
};

struct LogConfig {
  LogLevel level = LogLevel::kInfo;
  LogFormat format = LogFormat::kText;
};

// Limits and timeouts of one HTTP listener (client side).
struct HttpLimits {
  uint64_t max_request_header_bytes = 16 * 1024;  // whole head; over it: 431
  uint32_t max_headers = 100;                     // header fields; over it: 431
  uint64_t max_uri_bytes = 8 * 1024;              // request-target; over it: 414
  uint64_t max_request_body_bytes = 0;            // 0 = unlimited; over it: 413
};

struct HttpTimeouts {
  Duration request_header = 10s;  // first byte to end of head; then 408 and close
  Duration idle = 60s;            // keep-alive wait for the next request; then close
  Duration request = 60s;         // whole request, head to last response byte; then 504
};

enum class ListenerProtocol { kHttp, kTcp, kL4 };
enum class L4Mode { kNat, kDsr };
enum class IpProto { kTcp, kUdp };

struct Route {
  std::string host;  // "" = any; "example.com" exact; "*.example.com" suffix
  std::string path_prefix = "/";
  std::string pool;  // name in Config::pools
  SourceLocation where;
};

struct Listener {
  std::string name;
  ListenerProtocol protocol = ListenerProtocol::kHttp;
  SocketAddress listen;       // http/tcp
  std::vector<Route> routes;  // http: first match wins
  std::string pool;           // tcp/l4: the one pool
  HttpLimits limits;
  HttpTimeouts timeouts;
  bool xff = true;                                 // append X-Forwarded-For / -Proto
  std::string request_id_header = "x-request-id";  // "" disables
  // l4 only (dataplane/)
  SocketAddress vip;
  IpProto vip_proto = IpProto::kTcp;
  L4Mode mode = L4Mode::kNat;
  SourceLocation where;
};

enum class PoolMode { kUniform, kFlexible };
enum class BalanceAlgorithm { kRoundRobin, kLeastRequest, kRandom, kMaglev, kRingHash };
enum class HashSource { kClientIp, kHeader, kCookie };

struct HashKey {
  HashSource source = HashSource::kClientIp;
  std::string name;  // header or cookie name for kHeader / kCookie
};

enum class HealthCheckType { kTcp, kHttp, kHttps };

struct StatusRange {
  int lo = 200;
  int hi = 399;
};

struct HealthCheck {
  bool enabled = false;  // false when the pool has no `health` key
  HealthCheckType type = HealthCheckType::kTcp;
  std::string path = "/";
  std::string host;  // Host header; "" = member address
  std::vector<StatusRange> expect{{200, 399}};
  Duration interval = 2s;
  Duration jitter = 0s;  // added uniformly in [0, jitter]
  Duration timeout = 1s;
  Duration fast_interval = 0s;  // while changing state; 0 = interval
  uint32_t rise = 2;
  uint32_t fall = 3;
  bool initially_healthy = true;  // state before the first probe result
};

struct Member {
  std::string id;
  SocketAddress address;
  std::string zone;
  uint32_t fault_domain = 0;
  uint32_t weight = 1;  // 0 = takes no new traffic; max 1000000
  std::string version;  // image/app version label (rolling upgrades); "" = unknown
  // Scale-in protection (Azure protectFromScaleIn): autoscale never picks this member to
  // remove. Repairs, upgrades and removal through the API still apply to it.
  bool scale_in_protected = false;
  SourceLocation where;
};

struct UpstreamSettings {
  Duration connect_timeout = 5s;
  Duration idle_timeout = 60s;        // an idle pooled connection is closed after this
  uint32_t max_idle_per_member = 64;  // per worker
  uint32_t retries = 1;               // extra attempts for idempotent requests
};

// Autoscale (issue 4 consumes it; loaded and validated now so configs are stable).
enum class MetricStatistic { kAvg, kMin, kMax, kSum };
enum class TimeAggregation { kAvg, kMin, kMax, kTotal, kLast };
enum class CompareOp { kGt, kGe, kLt, kLe };
enum class ScaleInPolicy { kDefault, kNewest, kOldest };
enum class RepairAction { kReplace, kRestart, kReimage };

struct ScaleAction {
  enum class Kind { kIncrease, kDecrease, kIncreasePercent, kDecreasePercent, kSetCount };
  Kind kind = Kind::kIncrease;
  uint32_t value = 1;
};

struct ScaleRule {
  std::string metric;
  MetricStatistic statistic = MetricStatistic::kAvg;
  Duration window = 5min;
  TimeAggregation aggregation = TimeAggregation::kAvg;
  CompareOp op = CompareOp::kGt;
  double threshold = 0;
  ScaleAction action;
  Duration cooldown = 5min;
  SourceLocation where;
};

struct AutoscaleConfig {
  bool enabled = false;
  uint32_t min = 1, max = 1, default_capacity = 1;
  std::string scaler_url;
  std::string secret_file;
  std::vector<ScaleRule> rules;
  std::optional<std::pair<std::string, double>> target;  // metric, value
  Duration repair_grace = 10min;
  RepairAction repair_action = RepairAction::kReplace;
  bool repair_enabled = false;
  ScaleInPolicy scale_in_policy = ScaleInPolicy::kDefault;
  Duration scale_in_drain = 30s;
};

// Passive outlier detection (Envoy's consecutive_5xx): a member that fails this many requests
// in a row on one worker (5xx answers, connect failures, resets before a response) is ejected
// for base_ejection × (number of times it was ejected), at most max_ejection.
struct OutlierDetection {
  bool enabled = true;
  uint32_t consecutive_failures = 5;  // 1..1000
  Duration base_ejection = 30s;
  Duration max_ejection = 300s;
  uint32_t max_ejection_percent = 10;  // 0..100; at least one member may always be ejected
};

// What a pool does when fewer than `threshold_percent` of its members are healthy.
// kSpreadAll (default, Envoy's panic mode): ignore health and spread over every member —
// when most members fail their probes at once the cause is usually the probe or a shared
// dependency, and refusing everything would turn a partial outage into a total one.
// kRefuse: answer 503 (Azure Load Balancer's behaviour when every probe is down).
enum class LowHealthAction { kSpreadAll, kRefuse };
struct LowHealthPolicy {
  uint32_t threshold_percent = 50;  // 0..100; 0 disables
  LowHealthAction action = LowHealthAction::kSpreadAll;
};

struct Pool {
  std::string name;
  PoolMode mode = PoolMode::kUniform;
  BalanceAlgorithm balance = BalanceAlgorithm::kRoundRobin;
  HashKey hash;                        // maglev / ring_hash
  uint32_t maglev_table_size = 65537;  // prime
  Duration slow_start = 0s;            // 0 = off; linear ramp of weight from 10%
  UpstreamSettings upstream;
  HealthCheck health;
  OutlierDetection outlier;
  LowHealthPolicy low_health;
  Duration drain_timeout = 30s;  // member drain through the API: in-flight requests' deadline
  std::vector<Member> members;
  AutoscaleConfig autoscale;
  SourceLocation where;
};

struct Config {
  std::string path;  // file it was loaded from
  AdminConfig admin;
  LogConfig log;
  uint32_t workers = 0;          // 0 = one per core; `--workers` overrides
  Duration drain_timeout = 30s;  // SIGTERM: time to finish in-flight requests
  std::vector<Listener> listeners;
  std::map<std::string, Pool> pools;  // by name
};

const char* balanceName(BalanceAlgorithm b);

}  // namespace scalegate::config
