#pragma once
// Active health probes on the control loop: TCP connect, HTTP GET and HTTPS GET, all
// non-blocking (one socket and its events per probe in flight), so thousands of members never
// stall the loop. Each member is probed every `interval` plus a random jitter in [0, jitter],
// or every `fast_interval` while its state is changing; a probe that outlives `timeout` fails.
// HTTP(S) answers may carry a load report (X-Load header, a JSON body, or the Azure
// Application Health rich body), parsed into ProbeOutcome::load / app_health.
// Control thread only.

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/address.h"
#include "config/model.h"
#include "control/pool_registry.h"

namespace scalegate::control {

struct ProbeTarget {
  std::string pool;
  std::string member;
  SocketAddress address;
  config::HealthCheck check;  // enabled == true
  bool fast = false;          // use check.fast_interval (when set) instead of check.interval
};

class Prober {
 public:
  using ResultFn = std::function<void(const std::string& pool, const std::string& member,
                                      const ProbeOutcome& outcome)>;
  Prober(event_base* base, ResultFn on_result, uint64_t seed);
  ~Prober();
  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;

  // Replaces the set of targets. Targets are matched by (pool, member, address, check); an
  // unchanged target keeps its schedule (a changed `fast` flag only reschedules the next probe
  // sooner), a new one is first probed after a random delay in [0, min(interval, 1s)] so a
  // restart does not probe everything at once, a removed one is cancelled (a probe in flight is
  // aborted and reports nothing).
  void setTargets(std::vector<ProbeTarget> targets);
  size_t targetCount() const;
  size_t inFlight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scalegate::control
