#pragma once
// Per-worker counters: plain integers written by one worker, read by control at scrape time
// (DESIGN.md "Counters"). Relaxed atomics compile to ordinary loads and stores on x86 but keep
// the cross-thread read well defined (and TSan quiet); there is no locked read-modify-write.

#include <atomic>
#include <cstdint>

namespace scalegate::l7proxy {

class Counter {
 public:
  void inc(uint64_t n = 1) {  // owning worker only
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void dec(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }  // any thread

 private:
  std::atomic<uint64_t> v_{0};
};

// Why the proxy answered a request itself. Each is counted.
enum class LocalReply : uint8_t {
  kBadRequest,           // 400 malformed request
  kNotFound,             // 404 no route
  kRequestTimeout,       // 408 head not received in time
  kBodyTooLarge,         // 413
  kUriTooLong,           // 414
  kHeaderTooLarge,       // 431
  kNotImplemented,       // 501 unknown transfer-coding
  kBadGateway,           // 502 upstream failed
  kNoHealthyMember,      // 503
  kGatewayTimeout,       // 504
  kVersionNotSupported,  // 505
  kTooManyRequests,      // 429 request rate per client IP (limits.requests_per_second_per_ip)
  kCount
};

// Why a listener's abuse limits (config::ClientLimits, timeouts) refused or ended something;
// scalegate_listener_limited_total{listener,reason}.
enum class LimitReason : uint8_t {
  kMaxConnections,        // accepted and closed: the listener had max_connections open
  kMaxConnectionsPerIp,   // accepted and closed: the client IP had max_connections_per_ip open
  kRequestRate,           // answered 429: the client IP's request bucket was empty
  kRequestHeaderTimeout,  // closed: no whole request head within timeouts.request_header
  kSendTimeout,           // closed: the client took no response byte for timeouts.send
  kIpTableFull,           // not tracked: no room for the client in the per-IP table (admitted)
  kCount
};

const char* limitReasonName(LimitReason r);

const char* localReplyName(LocalReply r);
uint16_t localReplyStatus(LocalReply r);

struct alignas(64) WorkerCounters {
  Counter downstream_cx_total;
  Counter downstream_cx_active;
  Counter downstream_rq_total;
  Counter downstream_rq_active;
  Counter responses_by_class[6];  // index = status / 100 (1..5); 0 unused
  Counter local_replies[static_cast<int>(LocalReply::kCount)];
  Counter upstream_cx_total;
  Counter upstream_cx_active;
  Counter upstream_cx_connect_fail;
  Counter upstream_cx_reused;
  Counter upstream_rq_retry;
  Counter upstream_reset_mid_response;  // upstream closed after response bytes were sent
  Counter downstream_cx_idle_timeout;
  Counter downstream_cx_protocol_error;
};

}  // namespace scalegate::l7proxy
