#include "l7proxy/proxy.h"

#include <algorithm>
#include <limits>

namespace scalegate::l7proxy {

const char* localReplyName(LocalReply r) {
  switch (r) {
    case LocalReply::kBadRequest:
      return "bad_request";
    case LocalReply::kNotFound:
      return "no_route";
    case LocalReply::kRequestTimeout:
      return "request_header_timeout";
    case LocalReply::kBodyTooLarge:
      return "body_too_large";
    case LocalReply::kUriTooLong:
      return "uri_too_long";
    case LocalReply::kHeaderTooLarge:
      return "header_too_large";
    case LocalReply::kNotImplemented:
      return "not_implemented";
    case LocalReply::kBadGateway:
      return "upstream_failed";
    case LocalReply::kNoHealthyMember:
      return "no_healthy_member";
    case LocalReply::kGatewayTimeout:
      return "upstream_timeout";
    case LocalReply::kVersionNotSupported:
      return "version_not_supported";
    case LocalReply::kTooManyRequests:
      return "too_many_requests";
    case LocalReply::kCount:
      break;
  }
  return "unknown";
}

uint16_t localReplyStatus(LocalReply r) {
  static constexpr uint16_t kStatus[] = {400, 404, 408, 413, 414, 431,
                                         501, 502, 503, 504, 505, 429};
  static_assert(sizeof(kStatus) / sizeof(kStatus[0]) == static_cast<size_t>(LocalReply::kCount));
  return kStatus[static_cast<int>(r)];
}

const char* limitReasonName(LimitReason r) {
  switch (r) {
    case LimitReason::kMaxConnections:
      return "max_connections";
    case LimitReason::kMaxConnectionsPerIp:
      return "max_connections_per_ip";
    case LimitReason::kRequestRate:
      return "request_rate";
    case LimitReason::kRequestHeaderTimeout:
      return "request_header_timeout";
    case LimitReason::kSendTimeout:
      return "send_timeout";
    case LimitReason::kIpTableFull:
      return "ip_table_full";
    case LimitReason::kCount:
      break;
  }
  return "unknown";
}

Proxy::Proxy(int workers) {
  for (int i = 0; i < workers; ++i) workers_.push_back(std::make_unique<Worker>(i, &channel_));
}

Proxy::~Proxy() {
  if (!threads_.empty()) {
    drain(Duration::zero());
    join();
  }
}

void Proxy::start(std::shared_ptr<const config::Snapshot> first) {
  channel_.publish(std::move(first));
  for (auto& w : workers_) {
    Worker* wp = w.get();
    threads_.emplace_back([wp] { wp->run(); });
  }
}

void Proxy::publish(std::shared_ptr<const config::Snapshot> s) {
  channel_.publish(std::move(s));
  for (auto& w : workers_) w->wake();
}

uint64_t Proxy::oldestAdoptedGeneration() const {
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (const auto& w : workers_) oldest = std::min(oldest, w->adoptedGeneration());
  return oldest;
}

void Proxy::drain(Duration timeout) {
  channel_.drain(timeout);
  for (auto& w : workers_) w->wake();
}

void Proxy::waitDrainStarted() {
  for (int i = 0; i < 5000; ++i) {  // bounded: a worker answers within one loop pass
    bool all = true;
    for (auto& w : workers_) all = all && w->drainStarted();
    if (all) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void Proxy::join() {
  for (auto& t : threads_) t.join();
  threads_.clear();
}

CounterTotals Proxy::totals() const {
  CounterTotals t;
  for (const auto& w : workers_) {
    const WorkerCounters& c = w->counters();
    t.downstream_cx_total += c.downstream_cx_total.get();
    t.downstream_cx_active += c.downstream_cx_active.get();
    t.downstream_rq_total += c.downstream_rq_total.get();
    t.downstream_rq_active += c.downstream_rq_active.get();
    for (int i = 0; i < 6; ++i) t.responses_by_class[i] += c.responses_by_class[i].get();
    for (int i = 0; i < static_cast<int>(LocalReply::kCount); ++i)
      t.local_replies[i] += c.local_replies[i].get();
    t.upstream_cx_total += c.upstream_cx_total.get();
    t.upstream_cx_active += c.upstream_cx_active.get();
    t.upstream_cx_connect_fail += c.upstream_cx_connect_fail.get();
    t.upstream_cx_reused += c.upstream_cx_reused.get();
    t.upstream_rq_retry += c.upstream_rq_retry.get();
    t.upstream_reset_mid_response += c.upstream_reset_mid_response.get();
    t.downstream_cx_idle_timeout += c.downstream_cx_idle_timeout.get();
    t.downstream_cx_protocol_error += c.downstream_cx_protocol_error.get();
  }
  return t;
}

}  // namespace scalegate::l7proxy
