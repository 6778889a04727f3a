#include "control/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <sstream>
#include <utility>

#include <prometheus/metric_type.h>
#include <prometheus/text_serializer.h>

#include "control/dataplane_link.h"

namespace scalegate::control {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr const char* kCodeClasses[6] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void addCounter(MetricFamily& f, Labels labels, uint64_t value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(value);
  f.metric.push_back(std::move(m));
}

void addGauge(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void addHistogram(MetricFamily& f, Labels labels, const DurationHistogramSum& h) {
  ClientMetric m;
  m.label = std::move(labels);
  m.histogram = h.toPrometheus();
  f.metric.push_back(std::move(m));
}

// An in-flight gauge summed over workers. Each worker's own value never goes below zero, but
// the sum is taken modulo 2^64; read it as signed so a torn read can't show 1.8e19.
double activeGauge(uint64_t wrapped_sum) {
  const auto v = static_cast<int64_t>(wrapped_sum);
  return v < 0 ? 0.0 : static_cast<double>(v);
}

template <typename Block, typename F>
DurationHistogramSum sumHistograms(const Block& block, F field) {
  DurationHistogramSum s;
  for (const auto& slot : block.per_worker) s.add(field(slot));
  return s;
}

Labels with(const Labels& base, const char* name, std::string value) {
  Labels l = base;
  l.push_back({name, std::move(value)});
  return l;
}

void collectProcess(const MetricsInput& in, std::vector<MetricFamily>& out) {
  auto build = family("scalegate_build_info", "Build information; the value is always 1.",
                      MetricType::Gauge);
  addGauge(build, {{"version", in.version}}, 1);
  out.push_back(std::move(build));

  auto start =
      family("scalegate_process_start_time_seconds",
             "Start time of the process since the Unix epoch, in seconds.", MetricType::Gauge);
  addGauge(start, {}, std::chrono::duration<double>(in.start_time.time_since_epoch()).count());
  out.push_back(std::move(start));

  auto reloads = family("scalegate_config_reloads_total",
                        "Config reloads by result (failed: the running config was kept).",
                        MetricType::Counter);
  addCounter(reloads, {{"result", "ok"}}, in.config_reloads_ok);
  addCounter(reloads, {{"result", "failed"}}, in.config_reloads_failed);
  out.push_back(std::move(reloads));

  if (in.totals == nullptr) return;
  const l7proxy::CounterTotals& t = *in.totals;
  // Only the process-wide counters that have no per-listener/pool/member breakdown below.
  auto reused =
      family("scalegate_upstream_connections_reused_total",
             "Upstream requests sent on a pooled keep-alive connection.", MetricType::Counter);
  addCounter(reused, {}, t.upstream_cx_reused);
  out.push_back(std::move(reused));
  auto resets = family("scalegate_upstream_resets_mid_response_total",
                       "Upstream connections closed after part of the response was sent.",
                       MetricType::Counter);
  addCounter(resets, {}, t.upstream_reset_mid_response);
  out.push_back(std::move(resets));
  auto idle = family("scalegate_downstream_idle_timeouts_total",
                     "Client connections closed for being idle too long.", MetricType::Counter);
  addCounter(idle, {}, t.downstream_cx_idle_timeout);
  out.push_back(std::move(idle));
  auto proto = family("scalegate_downstream_protocol_errors_total",
                      "Client connections closed on an HTTP protocol error.", MetricType::Counter);
  addCounter(proto, {}, t.downstream_cx_protocol_error);
  out.push_back(std::move(proto));
}

void collectListeners(const MetricsInput& in, std::vector<MetricFamily>& out) {
  auto cx_total = family("scalegate_downstream_connections_total", "Client connections accepted.",
                         MetricType::Counter);
  auto cx_active = family("scalegate_downstream_connections_active", "Client connections open now.",
                          MetricType::Gauge);
  auto rq_total = family("scalegate_http_requests_total", "HTTP requests received from clients.",
                         MetricType::Counter);
  auto rq_active =
      family("scalegate_http_requests_active", "HTTP requests in progress now.", MetricType::Gauge);
  auto responses = family("scalegate_http_responses_total",
                          "HTTP responses sent to clients by status class (local replies "
                          "included).",
                          MetricType::Counter);
  auto local = family("scalegate_http_local_replies_total",
                      "Responses the proxy generated itself, by reason.", MetricType::Counter);
  auto duration = family("scalegate_http_request_duration_seconds",
                         "Time from the request head to the end of the response, in seconds.",
                         MetricType::Histogram);
  auto bytes_in = family("scalegate_downstream_bytes_received_total",
                         "Bytes received from clients (tcp listeners).", MetricType::Counter);
  auto bytes_out = family("scalegate_downstream_bytes_sent_total",
                          "Bytes sent to clients (tcp listeners).", MetricType::Counter);
  auto tls_hs =
      family("scalegate_tls_handshakes_total",
             "TLS handshakes completed, by whether a session was resumed.", MetricType::Counter);
  auto tls_fail = family("scalegate_tls_handshake_failures_total",
                         "TLS handshakes that failed or were abandoned.", MetricType::Counter);
  auto h2_cx = family("scalegate_http2_connections_total", "Client connections that spoke HTTP/2.",
                      MetricType::Counter);
  auto h2_streams = family("scalegate_http2_streams_total", "HTTP/2 request streams opened.",
                           MetricType::Counter);
  auto h2_resets = family("scalegate_http2_resets_received_total",
                          "RST_STREAM frames received from clients.", MetricType::Counter);
  auto h2_goaway =
      family("scalegate_http2_goaways_sent_total",
             "GOAWAY frames sent (drain, idle, errors and flood defences).", MetricType::Counter);
  auto h2_errors = family("scalegate_http2_protocol_errors_total",
                          "HTTP/2 sessions or streams ended for a protocol violation or a flood.",
                          MetricType::Counter);

  auto limited = family("scalegate_listener_limited_total",
                        "Connections or requests refused or ended by a listener's abuse limits, "
                        "by reason.",
                        MetricType::Counter);
  auto denied = family("scalegate_access_denied_total",
                       "Client connections closed at accept by the listener's access list.",
                       MetricType::Counter);

  const config::Snapshot* snap = in.snapshot;
  if (snap != nullptr && snap->config != nullptr) {
    const auto& listeners = snap->config->listeners;
    for (size_t i = 0; i < listeners.size() && i < snap->listener_stats.size(); ++i) {
      const l7proxy::ListenerStats* st = snap->listener_stats[i].get();
      if (st == nullptr) continue;  // no L7 statistics (e.g. an l4 listener)
      const Labels l = {{"listener", listeners[i].name}};
      using S = l7proxy::ListenerWorkerStats;
      addCounter(cx_total, l, st->sum([](const S& s) -> auto& { return s.cx_total; }));
      addGauge(cx_active, l, activeGauge(st->sum([](const S& s) -> auto& { return s.cx_active; })));
      if (listeners[i].protocol == config::ListenerProtocol::kL4) continue;  // dataplane_link.cc
      addCounter(denied, l, st->sum([](const S& s) -> auto& { return s.access_denied; }));
      const bool tcp = listeners[i].protocol == config::ListenerProtocol::kTcp;
      for (int r = 0; r < static_cast<int>(l7proxy::LimitReason::kCount); ++r) {
        auto reason = static_cast<l7proxy::LimitReason>(r);
        if (tcp && (reason == l7proxy::LimitReason::kRequestRate ||
                    reason == l7proxy::LimitReason::kRequestHeaderTimeout)) {
          continue;  // http only
        }
        addCounter(limited, with(l, "reason", l7proxy::limitReasonName(reason)),
                   st->sum([r](const S& s) -> auto& { return s.limited[r]; }));
      }
      if (listeners[i].protocol == config::ListenerProtocol::kTcp) {  // no HTTP families
        addCounter(bytes_in, l, st->sum([](const S& s) -> auto& { return s.bytes_in; }));
        addCounter(bytes_out, l, st->sum([](const S& s) -> auto& { return s.bytes_out; }));
        continue;
      }
      addCounter(rq_total, l, st->sum([](const S& s) -> auto& { return s.rq_total; }));
      addGauge(rq_active, l, activeGauge(st->sum([](const S& s) -> auto& { return s.rq_active; })));
      for (int c = 1; c <= 5; ++c) {
        addCounter(responses, with(l, "code_class", kCodeClasses[c]),
                   st->sum([c](const S& s) -> auto& { return s.responses_by_class[c]; }));
      }
      for (int r = 0; r < static_cast<int>(l7proxy::LocalReply::kCount); ++r) {
        addCounter(local,
                   with(l, "reason", l7proxy::localReplyName(static_cast<l7proxy::LocalReply>(r))),
                   st->sum([r](const S& s) -> auto& { return s.local_replies[r]; }));
      }
      addHistogram(duration, l,
                   sumHistograms(
                       *st, [](const S& s) -> auto& { return s.duration; }));
      if (listeners[i].tls.enabled) {
        uint64_t all = st->sum([](const S& s) -> auto& { return s.tls_handshakes; });
        uint64_t resumed = st->sum([](const S& s) -> auto& { return s.tls_resumed; });
        addCounter(tls_hs, with(l, "resumed", "false"), all - resumed);
        addCounter(tls_hs, with(l, "resumed", "true"), resumed);
        addCounter(tls_fail, l,
                   st->sum([](const S& s) -> auto& { return s.tls_handshake_failures; }));
      }
      if (listeners[i].http2.enabled) {
        addCounter(h2_cx, l, st->sum([](const S& s) -> auto& { return s.h2_connections; }));
        addCounter(h2_streams, l, st->sum([](const S& s) -> auto& { return s.h2_streams; }));
        addCounter(h2_resets, l, st->sum([](const S& s) -> auto& { return s.h2_resets_received; }));
        addCounter(h2_goaway, l, st->sum([](const S& s) -> auto& { return s.h2_goaways_sent; }));
        addCounter(h2_errors, l, st->sum([](const S& s) -> auto& { return s.h2_protocol_errors; }));
      }
    }
  }
  for (auto* f : {&cx_total, &cx_active, &rq_total, &rq_active, &responses, &local, &duration,
                  &bytes_in, &bytes_out, &tls_hs, &tls_fail, &h2_cx, &h2_streams, &h2_resets,
                  &h2_goaway, &h2_errors, &limited, &denied}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
}

// Member state for scalegate_pool_members: exactly one per member.
const char* memberStateName(const MemberRecord& m, const config::HealthCheck& hc) {
  if (m.ejected) return "ejected";
  if (m.drain != DrainState::kNone) return "draining";
  return m.probeHealthy(hc) ? "healthy" : "unhealthy";
}

void collectPools(const MetricsInput& in, std::vector<MetricFamily>& out) {
  auto rq_total =
      family("scalegate_pool_requests_total",
             "Requests routed to the pool (one per client request).", MetricType::Counter);
  auto retries = family("scalegate_pool_retries_total", "Requests retried on another member.",
                        MetricType::Counter);
  auto no_healthy =
      family("scalegate_pool_no_healthy_member_total",
             "Requests answered 503 because no member was eligible.", MetricType::Counter);
  auto duration = family("scalegate_pool_request_duration_seconds",
                         "Time from routing to the pool to the end of the response, in seconds.",
                         MetricType::Histogram);
  auto p_cx_total =
      family("scalegate_pool_connections_total",
             "Client connections of tcp listeners routed to the pool.", MetricType::Counter);
  auto p_cx_active =
      family("scalegate_pool_connections_active",
             "Connections of tcp listeners to the pool open now.", MetricType::Gauge);
  auto p_connect_fail =
      family("scalegate_pool_connect_failures_total",
             "Connection attempts to the pool's members that failed (tcp listeners).",
             MetricType::Counter);
  auto p_bytes_sent =
      family("scalegate_pool_bytes_sent_total", "Bytes sent to the pool's members (tcp listeners).",
             MetricType::Counter);
  auto p_bytes_received =
      family("scalegate_pool_bytes_received_total",
             "Bytes received from the pool's members (tcp listeners).", MetricType::Counter);
  auto ejections = family("scalegate_pool_outlier_ejections_total",
                          "Members ejected by outlier detection.", MetricType::Counter);
  auto members = family("scalegate_pool_members",
                        "Members by state (ejected, else draining, else healthy or unhealthy by "
                        "health checks).",
                        MetricType::Gauge);
  auto panic = family("scalegate_pool_panic",
                      "1 while too few members are healthy and health is ignored (panic).",
                      MetricType::Gauge);
  auto refusing = family("scalegate_pool_refusing",
                         "1 while too few members are healthy and requests are refused (503).",
                         MetricType::Gauge);

  auto m_rq_total = family("scalegate_member_requests_total",
                           "Requests sent to the member (each attempt).", MetricType::Counter);
  auto m_rq_active = family("scalegate_member_requests_active",
                            "Requests in flight to the member now.", MetricType::Gauge);
  auto m_responses = family("scalegate_member_responses_total",
                            "Responses from the member by status class.", MetricType::Counter);
  auto m_cx_total = family("scalegate_member_connections_total",
                           "Connections opened to the member.", MetricType::Counter);
  auto m_cx_active = family("scalegate_member_connections_active",
                            "Connections to the member open now.", MetricType::Gauge);
  auto m_connect_fail =
      family("scalegate_member_connect_failures_total",
             "Connection attempts to the member that failed.", MetricType::Counter);
  auto m_failures = family("scalegate_member_request_failures_total",
                           "Requests that failed at the member: 5xx, connect failure or reset "
                           "before a response.",
                           MetricType::Counter);
  auto m_bytes_sent = family("scalegate_member_bytes_sent_total",
                             "Request bytes sent to the member.", MetricType::Counter);
  auto m_bytes_received = family("scalegate_member_bytes_received_total",
                                 "Response bytes received from the member.", MetricType::Counter);
  auto m_healthy = family("scalegate_member_healthy",
                          "1 if health checks say the member is healthy (before any result: "
                          "the configured initial state).",
                          MetricType::Gauge);
  auto m_weight = family("scalegate_member_weight", "Effective balancing weight of the member.",
                         MetricType::Gauge);
  auto m_draining =
      family("scalegate_member_draining",
             "1 while the member is draining or drained (no new requests).", MetricType::Gauge);
  auto m_ejected = family("scalegate_member_ejected",
                          "1 while the member is ejected by outlier detection.", MetricType::Gauge);
  auto m_ejections =
      family("scalegate_member_outlier_ejections_total",
             "Times the member was ejected by outlier detection.", MetricType::Counter);
  auto m_load = family("scalegate_member_load",
                       "Latest load value the member reported, by metric name.", MetricType::Gauge);
  auto hc_total = family("scalegate_health_checks_total",
                         "Health check probes of the member by result.", MetricType::Counter);
  auto hc_duration =
      family("scalegate_health_check_duration_seconds",
             "Duration of the member's last health check probe, in seconds.", MetricType::Gauge);

  // Pools that tcp listeners forward to get the connection-level pool families.
  std::set<std::string> tcp_pools;
  if (in.snapshot != nullptr && in.snapshot->config != nullptr) {
    for (const config::Listener& l : in.snapshot->config->listeners) {
      if (l.protocol == config::ListenerProtocol::kTcp) tcp_pools.insert(l.pool);
    }
  }
  const PoolRegistry* reg = in.registry;
  if (reg != nullptr) {
    const config::HealthCheck default_hc;
    for (const PoolRecord& pool : reg->pools()) {
      const Labels pl = {{"pool", pool.name}};
      const config::HealthCheck& hc = pool.cfg != nullptr ? pool.cfg->health : default_hc;

      if (const l7proxy::PoolStats* st = pool.stats.get()) {
        using S = l7proxy::PoolWorkerStats;
        addCounter(rq_total, pl, st->sum([](const S& s) -> auto& { return s.rq_total; }));
        addCounter(retries, pl, st->sum([](const S& s) -> auto& { return s.rq_retry; }));
        addCounter(no_healthy, pl,
                   st->sum([](const S& s) -> auto& { return s.no_healthy_member; }));
        addHistogram(duration, pl,
                     sumHistograms(
                         *st, [](const S& s) -> auto& { return s.duration; }));
        if (tcp_pools.count(pool.name) != 0) {
          addCounter(p_cx_total, pl, st->sum([](const S& s) -> auto& { return s.cx_total; }));
          addGauge(p_cx_active, pl,
                   activeGauge(st->sum([](const S& s) -> auto& { return s.cx_active; })));
          addCounter(p_connect_fail, pl,
                     st->sum([](const S& s) -> auto& { return s.cx_connect_fail; }));
          addCounter(p_bytes_sent, pl, st->sum([](const S& s) -> auto& { return s.bytes_in; }));
          addCounter(p_bytes_received, pl,
                     st->sum([](const S& s) -> auto& { return s.bytes_out; }));
        }
      }
      addCounter(ejections, pl, pool.ejections_total);

      uint64_t by_state[4] = {};
      constexpr const char* kStates[4] = {"healthy", "unhealthy", "draining", "ejected"};
      for (const MemberRecord& m : pool.members) {
        const std::string_view state = memberStateName(m, hc);
        for (int s = 0; s < 4; ++s) {
          if (state == kStates[s]) ++by_state[s];
        }
        const Labels ml = with(pl, "member", m.spec.id);

        if (const l7proxy::MemberStats* st = m.stats.get()) {
          using S = l7proxy::MemberWorkerStats;
          addCounter(m_rq_total, ml, st->sum([](const S& s) -> auto& { return s.rq_total; }));
          addGauge(m_rq_active, ml,
                   activeGauge(st->sum([](const S& s) -> auto& { return s.rq_active; })));
          for (int c = 1; c <= 5; ++c) {
            addCounter(m_responses, with(ml, "code_class", kCodeClasses[c]),
                       st->sum([c](const S& s) -> auto& { return s.responses_by_class[c]; }));
          }
          addCounter(m_cx_total, ml, st->sum([](const S& s) -> auto& { return s.cx_total; }));
          addGauge(m_cx_active, ml,
                   activeGauge(st->sum([](const S& s) -> auto& { return s.cx_active; })));
          addCounter(m_connect_fail, ml,
                     st->sum([](const S& s) -> auto& { return s.cx_connect_fail; }));
          addCounter(m_failures, ml, st->sum([](const S& s) -> auto& { return s.failures; }));
          addCounter(m_bytes_sent, ml, st->sum([](const S& s) -> auto& { return s.bytes_in; }));
          addCounter(m_bytes_received, ml,
                     st->sum([](const S& s) -> auto& { return s.bytes_out; }));
        }
        addGauge(m_healthy, ml, m.probeHealthy(hc) ? 1 : 0);
        addGauge(m_weight, ml, m.spec.weight);
        addGauge(m_draining, ml, m.drain != DrainState::kNone ? 1 : 0);
        addGauge(m_ejected, ml, m.ejected ? 1 : 0);
        addCounter(m_ejections, ml, m.ejections);

        // Bounded: at most kMaxLoadMetrics names per member, sanitized; the first name wins
        // when two sanitize alike. Non-finite values are not reported.
        std::set<std::string> seen;
        for (const auto& [name, value] : m.load) {
          if (seen.size() >= kMaxLoadMetrics) break;
          if (!std::isfinite(value)) continue;
          std::string metric = loadMetricName(name);
          if (metric.empty() || !seen.insert(metric).second) continue;
          addGauge(m_load, with(ml, "metric", std::move(metric)), value);
        }

        if (hc.enabled || m.probes_ok + m.probes_failed > 0) {
          addCounter(hc_total, with(ml, "result", "ok"), m.probes_ok);
          addCounter(hc_total, with(ml, "result", "failed"), m.probes_failed);
        }
        if (m.last_probe.has_value()) {
          addGauge(hc_duration, ml, std::chrono::duration<double>(m.last_probe->duration).count());
        }
      }
      for (int s = 0; s < 4; ++s) addGauge(members, with(pl, "state", kStates[s]), by_state[s]);

      if (in.snapshot != nullptr) {
        const int idx = in.snapshot->poolIndex(pool.name);
        if (idx >= 0) {
          const config::PoolState& ps = in.snapshot->pools[static_cast<size_t>(idx)];
          addGauge(panic, pl, ps.panic ? 1 : 0);
          addGauge(refusing, pl, ps.refuse ? 1 : 0);
        }
      }
    }
  }
  for (auto* f : {&p_cx_total, &p_cx_active, &p_connect_fail, &p_bytes_sent, &p_bytes_received}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  for (auto* f :
       {&rq_total,    &retries,        &no_healthy, &duration,     &ejections,        &members,
        &panic,       &refusing,       &m_rq_total, &m_rq_active,  &m_responses,      &m_cx_total,
        &m_cx_active, &m_connect_fail, &m_failures, &m_bytes_sent, &m_bytes_received, &m_healthy,
        &m_weight,    &m_draining,     &m_ejected,  &m_ejections,  &m_load,           &hc_total,
        &hc_duration}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
}

}  // namespace

void DurationHistogramSum::add(const l7proxy::DurationHistogram& h) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += h.buckets[i].get();
  sum_us += h.sum_us.get();
}

prometheus::ClientMetric::Histogram DurationHistogramSum::toPrometheus() const {
  prometheus::ClientMetric::Histogram out;
  out.bucket.reserve(l7proxy::kDurationBuckets.size());
  uint64_t cumulative = 0;
  for (size_t i = 0; i < l7proxy::kDurationBuckets.size(); ++i) {
    cumulative += buckets[i];
    out.bucket.push_back({cumulative, l7proxy::kDurationBuckets[i]});
  }
  cumulative += buckets.back();
  out.sample_count = cumulative;  // the serializer writes it as le="+Inf"
  out.sample_sum = static_cast<double>(sum_us) / 1e6;
  return out;
}

std::string loadMetricName(std::string_view reported) {
  std::string out;
  out.reserve(std::min(reported.size(), kMaxLoadNameLength));
  for (char c : reported) {
    if (out.size() == kMaxLoadNameLength) break;
    if (c >= 'A' && c <= 'Z') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      out.push_back(c);
    } else {
      out.push_back('_');
    }
  }
  return out;
}

std::vector<prometheus::MetricFamily> collectMetrics(const MetricsInput& in) {
  std::vector<MetricFamily> out;
  collectProcess(in, out);
  collectListeners(in, out);
  collectPools(in, out);
  if (in.extra) in.extra(out);
  if (in.dataplane != nullptr) in.dataplane->appendMetrics(out);
  return out;
}

MetricFamily metricFamily(const char* name, const char* help, MetricType type) {
  return family(name, help, type);
}

void addCounterSample(MetricFamily& f, std::vector<ClientMetric::Label> labels, uint64_t value) {
  addCounter(f, std::move(labels), value);
}

void addGaugeSample(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  addGauge(f, std::move(labels), value);
}

std::string renderMetrics(const MetricsInput& in) {
  std::ostringstream os;
  prometheus::TextSerializer().Serialize(os, collectMetrics(in));
  return os.str();
}

}  // namespace scalegate::control
