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
#include "common/cidr.h"
#include "common/clock.h"
#include "common/log.h"

namespace scalegate::config {

using namespace std::chrono_literals;

struct SourceLocation {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
};

// TLS on the admin listener (/v1, /metrics, /healthz all behind it on the same port).
struct AdminTls {
  bool enabled = false;
  std::string cert_file;       // PEM certificate chain
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // "" = no client certificates; else mTLS: clients must present
                               // a certificate signed by one of these CAs
};

struct AdminConfig {
  SocketAddress listen;    // default 127.0.0.1:9900
  std::string token_file;  // empty: /v1 endpoints refuse every request
  // Members added, removed, re-weighted or drained through the API are kept here (JSON,
  // written atomically) and reloaded at start. "" = next to the config file:
  // <config dir>/<config name>.state.json
  std::string state_file;
  uint64_t max_request_body_bytes = 64 * 1024;  // admin requests above it: 413
  AdminTls tls;
  // One JSON line per mutating /v1 call (control/audit_log.h). "" = next to the state file,
  // <state dir>/<config name>.audit.log; "off" = no audit log.
  std::string audit_log;
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
  // A client that takes no byte of its pending response for this long (slow reader): close.
  Duration send = 30s;
};

// Abuse limits per listener (`listeners[].limits`, http and tcp listeners), counted in
// scalegate_listener_limited_total{listener,reason}. Over a connection limit the connection
// is accepted and closed at once with nothing sent (HAProxy `tcp-request connection reject`,
// Envoy's listener connection limit). Per-IP state is one fixed-size table per listener shared
// by the workers through atomics (l7proxy/client_table.h).
struct ClientLimits {
  uint32_t max_connections = 100000;        // open at once on this listener; 0 = unlimited
  uint32_t max_connections_per_ip = 0;      // open at once from one client IP; 0 = unlimited
  uint32_t requests_per_second_per_ip = 0;  // http: token bucket rate; 0 = off; over it: 429
  uint32_t request_burst_per_ip = 0;        // bucket size; 0 = same as the rate (1 s worth)
  bool perIp() const { return max_connections_per_ip > 0 || requests_per_second_per_ip > 0; }
};

enum class ListenerProtocol { kHttp, kTcp, kL4 };
// PROXY protocol header sent to members at the start of each TCP passthrough connection.
enum class ProxyProtocol { kNone, kV2 };

// A tcp (passthrough) listener's own settings.
struct TcpSettings {
  Duration idle = std::chrono::hours(1);  // no byte either way this long: close both sides
  Duration connect = 0s;                  // 0 = the pool's upstream.connect_timeout
  // Bytes waiting for one side (client or member) that it takes none of for this long (a
  // slow or stuck reader): close both sides. Longer than HTTP's 30 s: a passthrough peer may
  // stop reading for a while on purpose (a database during a checkpoint).
  Duration send = std::chrono::minutes(5);
  ProxyProtocol proxy_protocol = ProxyProtocol::kNone;  // kNone = the pool's setting
  bool splice = true;  // zero-copy splice() through a pipe; false = read/write
};

// One certificate chain and its private key (PEM files). SNI picks among a listener's
// certificates by the names in the certificate (SAN DNS entries, else the CN).
struct TlsCertificate {
  std::string cert_file;
  std::string key_file;
  bool is_default = false;  // served when SNI matches nothing (else the first one)
  SourceLocation where;
};

enum class TlsVersion { k12, k13 };

// TLS termination on an http listener. Certificates are read when a snapshot is built and
// again on SIGHUP or when a file's mtime changes.
struct ListenerTls {
  bool enabled = false;
  std::vector<TlsCertificate> certificates;
  TlsVersion min_version = TlsVersion::k12;
  std::string ciphers;  // TLS 1.2 cipher list (OpenSSL syntax); "" = modern AEAD-only default
  std::vector<std::string> alpn{"h2", "http/1.1"};  // server preference order
  bool session_tickets = true;
  Duration ticket_rotation = 1h;  // a new encryption key this often; 2 old ones still decrypt
};

// HTTP/2 from clients on an http listener (ALPN h2 over TLS, prior knowledge on cleartext).
struct Http2Settings {
  bool enabled = true;
  uint32_t max_concurrent_streams = 100;
  uint32_t initial_window_bytes = 64 * 1024 - 1;  // per stream, request bodies
  // Rapid-reset defence (CVE-2023-44487): RST_STREAMs a client may send, as a token bucket
  // of `reset_burst` refilled at `reset_rate` per second; past it: GOAWAY ENHANCE_YOUR_CALM.
  uint32_t reset_burst = 200;
  uint32_t reset_rate = 50;
  uint32_t max_continuations = 8;  // CONTINUATION frames after one HEADERS (flood defence)
};
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
  ClientLimits client_limits;  // also under `limits` in YAML
  AccessList access;           // `access: { allow: [CIDR...], deny: [CIDR...] }` (every protocol)
  HttpTimeouts timeouts;
  ListenerTls tls;
  Http2Settings http2;
  bool xff = true;                                 // append X-Forwarded-For / -Proto
  std::string request_id_header = "x-request-id";  // "" disables
  TcpSettings tcp;                                 // tcp only
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

// The protocol spoken to a pool's members. kH2: HTTP/2 (ALPN "h2" with upstream.tls, prior
// knowledge without), a few multiplexed connections per worker and member.
enum class UpstreamProtocol { kHttp1, kH2 };

struct UpstreamSettings {
  UpstreamProtocol protocol = UpstreamProtocol::kHttp1;
  // HTTP/2 only: streams in flight on one connection (also bounded by the member's
  // SETTINGS_MAX_CONCURRENT_STREAMS), and connections per worker and member; past both,
  // requests wait for a stream (under the listener's request timeout).
  uint32_t h2_max_streams_per_connection = 100;
  uint32_t h2_max_connections_per_member = 4;
  Duration connect_timeout = 5s;
  Duration idle_timeout = 60s;        // an idle pooled connection is closed after this
  uint32_t max_idle_per_member = 64;  // per worker
  uint32_t retries = 1;               // extra attempts for idempotent requests
  // TLS to the members (`upstream: { tls: {...} }`).
  bool tls = false;
  bool tls_verify = true;       // check the member's certificate chain (and name, if given)
  std::string tls_ca_file;      // PEM CA bundle; "" = the system's default paths
  std::string tls_server_name;  // SNI and the name to verify; "" = no SNI, chain only
};

// Autoscale (issue 4): Azure Monitor autoscale semantics plus HPA-style target tracking.
// control/autoscale_policy.h evaluates it; control/README.md "Autoscale" has the exact rules.
enum class MetricStatistic { kAvg, kMin, kMax, kSum, kCount };  // across members, per second
enum class TimeAggregation { kAvg, kMin, kMax, kTotal, kCount, kLast };  // over the window
enum class CompareOp { kGt, kGe, kLt, kLe, kEq, kNe };
enum class ScaleDirection { kNone, kOut, kIn };
enum class ScaleInPolicy { kDefault, kNewest, kOldest };
enum class RepairAction { kReplace, kRestart, kReimage };
enum class ScalerFormat { kScalegate, kAzure };

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
  // Azure dividePerInstance: the metric is divided by the current capacity before comparing
  // (queue length per instance).
  bool divide_per_instance = false;
  ScaleAction action;
  // kOut for increase/increase_percent, kIn for decrease/decrease_percent. `set` rules take it
  // from the `direction` key, or from op (">"/">=" = out, "<"/"<=" = in).
  ScaleDirection direction = ScaleDirection::kOut;
  Duration cooldown = 5min;
  SourceLocation where;
};

