// sgscaler: the local reference scaler. It plays the cloud's scale set for scalegate: it
// receives scalegate's signed webhooks and turns them into instance processes (sgbackend),
// registering and removing them through scalegate's admin API.
//
//   scalegate ──POST signed webhook──► sgscaler (evhttp, one event loop)
//                                         │ verify (common/webhook_signature), de-duplicate id
//                                         │ answer 202 at once, then act asynchronously:
//                                         ├─ scale_out: boot delay → fork/exec sgbackend → port
//                                         │             file appears → PUT member
//                                         ├─ scale_in:  DELETE member → SIGTERM (SIGKILL later)
//                                         ├─ repair:    restart/reimage (same id and port) or
//                                         │             replace (new id, old one deleted)
//                                         └─ upgrade_batch: restart with --version V, PUT again
//   scalegate admin API ◄──PUT/DELETE /v1/pools/{pool}/members/{id} (bearer token)
//
// Uses common/ (signatures, durations, logging) and never control/ internals (DESIGN.md).

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/log.h"
#include "common/units.h"
#include "common/webhook_signature.h"

namespace scalegate::bench {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxSeenIds = 10000;  // de-duplication memory (oldest forgotten first)
constexpr int kAdminMaxTries = 60;     // admin API calls are retried while it is away
constexpr Duration kAdminRetry = std::chrono::milliseconds(500);
constexpr Duration kPortPoll = std::chrono::milliseconds(20);
constexpr Duration kStartTimeout = std::chrono::seconds(15);

struct Options {
  std::string listen = "127.0.0.1:9800";
  std::string secret_file;
  std::string admin = "http://127.0.0.1:9900";
  std::string admin_token_file;
  std::string pool = "web";
  std::string backend_bin;
  std::string backend_args;
  std::string boot_delay = "2s";
  std::string stop_timeout = "5s";
  std::string tolerance = "5m";
  int initial = 0;
  int port_base = 0;
  std::string zones = "1";
  int fault_domains = 1;
  std::string version = "v1";
  int weight = 1;
  std::string state_dir;
  std::string port_file;
  int fail_first = 0;
};

timeval toTimeval(Duration d) {
  const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

std::vector<std::string> splitWords(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  char quote = 0;
  for (char c : s) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        cur.push_back(c);
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// Calls fn once after `delay` on the loop.
void runAfter(event_base* base, Duration delay, std::function<void()> fn) {
  auto* heap = new std::function<void()>(std::move(fn));
  timeval tv = toTimeval(delay);
  event_base_once(
      base, -1, EV_TIMEOUT,
      [](evutil_socket_t, short, void* arg) {
        std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(arg));
        (*f)();
      },
      heap, &tv);
}

// One timer owned by a std::function; re-armable. Frees itself with its owner.
class Timer {
 public:
  Timer(event_base* base, std::function<void()> fn) : fn_(std::move(fn)) {
    ev_ = evtimer_new(base, &Timer::fire, this);
  }
  ~Timer() { event_free(ev_); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void arm(Duration d) {
    timeval tv = toTimeval(d);
    evtimer_add(ev_, &tv);
  }
  void cancel() { evtimer_del(ev_); }

 private:
  static void fire(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<Timer*>(arg);
    self->fn_();  // may destroy *self
  }
  event* ev_;
  std::function<void()> fn_;
};

enum class InstanceState { kBooting, kStarting, kRunning, kStopping, kStopped, kDead, kFailed };
const char* stateName(InstanceState s) {
  static constexpr const char* kNames[] = {"booting", "starting", "running", "stopping",
                                           "stopped", "dead",     "failed"};
  return kNames[static_cast<int>(s)];
}

// What to do once an instance's process has exited.
enum class AfterExit { kNothing, kRestart, kForget };

struct Instance {
  std::string id;
  int index = 0;
  std::string zone;
  int fault_domain = 0;
  uint16_t port = 0;  // 0 until the first start picked one
  pid_t pid = -1;
  std::string version;
  InstanceState state = InstanceState::kBooting;
  bool registered = false;
  AfterExit after_exit = AfterExit::kNothing;
  int starts = 0;
  MonoTime start_deadline{};
  std::unique_ptr<Timer> boot_timer;
  std::unique_ptr<Timer> poll_timer;
  std::unique_ptr<Timer> kill_timer;
};

class Scaler {
 public:
  Scaler(event_base* base, Options opt, WebhookKey key, std::string token, Duration boot_delay,
         Duration stop_timeout, Duration tolerance, std::vector<std::string> zones)
      : base_(base),
        opt_(std::move(opt)),
        key_(std::move(key)),
        token_(std::move(token)),
        boot_delay_(boot_delay),
        stop_timeout_(stop_timeout),
        tolerance_(tolerance),
        zones_(std::move(zones)) {}

  bool parseAdmin(std::string* error);
  void launchInitial();
  void onWebhook(evhttp_request* req);
  void onInstancesRequest(evhttp_request* req);
  void reapChildren();
  // Stops every instance (SIGTERM, SIGKILL after the stop timeout); returns when all exited.
  void shutdown();

 private:
  Instance* create(const std::string& zone, const std::string& version);
  Instance* find(const std::string& id);
  std::string pickZone();
  void bootAfter(Instance* in, Duration delay);
  void startProcess(Instance* in);
  void pollStarted(Instance* in);
  void stopProcess(Instance* in, AfterExit after);
  void onExited(Instance* in, int status);
  void registerMember(const std::string& id);
  // DELETE the member; `then` runs once the admin API answered (or the retries ran out), so
  // an instance is stopped only after scalegate stopped sending it new requests.
  void deregisterMember(const std::string& id, std::function<void()> then = nullptr);
  void adminCall(evhttp_cmd_type method, const std::string& id, std::string body, int tries_left,
                 bool with_version, std::function<void()> then = nullptr);
  std::string portFile(const Instance& in) const { return opt_.state_dir + "/" + in.id + ".port"; }

  void act(const Json& body, const std::string& webhook_id);
  void scaleOut(const std::map<std::string, int>& zones, int count, const std::string& tag);
  void scaleIn(const std::vector<std::string>& ids, int count, const std::string& tag);
  void repair(const std::vector<std::string>& ids, const std::string& action,
              const std::string& tag);
  void upgrade(const std::vector<std::string>& ids, const std::string& version,
               const std::string& tag);

  event_base* base_;
  Options opt_;
  WebhookKey key_;
  std::string token_;
  Duration boot_delay_, stop_timeout_, tolerance_;
  std::vector<std::string> zones_;
  std::string admin_host_;
  uint16_t admin_port_ = 0;
  bool admin_knows_version_ = true;  // cleared when the admin API refuses the version field
  std::map<std::string, std::unique_ptr<Instance>> instances_;
  int next_index_ = 0;
  std::set<std::string> seen_;
  std::deque<std::string> seen_order_;
  int deliveries_ = 0;
};

bool Scaler::parseAdmin(std::string* error) {
  std::string rest = opt_.admin;
  if (rest.rfind("http://", 0) != 0) {
    *error = "--admin must be http://HOST:PORT";
    return false;
  }
  rest = rest.substr(7);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) {
    admin_host_ = rest;
    admin_port_ = 80;
  } else {
    admin_host_ = rest.substr(0, colon);
    int p = std::atoi(rest.c_str() + colon + 1);
    if (p <= 0 || p > 65535) {
      *error = "--admin: bad port";
      return false;
    }
    admin_port_ = static_cast<uint16_t>(p);
  }
  return !admin_host_.empty();
}

std::string Scaler::pickZone() {
  // The zone with the fewest live instances (ties: the first listed), as a scale set keeps
  // zones within ±1.
  std::map<std::string, int> count;
  for (const auto& z : zones_) count[z] = 0;
  for (const auto& [id, in] : instances_) {
    if (in->state != InstanceState::kDead && in->state != InstanceState::kStopped) {
      ++count[in->zone];
    }
  }
  std::string best = zones_.front();
  for (const auto& z : zones_) {
    if (count[z] < count[best]) best = z;
  }
  return best;
}

Instance* Scaler::create(const std::string& zone, const std::string& version) {
  auto in = std::make_unique<Instance>();
  in->index = next_index_++;
  in->id = "vm-" + std::to_string(in->index);
  in->zone = zone;
  in->fault_domain = in->index % std::max(1, opt_.fault_domains);
  in->version = version;
  if (opt_.port_base > 0) in->port = static_cast<uint16_t>(opt_.port_base + in->index);
  Instance* raw = in.get();
  instances_[in->id] = std::move(in);
  return raw;
}

Instance* Scaler::find(const std::string& id) {
  auto it = instances_.find(id);
  return it == instances_.end() ? nullptr : it->second.get();
}

void Scaler::launchInitial() {
  for (int i = 0; i < opt_.initial; ++i) {
    Instance* in = create(zones_[static_cast<size_t>(i) % zones_.size()], opt_.version);
    SG_LOG(kInfo, "initial instance %s (zone %s)", in->id.c_str(), in->zone.c_str());
    startProcess(in);
  }
}

void Scaler::bootAfter(Instance* in, Duration delay) {
  in->state = InstanceState::kBooting;
  std::string id = in->id;
  in->boot_timer = std::make_unique<Timer>(base_, [this, id] {
    if (Instance* i = find(id); i != nullptr && i->state == InstanceState::kBooting) {
      startProcess(i);
    }
  });
  in->boot_timer->arm(delay);
}

void Scaler::startProcess(Instance* in) {
  const std::string port_file = portFile(*in);
  ::unlink(port_file.c_str());
  std::vector<std::string> args = {
      opt_.backend_bin, "--id",    in->id,      "--listen", "127.0.0.1:" + std::to_string(in->port),
      "--port-file",    port_file, "--version", in->version};
  for (auto& w : splitWords(opt_.backend_args)) args.push_back(std::move(w));
  const std::string log_path = opt_.state_dir + "/" + in->id + ".log";
  pid_t pid = fork();
  if (pid < 0) {
    SG_LOG(kError, "%s: fork: %s", in->id.c_str(), std::strerror(errno));
    in->state = InstanceState::kFailed;
    return;
  }
  if (pid == 0) {
    // Child: die with the scaler, own log file, default signal handling, then exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::fprintf(stderr, "sgscaler: exec %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  in->pid = pid;
  in->state = InstanceState::kStarting;
  ++in->starts;
  in->start_deadline = SystemClock::instance().now() + kStartTimeout;
  SG_LOG(kInfo, "%s: started pid %d (zone %s, version %s)", in->id.c_str(), pid, in->zone.c_str(),
         in->version.c_str());
  std::string id = in->id;
  in->poll_timer = std::make_unique<Timer>(base_, [this, id] {
    if (Instance* i = find(id)) pollStarted(i);
  });
  in->poll_timer->arm(kPortPoll);
}

// sgbackend writes its port file (by rename) once it listens: from then on it accepts.
void Scaler::pollStarted(Instance* in) {
  if (in->state != InstanceState::kStarting) return;
  FILE* f = std::fopen(portFile(*in).c_str(), "r");
  unsigned port = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%u", &port) != 1) port = 0;
    std::fclose(f);
  }
  if (port == 0 || port > 65535) {
    if (SystemClock::instance().now() > in->start_deadline) {
      SG_LOG(kError, "%s: not listening after %llds; killing pid %d", in->id.c_str(),
             static_cast<long long>(
                 std::chrono::duration_cast<std::chrono::seconds>(kStartTimeout).count()),
             in->pid);
      stopProcess(in, AfterExit::kNothing);  // ends "stopped"; it never registered
      return;
    }
    in->poll_timer->arm(kPortPoll);
    return;
  }
  in->port = static_cast<uint16_t>(port);
  in->state = InstanceState::kRunning;
  SG_LOG(kInfo, "%s: listening on 127.0.0.1:%u; registering", in->id.c_str(), port);
  registerMember(in->id);
}

void Scaler::stopProcess(Instance* in, AfterExit after) {
  in->after_exit = after;
  if (in->boot_timer) in->boot_timer->cancel();
  if (in->poll_timer) in->poll_timer->cancel();
  if (in->pid <= 0) {
    // Never started (still booting) or already gone.
    onExited(in, 0);
    return;
  }
  in->state = InstanceState::kStopping;
  ::kill(in->pid, SIGTERM);
  std::string id = in->id;
  pid_t pid = in->pid;
  in->kill_timer = std::make_unique<Timer>(base_, [this, id, pid] {
    Instance* i = find(id);
    if (i != nullptr && i->pid == pid) {
      SG_LOG(kWarn, "%s: pid %d still running after SIGTERM; SIGKILL", id.c_str(), pid);
      ::kill(pid, SIGKILL);
    }
  });
  in->kill_timer->arm(stop_timeout_);
}

void Scaler::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (auto& [id, in] : instances_) {
      if (in->pid == pid) {
        onExited(in.get(), status);
        break;
      }
    }
  }
}

