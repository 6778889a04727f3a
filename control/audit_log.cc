#include "control/audit_log.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/log.h"

namespace scalegate::control {
namespace {

std::string hexSha256(std::string_view s, size_t hex_digits) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), d, &len, EVP_sha256(), nullptr) != 1) return "unknown";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len && out.size() < hex_digits; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 0xF];
  }
  out.resize(std::min(out.size(), hex_digits));
  return out;
}

std::string isoMillis(WallTime t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm parts{};
  gmtime_r(&secs, &parts);
  char buf[40];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &parts);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

}  // namespace

std::string tokenIdentity(std::string_view token) {
  if (token.empty()) return "none";
  return "sha256:" + hexSha256(token, 12);
}

std::string auditLine(const AuditRecord& r) {
  using Json = nlohmann::json;
  Json j{{"time", isoMillis(r.at)},
         {"remote", r.remote},
         {"token", r.token},
         {"method", r.method},
         {"path", r.path},
         {"status", r.status},
         {"body_bytes", r.body.size()},
         {"body_sha256", hexSha256(r.body, 64)}};
  if (!r.client_cert.empty()) j["client_cert"] = r.client_cert;
  if (!r.error.empty()) j["error"] = r.error;
  if (!r.body.empty() && r.body.size() <= kMaxInlineBody) {
    Json body = Json::parse(r.body.begin(), r.body.end(), nullptr, /*allow_exceptions=*/false);
    if (!body.is_discarded()) j["body"] = std::move(body);
  }
  std::string line = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  line += '\n';
  return line;
}

std::string auditLogPath(const config::Config& cfg, const std::string& state_path) {
  if (cfg.admin.audit_log == "off") return "";
  if (!cfg.admin.audit_log.empty()) return cfg.admin.audit_log;
  std::filesystem::path dir = std::filesystem::path(state_path).parent_path();
  std::string name = std::filesystem::path(cfg.path).stem().string();
  if (name.empty()) name = "scalegate";
  return (dir / (name + ".audit.log")).string();
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return errnoStatus("open audit log " + path, errno);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  path_ = path;
  failing_ = false;
  return Status::ok();
}

void AuditLog::write(const AuditRecord& r) {
  if (fd_ < 0) return;
  const std::string line = auditLine(r);
  ssize_t n;
  do {
    n = ::write(fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(line.size())) {
    ++lines_;
    if (failing_) {
      failing_ = false;
      logEvent(LogLevel::kInfo, "audit log writable again", {{"path", path_}});
    }
    return;
  }
  ++errors_;
  if (!failing_) {
    failing_ = true;
    const int err = n < 0 ? errno : ENOSPC;  // a short write on a local file: the disk is full
    logEvent(LogLevel::kError, "audit log write failed",
             {{"path", path_}, {"error", errnoStatus("write " + path_, err).message()}});
  }
}

}  // namespace scalegate::control
