#include "control/prober.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "control/load_report.h"
#include "l7proxy/tls.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxResponseBytes = 64 * 1024;
constexpr Duration kMaxInitialDelay = 1s;
constexpr Duration kMinPeriod = 1ms;  // guards a zero interval against a busy loop

timeval toTimeval(Duration d) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::max(d, Duration::zero()));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us.count() / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us.count() % 1000000);
  return tv;
}

std::string errnoText(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer to the message (maybe static, maybe buf).
  return strerror_r(err, buf, sizeof(buf));
}

// Field-by-field: a target is "unchanged" only when everything about its check is.
bool sameCheck(const config::HealthCheck& a, const config::HealthCheck& b) {
  if (a.expect.size() != b.expect.size()) return false;
  for (size_t i = 0; i < a.expect.size(); ++i) {
    if (a.expect[i].lo != b.expect[i].lo || a.expect[i].hi != b.expect[i].hi) return false;
  }
  return a.enabled == b.enabled && a.type == b.type && a.path == b.path && a.host == b.host &&
         a.interval == b.interval && a.jitter == b.jitter && a.timeout == b.timeout &&
         a.fast_interval == b.fast_interval && a.rise == b.rise && a.fall == b.fall &&
         a.initially_healthy == b.initially_healthy;
}

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (lowerAscii(s[i]) != lower[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Next line of data starting at *pos (without its LF or CRLF); false when no LF yet.
bool nextLine(std::string_view data, size_t* pos, std::string_view* line) {
  size_t lf = data.find('\n', *pos);
  if (lf == std::string_view::npos) return false;
  size_t end = (lf > *pos && data[lf - 1] == '\r') ? lf - 1 : lf;
  *line = data.substr(*pos, end - *pos);
  *pos = lf + 1;
  return true;
}

// What a probe read, parsed leniently: a health answer only has to show its status, and a
// member's quirks (bare LF, odd reasons) are not worth failing it for. Framing decides when the
// answer is complete so a Content-Length or chunked answer need not wait for the close.
struct HttpAnswer {
  bool head_complete = false;
  bool complete = false;        // the whole message is here (or the peer closed)
  const char* error = nullptr;  // malformed head
  int status = 0;
  std::string content_type;
  LoadReport load;   // from X-Load fields
  std::string body;  // de-chunked, possibly truncated
  // HTTP/1.1, no "Connection: close", framed by Content-Length (or bodiless) and nothing
  // after it: the connection can carry the next probe.
  bool reusable = false;
};

// Decodes a chunked body from data[pos..); sets *done at the last chunk. Malformed framing ends
// the body where it breaks (the status still counts; the load body will not parse).
void dechunk(std::string_view data, size_t pos, std::string* body, bool* done) {
  for (;;) {
    std::string_view line;
    if (!nextLine(data, &pos, &line)) return;
    line = trim(line.substr(0, line.find(';')));
    uint64_t size = 0;
    if (line.empty() || line.size() > 8) {
      *done = true;
      return;
    }
    for (char c : line) {
      int digit = (c >= '0' && c <= '9')   ? c - '0'
                  : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                           : -1;
      if (digit < 0) {
        *done = true;
        return;
      }
      size = size * 16 + static_cast<uint64_t>(digit);
    }
    if (size == 0) {
      *done = true;  // trailers are not needed
      return;
    }
    if (data.size() - pos < size) {
      body->append(data.substr(pos));  // partial: kept in case the peer closes here
      return;
    }
    body->append(data.substr(pos, size));
    pos += size;
    std::string_view rest;
    if (!nextLine(data, &pos, &rest)) return;
    if (!rest.empty()) {
      *done = true;
      return;
    }
  }
}

// Parses everything read so far; `closed` says the peer is done sending (EOF, error or cap).
HttpAnswer parseAnswer(std::string_view data, bool closed) {
  HttpAnswer a;
  size_t pos = 0;
  for (;;) {  // interim 1xx answers (103 Early Hints, a stray 100) precede the real one
    a = HttpAnswer();
    std::string_view line;
    if (!nextLine(data, &pos, &line)) {
      a.complete = closed;
      return a;
    }
    // "HTTP/1.1 200 OK": version, SP, three digits, then SP or the end of the line.
    if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ' ||
        (line.size() > 12 && line[12] != ' ')) {
      a.error = "bad status line";
      a.complete = true;
      return a;
    }
    for (size_t i = 9; i < 12; ++i) {
      if (line[i] < '0' || line[i] > '9') {
        a.error = "bad status line";
        a.complete = true;
        return a;
      }
      a.status = a.status * 10 + (line[i] - '0');
    }
    bool chunked = false;
    bool conn_close = false;
    const bool http11 = line.substr(5, 3) == "1.1";
    int64_t content_length = -1;
    for (;;) {
      if (!nextLine(data, &pos, &line)) {
        a.complete = closed;
        return a;
      }
      if (line.empty()) break;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0) {
        a.error = "bad header line";
        a.complete = true;
        return a;
      }
      std::string_view name = line.substr(0, colon);
      std::string_view value = trim(line.substr(colon + 1));
      if (equalsLower(name, "content-length")) {
        int64_t n = 0;
        bool valid = !value.empty() && value.size() <= 18;
        for (char c : value) {
          if (c < '0' || c > '9') valid = false;
          n = n * 10 + (c - '0');
        }
        if (!valid) {
          a.error = "bad content-length";
          a.complete = true;
          return a;
        }
        content_length = n;
      } else if (equalsLower(name, "transfer-encoding")) {
        std::string_view last = value.substr(value.rfind(',') + 1);
        chunked = equalsLower(trim(last), "chunked");
      } else if (equalsLower(name, "connection")) {
        std::string_view v = value;
        while (!v.empty()) {
          size_t comma = v.find(',');
          if (equalsLower(trim(v.substr(0, comma)), "close")) conn_close = true;
          if (comma == std::string_view::npos) break;
          v.remove_prefix(comma + 1);
        }
      } else if (equalsLower(name, "content-type")) {
        a.content_type.assign(value);
      } else if (equalsLower(name, "x-load")) {
        addLoadHeader(value, &a.load);
      }
    }
    if (a.status >= 100 && a.status < 200 && a.status != 101) continue;
    a.head_complete = true;
    if (a.status < 200 || a.status == 204 || a.status == 304) {
      a.complete = true;
      a.reusable = http11 && !conn_close && !closed && data.size() == pos;
    } else if (chunked) {
      dechunk(data, pos, &a.body, &a.complete);
    } else if (content_length >= 0) {
      size_t have = data.size() - pos;
      size_t want = static_cast<size_t>(content_length);
      a.body.assign(data.substr(pos, std::min(have, want)));
      a.complete = have >= want;
      a.reusable = http11 && !conn_close && !closed && have == want;
    } else {
      a.body.assign(data.substr(pos));
    }
    a.complete = a.complete || closed;
    return a;
  }
}

