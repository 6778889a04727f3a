#include "control/app.h"

#include <csignal>
#include <thread>

#include "common/log.h"
#include "config/loader.h"
#include "control/audit_log.h"
#include "control/health_tracker.h"
#include "control/metrics.h"
#include "control/outlier.h"
#include "control/state_file.h"

#include <fstream>
#include <sstream>

namespace scalegate::control {

App::App(Options opts) : opts_(std::move(opts)) {}

App::~App() {
  prober_.reset();
  for (event* e : signal_events_) event_free(e);
  if (housekeeping_ != nullptr) event_free(housekeeping_);
  if (base_ != nullptr) event_base_free(base_);
}

void App::applyLogSettings(const config::Config& cfg) {
  setLogLevel(cfg.log.level);
  setLogFormat(cfg.log.format);
}

int App::run() {
  start_time_ = SystemClock::instance().wallNow();
  config::LoadResult loaded = config::loadConfigFile(opts_.config_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s", loaded.errorText().c_str());
    std::fprintf(stderr, "scalegate: %s: %zu error(s); not starting\n", opts_.config_path.c_str(),
                 loaded.errors.size());
    return 2;
  }
  config_ = std::make_shared<const config::Config>(std::move(loaded.config));
  applyLogSettings(*config_);
  int workers = opts_.workers;
  if (workers <= 0) workers = static_cast<int>(config_->workers);
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // Membership the API registered before a restart comes back first.
  registry_ = std::make_unique<PoolRegistry>(workers, SystemClock::instance());
  state_path_ = stateFilePath(*config_);
  Status st = registry_->loadState(state_path_);
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: state file %s: %s", state_path_.c_str(), st.message().c_str());
    return 1;
  }
  registry_->applyConfig(config_);
  // Slow start is not applied at process start (HAProxy): members present now are not ramped.
  for (const PoolRecord& p : registry_->pools()) {
    for (const MemberRecord& m : p.members)
      registry_->findPool(p.name)->find(m.spec.id)->ready_since = MonoTime{};
  }
  saved_persist_version_ = registry_->persistVersion();

