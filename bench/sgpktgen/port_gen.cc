#include "bench/sgpktgen/port_gen.h"

#include <arpa/inet.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <vector>

#include "dataplane/checksum.h"
#include "dataplane/packet.h"
#include "dataplane/rewrite.h"

namespace scalegate::sgpktgen {
namespace {

namespace dp = scalegate::dataplane;

std::atomic<bool> g_interrupted{false};
void onSignal(int) { g_interrupted.store(true); }

constexpr uint32_t kMaxIds = 64;       // distinct member identifiers counted
constexpr size_t kIdLen = 31;          // longest identifier kept
constexpr uint16_t kNoId = 0xffff;     // flow not identified (yet)
constexpr uint16_t kOtherId = 0xfffe;  // more identifiers than kMaxIds
constexpr uint32_t kTxMax = 256;       // frames waiting for tx_burst
constexpr uint32_t kMaxPayload = 1400;
constexpr size_t kMinFrame = 60;     // Ethernet minimum without FCS
constexpr uint32_t kMaxRetries = 6;  // TCP retransmissions before a flow counts as failed
constexpr double kRtoSeconds = 0.2;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint16_t kRxBurst = 32;

enum class TcpState : uint8_t {
  kIdle,  // SYN not sent yet
  kSynSent,
  kEstablished,  // sending data segments, one outstanding at a time
  kFinSent,      // our FIN sent; waiting for its ACK and the peer's FIN
  kClosed,       // both FINs acknowledged
  kReset,        // peer sent RST
  kFailed,       // retransmissions exhausted
  kNotStarted,   // generation ended before the flow's SYN
};

struct Flow {
  uint32_t iss = 0;
  uint32_t snd_una = 0;
  uint32_t snd_nxt = 0;
  uint32_t rcv_nxt = 0;
  uint64_t sent_tsc = 0;  // last transmission of the outstanding segment
  uint64_t replies = 0;   // UDP datagrams / TCP segments with payload received
  uint32_t segs_done = 0;
  uint16_t member = kNoId;
  TcpState state = TcpState::kIdle;
  uint8_t retries = 0;
  bool awaiting = false;   // a data segment is out and its reply has not come yet
  bool got_reply = false;  // reply bytes arrived since that segment went out
  bool peer_fin = false;
  bool queued = false;
};

bool seqAfter(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

bool parseMac(const std::string& s, dp::MacAddress* out) {
  unsigned b[6];
  char tail;
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                  &tail) != 6) {
    return false;
  }
  for (int i = 0; i < 6; ++i) {
    if (b[i] > 255) return false;
    out->bytes[i] = static_cast<uint8_t>(b[i]);
  }
  return true;
}

bool parseIpv4(const std::string& s, uint32_t* host_order) {
  in_addr a{};
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *host_order = ntohl(a.s_addr);
  return true;
}

std::string ipString(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

bool isPciAddress(const std::string& dev) {
  static const std::regex pci("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
  return std::regex_match(dev, pci);
}

// net_tap: the DPDK port and the kernel interface it creates share one MAC address.
bool sharesKernelMac(uint16_t port) {
  rte_eth_dev_info info{};
  return rte_eth_dev_info_get(port, &info) == 0 && info.driver_name != nullptr &&
         std::strcmp(info.driver_name, "net_tap") == 0;
}

// C escapes of --request (\\r \\n \\t \\\\ \\xHH) into out; false when malformed or too long.
bool unescape(const std::string& in, uint8_t* out, uint32_t* len) {
  uint32_t n = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (n == kMaxPayload) return false;
    char c = in[i];
    if (c == '\\') {
      if (++i == in.size()) return false;
      switch (in[i]) {
        case 'r':
          c = '\r';
          break;
        case 'n':
          c = '\n';
          break;
        case 't':
          c = '\t';
          break;
        case '\\':
          c = '\\';
          break;
        case 'x': {
          if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
              !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
            return false;
          }
          c = static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
          i += 2;
          break;
        }
        default:
          return false;
      }
    }
    out[n++] = static_cast<uint8_t>(c);
  }
  *len = n;
  return true;
}

struct Second {
  uint64_t tx = 0;
  uint64_t rx = 0;
  uint64_t sent = 0;     // datagrams / data segments generated
  uint64_t replies = 0;  // their replies
};

class Generator {
 public:
  Generator(const PortOptions& o, uint16_t port, rte_mempool* pool)
      : o_(o), port_(port), pool_(pool), flows_(o.flows), queue_(o.flows) {}

  // Validated addresses and the TSC constants; false with a message on bad options.
  bool prepare();
  int run();

 private:
  bool tcp() const { return o_.proto == "tcp"; }
  // --- frames ---
  uint8_t* newFrame(rte_mbuf** m, size_t len);
  void writeIpv4(uint8_t* f, uint32_t src, uint8_t proto, size_t l4_len);
  bool sendArpRequest();
  bool sendUdp(uint32_t idx);
  bool sendTcp(uint32_t idx, uint8_t flags, uint32_t seq, uint32_t payload_len);
  void txPush(rte_mbuf* m);
  void txFlush();
  // --- receive ---
  void poll();
  void onFrame(rte_mbuf* m);
  void onUdp(uint32_t idx, const uint8_t* payload, size_t len);
  void onTcp(uint32_t idx, const uint8_t* tcp, size_t seg_len);
  uint16_t identify(const uint8_t* p, size_t n);
  bool flowOf(uint32_t dst_ip, uint16_t dst_port, uint32_t* idx) const;
  // --- TCP flows ---
  void schedule(uint32_t idx);
  bool emit(uint32_t idx);  // the flow's next segment; false when it had nothing to send
  void progress(uint32_t idx);
  void finish(uint32_t idx, TcpState st);
  void scanRetransmits();
  void beginStop();
  // --- reporting ---
  void tick(bool final);
  void summary(double gen_s, double total_s);

