#include "control/metrics.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config/loader.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using LabelList = std::vector<ClientMetric::Label>;

constexpr int kWorkers = 3;

constexpr const char* kConfigYaml = R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - { path_prefix: /api/, pool: api }
      - { path_prefix: /, pool: web }
  - name: internal
    listen: 127.0.0.1:8081
    routes:
      - { path_prefix: /, pool: web }
pools:
  web:
    mode: flexible  # members differ in weight
    health: { type: http, path: /health, interval: 2s, timeout: 1s, rise: 2, fall: 3 }
    members:
      - { id: vm-0, address: 127.0.0.1:9001, weight: 3 }
      - { id: vm-1, address: 127.0.0.1:9002 }
      - { id: vm-2, address: 127.0.0.1:9003 }
      - { id: vm-3, address: 127.0.0.1:9004 }
  api:
    members:
      - { id: api-0, address: 127.0.0.1:9101 }
)";

std::shared_ptr<const config::Config> loadTestConfig() {
  config::LoadResult r = config::loadConfigText(kConfigYaml, "metrics_test.yaml");
  EXPECT_TRUE(r.ok()) << r.errorText();
  return std::make_shared<const config::Config>(std::move(r.config));
}

const MetricFamily* findFamily(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const MetricFamily& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// The series of `name` whose label set is exactly `labels` (any order), or null.
const ClientMetric* findSeries(const std::vector<MetricFamily>& families, const std::string& name,
                               LabelList labels) {
  const MetricFamily* f = findFamily(families, name);
  if (f == nullptr) return nullptr;
  std::sort(labels.begin(), labels.end());
  for (const ClientMetric& m : f->metric) {
    LabelList have = m.label;
    std::sort(have.begin(), have.end());
    if (have == labels) return &m;
  }
  return nullptr;
}

double counterValue(const std::vector<MetricFamily>& families, const std::string& name,
                    const LabelList& labels) {
  const ClientMetric* m = findSeries(families, name, labels);
  EXPECT_NE(m, nullptr) << name;
  return m != nullptr ? m->counter.value : -1;
}

double gaugeValue(const std::vector<MetricFamily>& families, const std::string& name,
                  const LabelList& labels) {
  const ClientMetric* m = findSeries(families, name, labels);
  EXPECT_NE(m, nullptr) << name;
  return m != nullptr ? m->gauge.value : -1;
}

// A registry with two pools and a snapshot that names them, with non-zero counters everywhere.
struct World {
  ManualClock clock;
  std::shared_ptr<const config::Config> cfg = loadTestConfig();
  PoolRegistry registry{kWorkers, clock};
  config::Snapshot snapshot;
  l7proxy::CounterTotals totals;

  World() {
    registry.applyConfig(cfg);
    snapshot.generation = 7;
    snapshot.config = cfg;
    for (const auto& [name, pool] : cfg->pools) {
      config::PoolState ps;
      ps.pool = &pool;
      ps.panic = name == "api";
      snapshot.pools.push_back(std::move(ps));
    }
    for (size_t i = 0; i < cfg->listeners.size(); ++i) {
      snapshot.listener_stats.push_back(std::make_shared<l7proxy::ListenerStats>(kWorkers));
    }
    for (const PoolRecord& p : registry.pools()) {
      PoolRecord* pool = registry.findPool(p.name);
      if (pool->stats == nullptr) pool->stats = std::make_shared<l7proxy::PoolStats>(kWorkers);
      for (MemberRecord& m : pool->members) {
        if (m.stats == nullptr) m.stats = std::make_shared<l7proxy::MemberStats>(kWorkers);
      }
    }
    totals.upstream_cx_reused = 11;
    totals.upstream_reset_mid_response = 1;
    totals.downstream_cx_idle_timeout = 4;
    totals.downstream_cx_protocol_error = 2;
  }

  MemberRecord& member(const std::string& pool, const std::string& id) {
    MemberRecord* m = registry.findPool(pool)->find(id);
    EXPECT_NE(m, nullptr) << pool << "/" << id;
    return *m;
  }

  MetricsInput input() const {
    MetricsInput in;
    in.registry = &registry;
    in.snapshot = &snapshot;
    in.totals = &totals;
    in.start_time = WallTime{} + 1'700'000'000s + 250ms;
    in.version = "0.1.0";
    in.config_reloads_ok = 3;
    in.config_reloads_failed = 1;
    return in;
  }

  // Traffic on every listener, pool and member, spread over the workers.
  void addTraffic() {
    for (auto& block : snapshot.listener_stats) {
      for (int w = 0; w < kWorkers; ++w) {
        auto& s = block->per_worker[static_cast<size_t>(w)];
        s.cx_total.inc(10 + w);
        s.cx_active.inc(1);
        s.rq_total.inc(100);
        s.responses_by_class[2].inc(90);
        s.responses_by_class[5].inc(10);
        s.local_replies[static_cast<int>(l7proxy::LocalReply::kNoHealthyMember)].inc(3);
        s.duration.observe(700);
        s.duration.observe(120'000);
      }
    }
    for (const PoolRecord& p : registry.pools()) {
      for (int w = 0; w < kWorkers; ++w) {
        auto& s = p.stats->per_worker[static_cast<size_t>(w)];
        s.rq_total.inc(50);
        s.rq_retry.inc(2);
        s.no_healthy_member.inc(1);
        s.duration.observe(3'000);
      }
      for (const MemberRecord& m : p.members) {
        for (int w = 0; w < kWorkers; ++w) {
          auto& s = m.stats->per_worker[static_cast<size_t>(w)];
          s.rq_total.inc(20);
          s.rq_active.inc(1);
          s.responses_by_class[2].inc(18);
          s.responses_by_class[5].inc(2);
          s.cx_total.inc(4);
          s.cx_active.inc(2);
          s.cx_connect_fail.inc(1);
          s.failures.inc(3);
          s.bytes_in.inc(1000);
          s.bytes_out.inc(5000);
        }
      }
    }
  }
};

// ---- pure pieces ----------------------------------------------------------------------------

TEST(DurationHistogramSum, MergesWorkersIntoCumulativeBuckets) {
  l7proxy::DurationHistogram w0, w1;
  w0.observe(100);         // <= 0.0005
  w0.observe(500);         // <= 0.0005 (bounds are inclusive)
  w1.observe(501);         // <= 0.001
  w1.observe(30'000);      // <= 0.05
  w1.observe(20'000'000);  // +Inf only
  DurationHistogramSum sum;
  sum.add(w0);
  sum.add(w1);
  const ClientMetric::Histogram h = sum.toPrometheus();

  ASSERT_EQ(h.bucket.size(), l7proxy::kDurationBuckets.size());
  const uint64_t want[] = {2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4};
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    EXPECT_DOUBLE_EQ(h.bucket[i].upper_bound, l7proxy::kDurationBuckets[i]) << i;
    EXPECT_EQ(h.bucket[i].cumulative_count, want[i]) << "bucket " << i;
  }
  EXPECT_EQ(h.sample_count, 5u);
  EXPECT_DOUBLE_EQ(h.sample_sum, (100 + 500 + 501 + 30'000 + 20'000'000) / 1e6);
}

TEST(DurationHistogramSum, EmptyIsAllZero) {
  const ClientMetric::Histogram h = DurationHistogramSum{}.toPrometheus();
  for (const auto& b : h.bucket) EXPECT_EQ(b.cumulative_count, 0u);
  EXPECT_EQ(h.sample_count, 0u);
  EXPECT_EQ(h.sample_sum, 0.0);
}

TEST(DurationHistogramSum, CountIsTheSumOfBucketsNotTheSeparateCounter) {
  // A scrape may read the buckets and `count` at different moments; le="+Inf" must still
  // equal _count, so the count is derived from the buckets.
  l7proxy::DurationHistogram w;
  w.buckets[3].inc(2);
  w.count.inc(5);
  DurationHistogramSum sum;
  sum.add(w);
  EXPECT_EQ(sum.toPrometheus().sample_count, 2u);
}

TEST(LoadMetricName, SanitizesToLowercaseAlnumAndUnderscore) {
  EXPECT_EQ(loadMetricName("cpu"), "cpu");
  EXPECT_EQ(loadMetricName("CPU"), "cpu");
  EXPECT_EQ(loadMetricName("mem.used-Pct"), "mem_used_pct");
  EXPECT_EQ(loadMetricName("queue_depth2"), "queue_depth2");
  EXPECT_EQ(loadMetricName("a b\"c\\d\ne"), "a_b_c_d_e");
  EXPECT_EQ(loadMetricName("gr\xc3\xb6\xc3\x9f"), "gr____");
  EXPECT_EQ(loadMetricName(""), "");
  EXPECT_EQ(loadMetricName(std::string(200, 'x')), std::string(kMaxLoadNameLength, 'x'));
}

// ---- process and listener metrics (no registry) ---------------------------------------------

TEST(Metrics, ProcessFamiliesWithNothingElse) {
  MetricsInput in;
  in.version = "1.2.3";
  in.start_time = WallTime{} + 1'700'000'000s + 500ms;
  in.config_reloads_ok = 4;
  in.config_reloads_failed = 2;
  const auto families = collectMetrics(in);

  EXPECT_EQ(gaugeValue(families, "scalegate_build_info", {{"version", "1.2.3"}}), 1);
  EXPECT_DOUBLE_EQ(gaugeValue(families, "scalegate_process_start_time_seconds", {}),
                   1'700'000'000.5);
  EXPECT_EQ(counterValue(families, "scalegate_config_reloads_total", {{"result", "ok"}}), 4);
  EXPECT_EQ(counterValue(families, "scalegate_config_reloads_total", {{"result", "failed"}}), 2);
  // No totals, snapshot or registry: their families are left out rather than empty.
  EXPECT_EQ(findFamily(families, "scalegate_http_requests_total"), nullptr);
  EXPECT_EQ(findFamily(families, "scalegate_pool_members"), nullptr);
  EXPECT_EQ(findFamily(families, "scalegate_upstream_connections_reused_total"), nullptr);
  for (const MetricFamily& f : families) EXPECT_FALSE(f.metric.empty()) << f.name;
}

TEST(Metrics, ListenerCountersAreSummedOverWorkers) {
  auto cfg = loadTestConfig();
  config::Snapshot snap;
  snap.config = cfg;
  auto web = std::make_shared<l7proxy::ListenerStats>(kWorkers);
  snap.listener_stats = {web, nullptr};  // a listener without stats is skipped
  for (int w = 0; w < kWorkers; ++w) {
    auto& s = web->per_worker[static_cast<size_t>(w)];
    s.cx_total.inc(w + 1);  // 1 + 2 + 3
    s.cx_active.inc(w);     // 0 + 1 + 2
    s.rq_total.inc(10);
    s.rq_active.inc(1);
    s.responses_by_class[2].inc(7);
    s.responses_by_class[4].inc(2);
    s.responses_by_class[5].inc(1);
    s.local_replies[static_cast<int>(l7proxy::LocalReply::kNotFound)].inc(2);
    s.local_replies[static_cast<int>(l7proxy::LocalReply::kBadGateway)].inc(w);
  }
  web->per_worker[0].duration.observe(400);      // le 0.0005
  web->per_worker[1].duration.observe(4'000);    // le 0.005
  web->per_worker[2].duration.observe(4'000);    // le 0.005
  web->per_worker[2].duration.observe(900'000);  // le 1

  MetricsInput in;
  in.snapshot = &snap;
  const auto families = collectMetrics(in);
  const LabelList l = {{"listener", "web"}};

  EXPECT_EQ(counterValue(families, "scalegate_downstream_connections_total", l), 6);
  EXPECT_EQ(gaugeValue(families, "scalegate_downstream_connections_active", l), 3);
  EXPECT_EQ(counterValue(families, "scalegate_http_requests_total", l), 30);
  EXPECT_EQ(gaugeValue(families, "scalegate_http_requests_active", l), 3);
  EXPECT_EQ(counterValue(families, "scalegate_http_responses_total",
                         {{"listener", "web"}, {"code_class", "1xx"}}),
            0);
  EXPECT_EQ(counterValue(families, "scalegate_http_responses_total",
                         {{"listener", "web"}, {"code_class", "2xx"}}),
            21);
  EXPECT_EQ(counterValue(families, "scalegate_http_responses_total",
                         {{"listener", "web"}, {"code_class", "4xx"}}),
            6);
  EXPECT_EQ(counterValue(families, "scalegate_http_responses_total",
                         {{"listener", "web"}, {"code_class", "5xx"}}),
            3);
  EXPECT_EQ(findFamily(families, "scalegate_http_responses_total")->metric.size(), 5u);
  EXPECT_EQ(counterValue(families, "scalegate_http_local_replies_total",
                         {{"listener", "web"}, {"reason", "no_route"}}),
            6);
  EXPECT_EQ(counterValue(families, "scalegate_http_local_replies_total",
                         {{"listener", "web"}, {"reason", "upstream_failed"}}),
            3);
  EXPECT_EQ(findFamily(families, "scalegate_http_local_replies_total")->metric.size(),
            static_cast<size_t>(l7proxy::LocalReply::kCount));

  const ClientMetric* d = findSeries(families, "scalegate_http_request_duration_seconds", l);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(findFamily(families, "scalegate_http_request_duration_seconds")->type,
            MetricType::Histogram);
  EXPECT_EQ(d->histogram.sample_count, 4u);
  EXPECT_DOUBLE_EQ(d->histogram.sample_sum, 0.9084);
  EXPECT_EQ(d->histogram.bucket[0].cumulative_count, 1u);   // 0.0005
  EXPECT_EQ(d->histogram.bucket[2].cumulative_count, 1u);   // 0.0025
  EXPECT_EQ(d->histogram.bucket[3].cumulative_count, 3u);   // 0.005
  EXPECT_EQ(d->histogram.bucket[9].cumulative_count, 3u);   // 0.5
  EXPECT_EQ(d->histogram.bucket[10].cumulative_count, 4u);  // 1

  // The listener without a stats block has no series.
  EXPECT_EQ(findSeries(families, "scalegate_http_requests_total", {{"listener", "internal"}}),
            nullptr);

  const std::string text = renderMetrics(in);
  EXPECT_NE(text.find("scalegate_http_request_duration_seconds_bucket{listener=\"web\",le=\"+Inf\"}"
                      " 4\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("scalegate_http_request_duration_seconds_count{listener=\"web\"} 4\n"),
            std::string::npos);
  EXPECT_NE(text.find("scalegate_http_request_duration_seconds_sum{listener=\"web\"} 0.9084\n"),
            std::string::npos);
}

// ---- pools and members ----------------------------------------------------------------------

TEST(Metrics, PoolAndMemberValues) {
  World world;
  world.addTraffic();

  MemberRecord& vm0 = world.member("web", "vm-0");
  vm0.health = HealthState::kHealthy;
  vm0.probes_ok = 12;
  vm0.probes_failed = 1;
  ProbeOutcome probe;
  probe.ok = true;
  probe.duration = 1500us;
  vm0.last_probe = probe;
  vm0.load = {{"cpu", 0.75}, {"Mem.Used", 512}, {"bad", std::nan("")}};

  MemberRecord& vm1 = world.member("web", "vm-1");
  vm1.health = HealthState::kUnhealthy;
  vm1.probes_failed = 4;

  MemberRecord& vm2 = world.member("web", "vm-2");
  vm2.health = HealthState::kHealthy;
  vm2.drain = DrainState::kDraining;

  MemberRecord& vm3 = world.member("web", "vm-3");
  vm3.health = HealthState::kHealthy;
  vm3.ejected = true;
  vm3.ejections = 2;
  world.registry.findPool("web")->ejections_total = 5;

  const auto families = collectMetrics(world.input());
  const LabelList web = {{"pool", "web"}};
  const LabelList m0 = {{"pool", "web"}, {"member", "vm-0"}};

  // Process-wide totals.
  EXPECT_EQ(counterValue(families, "scalegate_upstream_connections_reused_total", {}), 11);
  EXPECT_EQ(counterValue(families, "scalegate_upstream_resets_mid_response_total", {}), 1);
  EXPECT_EQ(counterValue(families, "scalegate_downstream_idle_timeouts_total", {}), 4);
  EXPECT_EQ(counterValue(families, "scalegate_downstream_protocol_errors_total", {}), 2);

  // Pool counters: 3 workers each.
  EXPECT_EQ(counterValue(families, "scalegate_pool_requests_total", web), 150);
  EXPECT_EQ(counterValue(families, "scalegate_pool_retries_total", web), 6);
  EXPECT_EQ(counterValue(families, "scalegate_pool_no_healthy_member_total", web), 3);
  EXPECT_EQ(counterValue(families, "scalegate_pool_outlier_ejections_total", web), 5);
  const ClientMetric* pd = findSeries(families, "scalegate_pool_request_duration_seconds", web);
  ASSERT_NE(pd, nullptr);
  EXPECT_EQ(pd->histogram.sample_count, 3u);
  EXPECT_DOUBLE_EQ(pd->histogram.sample_sum, 0.009);

  // Each member in exactly one state.
  auto members = [&](const std::string& pool, const std::string& state) {
    return gaugeValue(families, "scalegate_pool_members", {{"pool", pool}, {"state", state}});
  };
  EXPECT_EQ(members("web", "healthy"), 1);
  EXPECT_EQ(members("web", "unhealthy"), 1);
  EXPECT_EQ(members("web", "draining"), 1);
  EXPECT_EQ(members("web", "ejected"), 1);
  EXPECT_EQ(members("api", "healthy"), 1);  // no health checks: always healthy
  EXPECT_EQ(members("api", "unhealthy"), 0);

  EXPECT_EQ(gaugeValue(families, "scalegate_pool_panic", web), 0);
  EXPECT_EQ(gaugeValue(families, "scalegate_pool_panic", {{"pool", "api"}}), 1);
  EXPECT_EQ(gaugeValue(families, "scalegate_pool_refusing", web), 0);

  // Member counters summed over the workers.
  EXPECT_EQ(counterValue(families, "scalegate_member_requests_total", m0), 60);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_requests_active", m0), 3);
  EXPECT_EQ(counterValue(families, "scalegate_member_responses_total",
                         {{"pool", "web"}, {"member", "vm-0"}, {"code_class", "2xx"}}),
            54);
  EXPECT_EQ(counterValue(families, "scalegate_member_responses_total",
                         {{"pool", "web"}, {"member", "vm-0"}, {"code_class", "5xx"}}),
            6);
  EXPECT_EQ(counterValue(families, "scalegate_member_connections_total", m0), 12);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_connections_active", m0), 6);
  EXPECT_EQ(counterValue(families, "scalegate_member_connect_failures_total", m0), 3);
  EXPECT_EQ(counterValue(families, "scalegate_member_request_failures_total", m0), 9);
  EXPECT_EQ(counterValue(families, "scalegate_member_bytes_sent_total", m0), 3000);
  EXPECT_EQ(counterValue(families, "scalegate_member_bytes_received_total", m0), 15000);

  EXPECT_EQ(gaugeValue(families, "scalegate_member_weight", m0), 3);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_healthy", m0), 1);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_healthy", {{"pool", "web"}, {"member", "vm-1"}}),
            0);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_draining", m0), 0);
  EXPECT_EQ(
      gaugeValue(families, "scalegate_member_draining", {{"pool", "web"}, {"member", "vm-2"}}), 1);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_ejected", {{"pool", "web"}, {"member", "vm-3"}}),
            1);
  EXPECT_EQ(counterValue(families, "scalegate_member_outlier_ejections_total",
                         {{"pool", "web"}, {"member", "vm-3"}}),
            2);

  // Reported load: sanitized names, non-finite values left out.
  EXPECT_DOUBLE_EQ(gaugeValue(families, "scalegate_member_load",
                              {{"pool", "web"}, {"member", "vm-0"}, {"metric", "cpu"}}),
                   0.75);
  EXPECT_DOUBLE_EQ(gaugeValue(families, "scalegate_member_load",
                              {{"pool", "web"}, {"member", "vm-0"}, {"metric", "mem_used"}}),
                   512);
  EXPECT_EQ(findSeries(families, "scalegate_member_load",
                       {{"pool", "web"}, {"member", "vm-0"}, {"metric", "bad"}}),
            nullptr);

  // Health checks: only for the pool that has them.
  EXPECT_EQ(counterValue(families, "scalegate_health_checks_total",
                         {{"pool", "web"}, {"member", "vm-0"}, {"result", "ok"}}),
            12);
  EXPECT_EQ(counterValue(families, "scalegate_health_checks_total",
                         {{"pool", "web"}, {"member", "vm-1"}, {"result", "failed"}}),
            4);
  EXPECT_EQ(findSeries(families, "scalegate_health_checks_total",
                       {{"pool", "api"}, {"member", "api-0"}, {"result", "ok"}}),
            nullptr);
  EXPECT_DOUBLE_EQ(gaugeValue(families, "scalegate_health_check_duration_seconds", m0), 0.0015);
  EXPECT_EQ(findSeries(families, "scalegate_health_check_duration_seconds",
                       {{"pool", "web"}, {"member", "vm-1"}}),
            nullptr);
}

TEST(Metrics, LoadMetricsAreCappedPerMember) {
  World world;
  MemberRecord& m = world.member("web", "vm-0");
  for (int i = 0; i < 50; ++i) m.load["metric_" + std::to_string(100 + i)] = i;
  m.load["CPU"] = 1;  // sorts first; sanitizes to "cpu"
  m.load["cpu"] = 2;  // same label after sanitizing: the first one wins
  const auto families = collectMetrics(world.input());
  const MetricFamily* f = findFamily(families, "scalegate_member_load");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->metric.size(), kMaxLoadMetrics);
  EXPECT_EQ(gaugeValue(families, "scalegate_member_load",
                       {{"pool", "web"}, {"member", "vm-0"}, {"metric", "cpu"}}),
            1);
}

TEST(Metrics, OddLabelValuesAreEscaped) {
  World world;
  world.member("api", "api-0").spec.id = "odd\"id\\with\nnewline";
  const std::string text = renderMetrics(world.input());
  EXPECT_NE(
      text.find("scalegate_member_weight{pool=\"api\",member=\"odd\\\"id\\\\with\\nnewline\"} 1\n"),
      std::string::npos)
      << text;
  // No raw newline inside a label value: every line is a comment or a sample.
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(line.rfind("# ", 0) == 0 || line.rfind("scalegate_", 0) == 0) << line;
  }
}

TEST(Metrics, EveryFamilyHasHelpAndType) {
  World world;
  world.addTraffic();
  const std::string text = renderMetrics(world.input());
  for (const MetricFamily& f : collectMetrics(world.input())) {
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_NE(text.find("# HELP " + f.name + " "), std::string::npos) << f.name;
    EXPECT_NE(text.find("# TYPE " + f.name + " "), std::string::npos) << f.name;
    EXPECT_EQ(f.name.rfind("scalegate_", 0), 0u) << f.name;
    const bool total = f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total";
    EXPECT_EQ(total, f.type == MetricType::Counter) << f.name;
  }
}

// ---- promtool -------------------------------------------------------------------------------

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult runCommand(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(Metrics, PromtoolCheckMetricsFindsNothing) {
  const CommandResult which = runCommand("command -v promtool");
  ASSERT_EQ(which.exit_code, 0)
      << "promtool not found in PATH: install the Debian package `prometheus` "
         "(scripts/packages.txt, group test); this test must not be skipped";

  World world;
  world.addTraffic();
  MemberRecord& vm0 = world.member("web", "vm-0");
  vm0.health = HealthState::kHealthy;
  vm0.probes_ok = 3;
  ProbeOutcome probe;
  probe.ok = true;
  probe.duration = 2ms;
  vm0.last_probe = probe;
  vm0.load = {{"cpu", 0.5}, {"queue-depth", 7}};
  world.member("web", "vm-1").drain = DrainState::kDraining;
  world.member("web", "vm-2").ejected = true;
  world.member("api", "api-0").spec.id = "odd\"id\\x";

  const std::string text = renderMetrics(world.input());
  const std::string path =
      ::testing::TempDir() + "metrics_test_" + std::to_string(::getpid()) + ".prom";
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const CommandResult check = runCommand("promtool check metrics < '" + path + "'");
  std::remove(path.c_str());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_EQ(check.output, "") << "promtool check metrics complained:\n" << check.output;
}

}  // namespace
}  // namespace scalegate::control
