#pragma once
// The Prometheus text exposition served at GET /metrics (DESIGN.md "Metrics"). Built at scrape
// time on the control thread: the per-worker counters of l7proxy/stats.h are summed over the
// workers, put into prometheus-cpp's data model (MetricFamily / ClientMetric) and written by
// prometheus::TextSerializer. Nothing here touches the hot path: workers only increment their
// own relaxed counters; prometheus-cpp's Counter/Histogram objects (whose Observe locks a
// mutex) are never used.
//
//   workers ─► ListenerStats / PoolStats / MemberStats (per-worker slots)
//                            │  sum over workers at scrape time
//   PoolRegistry (health, drain, ejection, load, probes) ─┤
//   Snapshot (listeners, pool panic/refuse) ──────────────┼─► collectMetrics ─► TextSerializer
//   Proxy::totals(), start time, version, reloads ────────┘
//
// Families (names `scalegate_*`, base units, counters end in `_total`; label values come only
// from config names, reported-load names are capped and sanitized, so cardinality is bounded):
//   process  build_info{version} 1, process_start_time_seconds,
//            config_reloads_total{result="ok|failed"},
//            upstream_connections_reused_total, upstream_resets_mid_response_total,
//            downstream_idle_timeouts_total, downstream_protocol_errors_total
//   listener downstream_connections_total / _active, http_requests_total / _active,
//            http_responses_total{code_class="1xx".."5xx"} (local replies included),
//            http_local_replies_total{reason}, http_request_duration_seconds (histogram);
//            tcp listeners instead: downstream_bytes_received_total / _sent_total
//   pool     pool_requests_total, pool_retries_total, pool_no_healthy_member_total,
//            pool_request_duration_seconds (histogram), pool_outlier_ejections_total,
//            pool_members{state="healthy|unhealthy|draining|ejected"} (each member in exactly
//            one state: ejected, else draining (or drained), else healthy/unhealthy by probes),
//            pool_panic, pool_refusing (0/1; only when the snapshot has the pool);
//            pools of tcp listeners also: pool_connections_total / _active,
//            pool_connect_failures_total, pool_bytes_sent_total / _received_total
//            (a tcp connection also counts as one member "request": member_requests_*)
//   member   {pool,member}: member_requests_total (each attempt), member_requests_active,
//            member_responses_total{code_class}, member_connections_total / _active,
//            member_connect_failures_total, member_request_failures_total (5xx, connect
//            failures, resets before a response), member_bytes_sent_total (request bytes to
//            the member), member_bytes_received_total (response bytes from it),
//            member_healthy (probes say healthy; unknown = configured initial state),
//            member_weight, member_draining (draining or drained), member_ejected,
//            member_outlier_ejections_total, member_load{metric} (latest reported load),
//            health_checks_total{result="ok|failed"} (pools with health checks),
//            health_check_duration_seconds (gauge: the last probe's duration; only once a
//            probe has run — no histogram is kept for probes)
// Families with no series are left out.

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include "common/clock.h"
#include "config/snapshot.h"
#include "control/pool_registry.h"
#include "l7proxy/proxy.h"
#include "l7proxy/stats.h"

namespace scalegate::control {

class DataplaneLink;

// Content-Type of renderMetrics() output (Prometheus text format 0.0.4).
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Reported load: at most this many `metric` series per member (the first ones by reported
// name), each name at most kMaxLoadNameLength characters after sanitizing.
inline constexpr size_t kMaxLoadMetrics = 32;
inline constexpr size_t kMaxLoadNameLength = 64;

// What a scrape reads. Every pointer may be null (that part is left out); pointees must stay
// unchanged for the duration of the call (control thread owns them all).
struct MetricsInput {
  const PoolRegistry* registry = nullptr;          // pools, members and their stats blocks
  const config::Snapshot* snapshot = nullptr;      // listeners (+stats), pool panic/refuse
  const l7proxy::CounterTotals* totals = nullptr;  // Proxy::totals(): process-wide counters
  WallTime start_time{};                           // when the process started
  std::string version;                             // build version (SG_VERSION)
  uint64_t config_reloads_ok = 0;                  // reloads that took effect
  uint64_t config_reloads_failed = 0;              // reloads rejected (old config kept)
  // Families of other components (autoscale, webhooks), appended after the ones above.
  std::function<void(std::vector<prometheus::MetricFamily>&)> extra;
  const DataplaneLink* dataplane = nullptr;        // DPDK L4 path counters (dataplane_link.h)
};

// Building blocks for those families: an empty family, and one sample added to it.
prometheus::MetricFamily metricFamily(const char* name, const char* help,
                                      prometheus::MetricType type);
void addCounterSample(prometheus::MetricFamily& f,
                      std::vector<prometheus::ClientMetric::Label> labels, uint64_t value);
void addGaugeSample(prometheus::MetricFamily& f,
                    std::vector<prometheus::ClientMetric::Label> labels, double value);

// The metric families for one scrape, in exposition order. Control thread.
std::vector<prometheus::MetricFamily> collectMetrics(const MetricsInput& in);

// collectMetrics() written in the Prometheus text format. Control thread.
std::string renderMetrics(const MetricsInput& in);

// Per-worker DurationHistograms added up. Buckets are kept per bucket (as the workers count
// them) and made cumulative on output; the count is the sum of the buckets rather than the
// separately read `count` counter, so le="+Inf" always equals _count even when a worker
// observes mid-scrape.
struct DurationHistogramSum {
  std::array<uint64_t, l7proxy::kDurationBuckets.size() + 1> buckets{};  // last = +Inf
  uint64_t sum_us = 0;

  void add(const l7proxy::DurationHistogram& h);
  // Cumulative buckets at kDurationBuckets (+Inf added by the serializer), sum in seconds.
  prometheus::ClientMetric::Histogram toPrometheus() const;
};

// A reported load name as a `metric` label value: ASCII letters lowercased, digits and '_'
// kept, anything else becomes '_', cut to kMaxLoadNameLength. "" when nothing is left.
std::string loadMetricName(std::string_view reported);

}  // namespace scalegate::control