  // Signals are handled on the control loop; workers must not see them.
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  sockets_ = std::make_unique<ListenSocketTable>(workers);
  std::vector<int> retired;
  st = sockets_->prepare(*config_, &current_sockets_, &retired);
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: %s", st.message().c_str());
    return 1;
  }
  for (const auto& s : current_sockets_) {
    logEvent(LogLevel::kInfo, "listening",
             {{"listener", s.listener},
              {"address", s.address.toString()},
              {"workers", std::to_string(s.fds.size())}});
  }
  st = tls_.prepare(*config_, &listener_tls_);
  if (st.isOk()) st = tls_.preparePools(*config_, &pool_tls_);
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: %s", st.message().c_str());
    return 1;
  }
  (void)tls_.rotateIfDue(*config_, SystemClock::instance().now());
  listener_stats_ = std::make_unique<ListenerStatsTable>(workers);
  snapshot_ = buildSnapshot(*registry_, ++generation_, current_sockets_,
                            listener_stats_->resolve(*config_), snapshotTls());
  published_version_ = registry_->version();
  // The DPDK L4 path: a config without l4 listeners never initialises EAL.
  if (DataplaneLink::wanted(*config_)) {
    auto dp = DataplaneLink::start(*config_);
    if (!dp.isOk()) {
      SG_LOG(kError, "cannot start: %s", dp.status().message().c_str());
      return 1;
    }
    dataplane_ = std::move(dp).value();
    dataplane_->publish(*snapshot_);
  }
  proxy_ = std::make_unique<l7proxy::Proxy>(workers);
  proxy_->start(snapshot_);

  base_ = event_base_new();
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) {
    event* e = evsignal_new(base_, sig, onSignal, this);
    event_add(e, nullptr);
    signal_events_.push_back(e);
  }
  pthread_sigmask(SIG_UNBLOCK, &block, nullptr);
  AdminServer::Hooks hooks;
  hooks.metrics = [this] { return renderMetricsText(); };
  hooks.ready = [this] { return !shutting_down_; };
  hooks.changed = [this] {
    publishIfChanged();
    return persistNow();
  };
  hooks.pool_action = [this](const std::string& pool, const std::string& action,
                             const std::string& method, const std::string& body) {
    return autoscale_->poolAction(pool, action, method, body);
  };
  hooks.decorate_pool = [this](const std::string& pool, nlohmann::json* j) {
    autoscale_->decoratePool(pool, j);
  };
  autoscale_ = std::make_unique<AutoscaleController>(base_, *registry_, SystemClock::instance(),
                                                     outboxPathFor(state_path_),
                                                     autoscaleStatePathFor(state_path_), [this] {
                                                       publishIfChanged();
                                                       persistIfChanged();
                                                     });
  st = autoscale_->applyConfig(*config_);
  if (st.isOk()) st = autoscale_->start();
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: autoscale: %s", st.message().c_str());
    autoscale_.reset();
    proxy_->drain(Duration::zero());
    proxy_->join();
    return 1;
  }
  admin_ = std::make_unique<AdminServer>(base_, *registry_, std::move(hooks));
  Result<std::string> token = readAdminToken(*config_);
  st = token.status();
  if (st.isOk()) {
    admin_->setToken(std::move(token).value());
    admin_->setMaxBodyBytes(config_->admin.max_request_body_bytes);
    st = admin_->setTls(config_->admin.tls);
  }
  if (st.isOk()) st = openAuditLog(*config_);
  if (st.isOk()) st = admin_->listen(config_->admin.listen);
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: admin API on %s: %s", config_->admin.listen.toString().c_str(),
           st.message().c_str());
    proxy_->drain(Duration::zero());
    proxy_->join();
    return 1;
  }
  logEvent(
      LogLevel::kInfo, "admin listening",
      {{"address", admin_->boundAddress().toString()},
       {"token", config_->admin.token_file.empty() ? "none (/v1 refused)" : "from file"},
       {"tls", !admin_->tlsEnabled()                       ? "off"
               : config_->admin.tls.client_ca_file.empty() ? "on"
                                                           : "on, client certificates required"},
       {"audit_log", audit_.isOpen() ? audit_.path() : "off"}});
  prober_ = std::make_unique<Prober>(
      base_,
      [this](const std::string& pool, const std::string& member, const ProbeOutcome& o) {
        onProbeResult(pool, member, o);
      },
      static_cast<uint64_t>(start_time_.time_since_epoch().count()));
  updateProbeTargets();
  housekeeping_ = event_new(base_, -1, EV_PERSIST, onHousekeeping, this);
  timeval tick{0, 100 * 1000};
  event_add(housekeeping_, &tick);
  logEvent(LogLevel::kInfo, "started",
           {{"version", SG_VERSION},
            {"config", opts_.config_path},
            {"workers", std::to_string(workers)},
            {"state_file", state_path_}});
  event_base_dispatch(base_);

  prober_.reset();
  admin_.reset();
  autoscale_.reset();  // pending webhooks stay in the outbox for the next start
  proxy_->join();
  if (dataplane_) dataplane_->stop();
  sockets_->closeEverything();
  for (auto& [gen, fds] : retired_) ListenSocketTable::closeAll(fds);
  retired_.clear();
  persistIfChanged();
  logTotals();
  logEvent(LogLevel::kInfo, "stopped", {});
  return 0;
}

void App::onSignal(evutil_socket_t sig, short, void* arg) {
  auto* app = static_cast<App*>(arg);
  if (sig == SIGHUP) {
    app->reload();
  } else {
    app->beginShutdown();
  }
}

void App::onHousekeeping(evutil_socket_t, short, void* arg) {
  auto* app = static_cast<App*>(arg);
  uint64_t oldest = app->proxy_->oldestAdoptedGeneration();
  auto& r = app->retired_;
  for (auto it = r.begin(); it != r.end();) {
    if (oldest >= it->first) {
      ListenSocketTable::closeAll(it->second);
      it = r.erase(it);
    } else {
      ++it;
    }
  }
  MonoTime now = SystemClock::instance().now();
  if (now >= app->next_tls_check_) {
    app->next_tls_check_ = now + std::chrono::seconds(1);
    app->checkTls();
  }
  runOutlierDetection(*app->registry_, now);
  app->registry_->tickDrains(now);
  app->publishIfChanged();
  if (app->dataplane_) app->dataplane_->tick();
  if (app->probe_targets_dirty_) app->updateProbeTargets();
  app->persistIfChanged();
}

void App::publishIfChanged() {
  if (registry_->version() == published_version_ || shutting_down_) return;
  published_version_ = registry_->version();
  last_publish_ = SystemClock::instance().now();
  snapshot_ = buildSnapshot(*registry_, ++generation_, current_sockets_,
                            listener_stats_->resolve(registry_->config()), snapshotTls());
  proxy_->publish(snapshot_);
  if (dataplane_) dataplane_->publish(*snapshot_);
  updateProbeTargets();
}

SnapshotTls App::snapshotTls() const {
  return SnapshotTls{listener_tls_, tls_.ticketKeys(), pool_tls_};
}

