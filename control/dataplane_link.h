#pragma once
// The control side of the DPDK L4 path: starts dataplane/ when the config has l4 listeners,
// turns every published Snapshot into a ForwardingState (per-pool Maglev tables over the
// members that may take traffic, the same health the HTTP path uses) and hands it to the lcores
// by RCU, frees retired states on the housekeeping tick, and renders the lcores' counters for
// /metrics. Control thread only.
//
//   App::publishIfChanged ─► publish(snapshot) ─► ForwardingStateBuilder ─► Dataplane::publish
//   App::onHousekeeping   ─► tick() ─► Dataplane::reclaim (old states after the grace period)
//   /metrics              ─► appendMetrics ─► per-lcore LcoreStats summed or labelled by lcore
//
// Families: scalegate_dataplane_port_packets_total{port,lcore,direction="rx|tx"},
//   _port_drops_total{port,lcore}, _drops_total{lcore,reason}, _replies_total{type="arp|icmp"},
//   _redirected_total{lcore}, _vip_packets_total / _vip_bytes_total / _vip_flows_total{listener},
//   _member_packets_total / _member_bytes_total (both directions) / _member_flows_total
//   {pool,member}, _flow_table_entries{lcore}, _flow_table_capacity{lcore},
//   _flow_evictions_total{lcore}, _flows_created_total{lcore}.

#include <memory>
#include <vector>

#include <prometheus/metric_family.h>

#include "common/status.h"
#include "config/model.h"
#include "config/snapshot.h"
#include "dataplane/forwarding_state.h"

namespace scalegate::dataplane {
class Dataplane;
}

namespace scalegate::control {

class DataplaneLink {
 public:
  ~DataplaneLink();

  // True when cfg has l4 listeners: only then does scalegate initialise EAL.
  static bool wanted(const config::Config& cfg);
  // Initialises EAL, ports and lcores from cfg.dataplane (once per process).
  static Result<std::unique_ptr<DataplaneLink>> start(const config::Config& cfg);

  void publish(const config::Snapshot& snap);
  void tick();
  void stop();
  // A reload may not change EAL, ports, lcores or memory: false when cfg asks for that.
  bool sameSettings(const config::DataplaneConfig& cfg) const;

  void appendMetrics(std::vector<prometheus::MetricFamily>& out) const;

 private:
  DataplaneLink() = default;

  std::unique_ptr<dataplane::Dataplane> dp_;
  dataplane::ForwardingStateBuilder builder_;
  config::DataplaneConfig settings_;
};

}  // namespace scalegate::control