  const PortOptions& o_;
  uint16_t port_;
  rte_mempool* pool_;
  std::vector<Flow> flows_;
  std::vector<uint32_t> queue_;  // ring of flow indices with something to send
  uint32_t q_head_ = 0, q_len_ = 0;

  dp::MacAddress our_mac_, next_mac_;
  bool have_next_mac_ = false;
  uint32_t vip_ = 0, src_base_ = 0, next_hop_ = 0;  // host order
  uint32_t ports_needed_ = 0;
  uint8_t payload_[kMaxPayload];
  uint32_t size_ = 0;  // payload bytes
  uint16_t ip_id_ = 0;

  rte_mbuf* tx_[kTxMax];
  uint32_t ntx_ = 0;

  uint64_t hz_ = 0, now_ = 0, rto_tsc_ = 0;
  uint64_t start_tsc_ = 0, stop_tsc_ = 0, next_tick_ = 0, end_wait_tsc_ = 0;
  uint64_t last_progress_ = 0;  // last packet of one of our flows
  bool stopping_ = false;
  double tokens_ = 0;
  uint64_t last_refill_ = 0;
  uint32_t next_udp_flow_ = 0;
  uint32_t scan_cursor_ = 0;
  uint32_t active_ = 0;  // TCP flows not in a final state

  // Counters.
  uint64_t tx_packets_ = 0, rx_packets_ = 0, tx_dropped_ = 0, alloc_failed_ = 0;
  uint64_t sent_ = 0, replies_ = 0, arp_replies_ = 0;
  uint64_t opened_ = 0, closed_ = 0, reset_ = 0, failed_ = 0, not_started_ = 0, retransmits_ = 0,
           acks_ = 0;
  Second last_, cur_;
  std::vector<Second> seconds_;
  char ids_[kMaxIds][kIdLen + 1] = {};
  uint32_t nids_ = 0;
};

bool Generator::prepare() {
  if (!parseIpv4(o_.vip, &vip_)) {
    std::fprintf(stderr, "sgpktgen: --vip: not an IPv4 address: %s\n", o_.vip.c_str());
    return false;
  }
  if (!parseIpv4(o_.src_ip, &src_base_)) {
    std::fprintf(stderr, "sgpktgen: --src-ip: not an IPv4 address: %s\n", o_.src_ip.c_str());
    return false;
  }
  next_hop_ = vip_;
  if (!o_.gateway.empty() && !parseIpv4(o_.gateway, &next_hop_)) {
    std::fprintf(stderr, "sgpktgen: --gateway: not an IPv4 address: %s\n", o_.gateway.c_str());
    return false;
  }
  ports_needed_ = (o_.flows + o_.src_ips - 1) / o_.src_ips;
  if (uint32_t{o_.src_port} + ports_needed_ > 65536) {
    std::fprintf(stderr, "sgpktgen: %u flows over %u source addresses need ports %u..%u\n",
                 o_.flows, o_.src_ips, o_.src_port, o_.src_port + ports_needed_ - 1);
    return false;
  }
  rte_ether_addr mac{};
  rte_eth_macaddr_get(port_, &mac);
  std::memcpy(our_mac_.bytes, mac.addr_bytes, 6);
  if (sharesKernelMac(port_)) {
    // A tap's kernel side has the port's MAC: the kernel would answer to its own address.
    // Use a neighbour of it (locally administered); the port is promiscuous (runPort).
    our_mac_.bytes[0] = static_cast<uint8_t>((our_mac_.bytes[0] | 0x02) & ~0x01);
    our_mac_.bytes[5] ^= 0x01;
  }
  if (!o_.src_mac.empty() && !parseMac(o_.src_mac, &our_mac_)) {
    std::fprintf(stderr, "sgpktgen: --src-mac: not a MAC address: %s\n", o_.src_mac.c_str());
    return false;
  }
  if (!o_.dst_mac.empty()) {
    if (!parseMac(o_.dst_mac, &next_mac_)) {
      std::fprintf(stderr, "sgpktgen: --dst-mac: not a MAC address: %s\n", o_.dst_mac.c_str());
      return false;
    }
    have_next_mac_ = true;
  }
  // --request's bytes, or a recognisable pattern whose last byte is a newline (so
  // line-oriented responders see a line).
  if (!o_.request.empty()) {
    if (!unescape(o_.request, payload_, &size_)) {
      std::fprintf(stderr, "sgpktgen: --request: bad escape or longer than %u bytes\n",
                   kMaxPayload);
      return false;
    }
  } else {
    static const char kPattern[] = "sgpktgen-payload.";
    size_ = o_.size;
    for (uint32_t i = 0; i < size_; ++i) payload_[i] = kPattern[i % (sizeof(kPattern) - 1)];
    if (size_ > 0) payload_[size_ - 1] = '\n';
  }
  if (tcp() && size_ == 0) {
    std::fprintf(stderr, "sgpktgen: tcp needs a payload (--payload > 0 or --request)\n");
    return false;
  }
  hz_ = rte_get_tsc_hz();
  rto_tsc_ = static_cast<uint64_t>(kRtoSeconds * static_cast<double>(hz_));
  std::mt19937 rng(static_cast<uint32_t>(rte_rdtsc()));
  for (Flow& f : flows_) f.iss = rng();
  active_ = tcp() ? o_.flows : 0;
  return true;
}

// ---- frames -----------------------------------------------------------------------------

uint8_t* Generator::newFrame(rte_mbuf** m, size_t len) {
  *m = rte_pktmbuf_alloc(pool_);
  if (*m == nullptr) {
    ++alloc_failed_;
    return nullptr;
  }
  const size_t frame_len = std::max(len, kMinFrame);
  auto* f = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(*m, static_cast<uint16_t>(frame_len)));
  if (frame_len > len) std::memset(f + len, 0, frame_len - len);
  return f;
}

