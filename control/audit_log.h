#pragma once
// The admin API's audit log: one JSON line per mutating /v1 call (PUT, POST, DELETE, PATCH),
// accepted or refused, so an operator can answer "who changed the pool, when, from where".
// Control thread only (AdminServer calls it after each reply is decided).
//
//   AdminServer::handle ─► AuditRecord ─► auditLine() ─► one write(2), O_APPEND ─► file
//
// A line: {"time","remote","client_cert","token","method","path","status","error",
//          "body_bytes","body_sha256","body"}
// `token` identifies the bearer token without revealing it: "sha256:" + the first 12 hex
// digits of its SHA-256 ("none" when the request had none). `body` is the request body itself
// when it is small (≤ kMaxInlineBody bytes) valid JSON, else only its size and digest.
// Each line goes out in one write(2) on a descriptor opened with O_APPEND: no user-space
// buffering, so a line is in the file when the call returns (no fsync: the audit log is not
// worth a disk flush per admin call; a crash of the machine may lose the last lines).

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"
#include "config/model.h"

namespace scalegate::control {

struct AuditRecord {
  WallTime at{};
  std::string remote;       // "127.0.0.1:51234"
  std::string client_cert;  // the mTLS client certificate's subject; "" = none
  std::string token;        // tokenIdentity() of the presented bearer token
  std::string method;
  std::string path;
  std::string_view body;
  int status = 0;
  std::string error;  // the error message sent with a 4xx/5xx; "" otherwise
};

inline constexpr size_t kMaxInlineBody = 1024;

// "sha256:<12 hex>" of `token`; "none" for an empty one. Pure.
std::string tokenIdentity(std::string_view token);
// The JSON line for `r`, newline included. Pure.
std::string auditLine(const AuditRecord& r);
// admin.audit_log resolved: "" = <dir of the state file>/<config name>.audit.log; "off" = "".
std::string auditLogPath(const config::Config& cfg, const std::string& state_path);

class AuditLog {
 public:
  AuditLog() = default;
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Opens (creates, mode 0600) `path` for appending; a previously open file is closed once the
  // new one is open. The error names the path and the errno text.
  Status open(const std::string& path);
  bool isOpen() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // Appends one line. A failed write is counted and logged (the first of a run of failures),
  // never fatal: the admin call it describes has already been answered.
  void write(const AuditRecord& r);
  uint64_t lines() const { return lines_; }
  uint64_t errors() const { return errors_; }

 private:
  int fd_ = -1;
  std::string path_;
  uint64_t lines_ = 0;
  uint64_t errors_ = 0;
  bool failing_ = false;
};

}  // namespace scalegate::control
