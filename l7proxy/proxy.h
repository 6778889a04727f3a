#pragma once
// The L7 data path as control sees it: N workers on their own threads, fed snapshots through
// one channel. Control thread calls everything here.

#include <memory>
#include <thread>
#include <vector>

#include "config/snapshot.h"
#include "l7proxy/counters.h"
#include "l7proxy/worker.h"

namespace scalegate::l7proxy {

// Sums of every worker's counters at one moment (not atomic across counters).
struct CounterTotals {
  uint64_t downstream_cx_total = 0, downstream_cx_active = 0;
  uint64_t downstream_rq_total = 0, downstream_rq_active = 0;
  uint64_t responses_by_class[6] = {};
  uint64_t local_replies[static_cast<int>(LocalReply::kCount)] = {};
  uint64_t upstream_cx_total = 0, upstream_cx_active = 0, upstream_cx_connect_fail = 0;
  uint64_t upstream_cx_reused = 0, upstream_rq_retry = 0, upstream_reset_mid_response = 0;
  uint64_t downstream_cx_idle_timeout = 0, downstream_cx_protocol_error = 0;
};

class Proxy {
 public:
  explicit Proxy(int workers);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  int workerCount() const { return static_cast<int>(workers_.size()); }
  // Publishes `first` and starts the worker threads.
  void start(std::shared_ptr<const config::Snapshot> first);
  // Hands a new snapshot to every worker; they adopt it on their next loop pass.
  void publish(std::shared_ptr<const config::Snapshot> s);
  // The oldest generation any worker still runs (listening sockets of older snapshots can be
  // closed once this passes them).
  uint64_t oldestAdoptedGeneration() const;
  // Stops accepting, lets in-flight requests finish within `timeout`, then workers exit.
  void drain(Duration timeout);
  // Blocks until every worker has stopped watching its listening sockets (after drain()).
  void waitDrainStarted();
  // Waits for the worker threads to end.
  void join();
  CounterTotals totals() const;

 private:
  SnapshotChannel channel_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
};

}  // namespace scalegate::l7proxy