void Generator::writeIpv4(uint8_t* f, uint32_t src, uint8_t proto, size_t l4_len) {
  dp::setEthernet(f, our_mac_, next_mac_);
  dp::store16(f + 12, htons(dp::kEtherTypeIpv4));
  uint8_t* ip = f + dp::kEthHeaderLen;
  ip[0] = 0x45;
  ip[1] = 0;
  dp::store16(ip + 2, htons(static_cast<uint16_t>(dp::kIpv4MinHeaderLen + l4_len)));
  dp::store16(ip + 4, htons(ip_id_++));
  dp::store16(ip + 6, htons(0x4000));  // DF
  ip[8] = 64;
  ip[9] = proto;
  dp::store32(ip + 12, htonl(src));
  dp::store32(ip + 16, htonl(vip_));
  dp::store16(ip + 10, dp::ipv4HeaderChecksum(ip, dp::kIpv4MinHeaderLen));
}

bool Generator::sendArpRequest() {
  rte_mbuf* m;
  uint8_t* f = newFrame(&m, dp::kEthHeaderLen + dp::kArpIpv4Len);
  if (f == nullptr) return false;
  static const dp::MacAddress kBroadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
  dp::setEthernet(f, our_mac_, kBroadcast);
  dp::store16(f + 12, htons(dp::kEtherTypeArp));
  uint8_t* a = f + dp::kEthHeaderLen;
  dp::store16(a, htons(1));
  dp::store16(a + 2, htons(dp::kEtherTypeIpv4));
  a[4] = 6;
  a[5] = 4;
  dp::store16(a + 6, htons(1));
  std::memcpy(a + 8, our_mac_.bytes, 6);
  dp::store32(a + 14, htonl(src_base_));
  std::memset(a + 18, 0, 6);
  dp::store32(a + 24, htonl(next_hop_));
  txPush(m);
  return true;
}

bool Generator::sendUdp(uint32_t idx) {
  const uint32_t src = src_base_ + idx % o_.src_ips;
  const uint16_t sport = static_cast<uint16_t>(o_.src_port + idx / o_.src_ips);
  const size_t udp_len = dp::kUdpHeaderLen + size_;
  rte_mbuf* m;
  uint8_t* f = newFrame(&m, dp::kEthHeaderLen + dp::kIpv4MinHeaderLen + udp_len);
  if (f == nullptr) return false;
  writeIpv4(f, src, dp::kProtoUdp, udp_len);
  uint8_t* u = f + dp::kEthHeaderLen + dp::kIpv4MinHeaderLen;
  dp::store16(u, htons(sport));
  dp::store16(u + 2, htons(o_.vip_port));
  dp::store16(u + 4, htons(static_cast<uint16_t>(udp_len)));
  std::memcpy(u + 8, payload_, size_);
  uint16_t check = dp::l4Checksum(htonl(src), htonl(vip_), dp::kProtoUdp, u, udp_len, 6);
  dp::store16(u + 6, check == 0 ? 0xffff : check);
  txPush(m);
  return true;
}

bool Generator::sendTcp(uint32_t idx, uint8_t flags, uint32_t seq, uint32_t payload_len) {
  const Flow& fl = flows_[idx];
  const uint32_t src = src_base_ + idx % o_.src_ips;
  const uint16_t sport = static_cast<uint16_t>(o_.src_port + idx / o_.src_ips);
  const size_t tcp_len = dp::kTcpMinHeaderLen + payload_len;
  rte_mbuf* m;
  uint8_t* f = newFrame(&m, dp::kEthHeaderLen + dp::kIpv4MinHeaderLen + tcp_len);
  if (f == nullptr) return false;
  writeIpv4(f, src, dp::kProtoTcp, tcp_len);
  uint8_t* t = f + dp::kEthHeaderLen + dp::kIpv4MinHeaderLen;
  dp::store16(t, htons(sport));
  dp::store16(t + 2, htons(o_.vip_port));
  dp::store32(t + 4, htonl(seq));
  dp::store32(t + 8, (flags & dp::kTcpAck) ? htonl(fl.rcv_nxt) : 0);
  t[12] = 5 << 4;
  t[13] = flags;
  dp::store16(t + 14, htons(65535));
  dp::store16(t + 16, 0);
  dp::store16(t + 18, 0);
  std::memcpy(t + 20, payload_, payload_len);
  dp::store16(t + 16, dp::l4Checksum(htonl(src), htonl(vip_), dp::kProtoTcp, t, tcp_len, 16));
  txPush(m);
  return true;
}

