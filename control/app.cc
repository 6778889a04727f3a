#include "control/app.h"

#include <csignal>
#include <thread>

#include "common/log.h"
#include "config/loader.h"
#include "control/snapshot_builder.h"

namespace scalegate::control {

App::App(Options opts) : opts_(std::move(opts)) {}

App::~App() {
  for (event* e : signal_events_) event_free(e);
  if (housekeeping_ != nullptr) event_free(housekeeping_);
  if (base_ != nullptr) event_base_free(base_);
}

void App::applyLogSettings(const config::Config& cfg) {
  setLogLevel(cfg.log.level);
  setLogFormat(cfg.log.format);
}

int App::run() {
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
  std::vector<config::ListenSockets> socks;
  std::vector<int> retired;
  Status st = sockets_->prepare(*config_, &socks, &retired);
  if (!st.isOk()) {
    SG_LOG(kError, "cannot start: %s", st.message().c_str());
    return 1;
  }
  for (const auto& s : socks) {
    logEvent(LogLevel::kInfo, "listening",
             {{"listener", s.listener}, {"address", s.address.toString()},
              {"workers", std::to_string(s.fds.size())}});
  }
  snapshot_ = buildSnapshot(config_, ++generation_, socks, nullptr, SystemClock::instance().now());
  proxy_ = std::make_unique<l7proxy::Proxy>(workers);
  proxy_->start(snapshot_);

  base_ = event_base_new();
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) {
    event* e = evsignal_new(base_, sig, onSignal, this);
    event_add(e, nullptr);
    signal_events_.push_back(e);
  }
  pthread_sigmask(SIG_UNBLOCK, &block, nullptr);
  housekeeping_ = event_new(base_, -1, EV_PERSIST, onHousekeeping, this);
  timeval tick{0, 100 * 1000};
  event_add(housekeeping_, &tick);
  logEvent(LogLevel::kInfo, "started",
           {{"version", SG_VERSION}, {"config", opts_.config_path},
            {"workers", std::to_string(workers)}});
  event_base_dispatch(base_);

  proxy_->join();
  sockets_->closeEverything();
  for (auto& [gen, fds] : retired_) ListenSocketTable::closeAll(fds);
  retired_.clear();
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
  if (app->shutting_down_ && app->proxy_->totals().downstream_cx_active == 0) {
    // Workers end on their own once drained; the control loop just stops waiting.
    event_base_loopexit(app->base_, nullptr);
  }
}

void App::reload() {
  if (shutting_down_) return;
  config::LoadResult loaded = config::loadConfigFile(opts_.config_path);
  if (!loaded.ok()) {
    for (const config::ConfigError& e : loaded.errors) {
      logEvent(LogLevel::kError, "config error", {{"error", e.toString()}});
    }
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"errors", std::to_string(loaded.errors.size())}});
    return;
  }
  auto cfg = std::make_shared<const config::Config>(std::move(loaded.config));
  std::vector<config::ListenSockets> socks;
  std::vector<int> retired;
  Status st = sockets_->prepare(*cfg, &socks, &retired);
  if (!st.isOk()) {
    logEvent(LogLevel::kError, "reload failed; keeping the running config",
             {{"config", opts_.config_path}, {"error", st.message()}});
    return;
  }
  applyLogSettings(*cfg);
  config_ = cfg;
  snapshot_ = buildSnapshot(config_, ++generation_, std::move(socks), snapshot_.get(),
                            SystemClock::instance().now());
  proxy_->publish(snapshot_);
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
    f.emplace_back(std::string("local_") + l7proxy::localReplyName(r), std::to_string(t.local_replies[i]));
  }
  logEvent(LogLevel::kInfo, "totals", f);
}

}  // namespace scalegate::control
