#pragma once
// The scalegate process: loads the config, opens listeners, runs the L7 workers and the
// control loop (signals, reload, drain). Control thread.
//
//   SIGHUP  ─► reload: validate the file; on error keep the running config and log why;
//              otherwise open new listeners, publish a new snapshot, retire old sockets.
//   SIGTERM ─► drain: stop accepting, let in-flight requests finish within drain_timeout,
//   SIGINT     exit 0.

#include <event2/event.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/model.h"
#include "config/snapshot.h"
#include "control/admin_server.h"
#include "control/audit_log.h"
#include "control/autoscale_controller.h"
#include "control/dataplane_link.h"
#include "control/listen_sockets.h"
#include "control/pool_registry.h"
#include "control/prober.h"
#include "control/snapshot_builder.h"
#include "control/tls_table.h"
#include "l7proxy/proxy.h"

namespace scalegate::control {

struct Options {
  std::string config_path;
  int workers = 0;  // 0 = from config, else one per core
};

class App {
 public:
  explicit App(Options opts);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Runs until drained; returns the process exit code.
  int run();

 private:
  static void onSignal(evutil_socket_t sig, short what, void* arg);
  static void onHousekeeping(evutil_socket_t fd, short what, void* arg);
  void reload();
  void beginShutdown();
  void applyLogSettings(const config::Config& cfg);
  void logTotals();
  // Rebuilds and publishes the snapshot when the registry changed; saves the state file when
  // membership changed.
  void publishIfChanged();
  void persistIfChanged();
  // Saves the state file now if membership changed; the error when it could not.
  Status persistNow();
  // Logs (once per run of failures) and schedules the retry of a failed state file write.
  void noteSaveFailure(uint64_t version, const Status& st);
  // Opens admin.audit_log (or none) and hands it to the admin server.
  Status openAuditLog(const config::Config& cfg);
  std::string renderMetricsText();
  // The admin bearer token from cfg.admin.token_file ("" when none is configured).
  static Result<std::string> readAdminToken(const config::Config& cfg);
  void updateProbeTargets();
  // TLS state for the next snapshot.
  SnapshotTls snapshotTls() const;
  // Housekeeping, once a second: certificate files changed on disk, ticket key rotation.
  void checkTls();
  void onProbeResult(const std::string& pool, const std::string& member, const ProbeOutcome& o);

  Options opts_;
  event_base* base_ = nullptr;
  std::vector<event*> signal_events_;
  event* housekeeping_ = nullptr;
  std::unique_ptr<ListenSocketTable> sockets_;
  std::unique_ptr<l7proxy::Proxy> proxy_;
  std::unique_ptr<PoolRegistry> registry_;
  std::unique_ptr<ListenerStatsTable> listener_stats_;
  TlsTable tls_;
  std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> listener_tls_;
  std::map<std::string, std::shared_ptr<ssl_ctx_st>> pool_tls_;
  std::string last_tls_error_;
  MonoTime next_tls_check_{};
  std::unique_ptr<Prober> prober_;
  AuditLog audit_;  // before admin_: the server points at it
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<AutoscaleController> autoscale_;
  std::unique_ptr<DataplaneLink> dataplane_;  // DPDK L4 path; only with l4 listeners
  std::vector<config::ListenSockets> current_sockets_;
  uint64_t published_version_ = 0;
  uint64_t saved_persist_version_ = 0;
  uint64_t failed_persist_version_ = 0;
  MonoTime next_persist_retry_{};
  std::string state_path_;
  WallTime start_time_{};
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  std::shared_ptr<const config::Config> config_;
  std::shared_ptr<const config::Snapshot> snapshot_;
  uint64_t generation_ = 0;
  // Sockets of older snapshots, closed once every worker runs generation >= .first.
  std::vector<std::pair<uint64_t, std::vector<int>>> retired_;
  bool shutting_down_ = false;
  bool probe_targets_dirty_ = false;
  MonoTime last_publish_{};
};

}  // namespace scalegate::control