void Generator::txPush(rte_mbuf* m) {
  if (ntx_ == kTxMax) txFlush();
  if (ntx_ == kTxMax) {
    ++tx_dropped_;
    rte_pktmbuf_free(m);
    return;
  }
  tx_[ntx_++] = m;
}

void Generator::txFlush() {
  if (ntx_ == 0) return;
  const uint16_t sent = rte_eth_tx_burst(port_, 0, tx_, static_cast<uint16_t>(ntx_));
  tx_packets_ += sent;
  cur_.tx += sent;
  if (sent < ntx_) std::memmove(tx_, tx_ + sent, (ntx_ - sent) * sizeof(tx_[0]));
  ntx_ -= sent;
}

// ---- receive ----------------------------------------------------------------------------

void Generator::poll() {
  rte_mbuf* pkts[kRxBurst];
  const uint16_t n = rte_eth_rx_burst(port_, 0, pkts, kRxBurst);
  rx_packets_ += n;
  cur_.rx += n;
  for (uint16_t i = 0; i < n; ++i) onFrame(pkts[i]);
}

bool Generator::flowOf(uint32_t dst_ip, uint16_t dst_port, uint32_t* idx) const {
  const uint32_t ip_off = ntohl(dst_ip) - src_base_;
  const uint32_t port_off = static_cast<uint32_t>(ntohs(dst_port)) - o_.src_port;
  if (ip_off >= o_.src_ips || port_off >= ports_needed_) return false;
  *idx = port_off * o_.src_ips + ip_off;
  return *idx < o_.flows;
}

void Generator::onFrame(rte_mbuf* m) {
  uint8_t* f = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t len = rte_pktmbuf_data_len(m);
  // Ours or broadcast/multicast; never our own frames (a tap or af_packet may echo them).
  if (len < dp::kEthHeaderLen || std::memcmp(f + 6, our_mac_.bytes, 6) == 0 ||
      (std::memcmp(f, our_mac_.bytes, 6) != 0 && !(f[0] & 1))) {
    rte_pktmbuf_free(m);
    return;
  }
  dp::PacketInfo pi;
  const dp::PacketKind kind = dp::parseFrame({f, len}, &pi);
  uint32_t idx = 0;
  switch (kind) {
    case dp::PacketKind::kArpRequest:
      if (ntohl(pi.dst_ip) - src_base_ < o_.src_ips) {
        dp::makeArpReply(f, our_mac_);
        ++arp_replies_;
        txPush(m);
        return;
      }
      break;
    case dp::PacketKind::kArpReply:
      if (!have_next_mac_ && ntohl(pi.src_ip) == next_hop_) {
        std::memcpy(next_mac_.bytes, f + dp::kEthHeaderLen + 8, 6);
        have_next_mac_ = true;
      }
      break;
    case dp::PacketKind::kUdp:
      if (!tcp() && ntohl(pi.src_ip) == vip_ && ntohs(pi.src_port) == o_.vip_port &&
          flowOf(pi.dst_ip, pi.dst_port, &idx)) {
        const uint8_t* u = f + pi.l4;
        onUdp(idx, u + dp::kUdpHeaderLen, ntohs(dp::load16(u + 4)) - dp::kUdpHeaderLen);
        last_progress_ = now_;
      }
      break;
    case dp::PacketKind::kTcp:
      if (tcp() && ntohl(pi.src_ip) == vip_ && ntohs(pi.src_port) == o_.vip_port &&
          flowOf(pi.dst_ip, pi.dst_port, &idx)) {
        onTcp(idx, f + pi.l4, pi.ip_len - (pi.l4 - pi.l3));
        last_progress_ = now_;
      }
      break;
    default:
      break;
  }
  rte_pktmbuf_free(m);
}

// The identifier in a reply: the token at the start of the payload, or after --id-after.
// Tokens are [A-Za-z0-9._-]{1,31}, so they print safely in JSON.
uint16_t Generator::identify(const uint8_t* p, size_t n) {
  if (!o_.id_after.empty()) {
    const void* at = memmem(p, n, o_.id_after.data(), o_.id_after.size());
    if (at == nullptr) return kNoId;
    const size_t skip =
        static_cast<size_t>(static_cast<const uint8_t*>(at) - p) + o_.id_after.size();
    p += skip;
    n -= skip;
    while (n > 0 && *p == ' ') ++p, --n;
  }
  size_t len = 0;
  while (len < n && len < kIdLen &&
         (std::isalnum(p[len]) || p[len] == '.' || p[len] == '_' || p[len] == '-')) {
    ++len;
  }
  if (len == 0) return kNoId;
  for (uint32_t i = 0; i < nids_; ++i) {
    if (std::strlen(ids_[i]) == len && std::memcmp(ids_[i], p, len) == 0) {
      return static_cast<uint16_t>(i);
    }
  }
  if (nids_ == kMaxIds) return kOtherId;
  std::memcpy(ids_[nids_], p, len);
  ids_[nids_][len] = 0;
  return static_cast<uint16_t>(nids_++);
}

void Generator::onUdp(uint32_t idx, const uint8_t* payload, size_t len) {
  Flow& fl = flows_[idx];
  ++fl.replies;
  ++replies_;
  ++cur_.replies;
  if (fl.member == kNoId) fl.member = identify(payload, len);
}