bool statusExpected(int status, const std::vector<config::StatusRange>& expect) {
  for (const auto& r : expect) {
    if (status >= r.lo && status <= r.hi) return true;
  }
  return false;
}

}  // namespace

struct Prober::Impl {
  // One probe in flight. Owns its socket (first as fd + connect event, then inside the
  // bufferevent).
  struct Probe {
    MonoTime started{};
    int fd = -1;
    event* connect_ev = nullptr;
    bufferevent* bev = nullptr;
    bool tls = false;
    bool tls_done = false;
    bool reused = false;  // on the target's kept-alive connection
    std::string response;

    ~Probe() {
      if (connect_ev != nullptr) event_free(connect_ev);
      if (bev != nullptr) bufferevent_free(bev);  // closes the socket (BEV_OPT_CLOSE_ON_FREE)
      if (fd >= 0) close(fd);
    }
  };

  struct Target {
    Impl* impl = nullptr;
    ProbeTarget spec;
    std::string request;     // HTTP(S) request bytes, built once
    std::string sni;         // "" = no SNI (host is an IP literal or absent)
    event* timer = nullptr;  // idle: next probe start; in flight: the probe's deadline
    std::unique_ptr<Probe> probe;
    MonoTime last_done{};  // end of the last probe, or when the target was added
    MonoTime next_at{};    // when the idle timer fires
    // HTTP(S) keep-alive: the connection of the last probe, kept for the next one. Probing
    // over a kept connection costs a write and a read instead of a TCP handshake and a close
    // (most of the control thread's time with thousands of members).
    bufferevent* idle = nullptr;
    bool idle_tls = false;

    void dropIdle() {
      if (idle != nullptr) bufferevent_free(idle);
      idle = nullptr;
    }
    ~Target() {
      probe.reset();
      dropIdle();
      if (timer != nullptr) event_free(timer);
    }
  };

  event_base* base_;
  ResultFn on_result_;
  std::mt19937_64 rng_;
  SSL_CTX* ssl_ctx_ = nullptr;
  // By pool + '\0' + member.
  std::unordered_map<std::string, std::unique_ptr<Target>> targets_;
  size_t in_flight_ = 0;

