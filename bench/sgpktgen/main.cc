// sgpktgen: DPDK packet generator for scalegate's L4 path (bench/README.md).
//
// --port DEV: a traffic generator on a real DPDK port (bench/sgpktgen/port_gen.h).
//
// --in-process: pushes synthetic client packets through the real lcore loop (dataplane/lcore.h:
// parse, classify, flow table, Maglev, NAT or IP-in-IP rewrite, TX) over a net_ring port pair on
// one lcore, and prints the cost per packet of that loop alone (generation excluded):
//
//   generator ─► rx ring ─► [net_ring port] ─► pollOnce() ─► [net_ring port] ─► tx ring ─► count
//                                              (timed with rdtsc)                 per member
//
// Flows are created first (one SYN each), then visited in random order with ACK packets, so
// every measured packet is a flow-table hit among `--flows` live flows (as Katran's and the
// DESIGN.md figures assume).

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bench/sgpktgen/port_gen.h"
#include "common/maglev.h"
#include "dataplane/checksum.h"
#include "dataplane/flow_table.h"
#include "dataplane/forwarding_state.h"
#include "dataplane/lcore.h"
#include "dataplane/maglev.h"
#include "dataplane/packet.h"

namespace dp = scalegate::dataplane;

namespace {

struct Options {
  bool in_process = false;
  std::string mode = "nat";
  uint32_t flows = 1000000;
  uint32_t members = 16;
  uint64_t packets = 20000000;
  uint32_t size = 60;  // frame without FCS: 64 bytes on the wire
  uint32_t lcore = 0;
  uint64_t flow_table = 0;  // 0: 4 * flows (nat flows use two entries)
};

constexpr uint32_t kVip = 0x0a00000a;  // 10.0.0.10 (host order)
constexpr uint16_t kVipPort = 80;

const dp::MacAddress kGenMac{{0x02, 0, 0, 0, 0, 0x01}};

// Writes the client packet of flow i into frame (valid IPv4 and TCP checksums).
void buildPacket(uint8_t* f, uint32_t size, uint32_t flow, uint8_t tcp_flags,
                 const dp::MacAddress& dst_mac) {
  std::memset(f, 0, size);
  std::memcpy(f, dst_mac.bytes, 6);
  std::memcpy(f + 6, kGenMac.bytes, 6);
  dp::store16(f + 12, htons(dp::kEtherTypeIpv4));
  uint8_t* ip = f + 14;
  const uint16_t ip_len = static_cast<uint16_t>(size - 14);
  ip[0] = 0x45;
  dp::store16(ip + 2, htons(ip_len));
  ip[6] = 0x40;
  ip[8] = 64;
  ip[9] = dp::kProtoTcp;
  const uint32_t src = htonl(0x0a800000u | (flow >> 4));
  const uint32_t dst = htonl(kVip);
  dp::store32(ip + 12, src);
  dp::store32(ip + 16, dst);
  dp::store16(ip + 10, dp::ipv4HeaderChecksum(ip, 20));
  uint8_t* tcp = ip + 20;
  dp::store16(tcp, htons(static_cast<uint16_t>(10000 + (flow & 15))));
  dp::store16(tcp + 2, htons(kVipPort));
  dp::store32(tcp + 4, htonl(flow));
  tcp[12] = 5 << 4;
  tcp[13] = tcp_flags;
  dp::store16(tcp + 14, htons(65535));
  dp::store16(tcp + 16, dp::l4Checksum(src, dst, dp::kProtoTcp, tcp, ip_len - 20u, 16));
}

int fail(const char* what) {
  std::fprintf(stderr, "sgpktgen: %s: %s\n", what, rte_strerror(rte_errno));
  return 1;
}

int runInProcess(const Options& o) {
  std::vector<std::string> args = {"sgpktgen",
                                   "-l",
                                   std::to_string(o.lcore),
                                   "--no-huge",
                                   "-m",
                                   "512",
                                   "--no-pci",
                                   "--no-telemetry",
                                   "--file-prefix=sgpktgen-" + std::to_string(getpid())};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) return fail("EAL");
  const int socket = static_cast<int>(rte_socket_id());
  rte_mempool* pool =
      rte_pktmbuf_pool_create("sgpg_mbufs", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (pool == nullptr) return fail("mempool");
  rte_ring* rx = rte_ring_create("sgpg_rx", 1024, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("sgpg_tx", 1024, socket, RING_F_SP_ENQ | RING_F_SC_DEQ);
  if (rx == nullptr || tx == nullptr) return fail("rings");
  const int port = rte_eth_from_rings("sgpg0", &rx, 1, &tx, 1, static_cast<unsigned>(socket));
  if (port < 0) return fail("net_ring port");
  const auto port_id = static_cast<uint16_t>(port);
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port_id, 1, 1, &conf) != 0 ||
      rte_eth_rx_queue_setup(port_id, 0, 1024, socket, nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(port_id, 0, 1024, socket, nullptr) != 0 ||
      rte_eth_dev_start(port_id) != 0) {
    return fail("port setup");
  }
  rte_ether_addr mac{};
  rte_eth_macaddr_get(port_id, &mac);

  // One VIP, one pool of `members` backends, Maglev M = 65537: what control would publish.
  auto state = std::make_unique<dp::ForwardingState>();
  std::vector<std::string> names;
  std::vector<scalegate::MaglevBackend> backends;
  std::vector<uint16_t> ids;
  for (uint32_t i = 0; i < o.members; ++i) names.push_back("member-" + std::to_string(i));
  for (uint32_t i = 0; i < o.members; ++i) {
    backends.push_back({names[i], 1});
    ids.push_back(static_cast<uint16_t>(i));
    state->backends[i] = dp::Backend{htonl(0x0a010000u + i + 1), htons(8080), 1, 0};
  }
  const uint64_t t_build = rte_rdtsc();
  dp::PoolTable table;
  table.slots = dp::buildBackendTable(backends, ids, scalegate::kDefaultMaglevTableSize);
  const double build_ms =
      static_cast<double>(rte_rdtsc() - t_build) * 1e3 / static_cast<double>(rte_get_tsc_hz());
  state->pools.push_back(std::move(table));
  dp::Vip vip;
  vip.ip = htonl(kVip);
  vip.port = htons(kVipPort);
  vip.proto = dp::kProtoTcp;
  vip.dsr = o.mode == "dsr";
  state->vips.push_back(vip);
  std::atomic<const dp::ForwardingState*> current{state.get()};

  auto stats = std::make_unique<dp::LcoreStats>();
  dp::FlowTable flows(o.flow_table ? o.flow_table : uint64_t{o.flows} * 4);
  auto ctx = std::make_unique<dp::LcoreContext>();
  dp::LcoreContext& c = *ctx;
  dp::initLcoreContext(c);
  c.flows = &flows;
  c.stats = stats.get();
  c.state = &current;
  c.nports = 1;
  c.ports[0].port_id = port_id;
  std::memcpy(c.ports[0].mac.bytes, mac.addr_bytes, 6);
  c.ports[0].gateway = kGenMac;
  c.ports[0].stats = stats.get();
  c.ports[0].tx = static_cast<rte_eth_dev_tx_buffer*>(
      rte_zmalloc_socket("sgpg_txb", RTE_ETH_TX_BUFFER_SIZE(dp::kBurst), 0, socket));
  rte_eth_tx_buffer_init(c.ports[0].tx, dp::kBurst);
  rte_eth_tx_buffer_set_err_callback(c.ports[0].tx, dp::countTxFailures, &c.ports[0]);
  c.port_index[port_id] = 0;
  for (uint32_t i = 0; i < 4; ++i) c.local_ips[c.nlocal++] = htonl(0x0a020001u + i);
  c.nat_min = 1024;
  c.nat_per_lcore = 65535 - 1024 + 1;
  c.nlcores = 1;
  c.tsc_per_ms = std::max<uint64_t>(1, rte_get_tsc_hz() / 1000);

  dp::MacAddress lb_mac;
  std::memcpy(lb_mac.bytes, mac.addr_bytes, 6);
  std::vector<uint32_t> order(o.flows);
  for (uint32_t i = 0; i < o.flows; ++i) order[i] = i;
  std::mt19937 rng(42);
  std::shuffle(order.begin(), order.end(), rng);

  std::map<uint32_t, uint64_t> per_member;
  uint64_t sent = 0, received = 0, lb_cycles = 0;
  // Cycles of each timed pollOnce: on a shared machine a preempted burst counts its whole
  // time slice, so the median burst is reported next to the mean.
  std::vector<uint32_t> burst_cycles;
  burst_cycles.reserve(o.packets / dp::kBurst + 1);
  rte_mbuf* burst[dp::kBurst];
  auto pass = [&](uint64_t count, uint8_t flags, bool sequential, bool timed, bool count_members) {
    uint64_t done = 0;
    while (done < count) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(dp::kBurst, count - done));
      if (rte_pktmbuf_alloc_bulk(pool, burst, n) != 0) return false;
      for (uint32_t i = 0; i < n; ++i) {
        const uint64_t k = done + i;
        const uint32_t flow = sequential ? static_cast<uint32_t>(k % o.flows)
                                         : order[static_cast<size_t>(k % o.flows)];
        uint8_t* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(burst[i], o.size));
        buildPacket(f, o.size, flow, flags, lb_mac);
      }
      const unsigned enq =
          rte_ring_sp_enqueue_burst(rx, reinterpret_cast<void**>(burst), n, nullptr);
      if (enq < n) rte_pktmbuf_free_bulk(burst + enq, n - enq);
      sent += enq;
      const uint64_t t0 = rte_rdtsc();
      dp::pollOnce(c);
      const uint64_t t1 = rte_rdtsc();
      if (timed) {
        lb_cycles += t1 - t0;
        if (n == dp::kBurst)
          burst_cycles.push_back(static_cast<uint32_t>(std::min<uint64_t>(t1 - t0, UINT32_MAX)));
      }
      unsigned got;
      while ((got = rte_ring_sc_dequeue_burst(tx, reinterpret_cast<void**>(burst), dp::kBurst,
                                              nullptr)) > 0) {
        received += got;
        if (count_members) {
          for (unsigned i = 0; i < got; ++i) {
            const uint8_t* f = rte_pktmbuf_mtod(burst[i], const uint8_t*);
            // nat: the IPv4 destination; dsr: the outer destination. Both at offset 30.
            ++per_member[ntohl(dp::load32(f + 30))];
          }
        }
        rte_pktmbuf_free_bulk(burst, got);
      }
      done += n;
    }
    return true;
  };

  // 1. Create every flow (SYN), in order.
  const uint64_t t_setup = rte_rdtsc();
  if (!pass(o.flows, dp::kTcpSyn, true, false, false)) return fail("mbuf allocation");
  const double setup_s =
      static_cast<double>(rte_rdtsc() - t_setup) / static_cast<double>(rte_get_tsc_hz());
  const uint64_t created = stats->flows_created.get();
  // 2. Measured: established packets in random flow order.
  sent = received = 0;
  const uint64_t t_run = rte_rdtsc();
  if (!pass(o.packets, dp::kTcpAck, false, true, true)) return fail("mbuf allocation");
  const double run_s =
      static_cast<double>(rte_rdtsc() - t_run) / static_cast<double>(rte_get_tsc_hz());

  const double ns_per_cycle = 1e9 / static_cast<double>(rte_get_tsc_hz());
  const double mean_ns = static_cast<double>(lb_cycles) * ns_per_cycle / static_cast<double>(sent);
  std::sort(burst_cycles.begin(), burst_cycles.end());
  auto quantile = [&](double q) {
    if (burst_cycles.empty()) return 0.0;
    return burst_cycles[static_cast<size_t>(q * static_cast<double>(burst_cycles.size() - 1))] *
           ns_per_cycle / dp::kBurst;
  };
  const double ns_per_packet = quantile(0.5);
  uint64_t drops = 0;
  for (const auto& d : stats->drops) drops += d.get();
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const auto& [m, n] : per_member) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  const double mean = static_cast<double>(received) / static_cast<double>(o.members);
  std::printf(
      "sgpktgen in-process: mode %s, %u flows (%llu created, %llu flow-table entries), "
      "%u members, %u-byte frames (+4 FCS), 1 lcore\n",
      o.mode.c_str(), o.flows, static_cast<unsigned long long>(created),
      static_cast<unsigned long long>(flows.size()), o.members, o.size);
  std::printf("  flow setup (SYN): %.2f Mflows/s incl. generation\n", o.flows / setup_s / 1e6);
  std::printf("  measured: %llu packets sent, %llu forwarded, %llu dropped, %llu evictions\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(received),
              static_cast<unsigned long long>(drops),
              static_cast<unsigned long long>(flows.evictions()));
  std::printf(
      "  LB path: %.1f ns/packet = %.2f Mpps per lcore (median burst of 32: rx + parse + "
      "flow table + rewrite + tx; generation excluded)\n",
      ns_per_packet, 1e3 / ns_per_packet);
  std::printf(
      "  LB path per packet: p10 %.1f ns, p90 %.1f ns, mean %.1f ns (%.2f Mpps; the mean "
      "includes time the lcore was preempted)\n",
      quantile(0.1), quantile(0.9), mean_ns, 1e3 / mean_ns);
  std::printf("  with generation on the same core: %.2f Mpps\n",
              static_cast<double>(sent) / run_s / 1e6);
  std::printf("  per-member distribution: %zu members, min %.3f max %.3f of the mean\n",
              per_member.size(), static_cast<double>(lo) / mean, static_cast<double>(hi) / mean);
  std::printf("  Maglev table build (%u members, M=%u): %.3f ms\n", o.members,
              scalegate::kDefaultMaglevTableSize, build_ms);
  std::printf("RESULT mpps=%.3f ns_per_packet=%.2f forwarded=%llu sent=%llu\n", 1e3 / ns_per_packet,
              ns_per_packet, static_cast<unsigned long long>(received),
              static_cast<unsigned long long>(sent));
  rte_eth_dev_stop(port_id);
  rte_eth_dev_close(port_id);
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  std::error_code ec;
  std::filesystem::remove_all(runtime_dir, ec);  // DPDK leaves it behind
  return received == sent ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"sgpktgen: DPDK packet generator for scalegate's L4 path"};
  app.add_flag("--in-process", o.in_process,
               "push synthetic packets through the LB lcore loop over net_ring (one lcore)");
  app.add_option("--mode", o.mode, "nat or dsr")->check(CLI::IsMember({"nat", "dsr"}));
  app.add_option("--flows", o.flows, "active flows")->check(CLI::Range(1u, 50000000u));
  app.add_option("--members", o.members, "pool members")->check(CLI::Range(1u, 4000u));
  app.add_option("--packets", o.packets, "packets in the measured phase");
  app.add_option("--size", o.size, "frame bytes without FCS (60 = 64-byte packets)")
      ->check(CLI::Range(60u, 1514u));
  app.add_option("--lcore", o.lcore, "lcore (CPU) to run on");
  app.add_option("--flow-table", o.flow_table, "flow-table entries (default 4 x flows)");
  scalegate::sgpktgen::PortOptions p;
  app.add_option("--port", p.port,
                 "generate on this DPDK port: a vdev (net_af_packet0,iface=IF, net_tap0,...) "
                 "or a PCI address");
  app.add_option("--eal", p.eal_args,
                 "extra EAL arguments, one word: --eal=\"...\" (default for a vdev: --no-huge -m "
                 "512)");
  app.add_option("--proto", p.proto, "udp or tcp")->check(CLI::IsMember({"udp", "tcp"}));
  app.add_option("--vip", p.vip, "destination IPv4 address");
  app.add_option("--vip-port", p.vip_port, "destination port");
  app.add_option("--src-ip", p.src_ip, "first source IPv4 address (answered by ARP)");
  app.add_option("--src-ips", p.src_ips, "consecutive source addresses")
      ->check(CLI::Range(1u, 65536u));
  app.add_option("--src-port", p.src_port, "first source port");
  app.add_option("--gateway", p.gateway, "next hop resolved by ARP (default: the VIP)");
  app.add_option("--dst-mac", p.dst_mac, "next hop MAC (no ARP)");
  app.add_option("--arp-timeout", p.arp_timeout, "seconds to resolve the next hop by ARP")
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("--src-mac", p.src_mac, "our MAC (default: the port's; sets promiscuous)");
  app.add_option("--payload", p.size, "payload bytes per datagram or data segment")
      ->check(CLI::Range(0u, 1400u));
  app.add_option("--rate", p.rate, "generated packets per second (0: as fast as possible)");
  app.add_option("--duration", p.duration, "seconds of generation")->check(CLI::Range(0.0, 1e6));
  app.add_option("--count", p.count, "datagrams / data segments in all");
  app.add_option("--segments", p.segments,
                 "tcp: data segments per connection (0: until --duration / --count)");
  app.add_option("--request", p.request,
                 "payload bytes instead of --payload's pattern, with C escapes (\\r \\n \\t "
                 "\\\\ \\xHH), e.g. an HTTP request");
  app.add_option("--wait", p.wait, "seconds to wait for replies after generation")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--id-after", p.id_after,
                 "the member id follows this text in a reply (default: the reply starts with "
                 "it)");
  app.add_flag("--json", p.json, "summary as one JSON object on stdout");
  CLI11_PARSE(app, argc, argv);
  if (!p.port.empty() && o.in_process) {
    std::fprintf(stderr, "sgpktgen: --port and --in-process exclude each other\n");
    return 2;
  }
  if (!p.port.empty()) {
    if (app.get_option("--flows")->count() > 0) p.flows = o.flows;  // else 100
    p.lcore = o.lcore;
    return scalegate::sgpktgen::runPort(p);
  }
  if (!o.in_process) {
    std::fprintf(stderr, "sgpktgen: give --in-process or --port DEV\n");
    return 2;
  }
  return runInProcess(o);
}