void Generator::onTcp(uint32_t idx, const uint8_t* t, size_t seg_len) {
  Flow& fl = flows_[idx];
  const size_t doff = static_cast<size_t>(t[12] >> 4) * 4;
  const uint8_t flags = t[13];
  const uint32_t seq = ntohl(dp::load32(t + 4));
  const uint32_t ack = ntohl(dp::load32(t + 8));
  const uint8_t* payload = t + doff;
  const uint32_t plen = static_cast<uint32_t>(seg_len - doff);
  switch (fl.state) {
    case TcpState::kIdle:
    case TcpState::kReset:
    case TcpState::kFailed:
    case TcpState::kNotStarted:
      return;
    case TcpState::kClosed:
      // Our last ACK was lost and the peer repeats its FIN.
      if (flags & dp::kTcpFin) {
        ++acks_;
        sendTcp(idx, dp::kTcpAck, fl.snd_nxt, 0);
      }
      return;
    default:
      break;
  }
  if (flags & dp::kTcpRst) {
    finish(idx, TcpState::kReset);
    return;
  }
  if (fl.state == TcpState::kSynSent) {
    if ((flags & (dp::kTcpSyn | dp::kTcpAck)) != (dp::kTcpSyn | dp::kTcpAck) || ack != fl.iss + 1) {
      return;
    }
    fl.rcv_nxt = seq + 1;
    fl.snd_una = ack;
    fl.state = TcpState::kEstablished;
    fl.retries = 0;
    ++opened_;
    ++acks_;
    sendTcp(idx, dp::kTcpAck, fl.snd_nxt, 0);
    schedule(idx);
    return;
  }
  if (flags & dp::kTcpSyn) {  // the SYN-ACK again: our ACK was lost
    ++acks_;
    sendTcp(idx, dp::kTcpAck, fl.snd_nxt, 0);
    return;
  }
  if ((flags & dp::kTcpAck) && seqAfter(ack, fl.snd_una) && !seqAfter(ack, fl.snd_nxt)) {
    fl.snd_una = ack;
    fl.retries = 0;
  }
  bool need_ack = false;
  if (plen > 0) {
    need_ack = true;
    if (seq == fl.rcv_nxt) {
      fl.rcv_nxt += plen;
      fl.got_reply = true;
      ++fl.replies;
      ++replies_;
      ++cur_.replies;
      if (fl.member == kNoId) fl.member = identify(payload, plen);
    }
  }
  if ((flags & dp::kTcpFin) && seq + plen == fl.rcv_nxt && !fl.peer_fin) {
    fl.rcv_nxt += 1;
    fl.peer_fin = true;
    need_ack = true;
  } else if (flags & dp::kTcpFin) {
    need_ack = true;
  }
  if (need_ack) {
    ++acks_;
    sendTcp(idx, dp::kTcpAck, fl.snd_nxt, 0);
  }
  progress(idx);
}

// ---- TCP flows --------------------------------------------------------------------------

void Generator::schedule(uint32_t idx) {
  Flow& fl = flows_[idx];
  if (fl.queued) return;
  fl.queued = true;
  queue_[(q_head_ + q_len_) % o_.flows] = idx;
  ++q_len_;
}

bool Generator::emit(uint32_t idx) {
  Flow& fl = flows_[idx];
  switch (fl.state) {
    case TcpState::kIdle:
      if (stopping_) {
        finish(idx, TcpState::kNotStarted);
        return false;
      }
      fl.snd_una = fl.iss;
      fl.snd_nxt = fl.iss + 1;
      fl.state = TcpState::kSynSent;
      fl.sent_tsc = now_;
      return sendTcp(idx, dp::kTcpSyn, fl.iss, 0);
    case TcpState::kSynSent:
      fl.sent_tsc = now_;
      return sendTcp(idx, dp::kTcpSyn, fl.iss, 0);
    case TcpState::kEstablished:
      if (fl.awaiting) {
        if (fl.snd_una == fl.snd_nxt) return false;  // acknowledged; the reply is coming
        fl.sent_tsc = now_;
        return sendTcp(idx, dp::kTcpAck | kTcpPsh, fl.snd_una, fl.snd_nxt - fl.snd_una);
      }
      if (!stopping_ && (o_.segments == 0 || fl.segs_done < o_.segments) &&
          (o_.count == 0 || sent_ < o_.count)) {
        const uint32_t seq = fl.snd_nxt;
        fl.snd_nxt += size_;
        fl.awaiting = true;
        fl.got_reply = false;
        fl.sent_tsc = now_;
        ++sent_;
        ++cur_.sent;
        if (o_.count != 0 && sent_ == o_.count) beginStop();
        return sendTcp(idx, dp::kTcpAck | kTcpPsh, seq, size_);
      }
      fl.state = TcpState::kFinSent;
      fl.sent_tsc = now_;
      fl.snd_nxt += 1;
      return sendTcp(idx, dp::kTcpFin | dp::kTcpAck, fl.snd_nxt - 1, 0);
    case TcpState::kFinSent:
      if (fl.snd_una == fl.snd_nxt) return false;
      fl.sent_tsc = now_;
      return sendTcp(idx, dp::kTcpFin | dp::kTcpAck, fl.snd_nxt - 1, 0);
    default:
      return false;
  }
}

void Generator::progress(uint32_t idx) {
  Flow& fl = flows_[idx];
  if (fl.state == TcpState::kEstablished && fl.awaiting && fl.snd_una == fl.snd_nxt &&
      fl.got_reply) {
    fl.awaiting = false;
    ++fl.segs_done;
    schedule(idx);
  }
  if (fl.state == TcpState::kFinSent && fl.snd_una == fl.snd_nxt && fl.peer_fin) {
    finish(idx, TcpState::kClosed);
  }
}

