#pragma once
// The DPDK data path as control sees it: EAL and port setup from the config, one lcore loop
// per configured lcore (dataplane/lcore.h), and publication of ForwardingStates by RCU.
//
//   control thread                                  lcores (one per config lcore)
//   Dataplane::start(cfg) ─ EAL, mempool, ports ─┐   lcoreMain: pollOnce() until stop
//   publish(state) ─ atomic pointer swap ────────┼─► read once per pass
//        └─ rte_rcu_qsbr_start: token            │   rte_rcu_qsbr_quiescent after each pass
//   reclaim() ─ rte_rcu_qsbr_check(token) ───────┘   (then the old state is freed)
//   stats(i) ─ per-lcore LcoreStats, read at scrape time
//
// rte_eal_init runs once per process: start() may be called once. Control thread only.

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "config/model.h"
#include "dataplane/flow_table.h"
#include "dataplane/forwarding_state.h"
#include "dataplane/lcore.h"
#include "dataplane/stats.h"

struct rte_mempool;
struct rte_rcu_qsbr;

namespace scalegate::dataplane {

// The EAL argument vector start() passes (argv[0] included), for logs and tests.
std::vector<std::string> ealArguments(const config::DataplaneConfig& cfg);

class Dataplane {
 public:
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // Initialises EAL, the mempool and the ports, then launches the lcores (which drop traffic
  // until the first publish()). Fails with a message naming the step and DPDK's error.
  static Result<std::unique_ptr<Dataplane>> start(const config::DataplaneConfig& cfg);

  // Makes state the one the lcores forward by; the previous one is freed by reclaim() once
  // every lcore has passed a quiescent state.
  void publish(std::unique_ptr<ForwardingState> state);
  // Frees retired states whose grace period is over. Never blocks. Returns how many remain.
  size_t reclaim();
  // Stops the lcores, the ports and EAL. Idempotent.
  void stop();

  size_t lcoreCount() const { return lcores_.size(); }
  uint32_t lcoreId(size_t i) const { return lcore_ids_[i]; }
  const LcoreStats& stats(size_t i) const { return *stats_[i]; }
  size_t portCount() const { return port_names_.size(); }
  const std::string& portName(size_t i) const { return port_names_[i]; }
  const MacAddress& portMac(size_t i) const { return port_macs_[i]; }
  uint64_t flowCapacity() const;

 private:
  Dataplane() = default;
  Status init(const config::DataplaneConfig& cfg);

  std::vector<uint32_t> lcore_ids_;
  std::vector<std::unique_ptr<LcoreContext>> lcores_;
  std::vector<std::unique_ptr<LcoreStats>> stats_;
  std::vector<std::unique_ptr<FlowTable>> flows_;
  std::vector<uint16_t> port_ids_;
  std::vector<std::string> port_names_;
  std::vector<MacAddress> port_macs_;
  std::vector<void*> dpdk_allocs_;  // rte_zmalloc'ed: tx buffers, rings are freed apart
  std::vector<struct rte_ring*> rings_;
  rte_mempool* pool_ = nullptr;
  rte_rcu_qsbr* rcu_ = nullptr;
  std::atomic<const ForwardingState*> current_{nullptr};
  std::vector<std::pair<uint64_t, const ForwardingState*>> retired_;  // (RCU token, state)
  std::atomic<bool> stop_{false};
  size_t launched_ = 0;  // lcores_[0..launched_) are running lcoreMain
  bool eal_ = false;
};

}  // namespace scalegate::dataplane