void App::checkTls() {
  if (shutting_down_) return;
  bool changed = false;
  if (tls_.filesChanged()) {
    std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> next;
    Status st = tls_.prepare(*config_, &next);
    if (st.isOk()) {
      listener_tls_ = std::move(next);
      last_tls_error_.clear();
      changed = true;
      logEvent(LogLevel::kInfo, "certificates reloaded", {{"reason", "file changed"}});
      registry_->addEvent("certificates_reloaded", "", "", "file changed");
    } else if (st.message() != last_tls_error_) {
      // Often a rotation caught between writing the certificate and the key: keep the
      // running certificates and look again next second.
      last_tls_error_ = st.message();
      logEvent(LogLevel::kWarn, "certificate reload failed; keeping the running certificates",
               {{"error", st.message()}});
    }
  }
  if (tls_.rotateIfDue(*config_, SystemClock::instance().now())) changed = true;
  if (changed) {
    registry_->markChanged();
    publishIfChanged();
  }
}

Result<std::string> App::readAdminToken(const config::Config& cfg) {
  std::string token;
  if (cfg.admin.token_file.empty()) return token;
  std::ifstream in(cfg.admin.token_file);
  if (!in) return ioError("cannot read admin.token_file " + cfg.admin.token_file);
  std::stringstream ss;
  ss << in.rdbuf();
  token = ss.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty())
    return invalidArgument("admin.token_file " + cfg.admin.token_file + " is empty");
  return token;
}

std::string App::renderMetricsText() {
  l7proxy::CounterTotals totals = proxy_->totals();
  MetricsInput in;
  in.registry = registry_.get();
  in.snapshot = snapshot_.get();
  in.totals = &totals;
  in.start_time = start_time_;
  in.version = SG_VERSION;
  in.config_reloads_ok = reloads_ok_;
  in.config_reloads_failed = reloads_failed_;
  if (autoscale_) {
    in.extra = [this](std::vector<prometheus::MetricFamily>& out) {
      autoscale_->addMetrics(out);
    };
  }
  in.dataplane = dataplane_.get();
  return renderMetrics(in);
}

Status App::openAuditLog(const config::Config& cfg) {
  const std::string path = auditLogPath(cfg, state_path_);
  if (path.empty()) {
    admin_->setAuditLog(nullptr);
    return Status::ok();
  }
  if (!audit_.isOpen() || audit_.path() != path) SG_RETURN_IF_ERROR(audit_.open(path));
  admin_->setAuditLog(&audit_);
  return Status::ok();
}

Status App::persistNow() {
  uint64_t v = registry_->persistVersion();
  if (v == saved_persist_version_) return Status::ok();
  Status st = registry_->saveState(state_path_);
  if (st.isOk()) {
    saved_persist_version_ = v;
    failed_persist_version_ = 0;
    return st;
  }
  // The change stays in effect (the registry is the truth the data paths run on; the scaler
  // retries idempotent PUTs anyway); the old file stays as it was and persistIfChanged()
  // tries again every 5 s until the directory is writable.
  noteSaveFailure(v, st);
  return st;
}

void App::noteSaveFailure(uint64_t version, const Status& st) {
  if (failed_persist_version_ == 0) {
    logEvent(LogLevel::kError, "state file write failed; the previous state file is kept",
             {{"path", state_path_}, {"error", st.message()}});
    registry_->addEvent("state_write_failed", "", "", st.message());
  }
  failed_persist_version_ = version;
  next_persist_retry_ = SystemClock::instance().now() + std::chrono::seconds(5);
}

void App::persistIfChanged() {
  uint64_t v = registry_->persistVersion();
  if (v == saved_persist_version_) return;
  MonoTime now = SystemClock::instance().now();
  if (v == failed_persist_version_ && now < next_persist_retry_) return;
  Status st = registry_->saveState(state_path_);
  if (st.isOk()) {
    if (failed_persist_version_ != 0) {
      logEvent(LogLevel::kInfo, "state file written again", {{"path", state_path_}});
      registry_->addEvent("state_write_recovered", "", "", state_path_);
    }
    saved_persist_version_ = v;
    failed_persist_version_ = 0;
    return;
  }
  // The old file stays as it was; try again in a while (an operator may fix the directory).
  noteSaveFailure(v, st);
}

void App::updateProbeTargets() {
  probe_targets_dirty_ = false;
  std::vector<ProbeTarget> targets;
  for (const PoolRecord& p : registry_->pools()) {
    if (p.cfg == nullptr || !p.cfg->health.enabled) continue;
    for (const MemberRecord& m : p.members) {
      ProbeTarget t;
      t.pool = p.name;
      t.member = m.spec.id;
      t.address = m.spec.address;
      t.check = p.cfg->health;
      t.fast = m.transitioning;
      targets.push_back(std::move(t));
    }
  }
  prober_->setTargets(std::move(targets));
}