void Generator::finish(uint32_t idx, TcpState st) {
  Flow& fl = flows_[idx];
  fl.state = st;
  --active_;
  switch (st) {
    case TcpState::kClosed:
      ++closed_;
      break;
    case TcpState::kReset:
      ++reset_;
      break;
    case TcpState::kFailed:
      ++failed_;
      break;
    case TcpState::kNotStarted:
      ++not_started_;
      break;
    default:
      break;
  }
}

// Bounded work per loop pass: 64 flows checked for an overdue unacknowledged segment.
void Generator::scanRetransmits() {
  for (uint32_t k = 0; k < 64 && k < o_.flows; ++k) {
    const uint32_t idx = scan_cursor_;
    if (++scan_cursor_ == o_.flows) scan_cursor_ = 0;
    Flow& fl = flows_[idx];
    if (fl.state != TcpState::kSynSent && fl.state != TcpState::kEstablished &&
        fl.state != TcpState::kFinSent) {
      continue;
    }
    if (fl.snd_una == fl.snd_nxt || fl.queued || now_ - fl.sent_tsc < rto_tsc_) continue;
    if (fl.retries >= kMaxRetries) {
      finish(idx, TcpState::kFailed);
      continue;
    }
    ++fl.retries;
    ++retransmits_;
    fl.sent_tsc = now_;
    schedule(idx);
  }
}

void Generator::beginStop() {
  if (stopping_) return;
  stopping_ = true;
  stop_tsc_ = now_;
  end_wait_tsc_ = now_ + static_cast<uint64_t>(o_.wait * static_cast<double>(hz_));
  if (!tcp()) return;
  // Established flows between segments close now; idle ones never start. Busy ones close
  // after their outstanding segment's reply (emit sees stopping_).
  for (uint32_t i = 0; i < o_.flows; ++i) {
    const Flow& fl = flows_[i];
    if ((fl.state == TcpState::kEstablished && !fl.awaiting) || fl.state == TcpState::kIdle) {
      schedule(i);
    }
  }
}

// ---- reporting --------------------------------------------------------------------------

void Generator::tick(bool final) {
  if (!final && now_ < next_tick_) return;
  Second d{cur_.tx - last_.tx, cur_.rx - last_.rx, cur_.sent - last_.sent,
           cur_.replies - last_.replies};
  last_ = cur_;
  next_tick_ += hz_;
  if (final && d.tx == 0 && d.rx == 0) return;
  seconds_.push_back(d);
  std::fprintf(o_.json ? stderr : stdout,
               "sgpktgen: %3zus  tx %8llu pps  rx %8llu pps  sent %8llu  replies %8llu\n",
               seconds_.size(), static_cast<unsigned long long>(d.tx),
               static_cast<unsigned long long>(d.rx), static_cast<unsigned long long>(d.sent),
               static_cast<unsigned long long>(d.replies));
  std::fflush(o_.json ? stderr : stdout);
}