  Impl(event_base* b, ResultFn fn, uint64_t seed)
      : base_(b), on_result_(std::move(fn)), rng_(seed) {}

  ~Impl() {
    targets_.clear();
    if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  }

  Duration randomUpTo(Duration max) {
    if (max <= Duration::zero()) return Duration::zero();
    std::uniform_int_distribution<int64_t> dist(0, max.count());
    return Duration(dist(rng_));
  }

  Duration period(const Target& t) {
    const config::HealthCheck& hc = t.spec.check;
    Duration base_period =
        (t.spec.fast && hc.fast_interval > Duration::zero()) ? hc.fast_interval : hc.interval;
    return std::max(base_period, kMinPeriod) + randomUpTo(hc.jitter);
  }

  void arm(Target& t, Duration after) {
    // Relative timers count from the loop's cached time, taken when it woke up; refresh it so
    // a deadline is never shorter than asked.
    event_base_update_cache_time(base_);
    timeval tv = toTimeval(after);
    evtimer_add(t.timer, &tv);
  }

  void schedule(Target& t, MonoTime at) {
    t.next_at = at;
    arm(t, at - SteadyClock::now());
  }

  // No verification: members are addressed by IP and commonly serve self-signed or
  // internal-CA certificates; a probe asks "is it up", not "is it who it claims". One context
  // for all probes, created on first use.
  // The same client context code as the data path's upstream TLS (l7proxy/tls.h).
  SSL_CTX* sslContext() {
    if (ssl_ctx_ == nullptr) {
      auto ctx = l7proxy::newClientContext("", false);
      if (ctx.isOk()) ssl_ctx_ = ctx.value();
    }
    return ssl_ctx_;
  }

  static void onTimer(evutil_socket_t, short, void* arg) {
    auto* t = static_cast<Target*>(arg);
    if (t->probe) {
      // libevent may keep time with a coarse clock and fire a little early; the deadline is
      // never shorter than the configured timeout.
      Duration left = t->probe->started + t->spec.check.timeout - SteadyClock::now();
      if (left > Duration::zero()) {
        t->impl->arm(*t, left);
        return;
      }
      t->impl->fail(*t, "timeout");
    } else {
      t->impl->start(*t);
    }
  }

  void start(Target& t) {
    t.probe = std::make_unique<Probe>();
    Probe& p = *t.probe;
    p.started = SteadyClock::now();
    ++in_flight_;
    arm(t, t.spec.check.timeout);
    if (t.idle != nullptr) {
      p.bev = t.idle;
      t.idle = nullptr;
      p.reused = true;
      p.tls = t.idle_tls;
      p.tls_done = true;
      bufferevent_setcb(p.bev, &Impl::onRead, nullptr, &Impl::onEvent, &t);
      bufferevent_write(p.bev, t.request.data(), t.request.size());
      bufferevent_enable(p.bev, EV_READ | EV_WRITE);
      return;
    }
    connectFresh(t);
  }