void App::onProbeResult(const std::string& pool, const std::string& member, const ProbeOutcome& o) {
  PoolRecord* p = registry_->findPool(pool);
  if (p == nullptr) return;
  MemberRecord* m = p->find(member);
  if (m == nullptr) return;
  bool was_transitioning = m->transitioning;
  const config::HealthCheck& hc = p->cfg->health;
  // What the data paths see (a member that joined late and passes its `rise` probes goes from
  // not eligible to eligible even though probeHealthy() said yes all along).
  bool was_ok = m->healthEligible(hc);
  HealthState before = m->health;
  HealthChange change = applyProbe(*m, o, hc, SystemClock::instance().wallNow());
  bool now_ok = m->healthEligible(hc);
  if (change != HealthChange::kNone) {
    std::string detail = std::string(healthStateName(before)) + " -> " +
                         healthStateName(m->health) + (o.ok ? "" : " (" + o.error + ")");
    registry_->addEvent("health_changed", pool, member, detail);
    logEvent(now_ok ? LogLevel::kInfo : LogLevel::kWarn, "member health changed",
             {{"pool", pool},
              {"member", member},
              {"health", healthStateName(m->health)},
              {"detail", o.ok ? "ok" : o.error}});
  }
  if (was_ok != now_ok) {
    // Only a member that could not take traffic and now can starts a slow-start ramp (the
    // first verdict of an initially-healthy member changes nothing for the data paths).
    if (now_ok) {
      m->ready_since = SystemClock::instance().now();
      // It was down and its probes bring it back: a passive ejection from the failures that
      // went with the outage ends too (Envoy's successful_active_health_check_uneject_host).
      if (m->ejected) {
        m->ejected = false;
        registry_->addEvent("unejected", pool, member, "active health check passed");
      }
    }
    registry_->markChanged();
    // Publish now unless a snapshot went out in the last 50 ms; then the next housekeeping
    // tick (≤ 100 ms) carries it, together with whatever else changed: with thousands of
    // members, results that arrive together share one snapshot.
    MonoTime now = SystemClock::instance().now();
    if (now - last_publish_ >= std::chrono::milliseconds(50)) publishIfChanged();
  }
  if (change != HealthChange::kNone || was_transitioning != m->transitioning) {
    probe_targets_dirty_ = true;  // fast_interval on or off; refreshed on the tick
  }
}