int Generator::run() {
  // 1. Resolve the next hop (bounded: --arp-timeout, a request every 200 ms).
  if (!have_next_mac_) {
    const uint64_t deadline =
        rte_rdtsc() + static_cast<uint64_t>(o_.arp_timeout * static_cast<double>(hz_));
    uint64_t next_request = 0;
    while (!have_next_mac_ && !g_interrupted.load()) {
      now_ = rte_rdtsc();
      if (now_ >= deadline) {
        std::fprintf(stderr, "sgpktgen: no ARP reply from %s\n", ipString(next_hop_).c_str());
        return 2;
      }
      if (now_ >= next_request) {
        sendArpRequest();
        next_request = now_ + hz_ / 5;
      }
      poll();
      txFlush();
    }
  }
  if (!o_.json) {
    std::printf(
        "sgpktgen: %s, %u flows from %s (+%u addresses) ports %u.. to %s:%u via "
        "%02x:%02x:%02x:%02x:%02x:%02x\n",
        o_.proto.c_str(), o_.flows, ipString(src_base_).c_str(), o_.src_ips - 1, o_.src_port,
        ipString(vip_).c_str(), o_.vip_port, next_mac_.bytes[0], next_mac_.bytes[1],
        next_mac_.bytes[2], next_mac_.bytes[3], next_mac_.bytes[4], next_mac_.bytes[5]);
  }

  // 2. Generate, receive, report.
  cur_ = last_ = Second{};
  now_ = start_tsc_ = last_refill_ = last_progress_ = rte_rdtsc();
  next_tick_ = start_tsc_ + hz_;
  const uint64_t wait_tsc = static_cast<uint64_t>(o_.wait * static_cast<double>(hz_));
  const uint64_t duration_tsc = static_cast<uint64_t>(o_.duration * static_cast<double>(hz_));
  const uint64_t count = (o_.count == 0 && o_.duration == 0 && !tcp()) ? o_.flows : o_.count;
  // At most one second of tokens saved up: a generator preempted for a while on a shared
  // machine catches up (64 packets a pass at most) instead of falling behind the rate.
  const double burst = std::max(1.0, static_cast<double>(o_.rate));
  if (tcp()) {
    for (uint32_t i = 0; i < o_.flows; ++i) schedule(i);
  }
  while (true) {
    now_ = rte_rdtsc();
    if (!stopping_ &&
        (g_interrupted.load() || (duration_tsc != 0 && now_ - start_tsc_ >= duration_tsc) ||
         (!tcp() && count != 0 && sent_ >= count) ||
         // TCP without --duration: a flow whose peer went silent must not hold
         // the run forever.
         (tcp() && now_ - last_progress_ > wait_tsc))) {
      beginStop();
    }
    poll();
    // Token bucket: `rate` tokens a second, at most `burst` saved up; 0 = no limit. At most 64
    // a pass, and only while the TX queue has room.
    uint32_t budget = 64;
    if (o_.rate != 0) {
      tokens_ += static_cast<double>(now_ - last_refill_) * static_cast<double>(o_.rate) /
                 static_cast<double>(hz_);
      tokens_ = std::min(tokens_, burst);
      last_refill_ = now_;
      budget = static_cast<uint32_t>(std::min(tokens_, 64.0));
    }
    uint32_t made = 0;
    while (made < budget && ntx_ + 4 < kTxMax) {
      if (!tcp()) {
        if (stopping_) break;
        if (!sendUdp(next_udp_flow_)) break;
        if (++next_udp_flow_ == o_.flows) next_udp_flow_ = 0;
        ++sent_;
        ++cur_.sent;
        ++made;
        if (count != 0 && sent_ >= count) beginStop();
        continue;
      }
      if (q_len_ == 0) break;
      const uint32_t idx = queue_[q_head_];
      q_head_ = (q_head_ + 1) % o_.flows;
      --q_len_;
      flows_[idx].queued = false;
      if (emit(idx)) ++made;
    }
    if (o_.rate != 0) tokens_ -= made;
    txFlush();
    if (tcp()) scanRetransmits();
    tick(false);
    if (tcp() && active_ == 0) break;
    if (stopping_) {
      if (!tcp() && replies_ >= sent_ && ntx_ == 0) break;
      if (now_ >= end_wait_tsc_) break;
    }
    if (g_interrupted.load() && stopping_ && now_ - stop_tsc_ > hz_ / 2) break;
  }
  if (!stopping_) beginStop();
  txFlush();
  tick(true);
  const double gen_s = static_cast<double>(stop_tsc_ - start_tsc_) / static_cast<double>(hz_);
  const double total_s = static_cast<double>(now_ - start_tsc_) / static_cast<double>(hz_);
  summary(gen_s, total_s);
  uint32_t answered = 0;
  for (const Flow& f : flows_) answered += f.replies > 0 ? 1 : 0;
  const bool ok = answered == o_.flows && (!tcp() || closed_ == o_.flows);
  return ok ? 0 : 1;
}

void Generator::summary(double gen_s, double total_s) {
  uint32_t answered = 0, identified = 0;
  std::vector<uint64_t> per_id(nids_, 0);
  uint64_t other = 0;
  for (const Flow& f : flows_) {
    if (f.replies > 0) ++answered;
    if (f.member < nids_) {
      ++per_id[f.member];
      ++identified;
    } else if (f.member == kOtherId) {
      ++other;
      ++identified;
    }
  }
  rte_eth_stats st{};
  rte_eth_stats_get(port_, &st);
  const double gen = gen_s > 0 ? gen_s : 1e-9;
  const double total = total_s > 0 ? total_s : 1e-9;
  const auto ull = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  if (o_.json) {
    std::printf(
        "{\"proto\":\"%s\",\"flows\":%u,\"size\":%u,\"rate\":%llu,\"generation_s\":%.4f,"
        "\"total_s\":%.4f,\"sent\":%llu,\"sent_pps\":%.1f,\"replies\":%llu,"
        "\"tx_packets\":%llu,\"rx_packets\":%llu,\"tx_pps\":%.1f,\"rx_pps\":%.1f,"
        "\"tx_dropped\":%llu,\"alloc_failed\":%llu,\"rx_missed\":%llu,\"rx_errors\":%llu,"
        "\"tx_errors\":%llu,\"arp_replies\":%llu,\"flows_answered\":%u,"
        "\"flows_identified\":%u,",
        o_.proto.c_str(), o_.flows, size_, ull(o_.rate), gen_s, total_s, ull(sent_),
        static_cast<double>(sent_) / gen, ull(replies_), ull(tx_packets_), ull(rx_packets_),
        static_cast<double>(tx_packets_) / total, static_cast<double>(rx_packets_) / total,
        ull(tx_dropped_), ull(alloc_failed_), ull(st.imissed), ull(st.ierrors), ull(st.oerrors),
        ull(arp_replies_), answered, identified);
    if (tcp()) {
      std::printf(
          "\"tcp\":{\"opened\":%llu,\"closed\":%llu,\"reset\":%llu,\"failed\":%llu,"
          "\"not_started\":%llu,\"unfinished\":%u,\"retransmits\":%llu,\"acks\":%llu},",
          ull(opened_), ull(closed_), ull(reset_), ull(failed_), ull(not_started_), active_,
          ull(retransmits_), ull(acks_));
    }
    std::printf("\"members\":{");
    for (uint32_t i = 0; i < nids_; ++i) {
      std::printf("%s\"%s\":%llu", i ? "," : "", ids_[i], ull(per_id[i]));
    }
    if (other) std::printf("%s\"(other)\":%llu", nids_ ? "," : "", ull(other));
    std::printf("},\"per_second\":[");
    for (size_t i = 0; i < seconds_.size(); ++i) {
      std::printf("%s{\"tx\":%llu,\"rx\":%llu,\"sent\":%llu,\"replies\":%llu}", i ? "," : "",
                  ull(seconds_[i].tx), ull(seconds_[i].rx), ull(seconds_[i].sent),
                  ull(seconds_[i].replies));
    }
    std::printf("]}\n");
    return;
  }
  std::printf("sgpktgen summary: %s, %u flows, %u-byte payloads, rate %s\n", o_.proto.c_str(),
              o_.flows, size_, o_.rate ? (std::to_string(o_.rate) + " pps").c_str() : "unlimited");
  std::printf("  generated %llu %s in %.3f s = %.1f pps; %llu replies\n", ull(sent_),
              tcp() ? "data segments" : "datagrams", gen_s, static_cast<double>(sent_) / gen,
              ull(replies_));
  std::printf("  port: tx %llu (%.1f pps), rx %llu (%.1f pps) over %.3f s\n", ull(tx_packets_),
              static_cast<double>(tx_packets_) / total, ull(rx_packets_),
              static_cast<double>(rx_packets_) / total, total_s);
  std::printf("  drops: tx %llu, mbuf %llu, rx missed %llu, rx errors %llu, tx errors %llu\n",
              ull(tx_dropped_), ull(alloc_failed_), ull(st.imissed), ull(st.ierrors),
              ull(st.oerrors));
  if (tcp()) {
    std::printf(
        "  tcp: %llu opened, %llu closed, %llu reset, %llu failed, %llu not started, %u "
        "unfinished, %llu retransmits\n",
        ull(opened_), ull(closed_), ull(reset_), ull(failed_), ull(not_started_), active_,
        ull(retransmits_));
  }
  std::printf("  flows answered %u of %u, identified %u\n", answered, o_.flows, identified);
  for (uint32_t i = 0; i < nids_; ++i) {
    std::printf("    %-20s %6llu flows (%.1f%%)\n", ids_[i], ull(per_id[i]),
                100.0 * static_cast<double>(per_id[i]) / o_.flows);
  }
  if (other) std::printf("    %-20s %6llu flows\n", "(other)", ull(other));
}

}  // namespace

