#include "dataplane/dataplane.h"

#include <netinet/in.h>
#include <pthread.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <filesystem>
#include <regex>

namespace scalegate::dataplane {
namespace {

bool isPciAddress(const std::string& dev) {
  static const std::regex pci("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
  return std::regex_match(dev, pci);
}

// DPDK's name for a port: a vdev's driver instance name ("net_af_packet0" of
// "net_af_packet0,iface=eth1"), or the PCI address.
std::string portNameOf(const std::string& dev) { return dev.substr(0, dev.find(',')); }

bool hasArg(const std::vector<std::string>& args, const std::string& name) {
  return std::any_of(args.begin(), args.end(), [&](const std::string& a) {
    return a == name || a.rfind(name + "=", 0) == 0;
  });
}

Status dpdkError(const std::string& what, int err) {
  return internalError("dataplane: " + what + ": " + rte_strerror(err < 0 ? -err : err));
}

}  // namespace

std::vector<std::string> ealArguments(const config::DataplaneConfig& cfg) {
  std::vector<std::string> args = {"scalegate"};
  std::string lcores = std::to_string(cfg.main_lcore);
  for (uint32_t l : cfg.lcores) lcores += "," + std::to_string(l);
  args.insert(args.end(), {"-l", lcores, "--main-lcore", std::to_string(cfg.main_lcore)});
  for (const config::DataplanePort& p : cfg.ports) {
    args.push_back(isPciAddress(p.device) ? "-a" : "--vdev");
    args.push_back(p.device);
  }
  // Several scalegates (and tests) on one host must not share DPDK's runtime directory.
  if (!hasArg(cfg.eal_args, "--file-prefix") && !hasArg(cfg.eal_args, "--no-shconf") &&
      !hasArg(cfg.eal_args, "--in-memory")) {
    args.push_back("--file-prefix=scalegate-" + std::to_string(getpid()));
  }
  if (!hasArg(cfg.eal_args, "--telemetry") && !hasArg(cfg.eal_args, "--no-telemetry")) {
    args.push_back("--no-telemetry");
  }
  args.insert(args.end(), cfg.eal_args.begin(), cfg.eal_args.end());
  return args;
}

Result<std::unique_ptr<Dataplane>> Dataplane::start(const config::DataplaneConfig& cfg) {
  std::unique_ptr<Dataplane> dp(new Dataplane());
  Status st = dp->init(cfg);
  if (!st.isOk()) {
    dp->stop();
    return st;
  }
  return dp;
}

Status Dataplane::init(const config::DataplaneConfig& cfg) {
  // rte_eal_init pins the calling (control) thread to the main lcore; the control thread and
  // threads it starts later keep the CPUs they had.
  cpu_set_t saved;
  CPU_ZERO(&saved);
  pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved);
  std::vector<std::string> args = ealArguments(cfg);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = rte_eal_init(static_cast<int>(args.size()), argv.data());
  pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
  if (rc < 0) return dpdkError("EAL initialisation failed", rte_errno);
  eal_ = true;

  const uint32_t nl = static_cast<uint32_t>(cfg.lcores.size());
  const unsigned socket = rte_socket_id();
  pool_ = rte_pktmbuf_pool_create("sg_mbufs", cfg.mbufs, std::min(256u, cfg.mbufs / 8), 0,
                                  RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(socket));
  if (pool_ == nullptr) return dpdkError("cannot create the mbuf pool", rte_errno);