void App::reload() {
  if (shutting_down_) return;
  config::LoadResult loaded = config::loadConfigFile(opts_.config_path);
  if (!loaded.ok()) {
    ++reloads_failed_;
    for (const config::ConfigError& e : loaded.errors) {
      logEvent(LogLevel::kError, "config error", {{"error", e.toString()}});
    }
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"errors", std::to_string(loaded.errors.size())}});
    registry_->addEvent("reload_failed", "", "",
                        std::to_string(loaded.errors.size()) + " error(s)");
    return;
  }
  auto cfg = std::make_shared<const config::Config>(std::move(loaded.config));
  // EAL, ports and lcores are set once: a reload may change VIPs and pools, not the dataplane.
  if ((dataplane_ == nullptr) == DataplaneLink::wanted(*cfg) ||
      (dataplane_ != nullptr && !dataplane_->sameSettings(cfg->dataplane))) {
    ++reloads_failed_;
    const char* why = dataplane_ == nullptr
                          ? "l4 listeners need a restart (the DPDK path starts with the process)"
                          : "the dataplane section or the last l4 listener changed; restart to "
                            "apply";
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"error", why}});
    registry_->addEvent("reload_failed", "", "", why);
    return;
  }
  Result<std::string> token = readAdminToken(*cfg);
  if (!token.isOk()) {
    ++reloads_failed_;
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"error", token.status().message()}});
    registry_->addEvent("reload_failed", "", "", token.status().message());
    return;
  }
  std::vector<std::shared_ptr<const l7proxy::TlsServerContext>> tls;
  std::map<std::string, std::shared_ptr<ssl_ctx_st>> pool_tls;
  Status tls_st = tls_.prepare(*cfg, &tls);
  if (tls_st.isOk()) tls_st = tls_.preparePools(*cfg, &pool_tls);
  if (!tls_st.isOk()) {
    ++reloads_failed_;
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"error", tls_st.message()}});
    registry_->addEvent("reload_failed", "", "", tls_st.message());
    return;
  }
  std::vector<config::ListenSockets> socks;
  std::vector<int> retired;
  Status st = sockets_->prepare(*cfg, &socks, &retired);
  if (!st.isOk()) {
    ++reloads_failed_;
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"error", st.message()}});
    registry_->addEvent("reload_failed", "", "", st.message());
    return;
  }
  ++reloads_ok_;
  if (cfg->admin.listen != config_->admin.listen) {
    logEvent(LogLevel::kWarn, "admin.listen changed; it takes effect at the next restart",
             {{"running", admin_->boundAddress().toString()}});
  }
  admin_->setToken(std::move(token).value());
  admin_->setMaxBodyBytes(cfg->admin.max_request_body_bytes);
  // Renewed admin certificates are picked up here; a bad file keeps the running ones.
  if (cfg->admin.tls.enabled != admin_->tlsEnabled()) {
    logEvent(LogLevel::kWarn, "admin.tls turned on or off; it takes effect at the next restart",
             {{"running", admin_->tlsEnabled() ? "tls" : "plain http"}});
  } else if (cfg->admin.tls.enabled) {
    if (Status ts = admin_->setTls(cfg->admin.tls); !ts.isOk()) {
      logEvent(LogLevel::kError, "admin TLS files not reloaded; keeping the running ones",
               {{"error", ts.message()}});
      registry_->addEvent("reload_warning", "", "", ts.message());
    }
  }
  if (Status as = openAuditLog(*cfg); !as.isOk()) {
    logEvent(LogLevel::kError, "audit log not reopened; keeping the running one",
             {{"error", as.message()}});
    registry_->addEvent("reload_warning", "", "", as.message());
  }
  applyLogSettings(*cfg);
  config_ = cfg;
  listener_tls_ = std::move(tls);
  pool_tls_ = std::move(pool_tls);
  current_sockets_ = std::move(socks);
  registry_->applyConfig(config_);
  if (Status as = autoscale_->applyConfig(*config_); !as.isOk()) {
    logEvent(LogLevel::kError, "autoscale settings not fully applied; the old scaler is kept",
             {{"error", as.message()}});
    registry_->addEvent("reload_warning", "", "", as.message());
  }
  registry_->addEvent("config_reloaded", "", "", opts_.config_path);
  registry_->markChanged();
  publishIfChanged();
  if (!retired.empty()) retired_.emplace_back(generation_, std::move(retired));
  logEvent(LogLevel::kInfo, "reloaded",
           {{"config", opts_.config_path}, {"generation", std::to_string(generation_)}});
}

void App::beginShutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  logEvent(LogLevel::kInfo, "draining",
           {{"timeout", std::to_string(toMillis(config_->drain_timeout)) + "ms"},
            {"active_connections", std::to_string(proxy_->totals().downstream_cx_active)}});
  proxy_->drain(config_->drain_timeout);
  // Workers stop watching the listening sockets at once; closing them makes the kernel
  // refuse new connections instead of queueing them.
  proxy_->waitDrainStarted();
  sockets_->closeEverything();
  for (auto& [gen, fds] : retired_) ListenSocketTable::closeAll(fds);
  retired_.clear();
  event_base_loopexit(base_, nullptr);
}

void App::logTotals() {
  l7proxy::CounterTotals t = proxy_->totals();
  std::vector<std::pair<std::string, std::string>> f = {
      {"connections", std::to_string(t.downstream_cx_total)},
      {"requests", std::to_string(t.downstream_rq_total)},
      {"responses_2xx", std::to_string(t.responses_by_class[2])},
      {"responses_3xx", std::to_string(t.responses_by_class[3])},
      {"responses_4xx", std::to_string(t.responses_by_class[4])},
      {"responses_5xx", std::to_string(t.responses_by_class[5])},
      {"upstream_connections", std::to_string(t.upstream_cx_total)},
      {"upstream_reused", std::to_string(t.upstream_cx_reused)},
      {"upstream_connect_failures", std::to_string(t.upstream_cx_connect_fail)},
      {"retries", std::to_string(t.upstream_rq_retry)},
      {"upstream_reset_mid_response", std::to_string(t.upstream_reset_mid_response)},
  };
  for (int i = 0; i < static_cast<int>(l7proxy::LocalReply::kCount); ++i) {
    auto r = static_cast<l7proxy::LocalReply>(i);
    f.emplace_back(std::string("local_") + l7proxy::localReplyName(r),
                   std::to_string(t.local_replies[i]));
  }
  logEvent(LogLevel::kInfo, "totals", f);
}

}  // namespace scalegate::control