int runPort(const PortOptions& o) {
  if (o.size > kMaxPayload) {
    std::fprintf(stderr, "sgpktgen: --size at most %u\n", kMaxPayload);
    return 2;
  }
  if (o.proto == "tcp" && o.segments == 0 && o.duration == 0 && o.count == 0) {
    std::fprintf(stderr, "sgpktgen: --segments 0 needs --duration or --count\n");
    return 2;
  }
  if (o.src_ip.empty() || o.vip.empty()) {
    std::fprintf(stderr, "sgpktgen: --port needs --vip and --src-ip\n");
    return 2;
  }
  std::vector<std::string> args = {"sgpktgen", "-l", std::to_string(o.lcore), "--no-telemetry"};
  // Several DPDK processes on one host must not share a runtime directory.
  if (o.eal_args.find("--file-prefix") == std::string::npos &&
      o.eal_args.find("--no-shconf") == std::string::npos) {
    args.push_back("--file-prefix=sgpktgen-" + std::to_string(getpid()));
  }
  if (isPciAddress(o.port)) {
    args.insert(args.end(), {"-a", o.port});
  } else {
    args.insert(args.end(), {"--vdev", o.port, "--no-pci"});
    if (o.eal_args.empty()) args.insert(args.end(), {"--no-huge", "-m", "512"});
  }
  std::istringstream extra(o.eal_args);
  for (std::string a; extra >> a;) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
    std::fprintf(stderr, "sgpktgen: EAL: %s\n", rte_strerror(rte_errno));
    return 2;
  }
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  auto cleanup = [&] {
    rte_eal_cleanup();
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir, ec);  // DPDK leaves it behind
  };
  uint16_t port = RTE_MAX_ETHPORTS;
  uint16_t pid;
  RTE_ETH_FOREACH_DEV(pid) {
    port = pid;
    break;
  }
  const int socket = static_cast<int>(rte_socket_id());
  rte_mempool* pool =
      rte_pktmbuf_pool_create("sgpg_mbufs", 8191, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  rte_eth_conf conf{};
  uint16_t nb_rx = 1024, nb_tx = 1024;
  if (port == RTE_MAX_ETHPORTS || pool == nullptr ||
      rte_eth_dev_configure(port, 1, 1, &conf) != 0 ||
      rte_eth_dev_adjust_nb_rx_tx_desc(port, &nb_rx, &nb_tx) != 0 ||
      rte_eth_rx_queue_setup(port, 0, nb_rx, rte_eth_dev_socket_id(port), nullptr, pool) != 0 ||
      rte_eth_tx_queue_setup(port, 0, nb_tx, rte_eth_dev_socket_id(port), nullptr) != 0 ||
      rte_eth_dev_start(port) != 0) {
    std::fprintf(stderr, "sgpktgen: port %s: setup failed (%s)\n", o.port.c_str(),
                 port == RTE_MAX_ETHPORTS ? "no such device" : rte_strerror(rte_errno));
    cleanup();
    return 2;
  }
  if (!o.src_mac.empty() || sharesKernelMac(port)) rte_eth_promiscuous_enable(port);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  int rc = 2;
  {
    auto gen = std::make_unique<Generator>(o, port, pool);
    if (gen->prepare()) rc = gen->run();
  }
  rte_eth_dev_stop(port);
  rte_eth_dev_close(port);
  cleanup();
  return rc;
}

}  // namespace scalegate::sgpktgen