  for (const config::DataplanePort& p : cfg.ports) {
    const std::string name = portNameOf(p.device);
    uint16_t id = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) {
      return internalError("dataplane: port " + p.device + ": no such DPDK device (" + name + ")");
    }
    rte_eth_dev_info info{};
    rc = rte_eth_dev_info_get(id, &info);
    if (rc != 0) return dpdkError("port " + name + ": device info", rc);
    if (info.max_rx_queues < nl || info.max_tx_queues < nl) {
      return internalError("dataplane: port " + name + " has " +
                           std::to_string(info.max_rx_queues) + " RX queues; " +
                           std::to_string(nl) + " lcores need one each");
    }
    rte_eth_conf conf{};
    const uint64_t rss =
        info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    if (nl > 1 && rss != 0) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf = rss;
    }
    rc = rte_eth_dev_configure(id, static_cast<uint16_t>(nl), static_cast<uint16_t>(nl), &conf);
    if (rc != 0) return dpdkError("port " + name + ": configure", rc);
    uint16_t nb_rx = static_cast<uint16_t>(cfg.queue_size), nb_tx = nb_rx;
    rte_eth_dev_adjust_nb_rx_tx_desc(id, &nb_rx, &nb_tx);
    for (uint16_t q = 0; q < nl; ++q) {
      rc = rte_eth_rx_queue_setup(id, q, nb_rx, rte_eth_dev_socket_id(id), nullptr, pool_);
      if (rc != 0) return dpdkError("port " + name + ": RX queue setup", rc);
      rc = rte_eth_tx_queue_setup(id, q, nb_tx, rte_eth_dev_socket_id(id), nullptr);
      if (rc != 0) return dpdkError("port " + name + ": TX queue setup", rc);
    }
    rc = rte_eth_dev_start(id);
    if (rc != 0) return dpdkError("port " + name + ": start", rc);
    rte_ether_addr mac{};
    rte_eth_macaddr_get(id, &mac);
    MacAddress m;
    std::memcpy(m.bytes, mac.addr_bytes, 6);
    port_ids_.push_back(id);
    port_names_.push_back(name);
    port_macs_.push_back(m);
  }

  const size_t rcu_size = rte_rcu_qsbr_get_memsize(nl);
  rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("sg_rcu", rcu_size, RTE_CACHE_LINE_SIZE));
  if (rcu_ == nullptr || rte_rcu_qsbr_init(rcu_, nl) != 0) {
    return internalError("dataplane: cannot set up RCU");
  }
  for (uint32_t i = 0; i < nl; ++i) {
    std::string rname = "sg_redirect_" + std::to_string(i);
    rte_ring* r = rte_ring_create(rname.c_str(), 4096, static_cast<int>(socket), RING_F_SC_DEQ);
    if (r == nullptr) return dpdkError("cannot create ring " + rname, rte_errno);
    rings_.push_back(r);
  }

  const uint64_t tsc_per_ms = std::max<uint64_t>(1, rte_get_tsc_hz() / 1000);
  const uint32_t nat_ports = cfg.nat_port_max - cfg.nat_port_min + 1;
  auto ms = [](Duration d) {
    return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  for (uint32_t i = 0; i < nl; ++i) {
    stats_.push_back(std::make_unique<LcoreStats>());
    flows_.push_back(std::make_unique<FlowTable>(cfg.flow_table_size));
    stats_.back()->flow_capacity.set(flows_.back()->capacity());
    auto c = std::make_unique<LcoreContext>();
    initLcoreContext(*c);
    c->flows = flows_.back().get();
    c->stats = stats_.back().get();
    c->state = &current_;
    c->index = i;
    c->queue = static_cast<uint16_t>(i);
    c->nports = static_cast<uint32_t>(port_ids_.size());
    for (uint32_t p = 0; p < c->nports; ++p) {
      PortContext& pc = c->ports[p];
      pc.port_id = port_ids_[p];
      pc.index = static_cast<uint8_t>(p);
      pc.mac = port_macs_[p];
      std::memcpy(pc.gateway.bytes, cfg.ports[p].gateway_mac, 6);
      pc.stats = c->stats;
      pc.tx = static_cast<rte_eth_dev_tx_buffer*>(rte_zmalloc_socket(
          "sg_tx", RTE_ETH_TX_BUFFER_SIZE(kBurst), 0, rte_eth_dev_socket_id(pc.port_id)));
      if (pc.tx == nullptr) return internalError("dataplane: cannot allocate TX buffers");
      dpdk_allocs_.push_back(pc.tx);
      rte_eth_tx_buffer_init(pc.tx, kBurst);
      rte_eth_tx_buffer_set_err_callback(pc.tx, countTxFailures, &pc);
      c->port_index[pc.port_id] = static_cast<int8_t>(p);
    }
    for (const SocketAddress& a : cfg.local_addresses) {
      if (c->nlocal == kMaxLocalAddresses) break;
      c->local_ips[c->nlocal++] =
          reinterpret_cast<const sockaddr_in*>(a.sockaddrPtr())->sin_addr.s_addr;
    }
    c->nat_min = static_cast<uint16_t>(cfg.nat_port_min);
    c->nat_per_lcore = static_cast<uint16_t>(nat_ports / nl);
    c->nlcores = nl;
    c->timeouts = FlowTimeouts{ms(cfg.syn_timeout), ms(cfg.established_timeout),
                               ms(cfg.closing_timeout), ms(cfg.udp_timeout)};
    c->tsc_per_ms = tsc_per_ms;
    c->own_ring = rings_[i];
    for (uint32_t j = 0; j < nl; ++j) c->rings[j] = rings_[j];
    c->rcu = rcu_;
    c->stop = &stop_;
    lcores_.push_back(std::move(c));
    lcore_ids_.push_back(cfg.lcores[i]);
  }
  for (uint32_t i = 0; i < nl; ++i) {
    rc = rte_eal_remote_launch(lcoreMain, lcores_[i].get(), cfg.lcores[i]);
    if (rc != 0) return dpdkError("cannot launch lcore " + std::to_string(cfg.lcores[i]), rc);
    launched_ = i + 1;
  }
  return Status::ok();
}

