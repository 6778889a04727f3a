#pragma once
// Classify stage data: the immutable view the lcores forward by (VIPs, per-pool Maglev tables,
// backends with their health), built by control from a config::Snapshot and published to the
// lcores by RCU (dataplane/dataplane.h). Lcores only read it; a new one replaces it whole.
//
//   config::Snapshot ─► ForwardingStateBuilder::build ─► ForwardingState ─► RCU ─► lcores
//                          (stable VIP and backend ids, so flow-table entries and per-lcore
//                           counters keep meaning the same thing across snapshots)

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <netinet/in.h>

#include "common/cidr.h"
#include "config/snapshot.h"
#include "dataplane/maglev.h"

namespace scalegate::dataplane {

inline constexpr uint32_t kMaxBackends = 4096;  // members of all l4 pools together
inline constexpr uint32_t kMaxVips = 256;       // id 255 is never used

struct Backend {
  uint32_t ip = 0;     // network order; 0 = no backend with this id
  uint16_t port = 0;   // network order
  uint8_t usable = 0;  // 1: healthy (or pool in panic) -- existing flows stay on it
  uint8_t pad = 0;
};

struct Vip {
  uint32_t ip = 0;           // network order
  uint16_t port = 0;         // network order
  uint8_t proto = 0;         // kProtoTcp / kProtoUdp
  uint8_t id = 0;            // stable id (stats, flow entries)
  bool dsr = false;          // false: nat
  uint16_t access = 0xffff;  // index into ForwardingState::access; 0xffff: open to everyone
  uint32_t pool = 0;         // index into ForwardingState::pools
};

struct PoolTable {
  std::vector<uint16_t> slots;  // Maglev table: slot -> backend id (kNoBackend: none usable)
};

struct ForwardingState {
  uint64_t generation = 0;
  std::vector<Vip> vips;
  std::vector<PoolTable> pools;
  std::vector<Backend> backends = std::vector<Backend>(kMaxBackends);
  std::vector<AccessList> access;  // the listeners' `access` lists, for Vip::access

  // The VIP for a TCP/UDP destination, or null. Linear: VIP lists are short.
  const Vip* findVip(uint32_t ip, uint16_t port, uint8_t proto) const {
    for (const Vip& v : vips) {
      if (v.ip == ip && v.port == port && v.proto == proto) return &v;
    }
    return nullptr;
  }
  // listeners[].access: may `src_ip` (network order) use VIP `v`? Checked on every packet to
  // a VIP before the flow lookup, so a denied client creates no flow and reaches no member.
  bool vipAdmits(const Vip& v, uint32_t src_ip) const {
    return v.access == 0xffff || access[v.access].admitsV4(ntohl(src_ip));
  }
  bool isVipAddress(uint32_t ip) const {
    for (const Vip& v : vips) {
      if (v.ip == ip) return true;
    }
    return false;
  }
};

// Names behind the stable ids, for metrics labels.
struct BackendName {
  std::string pool;
  std::string member;
};

// Builds ForwardingStates and remembers which id each VIP (by listener name) and backend (by
// pool and member id) has, so ids stay the same while the thing exists. A freed backend id is
// reused last (FIFO), so a flow still pinned to a removed member rarely meets a new one (and
// when it does, the address check in the lcore moves it). Control thread.
class ForwardingStateBuilder {
 public:
  // Members beyond kMaxBackends, IPv6 members and VIPs beyond kMaxVips - 1 are left out and
  // counted in skipped().
  std::unique_ptr<ForwardingState> build(const config::Snapshot& snap);

  // Name of a backend / VIP id in the last build ("" when unused).
  const BackendName* backendName(uint16_t id) const;
  const std::string& vipName(uint8_t id) const { return vip_names_[id]; }
  uint64_t skipped() const { return skipped_; }

 private:
  uint16_t backendId(const std::string& pool, const std::string& member);
  uint8_t vipId(const std::string& listener);

  std::map<std::pair<std::string, std::string>, uint16_t> backend_ids_;
  std::vector<BackendName> backend_names_ = std::vector<BackendName>(kMaxBackends);
  std::vector<uint16_t> free_backends_;
  uint32_t next_backend_ = 0;
  std::map<std::string, uint8_t> vip_ids_;
  std::vector<std::string> vip_names_ = std::vector<std::string>(kMaxVips);
  uint32_t next_vip_ = 0;
  std::vector<uint8_t> free_vips_;
  uint64_t skipped_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace scalegate::dataplane