void Scaler::onExited(Instance* in, int status) {
  const bool expected = in->state == InstanceState::kStopping || in->pid <= 0;
  if (in->pid > 0) {
    if (WIFSIGNALED(status)) {
      logPrintf(expected ? LogLevel::kInfo : LogLevel::kWarn, "%s: pid %d %s by signal %d",
                in->id.c_str(), in->pid, expected ? "stopped" : "died", WTERMSIG(status));
    } else {
      logPrintf(expected ? LogLevel::kInfo : LogLevel::kWarn, "%s: pid %d %s with status %d",
                in->id.c_str(), in->pid, expected ? "stopped" : "exited", WEXITSTATUS(status));
    }
  }
  in->pid = -1;
  if (in->kill_timer) in->kill_timer->cancel();
  if (!expected) {
    // A crash: a real VM would sit there unhealthy. scalegate's probes notice and its repair
    // policy asks for a repair; sgscaler does not restart on its own.
    in->state = InstanceState::kDead;
    return;
  }
  AfterExit after = in->after_exit;
  in->after_exit = AfterExit::kNothing;
  switch (after) {
    case AfterExit::kRestart:
      startProcess(in);
      break;
    case AfterExit::kForget:
      instances_.erase(in->id);
      break;
    case AfterExit::kNothing:
      in->state = InstanceState::kStopped;
      break;
  }
}