// HPA-style target tracking: desired = ceil(ready × metric / value).
struct TargetTracking {
  std::string metric;
  double value = 0;                          // > 0: the per-member level to hold the metric at
  double tolerance = 0.1;                    // |1 - metric/value| <= tolerance: no change
  Duration scale_down_stabilization = 5min;  // scale in to the highest recommendation in it
  MetricStatistic statistic = MetricStatistic::kAvg;
  Duration window = 1min;  // the metric is averaged over this window
};

// When a scheduled profile applies. kFixed: [start, end) in absolute time. kWeekly: on each
// listed weekday (of the local time given by utc_offset) from start_minute to end_minute;
// end_minute <= start_minute means the window runs past midnight into the next day.
struct ProfileSchedule {
  enum class Kind { kFixed, kWeekly };
  Kind kind = Kind::kWeekly;
  WallTime start{};                // kFixed
  WallTime end{};                  // kFixed
  uint8_t days = 0;                // kWeekly: bit i = weekday i, 0 = Sunday .. 6 = Saturday
  uint32_t start_minute = 0;       // kWeekly: minutes after local midnight, 0..1439
  uint32_t end_minute = 0;         // kWeekly: 1..1440
  int32_t utc_offset_minutes = 0;  // kWeekly: "+01:00" = 60
};

