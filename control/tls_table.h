#pragma once
// The TLS contexts and session ticket keys that snapshots carry. Control thread.
//
//   config + certificate files ─► prepare() ─► one TlsServerContext per TLS listener
//   housekeeping (1 s): filesChanged()? ─► prepare() again ─► new snapshot (new connections
//                                           get the new certificates; open ones keep theirs)
//   housekeeping: rotateIfDue() ─► new TicketKeyRing (newest seals, two older ones open)
//
// A context is rebuilt only when its listener's TLS settings or a file (mtime, size) changed.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"
#include "l7proxy/tls.h"

namespace scalegate::control {

class TlsTable {
 public:
  // Contexts for cfg's listeners (parallel to cfg.listeners; null for non-TLS ones). On error
  // (a file missing or invalid) nothing changes and the error names listener and file.
  Status prepare(const config::Config& cfg,
                 std::vector<std::shared_ptr<const l7proxy::TlsServerContext>>* out);
  // True when a certificate or key file used by the last prepare() changed on disk.
  bool filesChanged() const;
  // Starts a new ticket key when the shortest ticket_rotation of cfg's listeners has passed
  // since the last one (the first call always makes one). True when the ring changed.
  bool rotateIfDue(const config::Config& cfg, MonoTime now);
  std::shared_ptr<const l7proxy::TicketKeyRing> ticketKeys() const { return tickets_; }
  // Client contexts for the pools of cfg with upstream TLS (by pool name); rebuilt when the
  // settings or the CA file change. On error nothing changes.
  Status preparePools(const config::Config& cfg,
                      std::map<std::string, std::shared_ptr<ssl_ctx_st>>* out);

  static constexpr size_t kTicketKeysKept = 3;  // the sealing key and two older ones

 private:
  struct Entry {
    std::string fingerprint;  // settings + file stamps it was built from
    std::shared_ptr<const l7proxy::TlsServerContext> ctx;
    std::vector<std::pair<std::string, std::string>> files;  // path, stamp when built
  };
  static std::string fingerprint(const config::ListenerTls& t);
  std::map<std::string, Entry> by_listener_;
  struct PoolEntry {
    std::string fingerprint;
    std::shared_ptr<ssl_ctx_st> ctx;
  };
  std::map<std::string, PoolEntry> by_pool_;
  std::shared_ptr<const l7proxy::TicketKeyRing> tickets_;
  MonoTime last_rotation_{};
  bool rotated_once_ = false;
};

}  // namespace scalegate::control
