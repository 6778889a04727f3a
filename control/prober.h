#pragma once
// Active health probes on the control loop: TCP connect, HTTP GET and HTTPS GET, all
// non-blocking (one socket and its events per probe in flight), so thousands of members never
// stall the loop. Each member is probed every `interval` plus a random jitter in [0, jitter],
// or every `fast_interval` while its state is changing; a probe that outlives `timeout` fails.
// HTTP(S) answers may carry a load report (X-Load header, a JSON body, or the Azure
// Application Health rich body), parsed into ProbeOutcome::load / app_health.
// Control thread only.
//
// Details (control/prober.cc):
// - The next probe is scheduled from the end of the previous one (success, failure or timeout).
// - HTTP(S): one GET with "Connection: close"; the answer is read up to 64 KiB (a longer body is
//   cut, the status still counts) and judged when its framing says it is complete (Content-Length,
//   chunked) or the member closes. ok = status in check.expect and, when the body carries
//   ApplicationHealthState, that state is Healthy (error "app health Unhealthy", ...).
// - HTTPS: certificates are NOT verified (members are addressed by IP and often serve
//   self-signed certificates; a probe asks "is it up", not "is it who it claims"). SNI is sent
//   when check.host names a host (not an IP literal). One shared client SSL_CTX, TLS >= 1.2.
// - Sockets close with RST (SO_LINGER 0) so frequent probes leave no TIME_WAIT behind.
// - The process must ignore SIGPIPE (App does): a member may close before the request is sent.
// - The ResultFn may call setTargets() (also removing the reporting target) but must not destroy
//   the Prober.

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
  // aborted and reports nothing). A (pool, member) listed twice: the first entry wins.
  void setTargets(std::vector<ProbeTarget> targets);
  size_t targetCount() const;
  size_t inFlight() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace scalegate::control