  // Opens a new connection for the probe in flight.
  void connectFresh(Target& t) {
    Probe& p = *t.probe;
    const SocketAddress& addr = t.spec.address;
    p.fd = socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p.fd < 0) {
      fail(t, "socket: " + errnoText(errno));
      return;
    }
    // Close with RST: thousands of probes a second must not pile up TIME_WAIT sockets and use
    // up the ephemeral ports.
    linger lg{1, 0};
    setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (connect(p.fd, addr.sockaddrPtr(), addr.sockaddrLen()) == 0) {
      connected(t);
      return;
    }
    if (errno != EINPROGRESS) {
      fail(t, "connect: " + errnoText(errno));
      return;
    }
    p.connect_ev = event_new(base_, p.fd, EV_WRITE, &Impl::onConnectReady, &t);
    if (p.connect_ev == nullptr || event_add(p.connect_ev, nullptr) != 0) {
      fail(t, "connect: event setup failed");
    }
  }

  static void onConnectReady(evutil_socket_t fd, short, void* arg) {
    auto* t = static_cast<Target*>(arg);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      t->impl->fail(*t, "connect: " + errnoText(err));
      return;
    }
    t->impl->connected(*t);
  }

  void connected(Target& t) {
    Probe& p = *t.probe;
    if (p.connect_ev != nullptr) {
      event_free(p.connect_ev);
      p.connect_ev = nullptr;
    }
    const config::HealthCheckType type = t.spec.check.type;
    if (type == config::HealthCheckType::kTcp) {
      ProbeOutcome o;
      o.ok = true;
      finish(t, std::move(o));
      return;
    }
    if (type == config::HealthCheckType::kHttps) {
      SSL_CTX* ctx = sslContext();
      SSL* ssl = ctx != nullptr ? SSL_new(ctx) : nullptr;
      if (ssl == nullptr) {
        fail(t, "tls: setup failed");
        return;
      }
      if (!t.sni.empty()) SSL_set_tlsext_host_name(ssl, t.sni.c_str());
      p.bev = bufferevent_openssl_socket_new(base_, p.fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
      if (p.bev == nullptr) {
        SSL_free(ssl);
        fail(t, "tls: setup failed");
        return;
      }
      p.fd = -1;  // owned by the bufferevent now
      p.tls = true;
      // Members often close without close_notify; that ends the answer, it is not an error.
      bufferevent_openssl_set_allow_dirty_shutdown(p.bev, 1);
    } else {
      p.bev = bufferevent_socket_new(base_, p.fd, BEV_OPT_CLOSE_ON_FREE);
      if (p.bev == nullptr) {
        fail(t, "connect: bufferevent setup failed");
        return;
      }
      p.fd = -1;
    }
    bufferevent_setcb(p.bev, &Impl::onRead, nullptr, &Impl::onEvent, &t);
    bufferevent_write(p.bev, t.request.data(), t.request.size());
    bufferevent_enable(p.bev, EV_READ | EV_WRITE);
  }

  static void onRead(bufferevent* bev, void* arg) {
    auto* t = static_cast<Target*>(arg);
    Probe& p = *t->probe;
    evbuffer* in = bufferevent_get_input(bev);
    size_t room = kMaxResponseBytes - p.response.size();
    size_t take = std::min(evbuffer_get_length(in), room);
    size_t old_size = p.response.size();
    p.response.resize(old_size + take);
    evbuffer_remove(in, p.response.data() + old_size, take);
    evbuffer_drain(in, evbuffer_get_length(in));  // past the cap: dropped
    t->impl->answer(*t, /*closed=*/p.response.size() >= kMaxResponseBytes);
  }

  static void onEvent(bufferevent* bev, short events, void* arg) {
    auto* t = static_cast<Target*>(arg);
    Probe& p = *t->probe;
    if (events & BEV_EVENT_CONNECTED) {
      p.tls_done = true;  // TLS handshake finished
      return;
    }
    if (events & BEV_EVENT_EOF) {
      t->impl->answer(*t, /*closed=*/true);
      return;
    }
    if (events & BEV_EVENT_ERROR) {
      int err = EVUTIL_SOCKET_ERROR();
      unsigned long tls_err = p.tls ? bufferevent_get_openssl_error(bev) : 0;
      if (tls_err != 0) {
        char buf[256];
        ERR_error_string_n(tls_err, buf, sizeof(buf));
        const char* reason = ERR_reason_error_string(tls_err);
        t->impl->fail(*t, std::string(p.tls_done ? "tls: " : "tls handshake: ") +
                              (reason != nullptr ? reason : buf));
        return;
      }
      if (parseAnswer(p.response, true).head_complete) {
        t->impl->answer(*t, /*closed=*/true);  // a reset after the answer: judge the answer
        return;
      }
      std::string what = p.tls && !p.tls_done ? "tls handshake: " : "read: ";
      t->impl->fail(*t, what + (err != 0 ? errnoText(err) : std::string("connection error")));
    }
  }

  // Judges the response once complete (or once the peer closed).
  void answer(Target& t, bool closed) {
    Probe& p = *t.probe;
    HttpAnswer a = parseAnswer(p.response, closed);
    if (!a.complete) return;
    if (!a.head_complete) {
      if (a.error != nullptr) {
        fail(t, std::string("bad response: ") + a.error);
      } else if (p.response.size() >= kMaxResponseBytes) {
        fail(t, "bad response: head over 64 KiB");
      } else {
        fail(t, p.response.empty() ? "no response" : "bad response: truncated");
      }
      return;
    }
    if (a.reusable && p.bev != nullptr) {
      // Keep the connection; while idle, any event on it (the member closed it, or sent
      // something unasked) just drops it.
      t.idle = p.bev;
      t.idle_tls = p.tls;
      p.bev = nullptr;
      bufferevent_setcb(t.idle, &Impl::onIdleRead, nullptr, &Impl::onIdleEvent, &t);
      bufferevent_enable(t.idle, EV_READ);
    }
    ProbeOutcome o;
    o.http_status = a.status;
    LoadReport report = std::move(a.load);
    parseLoadBody(a.body, a.content_type, &report);
    o.load = std::move(report.values);
    o.app_health = std::move(report.app_health);
    if (!statusExpected(a.status, t.spec.check.expect)) {
      o.error = "status " + std::to_string(a.status);
    } else if (!o.app_health.empty() && o.app_health != "Healthy") {
      o.error = "app health " + o.app_health;
    } else {
      o.ok = true;
    }
    finish(t, std::move(o));
  }

  static void onIdleRead(bufferevent*, void* arg) { static_cast<Target*>(arg)->dropIdle(); }
  static void onIdleEvent(bufferevent*, short, void* arg) { static_cast<Target*>(arg)->dropIdle(); }

  void fail(Target& t, std::string error) {
    Probe& p = *t.probe;
    if (p.reused && p.response.empty() && error != "timeout") {
      // The member closed the kept connection just as the probe went out: that says nothing
      // about its health. Try again on a fresh connection, within the same deadline.
      MonoTime started = p.started;
      t.probe = std::make_unique<Probe>();
      t.probe->started = started;
      connectFresh(t);
      return;
    }
    ProbeOutcome o;
    o.error = std::move(error);
    finish(t, std::move(o));
  }

  // Ends the probe, schedules the next one and reports. The callback may call setTargets() and
  // remove `t`, so nothing touches `t` after it.
  void finish(Target& t, ProbeOutcome o) {
    MonoTime now = SteadyClock::now();
    o.duration = now - t.probe->started;
    t.probe.reset();
    --in_flight_;
    t.last_done = now;
    schedule(t, now + period(t));
    std::string pool = t.spec.pool;
    std::string member = t.spec.member;
    if (on_result_) on_result_(pool, member, o);
  }

  std::unique_ptr<Target> makeTarget(ProbeTarget spec) {
    auto t = std::make_unique<Target>();
    t->impl = this;
    t->spec = std::move(spec);
    const config::HealthCheck& hc = t->spec.check;
    if (hc.type != config::HealthCheckType::kTcp) {
      std::string host = hc.host.empty() ? t->spec.address.toString() : hc.host;
      t->request = "GET " + (hc.path.empty() ? std::string("/") : hc.path) +
                   " HTTP/1.1\r\nHost: " + host +
                   "\r\nUser-Agent: scalegate-probe\r\nAccept: */*\r\n\r\n";
      std::string_view name;
      uint16_t port = 0;
      if (!hc.host.empty() && splitHostPort(hc.host, &name, &port) && !name.empty() &&
          !SocketAddress::parseIp(name).isOk()) {
        t->sni.assign(name);
      }
    }
    t->timer = evtimer_new(base_, &Impl::onTimer, t.get());
    MonoTime now = SteadyClock::now();
    t->last_done = now;
    schedule(*t, now + randomUpTo(std::min(hc.interval, kMaxInitialDelay)));
    return t;
  }

  void setTargets(std::vector<ProbeTarget> list) {
    std::unordered_map<std::string, std::unique_ptr<Target>> next;
    next.reserve(list.size());
    for (ProbeTarget& spec : list) {
      std::string key = spec.pool + '\0' + spec.member;
      if (next.count(key) != 0) continue;  // a duplicate: the first one wins
      auto it = targets_.find(key);
      if (it != targets_.end() && it->second->spec.address == spec.address &&
          sameCheck(it->second->spec.check, spec.check)) {
        Target& t = *it->second;
        if (t.spec.fast != spec.fast) {
          t.spec.fast = spec.fast;
          if (spec.fast && !t.probe) {  // only ever sooner
            MonoTime sooner = t.last_done + period(t);
            if (sooner < t.next_at) schedule(t, std::max(sooner, SteadyClock::now()));
          }
        }
        next.emplace(std::move(key), std::move(it->second));
        targets_.erase(it);
      } else {
        next.emplace(std::move(key), makeTarget(std::move(spec)));
      }
    }
    // What is left was removed or changed: abort in-flight probes without a report.
    for (auto& [key, t] : targets_) {
      if (t->probe) --in_flight_;
    }
    targets_ = std::move(next);  // frees the old map's targets
  }
};

Prober::Prober(event_base* base, ResultFn on_result, uint64_t seed)
    : impl_(std::make_unique<Impl>(base, std::move(on_result), seed)) {}

Prober::~Prober() = default;

void Prober::setTargets(std::vector<ProbeTarget> targets) { impl_->setTargets(std::move(targets)); }

size_t Prober::targetCount() const { return impl_->targets_.size(); }

size_t Prober::inFlight() const { return impl_->in_flight_; }

}  // namespace scalegate::control
