#pragma once
// Worker: one thread, one epoll loop, its share of the connections. Closed loop keeps
// `streams` requests in flight per connection; open loop sends from a schedule of intended
// times (per worker, its share of the rate) on whichever connection has room, and measures
// latency from the intended time. HTTP/1.1 (pipelined up to `streams`) or HTTP/2 (nghttp2),
// over TCP or TLS (OpenSSL, one SSL_CTX per worker).

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "bench/sgload/options.h"
#include "bench/sgload/request.h"
#include "bench/sgload/stats.h"

namespace scalegate::bench {

struct Connection;

// Times shared by all workers, CLOCK_MONOTONIC ns.
struct RunClock {
  uint64_t start_ns = 0;         // load begins (warm-up first)
  uint64_t record_start_ns = 0;  // recording begins: start + warm-up
  uint64_t end_ns = 0;           // stop sending; UINT64_MAX with -n only
};

uint64_t monoNowNs();

// Asks every worker to stop at its next loop turn (within ~10 ms). Async-signal-safe.
void requestStop();

class Worker {
 public:
  // index: 0..threads-1. connections: this worker's share. rate_share: this worker's fraction
  // of --rate / --stages. request_budget: its share of -n (0: none).
  Worker(const Options& options, const RequestSet& requests, const RunClock& clock,
         IntervalCollector* collector, int index, int connections, double rate_share,
         uint64_t request_budget);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop until end_ns or the budget is spent. Worker thread.
  void run();
  // After run(): totals, and when the worker stopped.
  const RunStats& stats() const { return stats_; }
  uint64_t stoppedNs() const { return stopped_ns_; }
  // True once run() has returned or is about to; any thread.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // Called from connection code (worker thread only).
  // A response ended (any status); latency from intended_ns.
  void onResponse(int status, uint64_t intended_ns);
  // One in-flight request failed.
  void onRequestFailed(ErrorKind kind);
  // One in-flight request the server refused without processing it (h2 REFUSED_STREAM after
  // GOAWAY; HTTP/1.1 requests pipelined behind "Connection: close"): sent again, not an error.
  void onRequestRefused(uint64_t intended_ns);
  // count errors of kind that were not in-flight requests (connect errors).
  void onError(ErrorKind kind, uint64_t count);
  const Options& options() const { return opt_; }
  const RequestSet& requests() const { return req_; }
  size_t nextPath() {
    size_t i = path_cursor_;
    if (++path_cursor_ == req_.size()) path_cursor_ = 0;
    return i;
  }
  uint64_t now() const { return now_; }
  void setNow(uint64_t now) { now_ = now; }
  int epollFd() const { return epoll_fd_; }

 private:
  bool initTls();
  void startConnect(Connection* c);
  void handleEvent(Connection* c, uint32_t events);
  void onConnected(Connection* c);
  void doHandshake(Connection* c);
  void startSession(Connection* c);
  void onEof(Connection* c);
  // Forgets every in-flight request of c, returning how many there were.
  uint64_t dropInflight(Connection* c);
  bool sendHttp2Pending(Connection* c);
  void closeConnection(Connection* c, bool connect_failed);
  void fail(Connection* c, ErrorKind kind);
  void handleRead(Connection* c);
  void processHttp1(Connection* c);
  void processHttp2(Connection* c, const char* data, size_t len);
  bool flush(Connection* c);
  void updateInterest(Connection* c, bool want_out);
  // Sends what this connection may send now (closed: refill; open: due requests).
  void fill(Connection* c);
  int room(const Connection* c) const;
  void sendHttp1(Connection* c, int n, const uint64_t* intended);
  void sendHttp2(Connection* c, int n, const uint64_t* intended);
  // Open loop: intended time of the next request, or UINT64_MAX when none is left.
  uint64_t nextIntended() const { return next_intended_; }
  void advanceSchedule();
  void dispatchDue();
  // Sends for c after the current batch of events: all reads first, then all writes, which
  // gives the server fuller batches too (measurably faster against a single-core nginx).
  void deferFill(Connection* c);
  void drainFills();
  void scan();
  void tick();
  bool budgetDone() const { return budget_ != 0 && budget_left_ == 0 && inflight_ == 0; }

  const Options& opt_;
  const RequestSet& req_;
  const RunClock clock_;
  IntervalCollector* collector_;
  const int index_;
  const double rate_share_;
  const uint64_t budget_;
  uint64_t budget_left_;

  int epoll_fd_ = -1;
  SSL_CTX* ssl_ctx_ = nullptr;
  std::vector<std::unique_ptr<Connection>> conns_;
  std::vector<Connection*> ready_;  // open loop: open connections with room
  std::vector<Connection*> fill_queue_;
  std::vector<uint64_t> retry_;  // open loop: intended times of refused requests, oldest first
  size_t retry_head_ = 0;
  uint64_t now_ = 0;
  uint64_t inflight_ = 0;
  size_t path_cursor_ = 0;

  // Open-loop schedule: steps of `opt_.stages`, preceded by the warm-up at the first rate.
  std::vector<Stage> stages_;
  std::vector<uint64_t> scratch_;  // intended times of one batch
  size_t stage_ = 0;
  uint64_t stage_start_ns_ = 0;
  uint64_t stage_seq_ = 0;
  uint64_t next_intended_ = UINT64_MAX;

  uint64_t next_scan_ns_ = 0;
  uint64_t second_ = 0;  // interval being collected
  LatencyHistogram interval_latency_;
  uint64_t interval_requests_ = 0;
  uint64_t interval_errors_ = 0;

  RunStats stats_;
  uint64_t stopped_ns_ = 0;
  std::atomic<bool> finished_{false};
};

}  // namespace scalegate::bench