void Dataplane::publish(std::unique_ptr<ForwardingState> state) {
  const ForwardingState* old = current_.exchange(state.release(), std::memory_order_acq_rel);
  if (old == nullptr) return;
  retired_.emplace_back(rte_rcu_qsbr_start(rcu_), old);
}

size_t Dataplane::reclaim() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (rte_rcu_qsbr_check(rcu_, it->first, false) == 1) {
      delete it->second;
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
  return retired_.size();
}

uint64_t Dataplane::flowCapacity() const {
  uint64_t total = 0;
  for (const auto& f : flows_) total += f->capacity();
  return total;
}

void Dataplane::stop() {
  if (launched_ > 0) {
    stop_.store(true, std::memory_order_relaxed);
    rte_eal_mp_wait_lcore();
    for (size_t i = 0; i < launched_; ++i) {
      // Always true once mp_wait returned; the acquire makes that ordering visible to TSan.
      const bool exited = lcores_[i]->exited.load(std::memory_order_acquire);
      assert(exited);
      (void)exited;
    }
    launched_ = 0;
  }
  for (uint16_t id : port_ids_) {
    rte_eth_dev_stop(id);
    rte_eth_dev_close(id);
  }
  port_ids_.clear();
  for (void* p : dpdk_allocs_) rte_free(p);
  dpdk_allocs_.clear();
  for (rte_ring* r : rings_) rte_ring_free(r);
  rings_.clear();
  for (auto& [token, st] : retired_) delete st;
  retired_.clear();
  delete current_.exchange(nullptr);
  if (rcu_ != nullptr) rte_free(rcu_);
  rcu_ = nullptr;
  if (pool_ != nullptr) rte_mempool_free(pool_);
  pool_ = nullptr;
  if (eal_) {
    // DPDK leaves its runtime directory (/var/run/dpdk/<file-prefix>) behind; it is ours.
    const std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir, ec);
  }
  eal_ = false;
}

Dataplane::~Dataplane() { stop(); }

}  // namespace scalegate::dataplane
