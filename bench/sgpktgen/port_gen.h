#pragma once
// sgpktgen --port: a traffic generator on a real DPDK port (a vdev such as net_af_packet or
// net_tap, or a PCI device). N flows (distinct source address/port tuples) towards one VIP:
// UDP datagrams, or TCP connections with a real handshake, data segments whose replies are
// read and acknowledged, and a FIN close. Rate control by a token bucket on the TSC. Reports
// pps each second, a summary, and which member answered each flow (an identifier taken from
// the reply payload). bench/README.md describes the flags and the output.
//
//   token bucket ─► flows (ready queue) ─► frames ─► tx_burst ─► [port] ─► scalegate ─► members
//   rx_burst ◄─ [port] ◄─ replies: ARP (answered / gateway resolved), UDP, TCP (state machine,
//                                  ACKs, retransmission) ─► per-flow member id ─► summary

#include <cstdint>
#include <string>

namespace scalegate::sgpktgen {

struct PortOptions {
  std::string port;      // vdev spec ("net_af_packet0,iface=c0") or PCI address
  std::string eal_args;  // extra EAL arguments, space separated
  uint32_t lcore = 0;
  std::string proto = "udp";  // udp | tcp
  std::string vip;            // destination IPv4 address
  uint16_t vip_port = 80;     // destination port
  std::string src_ip;         // first source address
  uint32_t src_ips = 1;       // consecutive source addresses the flows use
  uint16_t src_port = 20000;  // first source port
  std::string gateway;        // next hop to resolve by ARP ("": the VIP itself)
  std::string dst_mac;        // next hop MAC: skips ARP resolution
  std::string src_mac;        // our MAC ("": the port's)
  double arp_timeout = 3.0;   // seconds to resolve the next hop
  uint32_t flows = 100;
  uint32_t size = 64;     // payload bytes per datagram / data segment
  std::string request;    // the payload instead, with C escapes (\r \n \t \\ \xHH)
  uint64_t rate = 0;      // generated packets per second; 0: as fast as the port takes
  double duration = 0;    // seconds of generation; 0: until --count / every flow done
  uint64_t count = 0;     // datagrams / data segments in all; 0: see duration
  uint32_t segments = 1;  // tcp: data segments per flow (each waits for its reply); 0: until
                          // --duration / --count
  double wait = 2.0;      // seconds to wait for replies and closes after generation
  std::string id_after;   // the member id follows this marker in the reply ("": at start)
  bool json = false;      // summary as one JSON object on stdout
};

// Runs the generator (initialises EAL once). Returns the process exit status: 0 when every
// flow was answered (and, for tcp, closed), 1 when some were not, 2 on setup errors.
int runPort(const PortOptions& o);

}  // namespace scalegate::sgpktgen