// A scheduled profile: its own capacity, rules and target while its schedule applies.
struct AutoscaleProfile {
  std::string name;
  uint32_t min = 1, max = 1, default_capacity = 1;
  std::vector<ScaleRule> rules;
  std::optional<TargetTracking> target;
  ProfileSchedule schedule;
  SourceLocation where;
};

// A count or a percentage of the pool ("20%" or "3").
struct CountOrPercent {
  uint32_t value = 0;
  bool percent = false;
  // Instances out of `total`: a percentage rounds down (20% of 7 = 1).
  uint32_t of(uint32_t total) const {
    return percent ? static_cast<uint32_t>(uint64_t{total} * value / 100) : value;
  }
};

struct ScalerEndpoint {
  std::string url;
  std::string secret_file;
  ScalerFormat format = ScalerFormat::kScalegate;
  Duration timeout = 5s;       // per delivery attempt
  uint32_t max_attempts = 8;   // 1..100
  Duration max_backoff = 60s;  // cap of the exponential back-off between attempts
};

struct RepairPolicy {
  bool enabled = false;  // true when `repair` is present
  Duration grace = 10min;
  RepairAction action = RepairAction::kReplace;
  uint32_t max_percent = 5;             // of the pool in repair at once; 1 at a time below 20
  uint32_t suspend_after_failures = 3;  // consecutive failed repairs
  Duration suspend_for = 30min;
  Duration timeout = 10min;  // a repair not healthy again (or replaced) by then failed
};

struct ScaleInSettings {
  ScaleInPolicy policy = ScaleInPolicy::kDefault;
  Duration drain = 30s;
  bool prioritize_unhealthy = true;  // remove unhealthy members first (Azure preview option)
};

// Defaults of `sgctl upgrade` (Azure rollingUpgradePolicy).
struct UpgradeDefaults {
  CountOrPercent batch{20, true};
  CountOrPercent max_unhealthy{20, true};           // checked before each batch
  CountOrPercent max_unhealthy_upgraded{20, true};  // checked after each batch
  Duration pause = 10s;
  Duration health_timeout = 5min;  // a batch not healthy at the new version by then: abort
};

struct AutoscaleConfig {
  bool enabled = false;
  Duration evaluation_interval = 30s;  // 1s..1h
  // The default profile: used when no scheduled profile applies.
  uint32_t min = 1, max = 1, default_capacity = 1;
  std::vector<ScaleRule> rules;
  std::optional<TargetTracking> target;
  std::vector<AutoscaleProfile> profiles;  // scheduled; fixed beats weekly beats default
  ScalerEndpoint scaler;
  RepairPolicy repair;
  ScaleInSettings scale_in;
  std::vector<std::string> zones;  // zones the pool spans; empty = zoneless
  UpgradeDefaults upgrade;
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
  ProxyProtocol proxy_protocol = ProxyProtocol::kNone;  // sent by tcp listeners to members
  std::vector<Member> members;
  AutoscaleConfig autoscale;
  SourceLocation where;
};

// The DPDK data path (dataplane/) for l4 listeners. Read once at start: EAL, ports, lcores and
// memory cannot change without a restart (a reload that changes this section is refused).
struct DataplanePort {
  std::string device;        // vdev ("net_af_packet0,iface=veth0") or PCI address (0000:03:00.0)
  uint8_t gateway_mac[6]{};  // next hop for every packet sent (the router in front)
  SourceLocation where;
};

struct DataplaneConfig {
  bool enabled = false;               // the section is present
  std::vector<std::string> eal_args;  // extra EAL arguments (--no-huge, -m 512, ...)
  uint32_t main_lcore = 0;            // the control thread's lcore
  std::vector<uint32_t> lcores{1};    // packet lcores: one RX/TX queue pair per port each
  std::vector<DataplanePort> ports;
  std::vector<SocketAddress> local_addresses;  // IPv4; SNAT sources, answer ARP and ping
  uint32_t mbufs = 8191;                       // mempool size
  uint32_t queue_size = 1024;                  // RX/TX descriptors per queue
  uint64_t flow_table_size = 1 << 20;          // entries per lcore (nat flows use two)
  uint32_t nat_port_min = 1024;                // SNAT source ports, split evenly between lcores
  uint32_t nat_port_max = 65535;
  Duration syn_timeout = 10s;  // flow-table timeouts by TCP state
  Duration established_timeout = 300s;
  Duration closing_timeout = 10s;
  Duration udp_timeout = 30s;
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
  DataplaneConfig dataplane;
};

const char* balanceName(BalanceAlgorithm b);

}  // namespace scalegate::config
