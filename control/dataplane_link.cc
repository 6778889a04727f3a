#include "control/dataplane_link.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

#include <string>

#include "common/log.h"
#include "control/metrics.h"
#include "dataplane/dataplane.h"

namespace scalegate::control {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(const char* name, const char* help, MetricType type) {
  return metricFamily(name, help, type);
}

void add(MetricFamily& f, Labels labels, uint64_t value) {
  if (f.type == MetricType::Counter) {
    addCounterSample(f, std::move(labels), value);
  } else {
    addGaugeSample(f, std::move(labels), static_cast<double>(value));
  }
}

std::string joinArgs(const std::vector<std::string>& args) {
  std::string s;
  for (const std::string& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

}  // namespace

DataplaneLink::~DataplaneLink() { stop(); }

bool DataplaneLink::wanted(const config::Config& cfg) {
  for (const config::Listener& l : cfg.listeners) {
    if (l.protocol == config::ListenerProtocol::kL4) return true;
  }
  return false;
}

Result<std::unique_ptr<DataplaneLink>> DataplaneLink::start(const config::Config& cfg) {
  std::unique_ptr<DataplaneLink> link(new DataplaneLink());
  link->settings_ = cfg.dataplane;
  logEvent(LogLevel::kInfo, "dataplane starting",
           {{"eal", joinArgs(dataplane::ealArguments(cfg.dataplane))}});
  auto dp = dataplane::Dataplane::start(cfg.dataplane);
  if (!dp.isOk()) return dp.status();
  link->dp_ = std::move(dp).value();
  for (size_t i = 0; i < link->dp_->portCount(); ++i) {
    const uint8_t* m = link->dp_->portMac(i).bytes;
    char mac[18];
    std::snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                  m[5]);
    logEvent(LogLevel::kInfo, "dataplane port up",
             {{"port", link->dp_->portName(i)}, {"mac", mac}});
  }
  return link;
}

void DataplaneLink::publish(const config::Snapshot& snap) {
  if (!dp_) return;
  std::unique_ptr<dataplane::ForwardingState> st = builder_.build(snap);
  if (builder_.skipped() > 0) {
    SG_LOG(kWarn, "dataplane: %llu members or VIPs left out (IPv6 or over the limits)",
           static_cast<unsigned long long>(builder_.skipped()));
  }
  dp_->publish(std::move(st));
}

void DataplaneLink::tick() {
  if (dp_) dp_->reclaim();
}

void DataplaneLink::stop() {
  if (dp_) dp_->stop();
  dp_.reset();
}

bool DataplaneLink::sameSettings(const config::DataplaneConfig& c) const {
  const config::DataplaneConfig& s = settings_;
  if (c.enabled != s.enabled || c.eal_args != s.eal_args || c.main_lcore != s.main_lcore ||
      c.lcores != s.lcores || c.local_addresses != s.local_addresses || c.mbufs != s.mbufs ||
      c.queue_size != s.queue_size || c.flow_table_size != s.flow_table_size ||
      c.nat_port_min != s.nat_port_min || c.nat_port_max != s.nat_port_max ||
      c.syn_timeout != s.syn_timeout || c.established_timeout != s.established_timeout ||
      c.closing_timeout != s.closing_timeout || c.udp_timeout != s.udp_timeout ||
      c.ports.size() != s.ports.size()) {
    return false;
  }
  for (size_t i = 0; i < c.ports.size(); ++i) {
    if (c.ports[i].device != s.ports[i].device ||
        std::memcmp(c.ports[i].gateway_mac, s.ports[i].gateway_mac, 6) != 0) {
      return false;
    }
  }
  return true;
}

void DataplaneLink::appendMetrics(std::vector<MetricFamily>& out) const {
  if (!dp_) return;
  const dataplane::Dataplane& dp = *dp_;
  auto pkts =
      family("scalegate_dataplane_port_packets_total",
             "Packets received (rx) and sent (tx) per DPDK port and lcore.", MetricType::Counter);
  auto port_drops =
      family("scalegate_dataplane_port_drops_total",
             "Packets dropped per port (where they came in) and lcore.", MetricType::Counter);
  auto drops = family("scalegate_dataplane_drops_total", "Packets dropped per lcore, by reason.",
                      MetricType::Counter);
  auto entries =
      family("scalegate_dataplane_flow_table_entries",
             "Occupied flow-table slots per lcore (nat flows use two).", MetricType::Gauge);
  auto capacity = family("scalegate_dataplane_flow_table_capacity", "Flow-table slots per lcore.",
                         MetricType::Gauge);
  auto evictions =
      family("scalegate_dataplane_flow_evictions_total",
             "Live flows evicted from a full flow table, per lcore.", MetricType::Counter);
  auto created =
      family("scalegate_dataplane_flows_created_total",
             "Flows created (a member picked by Maglev), per lcore.", MetricType::Counter);
  auto redirected =
      family("scalegate_dataplane_redirected_total",
             "Return packets handed to the lcore owning their NAT port.", MetricType::Counter);
  uint64_t arp = 0, icmp = 0;
  for (size_t l = 0; l < dp.lcoreCount(); ++l) {
    const dataplane::LcoreStats& s = dp.stats(l);
    const std::string lcore = std::to_string(dp.lcoreId(l));
    for (size_t p = 0; p < dp.portCount(); ++p) {
      add(pkts, {{"port", dp.portName(p)}, {"lcore", lcore}, {"direction", "rx"}},
          s.port_rx[p].get());
      add(pkts, {{"port", dp.portName(p)}, {"lcore", lcore}, {"direction", "tx"}},
          s.port_tx[p].get() - s.port_tx_failed[p].get());
      add(port_drops, {{"port", dp.portName(p)}, {"lcore", lcore}}, s.port_drops[p].get());
    }
    for (int d = 0; d < static_cast<int>(dataplane::Drop::kCount); ++d) {
      add(drops,
          {{"lcore", lcore}, {"reason", dataplane::dropName(static_cast<dataplane::Drop>(d))}},
          s.drops[d].get());
    }
    add(entries, {{"lcore", lcore}}, s.flow_entries.get());
    add(capacity, {{"lcore", lcore}}, s.flow_capacity.get());
    add(evictions, {{"lcore", lcore}}, s.flow_evictions.get());
    add(created, {{"lcore", lcore}}, s.flows_created.get());
    add(redirected, {{"lcore", lcore}}, s.redirected.get());
    arp += s.arp_replies.get();
    icmp += s.icmp_replies.get();
  }
  auto replies =
      family("scalegate_dataplane_replies_total",
             "ARP and ICMP echo replies sent for VIPs and local addresses.", MetricType::Counter);
  add(replies, {{"type", "arp"}}, arp);
  add(replies, {{"type", "icmp"}}, icmp);

  auto vp =
      family("scalegate_dataplane_vip_packets_total", "Packets to an l4 VIP.", MetricType::Counter);
  auto vb = family("scalegate_dataplane_vip_bytes_total", "Bytes to an l4 VIP (frames).",
                   MetricType::Counter);
  auto vf =
      family("scalegate_dataplane_vip_flows_total", "Flows to an l4 VIP.", MetricType::Counter);
  auto vd =
      family("scalegate_dataplane_vip_access_denied_total",
             "Packets to an l4 VIP dropped by its listener's access list.", MetricType::Counter);
  for (uint32_t id = 0; id < dataplane::kMaxVips; ++id) {
    const std::string& name = builder_.vipName(static_cast<uint8_t>(id));
    if (name.empty()) continue;
    uint64_t p = 0, b = 0, f = 0, d = 0;
    for (size_t l = 0; l < dp.lcoreCount(); ++l) {
      p += dp.stats(l).vip_packets[id].get();
      b += dp.stats(l).vip_bytes[id].get();
      f += dp.stats(l).vip_flows[id].get();
      d += dp.stats(l).vip_access_denied[id].get();
    }
    add(vp, {{"listener", name}}, p);
    add(vb, {{"listener", name}}, b);
    add(vf, {{"listener", name}}, f);
    add(vd, {{"listener", name}}, d);
  }
  auto mp = family("scalegate_dataplane_member_packets_total",
                   "Packets forwarded to and from a member by the l4 path.", MetricType::Counter);
  auto mb = family("scalegate_dataplane_member_bytes_total",
                   "Bytes forwarded to and from a member by the l4 path.", MetricType::Counter);
  auto mf = family("scalegate_dataplane_member_flows_total",
                   "Flows the l4 path assigned to a member.", MetricType::Counter);
  for (uint32_t id = 0; id < dataplane::kMaxBackends; ++id) {
    const dataplane::BackendName* name = builder_.backendName(static_cast<uint16_t>(id));
    if (name == nullptr) continue;
    uint64_t p = 0, b = 0, f = 0;
    for (size_t l = 0; l < dp.lcoreCount(); ++l) {
      p += dp.stats(l).backend_packets[id].get();
      b += dp.stats(l).backend_bytes[id].get();
      f += dp.stats(l).backend_flows[id].get();
    }
    add(mp, {{"pool", name->pool}, {"member", name->member}}, p);
    add(mb, {{"pool", name->pool}, {"member", name->member}}, b);
    add(mf, {{"pool", name->pool}, {"member", name->member}}, f);
  }
  for (auto* f : {&pkts, &port_drops, &drops, &replies, &redirected, &vp, &vb, &vf, &vd, &mp, &mb,
                  &mf, &entries, &capacity, &evictions, &created}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
}

}  // namespace scalegate::control