void Scaler::registerMember(const std::string& id) {
  Instance* in = find(id);
  if (in == nullptr) return;
  Json body = {{"address", "127.0.0.1:" + std::to_string(in->port)},
               {"zone", in->zone},
               {"fault_domain", in->fault_domain},
               {"weight", opt_.weight}};
  adminCall(EVHTTP_REQ_PUT, id, body.dump(), kAdminMaxTries, admin_knows_version_);
}

void Scaler::deregisterMember(const std::string& id, std::function<void()> then) {
  adminCall(EVHTTP_REQ_DELETE, id, "", kAdminMaxTries, false, std::move(then));
}

struct AdminCall {
  Scaler* scaler;
  evhttp_cmd_type method;
  std::string id;
  std::string body;
  int tries_left;
  bool with_version;
  evhttp_connection* conn;
  std::function<void()> then;  // after the final answer
};

void Scaler::adminCall(evhttp_cmd_type method, const std::string& id, std::string body,
                       int tries_left, bool with_version, std::function<void()> then) {
  std::string sent = body;
  if (method == EVHTTP_REQ_PUT && with_version) {
    Instance* in = find(id);
    Json j = Json::parse(body);
    if (in != nullptr) j["version"] = in->version;
    sent = j.dump();
  }
  auto* call = new AdminCall{this,       method,       id,      std::move(body),
                             tries_left, with_version, nullptr, std::move(then)};
  call->conn = evhttp_connection_base_new(base_, nullptr, admin_host_.c_str(), admin_port_);
  evhttp_connection_set_timeout(call->conn, 5);
  evhttp_connection_set_retries(call->conn, 0);
  evhttp_request* req = evhttp_request_new(
      [](evhttp_request* r, void* arg) {
        auto* c = static_cast<AdminCall*>(arg);
        Scaler* self = c->scaler;
        const int code = r == nullptr ? 0 : evhttp_request_get_response_code(r);
        std::string answer;
        if (r != nullptr) {
          evbuffer* in = evhttp_request_get_input_buffer(r);
          answer.resize(std::min<size_t>(evbuffer_get_length(in), 300));
          evbuffer_copyout(in, answer.data(), answer.size());
          while (!answer.empty() && answer.back() == '\n') answer.pop_back();
        }
        const char* verb = c->method == EVHTTP_REQ_PUT ? "PUT" : "DELETE";
        // The connection is freed after this callback returns (deferred to the loop).
        evhttp_connection* conn = c->conn;
        runAfter(self->base_, Duration::zero(), [conn] { evhttp_connection_free(conn); });
        std::unique_ptr<AdminCall> owned(c);
        if (code >= 200 && code < 300) {
          SG_LOG(kInfo, "%s: %s member: %d", c->id.c_str(), verb, code);
          if (Instance* in = self->find(c->id)) in->registered = c->method == EVHTTP_REQ_PUT;
          if (c->then) c->then();
          return;
        }
        if (c->method == EVHTTP_REQ_DELETE && code == 404) {
          SG_LOG(kInfo, "%s: DELETE member: not registered (404)", c->id.c_str());
          if (Instance* in = self->find(c->id)) in->registered = false;
          if (c->then) c->then();
          return;
        }
        if (code == 400 && c->with_version &&
            answer.find("unknown field \\\"version\\\"") != std::string::npos) {
          // An admin API without member versions: register without, and say so once.
          SG_LOG(kWarn, "the admin API does not take member versions yet; registering without");
          self->admin_knows_version_ = false;
          self->adminCall(c->method, c->id, c->body, c->tries_left, false, std::move(c->then));
          return;
        }
        const bool retry = code == 0 || code >= 500 || code == 429;
        if (retry && c->tries_left > 1) {
          SG_LOG(kWarn, "%s: %s member failed (%s); retrying", c->id.c_str(), verb,
                 code == 0 ? "no answer" : std::to_string(code).c_str());
          std::string id = c->id, body = c->body;
          evhttp_cmd_type method = c->method;
          int left = c->tries_left - 1;
          bool with_version = c->with_version;
          runAfter(self->base_, kAdminRetry,
                   [self, method, id, body, left, with_version, then = std::move(c->then)] {
                     self->adminCall(method, id, body, left, with_version, then);
                   });
          return;
        }
        SG_LOG(kError, "%s: %s member failed: %d %s", c->id.c_str(), verb, code, answer.c_str());
        if (c->then) c->then();
      },
      call);
  evkeyvalq* h = evhttp_request_get_output_headers(req);
  std::string host = admin_host_ + ":" + std::to_string(admin_port_);
  std::string auth = "Bearer " + token_;
  evhttp_add_header(h, "Host", host.c_str());
  evhttp_add_header(h, "Authorization", auth.c_str());
  evhttp_add_header(h, "Connection", "close");
  if (!sent.empty()) {
    evhttp_add_header(h, "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), sent.data(), sent.size());
  }
  std::string path = "/v1/pools/" + opt_.pool + "/members/" + id;
  if (evhttp_make_request(call->conn, req, method, path.c_str()) != 0) {
    evhttp_request_free(req);
    evhttp_connection_free(call->conn);
    SG_LOG(kError, "%s: cannot send the admin request", id.c_str());
    delete call;
  }
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

std::string header(evhttp_request* req, const char* name) {
  const char* v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
  return v == nullptr ? std::string() : std::string(v);
}

void reply(evhttp_request* req, int code, const Json& body) {
  std::string text = body.dump() + "\n";
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, text.data(), text.size());
  evhttp_send_reply(req, code, nullptr, out);
  evbuffer_free(out);
}

std::vector<std::string> stringList(const Json& j) {
  std::vector<std::string> out;
  if (!j.is_array()) return out;
  for (const auto& v : j) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::vector<std::string> commaList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

void Scaler::onWebhook(evhttp_request* req) {
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
    reply(req, 405, {{"error", "POST a webhook here"}});
    return;
  }
  evbuffer* in = evhttp_request_get_input_buffer(req);
  std::string body(evbuffer_get_length(in), '\0');
  evbuffer_copyout(in, body.data(), body.size());
  const std::string id = header(req, "webhook-id");
  Status st = key_.verify(id, header(req, "webhook-timestamp"), header(req, "webhook-signature"),
                          body, SystemClock::instance().wallNow(), tolerance_);
  if (!st.isOk()) {
    SG_LOG(kWarn, "webhook %s refused: %s", id.empty() ? "(no id)" : id.c_str(),
           st.message().c_str());
    reply(req, 401, {{"error", st.message()}});
    return;
  }
  ++deliveries_;
  if (deliveries_ <= opt_.fail_first) {
    SG_LOG(kInfo, "webhook %s: answering 500 (--fail-first %d, delivery %d)", id.c_str(),
           opt_.fail_first, deliveries_);
    reply(req, 500, {{"error", "failing on purpose (--fail-first)"}});
    return;
  }
  if (seen_.count(id) != 0) {
    SG_LOG(kInfo, "webhook %s: already handled; not acting again", id.c_str());
    reply(req, 200, {{"status", "duplicate"}, {"id", id}});
    return;
  }
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    reply(req, 400, {{"error", "the body is not a JSON object"}});
    return;
  }
  seen_.insert(id);
  seen_order_.push_back(id);
  if (seen_order_.size() > kMaxSeenIds) {
    seen_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  // Answer first; the work (process starts, admin calls) goes on in the loop.
  reply(req, 202, {{"status", "accepted"}, {"id", id}});
  act(j, id);
}

void Scaler::act(const Json& j, const std::string& webhook_id) {
  try {
    if (j.contains("operation") && j.contains("context")) {
      // Azure Monitor autoscale format; scalegate adds its details as scalegate.* properties.
      const std::string op = j["operation"].get<std::string>();
      const Json& ctx = j["context"];
      const Json props = j.value("properties", Json::object());
      auto prop = [&](const char* k) {
        return props.contains(k) && props[k].is_string() ? props[k].get<std::string>() : "";
      };
      const int old_cap = std::stoi(ctx.value("oldCapacity", "0"));
      const int new_cap = std::stoi(ctx.value("newCapacity", "0"));
      const std::string tag = webhook_id + " (azure " + op + " " + std::to_string(old_cap) + "->" +
                              std::to_string(new_cap) + ")";
      if (op == "Scale Out") {
        std::map<std::string, int> zones;
        for (const auto& z : commaList(prop("scalegate.zones"))) {
          size_t eq = z.find('=');
          if (eq != std::string::npos) zones[z.substr(0, eq)] = std::stoi(z.substr(eq + 1));
        }
        scaleOut(zones, new_cap - old_cap, tag);
      } else if (op == "Scale In") {
        scaleIn(commaList(prop("scalegate.instances")), old_cap - new_cap, tag);
      } else if (op == "Repair") {
        repair(commaList(prop("scalegate.instances")), prop("scalegate.repairAction"), tag);
      } else if (op == "Upgrade") {
        upgrade(commaList(prop("scalegate.instances")), prop("scalegate.version"), tag);
      } else {
        SG_LOG(kWarn, "webhook %s: unknown operation \"%s\"; ignored", webhook_id.c_str(),
               op.c_str());
      }
      return;
    }
    const std::string type = j.at("type").get<std::string>();
    const Json& d = j.at("data");
    const int old_cap = d.value("old_capacity", 0);
    const int new_cap = d.value("new_capacity", 0);
    const std::string tag = webhook_id + " (" + type + " pool " + d.value("pool", "?") + " " +
                            std::to_string(old_cap) + "->" + std::to_string(new_cap) + ")";
    if (d.value("pool", opt_.pool) != opt_.pool) {
      SG_LOG(kWarn, "webhook %s: for pool %s, this scaler runs %s; ignored", tag.c_str(),
             d.value("pool", "").c_str(), opt_.pool.c_str());
      return;
    }
    const std::vector<std::string> ids = stringList(d.value("instances", Json::array()));
    if (type == "scale_out") {
      std::map<std::string, int> zones;
      const Json zone_counts = d.value("zones", Json::object());
      for (const auto& [z, n] : zone_counts.items()) {
        if (n.is_number_integer()) zones[z] = n.get<int>();
      }
      scaleOut(zones, new_cap - old_cap, tag);
    } else if (type == "scale_in") {
      scaleIn(ids, old_cap - new_cap, tag);
    } else if (type == "repair") {
      repair(ids, d.value("repair", Json::object()).value("action", "replace"), tag);
    } else if (type == "upgrade_batch") {
      upgrade(ids, d.value("upgrade", Json::object()).value("version", ""), tag);
    } else {
      SG_LOG(kWarn, "webhook %s: unknown type; ignored", tag.c_str());
    }
  } catch (const std::exception& e) {
    SG_LOG(kError, "webhook %s: malformed event: %s", webhook_id.c_str(), e.what());
  }
}

void Scaler::scaleOut(const std::map<std::string, int>& zones, int count, const std::string& tag) {
  std::vector<std::string> plan;  // zone per new instance
  for (const auto& [zone, n] : zones) {
    for (int i = 0; i < n; ++i) plan.push_back(zone);
  }
  for (int i = static_cast<int>(plan.size()); i < count; ++i) plan.push_back("");
  if (plan.empty()) {
    SG_LOG(kWarn, "webhook %s: scale_out asks for no instance", tag.c_str());
    return;
  }
  std::string names;
  for (const std::string& z : plan) {
    Instance* in = create(z.empty() ? pickZone() : z, opt_.version);
    bootAfter(in, boot_delay_);
    names += (names.empty() ? "" : ", ") + in->id + " (zone " + in->zone + ")";
  }
  SG_LOG(kInfo, "webhook %s: scale_out: booting %s; start in %lld ms", tag.c_str(), names.c_str(),
         static_cast<long long>(toMillis(boot_delay_)));
}

void Scaler::scaleIn(const std::vector<std::string>& ids, int count, const std::string& tag) {
  std::vector<std::string> victims = ids;
  if (victims.empty() && count > 0) {
    // An Azure receiver gets no names: remove the highest instance ids, like VMSS's default.
    std::vector<const Instance*> live;
    for (const auto& [id, in] : instances_) {
      if (in->state == InstanceState::kRunning) live.push_back(in.get());
    }
    std::sort(live.begin(), live.end(),
              [](const Instance* a, const Instance* b) { return a->index > b->index; });
    for (int i = 0; i < count && i < static_cast<int>(live.size()); ++i) {
      victims.push_back(live[static_cast<size_t>(i)]->id);
    }
  }
  for (const std::string& id : victims) {
    Instance* in = find(id);
    if (in == nullptr) {
      SG_LOG(kWarn, "webhook %s: scale_in names unknown instance %s; deregistering anyway",
             tag.c_str(), id.c_str());
      deregisterMember(id);
      continue;
    }
    SG_LOG(kInfo, "webhook %s: scale_in: deleting %s (pid %d)", tag.c_str(), id.c_str(), in->pid);
    deregisterMember(id, [this, id] {
      if (Instance* i = find(id)) stopProcess(i, AfterExit::kForget);
    });
  }
}

void Scaler::repair(const std::vector<std::string>& ids, const std::string& action,
                    const std::string& tag) {
  for (const std::string& id : ids) {
    Instance* in = find(id);
    if (in == nullptr) {
      SG_LOG(kWarn, "webhook %s: repair names unknown instance %s", tag.c_str(), id.c_str());
      continue;
    }
    if (action == "replace") {
      Instance* fresh = create(in->zone, in->version);
      SG_LOG(kInfo, "webhook %s: repair replace: deleting %s, booting %s (zone %s)", tag.c_str(),
             id.c_str(), fresh->id.c_str(), fresh->zone.c_str());
      deregisterMember(id, [this, id] {
        if (Instance* i = find(id)) stopProcess(i, AfterExit::kForget);
      });
      bootAfter(fresh, boot_delay_);
    } else {
      // restart and reimage: the same instance (id, port) comes back as a new process.
      SG_LOG(kInfo, "webhook %s: repair %s: restarting %s", tag.c_str(),
             action.empty() ? "restart" : action.c_str(), id.c_str());
      stopProcess(in, AfterExit::kRestart);
    }
  }
}

void Scaler::upgrade(const std::vector<std::string>& ids, const std::string& version,
                     const std::string& tag) {
  if (version.empty()) {
    SG_LOG(kWarn, "webhook %s: upgrade_batch without a version; ignored", tag.c_str());
    return;
  }
  for (const std::string& id : ids) {
    Instance* in = find(id);
    if (in == nullptr) {
      SG_LOG(kWarn, "webhook %s: upgrade names unknown instance %s", tag.c_str(), id.c_str());
      continue;
    }
    SG_LOG(kInfo, "webhook %s: upgrade_batch: restarting %s at version %s (was %s)", tag.c_str(),
           id.c_str(), version.c_str(), in->version.c_str());
    in->version = version;
    stopProcess(in, AfterExit::kRestart);
  }
}

void Scaler::onInstancesRequest(evhttp_request* req) {
  Json list = Json::array();
  std::vector<const Instance*> all;
  for (const auto& [id, in] : instances_) all.push_back(in.get());
  std::sort(all.begin(), all.end(),
            [](const Instance* a, const Instance* b) { return a->index < b->index; });
  for (const Instance* in : all) {
    list.push_back({{"id", in->id},
                    {"pid", in->pid},
                    {"port", in->port},
                    {"zone", in->zone},
                    {"fault_domain", in->fault_domain},
                    {"version", in->version},
                    {"state", stateName(in->state)},
                    {"registered", in->registered},
                    {"starts", in->starts}});
  }
  reply(req, 200, {{"pool", opt_.pool}, {"instances", std::move(list)}, {"webhooks", deliveries_}});
}

void Scaler::shutdown() {
  for (auto& [id, in] : instances_) {
    if (in->pid > 0) ::kill(in->pid, SIGTERM);
  }
  const MonoTime deadline = SystemClock::instance().now() + stop_timeout_;
  for (;;) {
    bool any = false;
    for (auto& [id, in] : instances_) {
      if (in->pid <= 0) continue;
      if (waitpid(in->pid, nullptr, WNOHANG) == in->pid) {
        in->pid = -1;
      } else {
        any = true;
      }
    }
    if (!any) return;
    if (SystemClock::instance().now() > deadline) {
      for (auto& [id, in] : instances_) {
        if (in->pid > 0) {
          ::kill(in->pid, SIGKILL);
          waitpid(in->pid, nullptr, 0);
          in->pid = -1;
        }
      }
      return;
    }
    usleep(10'000);  // exiting: the loop no longer runs
  }
}

// ---------------------------------------------------------------------------------------------
// Startup.

constexpr const char* kFooter = R"(
Webhooks (any path, POST): Standard Webhooks headers webhook-id, webhook-timestamp and
webhook-signature (v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>) are verified; a bad or
stale (outside --tolerance) signature gets 401 {"error": "<reason>"}. A valid delivery gets 202
at once and is acted on asynchronously; a webhook-id seen before gets 200 {"status":
"duplicate"} and nothing is done again. Both payload formats are understood (scalegate's
{"type", "data"} and Azure's {"operation": "Scale Out"|"Scale In", "context", "properties"}).

  scale_out      new instances vm-N (N = highest + 1) in the zones the event names (else the
                 least-populated of --zones); each starts after --boot-delay, and is registered
                 (PUT /v1/pools/POOL/members/ID) once it listens
  scale_in       DELETE the named members, then SIGTERM them (SIGKILL after --stop-timeout)
  repair         restart | reimage: same id and port, new process, registered again;
                 replace: delete the old instance, boot a new one (new id, same zone)
  upgrade_batch  restart the named instances with --version V and register them with it

GET /instances lists the instances as JSON (id, pid, port, zone, fault_domain, version, state,
registered, starts). Instances that die on their own are reported ("died") and left dead:
scalegate's health probes and repair policy handle them. SIGTERM/SIGINT stop every instance,
then sgscaler exits. Instances write their output to STATE_DIR/ID.log.
)";

int runMain(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "sgscaler: scalegate's local reference scaler. It receives scalegate's signed scale "
      "webhooks and runs instances (sgbackend processes) like a cloud scale set, registering "
      "them through scalegate's admin API."};
  app.footer(kFooter);
  app.add_option("--listen", opt.listen, "HOST:PORT for webhooks and GET /instances (port 0: any)")
      ->capture_default_str();
  app.add_option("--port-file", opt.port_file, "write the bound port here once listening");
  app.add_option("--secret-file", opt.secret_file,
                 "the webhook secret (whsec_<base64> or raw bytes), as scalegate's "
                 "autoscale.scaler.secret_file")
      ->required();
  app.add_option("--admin", opt.admin, "scalegate's admin API, http://HOST:PORT")
      ->capture_default_str();
  app.add_option("--admin-token-file", opt.admin_token_file, "bearer token for the admin API");
  app.add_option("--pool", opt.pool, "the pool this scaler runs")->capture_default_str();
  app.add_option("--backend-bin", opt.backend_bin, "the instance program (sgbackend)")->required();
  app.add_option("--backend-args", opt.backend_args,
                 "extra arguments for every instance, e.g. \"--cpu-work 2ms --capacity 8\" "
                 "(sgscaler itself passes --id, --listen, --port-file, --version)");
  app.add_option("--boot-delay", opt.boot_delay,
                 "provisioning time before a new instance's process starts (scale_out, repair "
                 "replace)")
      ->capture_default_str();
  app.add_option("--stop-timeout", opt.stop_timeout, "SIGTERM to SIGKILL")->capture_default_str();
  app.add_option("--tolerance", opt.tolerance, "webhook-timestamp tolerance, both ways")
      ->capture_default_str();
  app.add_option("--initial", opt.initial, "instances started (without boot delay) at start")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--port-base", opt.port_base,
                 "instance vm-N listens on PORT_BASE+N; 0: ports the kernel picks")
      ->capture_default_str()
      ->check(CLI::Range(0, 65000));
  app.add_option("--zones", opt.zones, "comma-separated zones, round-robin")->capture_default_str();
  app.add_option("--fault-domains", opt.fault_domains, "fault domain of vm-N = N mod this")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--version", opt.version, "version label of new instances")->capture_default_str();
  app.add_option("--weight", opt.weight, "member weight registered")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--state-dir", opt.state_dir,
                 "port files and instance logs (default: a new /tmp/sgscaler-XXXXXX)");
  app.add_option("--fail-first", opt.fail_first,
                 "answer 500 to the first N validly signed deliveries (to exercise retries)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "sgscaler: %s\n", msg.c_str());
    return 2;
  };
  auto secret = readSecretFile(opt.secret_file);
  if (!secret.isOk()) return fail(secret.status().message());
  auto key = WebhookKey::fromSecret(*secret);
  if (!key.isOk()) return fail("--secret-file: " + key.status().message());
  std::string token;
  if (!opt.admin_token_file.empty()) {
    auto t = readSecretFile(opt.admin_token_file);
    if (!t.isOk()) return fail("--admin-token-file: " + t.status().message());
    token = *t;
  }
  auto boot_delay = parseDuration(opt.boot_delay);
  if (!boot_delay.isOk()) return fail("--boot-delay: " + boot_delay.status().message());
  auto stop_timeout = parseDuration(opt.stop_timeout);
  if (!stop_timeout.isOk()) return fail("--stop-timeout: " + stop_timeout.status().message());
  auto tolerance = parseDuration(opt.tolerance);
  if (!tolerance.isOk()) return fail("--tolerance: " + tolerance.status().message());
  std::vector<std::string> zones = commaList(opt.zones);
  if (zones.empty()) return fail("--zones: give at least one zone");
  if (access(opt.backend_bin.c_str(), X_OK) != 0) {
    return fail("--backend-bin " + opt.backend_bin + ": " + std::strerror(errno));
  }
  if (opt.state_dir.empty()) {
    char tmpl[] = "/tmp/sgscaler-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return fail(std::string("mkdtemp: ") + std::strerror(errno));
    opt.state_dir = tmpl;
  } else if (mkdir(opt.state_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return fail("--state-dir " + opt.state_dir + ": " + std::strerror(errno));
  }
  size_t colon = opt.listen.rfind(':');
  if (colon == std::string::npos) return fail("--listen: want HOST:PORT");
  std::string listen_host = opt.listen.substr(0, colon);
  int listen_port = std::atoi(opt.listen.c_str() + colon + 1);

  signal(SIGPIPE, SIG_IGN);
  event_base* base = event_base_new();
  evhttp* http = evhttp_new(base);
  evhttp_bound_socket* sock =
      evhttp_bind_socket_with_handle(http, listen_host.c_str(), static_cast<uint16_t>(listen_port));
  if (sock == nullptr) return fail("cannot listen on " + opt.listen + ": " + std::strerror(errno));
  evhttp_set_max_body_size(http, 1 << 20);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(evhttp_bound_socket_get_fd(sock), reinterpret_cast<sockaddr*>(&bound), &bound_len);
  const unsigned port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  const std::string pool = opt.pool;
  const std::string port_file = opt.port_file;
  const std::string state_dir = opt.state_dir;
  Scaler scaler(base, std::move(opt), std::move(*key), token, *boot_delay, *stop_timeout,
                *tolerance, std::move(zones));
  std::string error;
  if (!scaler.parseAdmin(&error)) return fail(error);
  evhttp_set_cb(
      http, "/instances",
      [](evhttp_request* req, void* arg) { static_cast<Scaler*>(arg)->onInstancesRequest(req); },
      &scaler);
  evhttp_set_gencb(
      http, [](evhttp_request* req, void* arg) { static_cast<Scaler*>(arg)->onWebhook(req); },
      &scaler);

  event* chld = evsignal_new(
      base, SIGCHLD,
      [](evutil_socket_t, short, void* arg) { static_cast<Scaler*>(arg)->reapChildren(); },
      &scaler);
  event_add(chld, nullptr);
  auto stop = [](evutil_socket_t sig, short, void* arg) {
    SG_LOG(kInfo, "%s: stopping every instance", strsignal(static_cast<int>(sig)));
    event_base_loopexit(static_cast<event_base*>(arg), nullptr);
  };
  event* term = evsignal_new(base, SIGTERM, stop, base);
  event* intr = evsignal_new(base, SIGINT, stop, base);
  event_add(term, nullptr);
  event_add(intr, nullptr);

  if (!port_file.empty()) {
    std::string tmp = port_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) return fail("--port-file " + port_file + ": " + std::strerror(errno));
    std::fprintf(f, "%u\n", port);
    std::fclose(f);
    std::rename(tmp.c_str(), port_file.c_str());
  }
  SG_LOG(kInfo, "sgscaler listening on %s:%u (pool %s, state dir %s)", listen_host.c_str(), port,
         pool.c_str(), state_dir.c_str());
  scaler.launchInitial();
  event_base_dispatch(base);
  scaler.shutdown();
  event_free(chld);
  event_free(term);
  event_free(intr);
  evhttp_free(http);
  event_base_free(base);
  return 0;
}

}  // namespace
}  // namespace scalegate::bench

int main(int argc, char** argv) { return scalegate::bench::runMain(argc, argv); }
