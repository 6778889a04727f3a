#include "control/tls_table.h"

#include <sys/stat.h>

#include <algorithm>

namespace scalegate::control {
namespace {

std::string fileStamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return path + "=missing;";
  return path + "=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
         "/" + std::to_string(st.st_size) + "/" + std::to_string(st.st_ino) + ";";
}

}  // namespace

std::string TlsTable::fingerprint(const config::ListenerTls& t) {
  std::string f = t.ciphers + "|" + std::to_string(static_cast<int>(t.min_version)) + "|" +
                  (t.session_tickets ? "t" : "-") + "|";
  for (const std::string& a : t.alpn) f += a + ",";
  for (const config::TlsCertificate& c : t.certificates) {
    f += c.is_default ? "*" : "";
    f += fileStamp(c.cert_file);
    f += fileStamp(c.key_file);
  }
  return f;
}

Status TlsTable::prepare(const config::Config& cfg,
                         std::vector<std::shared_ptr<const l7proxy::TlsServerContext>>* out) {
  std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> result(cfg.listeners.size());
  std::map<std::string, Entry> next;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const config::Listener& l = cfg.listeners[i];
    if (l.protocol != config::ListenerProtocol::kHttp || !l.tls.enabled) continue;
    std::string fp = fingerprint(l.tls);
    auto it = by_listener_.find(l.name);
    if (it != by_listener_.end() && it->second.fingerprint == fp) {
      result[i] = it->second.ctx;
      next[l.name] = it->second;
      continue;
    }
    auto built = l7proxy::TlsServerContext::build(l.tls);
    if (!built.isOk()) {
      return invalidArgument("listener " + l.name + ": " + built.status().message());
    }
    result[i] = built.value();
    Entry e{fp, built.value(), {}};
    for (const config::TlsCertificate& c : l.tls.certificates) {
      e.files.emplace_back(c.cert_file, fileStamp(c.cert_file));
      e.files.emplace_back(c.key_file, fileStamp(c.key_file));
    }
    next[l.name] = std::move(e);
  }
  by_listener_ = std::move(next);
  *out = std::move(result);
  return Status::ok();
}

Status TlsTable::preparePools(const config::Config& cfg,
                              std::map<std::string, std::shared_ptr<ssl_ctx_st>>* out) {
  std::map<std::string, PoolEntry> next;
  std::map<std::string, std::shared_ptr<ssl_ctx_st>> result;
  for (const auto& [name, pool] : cfg.pools) {
    const config::UpstreamSettings& u = pool.upstream;
    if (!u.tls) continue;
    std::string fp = std::string(u.tls_verify ? "v|" : "-|") + u.tls_server_name + "|" +
                     (u.tls_ca_file.empty() ? "" : fileStamp(u.tls_ca_file));
    auto it = by_pool_.find(name);
    if (it != by_pool_.end() && it->second.fingerprint == fp) {
      next[name] = it->second;
      result[name] = it->second.ctx;
      continue;
    }
    auto ctx = l7proxy::newClientContext(u.tls_ca_file, u.tls_verify);
    if (!ctx.isOk()) return invalidArgument("pool " + name + ": " + ctx.status().message());
    std::shared_ptr<ssl_ctx_st> owned(ctx.value(), SSL_CTX_free);
    next[name] = PoolEntry{fp, owned};
    result[name] = owned;
  }
  by_pool_ = std::move(next);
  *out = std::move(result);
  return Status::ok();
}

bool TlsTable::filesChanged() const {
  for (const auto& [name, e] : by_listener_) {
    for (const auto& [path, stamp] : e.files) {
      if (fileStamp(path) != stamp) return true;
    }
  }
  return false;
}

bool TlsTable::rotateIfDue(const config::Config& cfg, MonoTime now) {
  Duration every = Duration::max();
  bool any = false;
  for (const config::Listener& l : cfg.listeners) {
    if (!l.tls.enabled || !l.tls.session_tickets) continue;
    any = true;
    every = std::min(every, l.tls.ticket_rotation);
  }
  if (!any) return false;
  if (rotated_once_ && now - last_rotation_ < every) return false;
  auto key = l7proxy::randomTicketKey();
  if (!key.isOk()) return false;
  tickets_ = l7proxy::rotateTicketKeys(tickets_.get(), key.value(), kTicketKeysKept);
  last_rotation_ = now;
  rotated_once_ = true;
  return true;
}

}  // namespace scalegate::control
