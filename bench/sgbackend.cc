// sgbackend: the instance simulator. A small, fast HTTP/1.1 origin server that stands in for a
// VM-pool member in tests and benchmarks. One epoll loop per thread, each thread with its own
// SO_REUSEPORT listener; non-blocking sockets, edge-triggered, keep-alive, pipelining.
//
// Behaviour is chosen by request path so that one backend serves every test case (see
// printBehaviours() / bench/README.md). Every response carries "X-Backend: <id>".
//
// The hot path (a keep-alive GET of any ordinary path) does one read, one precomputed memcpy
// and one send per request, with no allocation and no epoll_ctl.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace scalegate::bench {
namespace {

constexpr size_t kReadChunk = 64 * 1024;         // one read() per readiness event, at most
constexpr size_t kMaxHeadBytes = 64 * 1024;      // request line + headers; beyond: 431
constexpr size_t kMaxChunkLine = 4096;           // chunk-size line incl. extensions; beyond: 400
constexpr size_t kOutputHighWater = 256 * 1024;  // stop parsing pipelined requests above this
constexpr size_t kStreamChunk = 64 * 1024;       // /big/N is sent from a static pattern buffer
constexpr int kSlowBodyChunks = 5;
constexpr int kMaxEvents = 256;
constexpr int64_t kNsPerMs = 1000 * 1000;
constexpr int64_t kAcceptRetryNs = 50 * kNsPerMs;  // after EMFILE/ENFILE
constexpr uint64_t kListenerTag = ~uint64_t{0};
constexpr uint64_t kTimerTag = ~uint64_t{0} - 1;

// ---------------------------------------------------------------------------------------------
// Options and small parsers (flags only; never on the request path except parseUint).

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string id = "backend";
  std::string body_size;  // empty: body is "<id>\n"
  std::string delay = "0";
  std::string delay_dist;  // "90%:1ms,10%:20ms"; empty: every request waits --delay
  std::string health_path = "/health";
  std::string port_file;
  std::string version;
  std::string cpu_work = "0";
  uint32_t capacity = 0;  // 0: unlimited
  int threads = 1;
  bool quiet = false;
};

std::optional<uint64_t> parseUint(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// "512", "16k", "4M", "1G" (powers of 1024).
std::optional<uint64_t> parseSizeText(std::string_view s) {
  uint64_t mult = 1;
  if (!s.empty()) {
    switch (s.back()) {
      case 'k':
      case 'K':
        mult = 1ull << 10;
        break;
      case 'm':
      case 'M':
        mult = 1ull << 20;
        break;
      case 'g':
      case 'G':
        mult = 1ull << 30;
        break;
      default:
        break;
    }
    if (mult != 1) s.remove_suffix(1);
  }
  auto v = parseUint(s);
  if (!v || *v > (uint64_t{1} << 40) / mult) return std::nullopt;
  return *v * mult;
}

// "0", "250us", "5ms", "1.5s" -> nanoseconds.
std::optional<int64_t> parseDurationNs(std::string_view s) {
  if (s == "0") return 0;
  struct Unit {
    std::string_view suffix;
    double ns;
  };
  static constexpr Unit kUnits[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}};
  for (const Unit& u : kUnits) {
    if (s.size() > u.suffix.size() && s.ends_with(u.suffix)) {
      std::string num(s.substr(0, s.size() - u.suffix.size()));
      char* end = nullptr;
      double v = std::strtod(num.c_str(), &end);
      if (end != num.c_str() + num.size() || !(v >= 0) || v > 3600) return std::nullopt;
      return static_cast<int64_t>(v * u.ns);
    }
  }
  return std::nullopt;
}

// "127.0.0.1:8080", "[::1]:0", "*:80", ":80".
bool parseListenAddress(const std::string& text, sockaddr_storage* out, socklen_t* len) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = text.substr(0, colon);
  auto port = parseUint(std::string_view(text).substr(colon + 1));
  if (!port || *port > 65535) return false;
  std::memset(out, 0, sizeof(*out));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(out);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(*port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) {
      return false;
    }
    *len = sizeof(sockaddr_in6);
    return true;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(out);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(*port));
  if (host.empty() || host == "*") {
    a4->sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
    return false;
  }
  *len = sizeof(sockaddr_in);
  return true;
}

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// Calls fn(token) for each comma-separated, trimmed list element.
template <typename Fn>
void forEachToken(std::string_view list, Fn fn) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view tok = trimOws(list.substr(0, comma));
    if (!tok.empty()) fn(tok);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// One step of a service-time distribution: a request whose draw is below `threshold` (a
// cumulative probability scaled to 2^64) and not below the previous step's waits `delay_ns`.
struct DelayStep {
  uint64_t threshold;
  int64_t delay_ns;
};

// "90%:1ms,10%:20ms" (percentages may have decimals, e.g. "99.9%:1ms,0.1%:1s"; they must sum
// to 100) -> cumulative steps. On failure returns nullopt and says why in *error.
std::optional<std::vector<DelayStep>> parseDelayDist(std::string_view text, std::string* error) {
  std::vector<std::pair<double, int64_t>> parts;
  double total = 0;
  bool ok = true;
  forEachToken(text, [&](std::string_view entry) {
    if (!ok) return;
    size_t sep = entry.find("%:");
    if (sep == std::string_view::npos) {
      *error = "entry '" + std::string(entry) + "': want PERCENT%:DURATION, e.g. 90%:1ms";
      ok = false;
      return;
    }
    std::string pct_text(trimOws(entry.substr(0, sep)));
    char* end = nullptr;
    double pct = std::strtod(pct_text.c_str(), &end);
    if (pct_text.empty() || end != pct_text.c_str() + pct_text.size() || !(pct > 0) || pct > 100) {
      *error = "entry '" + std::string(entry) + "': the percentage must be a number in (0, 100]";
      ok = false;
      return;
    }
    std::string_view duration = trimOws(entry.substr(sep + 2));
    auto ns = parseDurationNs(duration);
    if (!ns) {
      *error = "entry '" + std::string(entry) + "': '" + std::string(duration) +
               "' is not a duration such as 500us, 5ms or 1.5s";
      ok = false;
      return;
    }
    parts.emplace_back(pct, *ns);
    total += pct;
  });
  if (!ok) return std::nullopt;
  if (parts.empty()) {
    *error = "empty; want e.g. 90%:1ms,10%:20ms";
    return std::nullopt;
  }
  if (std::abs(total - 100) > 1e-6) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%g", total);
    *error = std::string("the percentages sum to ") + buf + ", not 100";
    return std::nullopt;
  }
  std::vector<DelayStep> steps;
  double cumulative = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    cumulative += parts[i].first / 100;
    uint64_t threshold = ~uint64_t{0};
    double scaled = cumulative * 18446744073709551616.0;  // 2^64
    if (i + 1 < parts.size() && scaled < 18446744073709551615.0) {
      threshold = static_cast<uint64_t>(scaled);
    }
    steps.push_back(DelayStep{threshold, parts[i].second});
  }
  return steps;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, end);
}

void appendHex(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, 16);
  out.append(buf, end);
}

// ---------------------------------------------------------------------------------------------
// Process-wide configuration, fixed before the workers start.

struct Config {
  std::string id;
  std::string version;
  std::string health_path;
  std::string identity_headers;  // "X-Instance: <id>\r\nX-Version: <v>\r\n" on every answer
  int64_t delay_ns = 0;
  int64_t cpu_work_ns = 0;            // busy CPU per served request (--cpu-work)
  uint32_t capacity = 0;              // per worker: requests in service at once; 0 = unlimited
  std::vector<DelayStep> delay_dist;  // non-empty: replaces delay_ns, drawn per request
  std::string default_body;
  // Precomputed full responses for the default path: keep-alive / close, with / without body.
  std::string default_keep_alive;
  std::string default_close;
  std::string default_head_keep_alive;  // HEAD: same head, no body
  std::string default_head_close;
};

// What a request path asks for.
enum class Behaviour : uint8_t {
  kDefault,
  kHealth,
  kEcho,
  kStatus,  // arg = status code
  kDelay,   // arg = milliseconds
  kCloseMid,
  kCloseBefore,
  kReset,
  kChunked,
  kBig,         // arg = body bytes
  kSlowBody,    // arg = milliseconds between chunks
  kBadRequest,  // arg = status (400, 431, 501, 505)
  kControl,     // arg = FailureMode to switch to; POST /control/<mode>
};

// What the instance has been told to do by /control/<mode> (process-wide; a relaxed load per
// request is a plain load).
enum class FailureMode : uint8_t { kNone, kFail, kHang };
std::atomic<uint8_t> g_failure_mode{0};
std::atomic<bool> g_unhealthy{false};
// Load figures published once a second by the main thread for health answers.
std::atomic<uint64_t> g_cpu_millis{0};  // process CPU utilisation / threads, in 1/1000
std::atomic<uint64_t> g_rss_kb{0};
std::atomic<uint64_t> g_rps{0};
uint64_t g_phys_kb = 1;

enum ControlArg : uint64_t {
  kCtlUnhealthy,
  kCtlHealthy,
  kCtlFail,
  kCtlHang,
  kCtlRecover,
};

// Per-thread counters: written by one worker only, read by main at exit (relaxed, plain
// stores: no lock-prefixed instructions on the hot path).
struct alignas(64) WorkerCounters {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> inflight{0};  // in service + queued for --capacity (gauge)
  static void bump(std::atomic<uint64_t>& c) {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

// ---------------------------------------------------------------------------------------------
// One client connection, owned by one worker.

enum class Phase : uint8_t {
  kHead,       // reading a request head
  kBody,       // consuming the request body
  kWaitTimer,  // in service: response deferred (--delay, /delay/MS, a queued turn)
  kQueued,     // waiting for a free --capacity slot
  kHung,       // /control/hang: the request is never answered
  kStreamBig,  // sending /big/N from the pattern buffer as the socket drains
  kSlowBody,   // sending /slow-body/MS chunks on timers
  kClosing,    // close once the output is flushed
};

enum class BodyFraming : uint8_t { kNone, kLength, kChunked };
enum class ChunkState : uint8_t { kSize, kData, kDataCrlf, kTrailer };

struct Request {
  Behaviour behaviour = Behaviour::kDefault;
  uint64_t arg = 0;
  bool head_method = false;
  bool keep_alive = true;
  bool http10 = false;
  BodyFraming framing = BodyFraming::kNone;
  ChunkState chunk_state = ChunkState::kSize;
  uint64_t body_remaining = 0;  // kLength: bytes left; kChunked: bytes left in this chunk
  uint64_t body_bytes = 0;
  std::string echo;            // /echo only: request line and headers as received
  EVP_MD_CTX* sha1 = nullptr;  // /echo only
};

struct Conn {
  int fd = -1;
  uint32_t generation = 0;
  Phase phase = Phase::kHead;
  bool readable = false;  // edge-triggered: true until a read comes up short
  bool writable = true;
  bool peer_eof = false;
  bool need_more_input = false;  // buffered input is an incomplete unit; wait for bytes
  bool reset_on_close = false;   // /reset: close with SO_LINGER {1,0}
  bool in_service = false;       // holds one of the worker's --capacity slots
  Request req;
  std::string in;   // unparsed bytes carried between reads
  std::string out;  // unsent response bytes
  size_t out_pos = 0;
  uint64_t stream_remaining = 0;  // /big/N bytes still to send
  int slow_chunks_sent = 0;
};

struct Timer {
  int64_t deadline_ns;
  int fd;  // -1: re-enable the listener after EMFILE
  uint32_t generation;
  bool operator>(const Timer& o) const { return deadline_ns > o.deadline_ns; }
};

// ---------------------------------------------------------------------------------------------
// Worker: one thread, one epoll, one listener.

class Worker {
 public:
  Worker(const Config& config, int listen_fd, WorkerCounters* counters, uint64_t seed)
      : config_(config), listen_fd_(listen_fd), counters_(counters), rng_state_(seed) {}

  void run();

 private:
  enum class Parse { kDone, kNeedMore, kError };

  void acceptConnections();
  void onEvent(Conn* c, uint32_t events);
  void advance(Conn* c);
  bool readInput(Conn* c);  // false: connection closed
  size_t process(Conn* c, const char* data, size_t len);
  size_t parseHead(Conn* c, const char* data, size_t len, Parse* result);
  size_t consumeBody(Conn* c, const char* data, size_t len, Parse* result);
  void onRequestComplete(Conn* c);
  void respond(Conn* c);
  void finishResponse(Conn* c);
  void appendHead(Conn* c, int status, std::string_view extra_headers, int64_t content_length);
  void appendEcho(Conn* c);
  void appendSlowChunk(Conn* c);
  bool flush(Conn* c);  // false: connection closed
  void failRequest(Conn* c, int status);
  void onTimer(const Timer& t);
  void addTimer(Conn* c, int64_t delay_ns);
  void closeConn(Conn* c, bool reset = false);
  int64_t serviceTimeNs();  // --delay, or a draw from --delay-dist
  int64_t requestServiceNs(const Conn* c);
  void beginService(Conn* c, bool from_queue);
  void serve(Conn* c);       // service time over: burn --cpu-work, answer, free the slot
  void endService(Conn* c);  // frees the slot and gives it to the next queued request
  void appendHealth(Conn* c);
  void publishInflight() {
    counters_->inflight.store(in_service_ + queued_, std::memory_order_relaxed);
  }
  bool acceptsInput(const Conn* c) const {
    return c->phase == Phase::kHead || c->phase == Phase::kBody;
  }

  const Config& config_;
  int listen_fd_;
  WorkerCounters* counters_;
  uint64_t rng_state_;  // splitmix64
  int epoll_fd_ = -1;
  int timer_fd_ = -1;           // fires at the earliest deadline in timers_
  int64_t armed_deadline_ = 0;  // what timer_fd_ is set to; 0: never armed
  bool listener_armed_ = true;
  uint32_t next_generation_ = 1;
  std::vector<Conn*> conns_;  // indexed by fd
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  uint32_t in_service_ = 0;
  uint32_t queued_ = 0;  // live requests in waiting_ (it may also hold closed connections)
  std::queue<std::pair<int, uint32_t>> waiting_;  // (fd, generation) queued for --capacity
  std::unique_ptr<char[]> read_buf_{new char[kReadChunk]};
  std::string pattern_;  // kStreamChunk bytes of /big/N body
};

void Worker::run() {
  // Delays fire from a timerfd set to an absolute deadline: an epoll timeout would get a timer
  // slack of max(50 us, 0.1 % of the wait), i.e. 100 us late at 100 ms and 1 ms at 1 s.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epoll_fd_ < 0 || timer_fd_ < 0) {
    std::perror("sgbackend: epoll_create1/timerfd_create");
    std::_Exit(1);
  }
  pattern_.resize(kStreamChunk);
  for (size_t i = 0; i < kStreamChunk; ++i) pattern_[i] = static_cast<char>('a' + i % 26);
  if (kStreamChunk % 64 == 0) pattern_[kStreamChunk - 1] = '\n';

  epoll_event ev{};
  ev.events = EPOLLIN;  // level-triggered: accept a bounded batch per wakeup
  ev.data.u64 = kListenerTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);

  epoll_event events[kMaxEvents];
  for (;;) {
    // Re-arm only when the earliest deadline changed: with one fixed delay new timers go to
    // the back, so this is one timerfd_settime per batch of expiries, none per request.
    if (!timers_.empty() && timers_.top().deadline_ns != armed_deadline_) {
      armed_deadline_ = timers_.top().deadline_ns;
      itimerspec spec{};
      spec.it_value.tv_sec = armed_deadline_ / 1000000000;
      spec.it_value.tv_nsec = armed_deadline_ % 1000000000;
      timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
    }
    int n = epoll_wait(epoll_fd_, events, kMaxEvents, -1);
    if (n < 0 && errno != EINTR) {
      std::perror("sgbackend: epoll_wait");
      std::_Exit(1);
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenerTag) {
        acceptConnections();
        continue;
      }
      if (events[i].data.u64 == kTimerTag) {
        uint64_t expirations;
        // Drains the expiry count (level-triggered); due timers run below.
        if (read(timer_fd_, &expirations, sizeof(expirations)) < 0) continue;
        armed_deadline_ = 0;
        continue;
      }
      int fd = static_cast<int>(events[i].data.u64 & 0xffffffff);
      uint32_t gen = static_cast<uint32_t>(events[i].data.u64 >> 32);
      if (fd < static_cast<int>(conns_.size()) && conns_[fd] && conns_[fd]->generation == gen) {
        onEvent(conns_[fd], events[i].events);
      }
    }
    if (!timers_.empty()) {
      int64_t now = nowNs();
      while (!timers_.empty() && timers_.top().deadline_ns <= now) {
        Timer t = timers_.top();
        timers_.pop();
        onTimer(t);
      }
    }
  }
}

void Worker::acceptConnections() {
  for (int i = 0; i < 64; ++i) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop polling the listener for a moment instead of spinning.
        epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        listener_armed_ = false;
        timers_.push(Timer{nowNs() + kAcceptRetryNs, -1, 0});
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(fd + 1024, nullptr);
    Conn* c = new Conn();
    c->fd = fd;
    c->generation = next_generation_++;
    conns_[fd] = c;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = (uint64_t{c->generation} << 32) | static_cast<uint32_t>(fd);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      closeConn(c);
      continue;
    }
    counters_->bump(counters_->connections);
  }
}

void Worker::onEvent(Conn* c, uint32_t events) {
  if (c->phase == Phase::kHung && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    closeConn(c);  // the client gave up on a /control/hang request
    return;
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable = true;
  advance(c);
}

// Moves a connection forward as far as it can go without blocking: parse buffered input,
// read more, send output, stream bodies. Returns with the connection closed or waiting for
// readiness or a timer.
void Worker::advance(Conn* c) {
  for (;;) {
    if (acceptsInput(c) && !c->in.empty() && !c->need_more_input) {
      size_t used = process(c, c->in.data(), c->in.size());
      c->in.erase(0, used);
    }
    while (acceptsInput(c) && c->readable && c->out.size() < kOutputHighWater) {
      if (!readInput(c)) return;
    }
    // The peer has finished sending and no complete request is pending: answer what was
    // asked, then close (a half-closed HTTP/1.0 client still reads its response).
    if (acceptsInput(c) && c->peer_eof) c->phase = Phase::kClosing;
    if (!flush(c)) return;
    // Go round again when output drained (pipelined input waits behind the high-water mark)
    // or a finished /big stream returned the connection to reading.
    bool again = acceptsInput(c) && c->out.empty() &&
                 (c->readable || (!c->in.empty() && !c->need_more_input));
    if (!again) return;
  }
}

bool Worker::readInput(Conn* c) {
  ssize_t n = read(c->fd, read_buf_.get(), kReadChunk);
  if (n > 0) {
    // A short read drained the socket: the next edge will tell us about new bytes.
    if (static_cast<size_t>(n) < kReadChunk) c->readable = false;
    if (c->in.empty()) {
      size_t used = process(c, read_buf_.get(), static_cast<size_t>(n));
      if (used < static_cast<size_t>(n)) c->in.assign(read_buf_.get() + used, n - used);
    } else {
      c->in.append(read_buf_.get(), static_cast<size_t>(n));
      c->need_more_input = false;
      size_t used = process(c, c->in.data(), c->in.size());
      c->in.erase(0, used);
    }
    return true;
  }
  if (n == 0) {
    c->readable = false;
    c->peer_eof = true;
    return true;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    c->readable = false;
    return true;
  }
  if (errno == EINTR) return true;
  closeConn(c);
  return false;
}

// Consumes complete request units from data while the connection accepts input. Returns the
// number of bytes used; the rest is an incomplete unit or belongs to a later request.
size_t Worker::process(Conn* c, const char* data, size_t len) {
  size_t used = 0;
  c->need_more_input = false;
  while (acceptsInput(c) && used < len && c->out.size() < kOutputHighWater) {
    Parse result = Parse::kDone;
    if (c->phase == Phase::kHead) {
      used += parseHead(c, data + used, len - used, &result);
    } else {
      used += consumeBody(c, data + used, len - used, &result);
    }
    if (result == Parse::kNeedMore) {
      c->need_more_input = true;
      break;
    }
    if (result == Parse::kError) break;
  }
  return used;
}

Behaviour classifyPath(std::string_view path, const Config& config, uint64_t* arg) {
  auto numberAfter = [&](std::string_view prefix) -> std::optional<uint64_t> {
    if (!path.starts_with(prefix)) return std::nullopt;
    return parseUint(path.substr(prefix.size()));
  };
  if (path == config.health_path) return Behaviour::kHealth;
  if (path.starts_with("/control/")) {
    static constexpr std::string_view kModes[] = {"unhealthy", "healthy", "fail", "hang",
                                                  "recover"};
    for (size_t i = 0; i < std::size(kModes); ++i) {
      if (path.substr(9) == kModes[i]) {
        *arg = i;
        return Behaviour::kControl;
      }
    }
    return Behaviour::kDefault;
  }
  if (path.size() < 5 || path[1] < 'b' || path[1] > 's') return Behaviour::kDefault;
  if (path == "/echo") return Behaviour::kEcho;
  if (auto v = numberAfter("/status/")) {
    *arg = *v;
    return (*v >= 200 && *v <= 599) ? Behaviour::kStatus : Behaviour::kDefault;
  }
  if (auto v = numberAfter("/delay/")) {
    *arg = *v;
    return Behaviour::kDelay;
  }
  if (path == "/close-mid") return Behaviour::kCloseMid;
  if (path == "/close-before") return Behaviour::kCloseBefore;
  if (path == "/reset") return Behaviour::kReset;
  if (path == "/chunked") return Behaviour::kChunked;
  if (path.starts_with("/big/")) {
    if (auto v = parseSizeText(path.substr(5))) {
      *arg = *v;
      return Behaviour::kBig;
    }
  }
  if (auto v = numberAfter("/slow-body/")) {
    *arg = *v;
    return Behaviour::kSlowBody;
  }
  return Behaviour::kDefault;
}

size_t Worker::parseHead(Conn* c, const char* data, size_t len, Parse* result) {
  // Find the end of the head: an empty line (CRLF or bare LF line endings).
  const char* p = data;
  const char* end = data + len;
  // RFC 9112 2.2: ignore empty lines before the request line.
  while (p < end && (*p == '\r' || *p == '\n')) ++p;
  size_t skipped = static_cast<size_t>(p - data);
  const char* head_end = nullptr;  // one past the final '\n'
  for (const char* q = p; q < end;) {
    const char* nl = static_cast<const char*>(std::memchr(q, '\n', static_cast<size_t>(end - q)));
    if (!nl) break;
    size_t line_len = static_cast<size_t>(nl - q);
    if (line_len == 0 || (line_len == 1 && q[0] == '\r')) {
      head_end = nl + 1;
      break;
    }
    q = nl + 1;
  }
  if (!head_end) {
    if (len - skipped > kMaxHeadBytes) {
      failRequest(c, 431);
      *result = Parse::kError;
      return len;
    }
    *result = Parse::kNeedMore;
    return skipped;
  }
  if (static_cast<size_t>(head_end - p) > kMaxHeadBytes) {
    failRequest(c, 431);
    *result = Parse::kError;
    return len;
  }

  auto nextLine = [&](const char*& cursor) -> std::string_view {
    const char* nl = static_cast<const char*>(std::memchr(cursor, '\n', head_end - cursor));
    std::string_view line(cursor, static_cast<size_t>(nl - cursor));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    cursor = nl + 1;
    return line;
  };

  const char* cursor = p;
  std::string_view request_line = nextLine(cursor);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.rfind(' ');
  Request& req = c->req;
  req = Request{};
  if (sp1 == std::string_view::npos || sp2 == sp1 || sp1 == 0) {
    failRequest(c, 400);
    *result = Parse::kError;
    return len;
  }
  std::string_view method = request_line.substr(0, sp1);
  std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = request_line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    req.http10 = false;
  } else if (version == "HTTP/1.0") {
    req.http10 = true;
  } else {
    failRequest(c, version.starts_with("HTTP/") ? 505 : 400);
    *result = Parse::kError;
    return len;
  }
  if (target.empty() || target.find(' ') != std::string_view::npos) {
    failRequest(c, 400);
    *result = Parse::kError;
    return len;
  }
  req.keep_alive = !req.http10;
  req.head_method = method == "HEAD";
  std::string_view path = target;
  if (path.starts_with("http://") || path.starts_with("https://")) {  // absolute-form
    size_t slash = path.find('/', path.find("//") + 2);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  path = path.substr(0, path.find('?'));
  req.behaviour = classifyPath(path, config_, &req.arg);
  if (req.behaviour == Behaviour::kEcho) {
    req.echo.reserve(static_cast<size_t>(head_end - p) + 128);
    req.echo.append(request_line).push_back('\n');
  }

  bool has_length = false;
  bool chunked = false;
  bool bad = false;
  bool expect_continue = false;
  uint64_t content_length = 0;
  while (cursor < head_end) {
    std::string_view line = nextLine(cursor);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos || line[0] == ' ' || line[0] == '\t') {
      bad = true;  // no name, or obsolete line folding
      break;
    }
    std::string_view name = line.substr(0, colon);
    if (name.back() == ' ' || name.back() == '\t') {
      bad = true;  // RFC 9112 5.1: no whitespace between name and colon
      break;
    }
    std::string_view value = trimOws(line.substr(colon + 1));
    if (req.behaviour == Behaviour::kEcho) {
      req.echo.append(name).append(": ").append(value).push_back('\n');
    }
    switch (name.size()) {
      case 6:
        if (equalsIgnoreCase(name, "expect") && equalsIgnoreCase(value, "100-continue")) {
          expect_continue = true;
        }
        break;
      case 10:
        if (equalsIgnoreCase(name, "connection")) {
          forEachToken(value, [&](std::string_view tok) {
            if (equalsIgnoreCase(tok, "close")) req.keep_alive = false;
            if (equalsIgnoreCase(tok, "keep-alive") && req.http10) req.keep_alive = true;
          });
        }
        break;
      case 14:
        if (equalsIgnoreCase(name, "content-length")) {
          auto v = parseUint(value);
          if (!v || (has_length && *v != content_length)) bad = true;
          has_length = true;
          if (v) content_length = *v;
        }
        break;
      case 17:
        if (equalsIgnoreCase(name, "transfer-encoding")) {
          std::string_view last;
          forEachToken(value, [&](std::string_view tok) { last = tok; });
          if (!equalsIgnoreCase(last, "chunked")) bad = true;  // cannot frame the body
          chunked = true;
        }
        break;
      default:
        break;
    }
  }
  size_t used = static_cast<size_t>(head_end - data);
  if (bad) {
    failRequest(c, 400);
    *result = Parse::kError;
    return len;
  }
  if (chunked && req.http10) {
    failRequest(c, 400);
    *result = Parse::kError;
    return len;
  }
  if (chunked) {
    // RFC 9112 6.1: Transfer-Encoding overrides Content-Length; close afterwards to be safe.
    if (has_length) req.keep_alive = false;
    req.framing = BodyFraming::kChunked;
    req.chunk_state = ChunkState::kSize;
  } else if (has_length && content_length > 0) {
    req.framing = BodyFraming::kLength;
    req.body_remaining = content_length;
  }
  if (req.behaviour == Behaviour::kEcho) {
    req.sha1 = EVP_MD_CTX_new();
    EVP_DigestInit_ex(req.sha1, EVP_sha1(), nullptr);
  }
  *result = Parse::kDone;
  if (req.framing == BodyFraming::kNone) {
    onRequestComplete(c);
  } else {
    if (expect_continue && !req.http10) c->out.append("HTTP/1.1 100 Continue\r\n\r\n");
    c->phase = Phase::kBody;
  }
  return used;
}

size_t Worker::consumeBody(Conn* c, const char* data, size_t len, Parse* result) {
  Request& req = c->req;
  size_t used = 0;
  auto take = [&](size_t n) {
    if (req.sha1) EVP_DigestUpdate(req.sha1, data + used, n);
    req.body_bytes += n;
    req.body_remaining -= n;
    used += n;
  };
  *result = Parse::kNeedMore;
  if (req.framing == BodyFraming::kLength) {
    take(static_cast<size_t>(std::min<uint64_t>(req.body_remaining, len)));
    if (req.body_remaining == 0) {
      *result = Parse::kDone;
      onRequestComplete(c);
    }
    return used;
  }
  while (used < len) {
    switch (req.chunk_state) {
      case ChunkState::kSize: {
        const char* nl = static_cast<const char*>(std::memchr(data + used, '\n', len - used));
        if (!nl) {
          if (len - used > kMaxChunkLine) {
            failRequest(c, 400);
            *result = Parse::kError;
            return len;
          }
          return used;
        }
        std::string_view line(data + used, static_cast<size_t>(nl - (data + used)));
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        line = line.substr(0, line.find(';'));  // chunk extensions are ignored
        line = trimOws(line);
        uint64_t size = 0;
        auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (line.empty() || line.size() > 15 || ec != std::errc() ||
            ptr != line.data() + line.size()) {
          failRequest(c, 400);
          *result = Parse::kError;
          return len;
        }
        used = static_cast<size_t>(nl + 1 - data);
        req.body_remaining = size;
        req.chunk_state = size == 0 ? ChunkState::kTrailer : ChunkState::kData;
        break;
      }
      case ChunkState::kData:
        take(static_cast<size_t>(std::min<uint64_t>(req.body_remaining, len - used)));
        if (req.body_remaining == 0) req.chunk_state = ChunkState::kDataCrlf;
        break;
      case ChunkState::kDataCrlf: {
        // CRLF (or a bare LF) after the chunk data.
        if (data[used] == '\r') {
          if (used + 1 >= len) return used;
          if (data[used + 1] != '\n') {
            failRequest(c, 400);
            *result = Parse::kError;
            return len;
          }
          used += 2;
        } else if (data[used] == '\n') {
          used += 1;
        } else {
          failRequest(c, 400);
          *result = Parse::kError;
          return len;
        }
        req.chunk_state = ChunkState::kSize;
        break;
      }
      case ChunkState::kTrailer: {
        const char* nl = static_cast<const char*>(std::memchr(data + used, '\n', len - used));
        if (!nl) {
          if (len - used > kMaxHeadBytes) {
            failRequest(c, 431);
            *result = Parse::kError;
            return len;
          }
          return used;
        }
        size_t line_len = static_cast<size_t>(nl - (data + used));
        bool empty = line_len == 0 || (line_len == 1 && data[used] == '\r');
        used = static_cast<size_t>(nl + 1 - data);
        if (empty) {
          *result = Parse::kDone;
          onRequestComplete(c);
          return used;
        }
        break;  // a trailer field: ignored
      }
    }
  }
  return used;
}

void Worker::onRequestComplete(Conn* c) {
  counters_->bump(counters_->requests);
  Request& req = c->req;
  if (req.behaviour == Behaviour::kControl) {
    respond(c);
    return;
  }
  const uint8_t mode = g_failure_mode.load(std::memory_order_relaxed);
  if (mode == static_cast<uint8_t>(FailureMode::kHang)) {
    c->phase = Phase::kHung;  // never answered; the client gives up or we are told to recover
    return;
  }
  if (mode == static_cast<uint8_t>(FailureMode::kFail)) {
    req.behaviour = Behaviour::kStatus;
    req.arg = 500;
    respond(c);
    return;
  }
  if (req.behaviour == Behaviour::kHealth) {
    respond(c);
    return;
  }
  if (config_.capacity > 0 && in_service_ >= config_.capacity) {
    c->phase = Phase::kQueued;
    waiting_.emplace(c->fd, c->generation);
    ++queued_;
    publishInflight();
    return;
  }
  beginService(c, /*from_queue=*/false);
}

int64_t Worker::requestServiceNs(const Conn* c) {
  if (c->req.behaviour == Behaviour::kDelay) return static_cast<int64_t>(c->req.arg) * kNsPerMs;
  return serviceTimeNs();
}

// Takes a --capacity slot. A request coming out of the queue always goes through a timer (due
// at once when there is no delay) so that freeing a slot never answers inside closeConn.
void Worker::beginService(Conn* c, bool from_queue) {
  c->in_service = true;
  ++in_service_;
  publishInflight();
  int64_t delay = requestServiceNs(c);
  if (delay > 0 || from_queue) {
    c->phase = Phase::kWaitTimer;
    addTimer(c, delay);
    return;
  }
  serve(c);
}

void Worker::serve(Conn* c) {
  if (config_.cpu_work_ns > 0) {
    // Busy CPU like a real request handler; the thread's own CPU clock, so time spent
    // preempted by other processes does not count as work done.
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    const int64_t start = int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
    int64_t now = start;
    while (now - start < config_.cpu_work_ns) {
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      now = int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
    }
  }
  endService(c);
  respond(c);
}

void Worker::endService(Conn* c) {
  if (!c->in_service) return;
  c->in_service = false;
  --in_service_;
  while (!waiting_.empty()) {
    auto [fd, generation] = waiting_.front();
    waiting_.pop();
    if (fd < static_cast<int>(conns_.size()) && conns_[fd] &&
        conns_[fd]->generation == generation && conns_[fd]->phase == Phase::kQueued) {
      --queued_;
      beginService(conns_[fd], /*from_queue=*/true);
      return;
    }
  }
  publishInflight();
}

int64_t Worker::serviceTimeNs() {
  if (config_.delay_dist.empty()) return config_.delay_ns;
  // splitmix64: a few multiplies per draw, good enough to pick a bucket.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  for (const DelayStep& step : config_.delay_dist) {
    if (z < step.threshold) return step.delay_ns;
  }
  return config_.delay_dist.back().delay_ns;
}

void Worker::appendHead(Conn* c, int status, std::string_view extra_headers,
                        int64_t content_length) {
  std::string& o = c->out;
  o.append("HTTP/1.1 ");
  appendUint(o, static_cast<uint64_t>(status));
  o.push_back(' ');
  o.append(reasonPhrase(status));
  o.append("\r\nX-Backend: ");
  o.append(config_.id);
  o.append("\r\n");
  o.append(config_.identity_headers);
  o.append(extra_headers);
  if (content_length >= 0) {
    o.append("Content-Length: ");
    appendUint(o, static_cast<uint64_t>(content_length));
    o.append("\r\n");
  }
  if (!c->req.keep_alive) {
    o.append("Connection: close\r\n");
  } else if (c->req.http10) {
    o.append("Connection: keep-alive\r\n");
  }
  o.append("\r\n");
}

void Worker::respond(Conn* c) {
  Request& req = c->req;
  switch (req.behaviour) {
    case Behaviour::kDefault:
    case Behaviour::kDelay:
      if (req.keep_alive && !req.http10) {
        c->out.append(req.head_method ? config_.default_head_keep_alive
                                      : config_.default_keep_alive);
      } else if (!req.keep_alive) {
        c->out.append(req.head_method ? config_.default_head_close : config_.default_close);
      } else {
        appendHead(c, 200, "Content-Type: text/plain\r\n",
                   static_cast<int64_t>(config_.default_body.size()));
        if (!req.head_method) c->out.append(config_.default_body);
      }
      break;
    case Behaviour::kHealth:
      appendHealth(c);
      break;
    case Behaviour::kControl: {
      static constexpr const char* kAnswers[] = {"unhealthy\n", "healthy\n", "fail\n", "hang\n",
                                                 "recover\n"};
      switch (req.arg) {
        case kCtlUnhealthy:
          g_unhealthy.store(true, std::memory_order_relaxed);
          break;
        case kCtlHealthy:
          g_unhealthy.store(false, std::memory_order_relaxed);
          break;
        case kCtlFail:
          g_failure_mode.store(static_cast<uint8_t>(FailureMode::kFail), std::memory_order_relaxed);
          break;
        case kCtlHang:
          g_failure_mode.store(static_cast<uint8_t>(FailureMode::kHang), std::memory_order_relaxed);
          break;
        default:  // recover: answer normally again, and healthy
          g_failure_mode.store(static_cast<uint8_t>(FailureMode::kNone), std::memory_order_relaxed);
          g_unhealthy.store(false, std::memory_order_relaxed);
          break;
      }
      std::string_view answer = kAnswers[req.arg];
      appendHead(c, 200, "Content-Type: text/plain\r\n", static_cast<int64_t>(answer.size()));
      if (!req.head_method) c->out.append(answer);
      std::fprintf(stderr, "sgbackend %s: /control/%.*s\n", config_.id.c_str(),
                   static_cast<int>(answer.size() - 1), answer.data());
      break;
    }
    case Behaviour::kEcho:
      appendEcho(c);
      break;
    case Behaviour::kStatus: {
      int status = static_cast<int>(req.arg);
      bool no_length = status == 204 || status == 304;
      appendHead(c, status, {}, no_length ? -1 : 0);
      break;
    }
    case Behaviour::kCloseMid:
      req.keep_alive = true;  // the head must not announce the close
      appendHead(c, 200, "Content-Type: text/plain\r\n", 1000);
      c->out.append(100, 'm');
      req.keep_alive = false;
      break;
    case Behaviour::kCloseBefore:
      req.keep_alive = false;  // no response: close once earlier responses are flushed
      break;
    case Behaviour::kReset:
      req.keep_alive = false;
      c->reset_on_close = true;
      break;
    case Behaviour::kChunked: {
      if (req.http10) req.keep_alive = false;  // 1.0 has no chunked coding: close-delimited
      appendHead(c, 200,
                 req.http10 ? "Content-Type: text/plain\r\n"
                            : "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
                 -1);
      if (req.head_method) break;
      for (int i = 1; i <= 4; ++i) {
        std::string piece = "chunk " + std::to_string(i) + " from " + config_.id + "\n";
        piece.append(static_cast<size_t>(i) * 100, static_cast<char>('0' + i));
        piece.push_back('\n');
        if (!req.http10) {
          appendHex(c->out, piece.size());
          c->out.append("\r\n");
        }
        c->out.append(piece);
        if (!req.http10) c->out.append("\r\n");
      }
      if (!req.http10) c->out.append("0\r\n\r\n");
      break;
    }
    case Behaviour::kBig:
      appendHead(c, 200, "Content-Type: application/octet-stream\r\n",
                 static_cast<int64_t>(req.arg));
      if (!req.head_method && req.arg > 0) {
        c->stream_remaining = req.arg;
        c->phase = Phase::kStreamBig;
        return;
      }
      break;
    case Behaviour::kSlowBody:
      if (req.http10) req.keep_alive = false;
      appendHead(c, 200,
                 req.http10 ? "Content-Type: text/plain\r\n"
                            : "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
                 -1);
      if (req.head_method) break;
      c->slow_chunks_sent = 0;
      c->phase = Phase::kSlowBody;
      appendSlowChunk(c);
      return;
    case Behaviour::kBadRequest:
      appendHead(c, static_cast<int>(req.arg), "Content-Type: text/plain\r\n", 12);
      c->out.append("bad request\n");
      break;
  }
  finishResponse(c);
}

// The response is fully queued: the next request may be parsed, or the connection closes.
void Worker::finishResponse(Conn* c) {
  if (c->req.sha1) {
    EVP_MD_CTX_free(c->req.sha1);
    c->req.sha1 = nullptr;
  }
  std::string().swap(c->req.echo);
  c->phase = c->req.keep_alive ? Phase::kHead : Phase::kClosing;
}

// The health answer: 200 "healthy" or 503 "unhealthy", with the load report scalegate's
// prober reads (control/load_report.h): X-Load: cpu=<0..1>, mem=<0..1>, rss_mb=<MB>,
// inflight=<n>, rps=<n>.
void Worker::appendHealth(Conn* c) {
  const bool unhealthy = g_unhealthy.load(std::memory_order_relaxed);
  // In flight across all workers: the sampler sums them once a second; this worker's own value
  // is current, which is what matters with one thread.
  char load[160];
  const uint64_t rss_kb = g_rss_kb.load(std::memory_order_relaxed);
  std::snprintf(load, sizeof(load),
                "X-Load: cpu=%.3f, mem=%.4f, rss_mb=%.1f, inflight=%u, rps=%llu\r\n",
                static_cast<double>(g_cpu_millis.load(std::memory_order_relaxed)) / 1000.0,
                static_cast<double>(rss_kb) / static_cast<double>(g_phys_kb),
                static_cast<double>(rss_kb) / 1024.0, static_cast<unsigned>(in_service_ + queued_),
                static_cast<unsigned long long>(g_rps.load(std::memory_order_relaxed)));
  std::string headers = "Content-Type: text/plain\r\nCache-Control: no-store\r\n";
  headers += load;
  std::string_view body = unhealthy ? "unhealthy" : "healthy";
  appendHead(c, unhealthy ? 503 : 200, headers, static_cast<int64_t>(body.size()));
  if (!c->req.head_method) c->out.append(body);
}

void Worker::appendEcho(Conn* c) {
  Request& req = c->req;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_DigestFinal_ex(req.sha1, digest, &digest_len);
  std::string body = std::move(req.echo);
  body.append("body-bytes: ");
  appendUint(body, req.body_bytes);
  body.append("\nbody-sha1: ");
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < digest_len; ++i) {
    body.push_back(kHex[digest[i] >> 4]);
    body.push_back(kHex[digest[i] & 15]);
  }
  body.push_back('\n');
  appendHead(c, 200, "Content-Type: text/plain\r\n", static_cast<int64_t>(body.size()));
  if (!req.head_method) c->out.append(body);
}

void Worker::appendSlowChunk(Conn* c) {
  ++c->slow_chunks_sent;
  std::string piece = "slow chunk " + std::to_string(c->slow_chunks_sent) + "/" +
                      std::to_string(kSlowBodyChunks) + "\n";
  if (!c->req.http10) {
    appendHex(c->out, piece.size());
    c->out.append("\r\n");
  }
  c->out.append(piece);
  if (!c->req.http10) c->out.append("\r\n");
  if (c->slow_chunks_sent < kSlowBodyChunks) {
    addTimer(c, static_cast<int64_t>(c->req.arg) * kNsPerMs);
    return;
  }
  if (!c->req.http10) c->out.append("0\r\n\r\n");
  finishResponse(c);
}

void Worker::failRequest(Conn* c, int status) {
  c->req.behaviour = Behaviour::kBadRequest;
  c->req.arg = static_cast<uint64_t>(status);
  c->req.keep_alive = false;
  c->req.head_method = false;
  counters_->bump(counters_->requests);
  respond(c);
}

bool Worker::flush(Conn* c) {
  for (;;) {
    if (c->out_pos < c->out.size()) {
      if (!c->writable) return true;
      size_t want = c->out.size() - c->out_pos;
      ssize_t n = send(c->fd, c->out.data() + c->out_pos, want, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          c->writable = false;
          return true;
        }
        if (errno == EINTR) continue;
        closeConn(c);
        return false;
      }
      c->out_pos += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < want) {
        c->writable = false;  // the next EPOLLOUT edge resumes
        return true;
      }
    }
    c->out_pos = 0;
    c->out.clear();
    if (c->out.capacity() > 4 * kStreamChunk) std::string().swap(c->out);
    if (c->phase == Phase::kStreamBig) {
      if (!c->writable) return true;
      size_t want = static_cast<size_t>(std::min<uint64_t>(c->stream_remaining, kStreamChunk));
      ssize_t n = send(c->fd, pattern_.data(), want, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          c->writable = false;
          return true;
        }
        if (errno == EINTR) continue;
        closeConn(c);
        return false;
      }
      c->stream_remaining -= static_cast<uint64_t>(n);
      if (c->stream_remaining == 0) {
        finishResponse(c);
      } else if (static_cast<size_t>(n) < want) {
        c->writable = false;
        return true;
      }
      continue;
    }
    if (c->phase == Phase::kClosing) {
      closeConn(c, c->reset_on_close);
      return false;
    }
    return true;
  }
}

void Worker::addTimer(Conn* c, int64_t delay_ns) {
  timers_.push(Timer{nowNs() + delay_ns, c->fd, c->generation});
}

void Worker::onTimer(const Timer& t) {
  if (t.fd < 0) {
    if (!listener_armed_) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenerTag;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
      listener_armed_ = true;
    }
    return;
  }
  if (t.fd >= static_cast<int>(conns_.size())) return;
  Conn* c = conns_[t.fd];
  if (!c || c->generation != t.generation) return;
  if (c->phase == Phase::kWaitTimer) {
    serve(c);
  } else if (c->phase == Phase::kSlowBody) {
    appendSlowChunk(c);
  } else {
    return;
  }
  advance(c);
}

void Worker::closeConn(Conn* c, bool reset) {
  if (reset) {
    linger lg{1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  if (c->req.sha1) EVP_MD_CTX_free(c->req.sha1);
  close(c->fd);  // also removes it from the epoll set
  conns_[c->fd] = nullptr;
  if (c->phase == Phase::kQueued) {
    --queued_;
    publishInflight();
  }
  endService(c);  // a queued request behind it may start (through a timer, not from here)
  delete c;
}

// ---------------------------------------------------------------------------------------------
// Startup.

int openListener(const sockaddr_storage& addr, socklen_t len) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, 4096) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

void raiseFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

bool writePortFile(const std::string& path, uint16_t port) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  std::fprintf(f, "%u\n", port);
  bool ok = std::fclose(f) == 0;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

constexpr const char* kBehaviours = R"(
Behaviour by request path (query strings are ignored; every response has X-Backend: <id>):
  <health-path>     200 "healthy" (503 "unhealthy" after /control/unhealthy), never delayed,
                    with X-Load: cpu=<0..1>, mem=<0..1 of RAM>, rss_mb=<MB>, inflight=<n>,
                    rps=<n> (cpu and rps over the last second)
  /echo             200 text/plain: the request line, each header as "Name: value" in the
                    order received, then "body-bytes: N" and "body-sha1: <hex>" of the body
  /control/MODE     POST (any method) switches the instance: unhealthy (health answers 503),
                    healthy, fail (every other request 500), hang (requests are read and
                    never answered), recover (normal and healthy again); answers 200 "MODE"
  /status/NNN       that status (200-599), empty body, Content-Length: 0
  /delay/MS         the default response after MS milliseconds (instead of --delay or
                    --delay-dist)
  /close-mid        head with Content-Length: 1000, 100 body bytes, then close
  /close-before     read the request, then close without a response
  /reset            read the request, then RST (SO_LINGER 0) without a response
  /chunked          200 with Transfer-Encoding: chunked, 4 data chunks
  /big/N            N body bytes (k/M/G suffixes allowed), streamed, never buffered
  /slow-body/MS     head at once, then 5 chunks MS ms apart (chunked coding)
  anything else     200 with the default body ("<id>\n" or --body-size bytes)
Request bodies (Content-Length or chunked) are read in full before the response. HTTP/1.0 and
"Connection: close" are honoured; HEAD gets heads only; "Expect: 100-continue" gets a 100.
)";

int runMain(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "sgbackend: scalegate's instance simulator, a fast HTTP/1.1 origin server that "
      "stands in for a VM-pool member in tests and benchmarks."};
  app.footer(kBehaviours);
  app.add_option("--listen", opt.listen, "HOST:PORT to listen on; port 0 picks a free port")
      ->capture_default_str();
  app.add_option("--id", opt.id, "instance name, sent as X-Backend and in the default body")
      ->capture_default_str();
  app.add_option("--body-size", opt.body_size,
                 "default body of N bytes (k/M/G suffixes) instead of \"<id>\\n\"");
  app.add_option("--delay", opt.delay,
                 "fixed service time before each response, e.g. 500us, 5ms, 1s (timers, not "
                 "sleeps)")
      ->capture_default_str();
  app.add_option("--delay-dist", opt.delay_dist,
                 "service-time distribution instead of --delay: each request draws one, e.g. "
                 "\"90%:1ms,10%:20ms\" (percentages sum to 100)");
  app.add_option("--health-path", opt.health_path, "path answered 200 \"healthy\"")
      ->capture_default_str();
  app.add_option("--port-file", opt.port_file,
                 "write the bound port here (atomically, by rename) once listening");
  app.add_option("--threads", opt.threads,
                 "worker threads, each with its own epoll loop and SO_REUSEPORT listener")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--version", opt.version,
                 "version label: sent as X-Version on every answer and in health answers "
                 "(rolling upgrades)");
  app.add_option("--cpu-work", opt.cpu_work,
                 "busy CPU per served request (thread CPU time), e.g. 2ms; after the service "
                 "delay, before the answer")
      ->capture_default_str();
  app.add_option("--capacity", opt.capacity,
                 "requests in service at once per thread (0 = unlimited); more wait in a FIFO "
                 "queue, so latency grows under overload")
      ->capture_default_str();
  app.add_flag("--quiet", opt.quiet, "no diagnostics (the listening line is still printed)");
  CLI11_PARSE(app, argc, argv);

  static Config config;
  config.id = opt.id;
  config.version = opt.version;
  config.health_path = opt.health_path;
  config.capacity = opt.capacity;
  if (config.version.find_first_of("\r\n") != std::string::npos) {
    std::fprintf(stderr, "sgbackend: --version must be a single line\n");
    return 2;
  }
  config.identity_headers = "X-Instance: " + config.id + "\r\n";
  if (!config.version.empty()) config.identity_headers += "X-Version: " + config.version + "\r\n";
  auto cpu_work = parseDurationNs(opt.cpu_work);
  if (!cpu_work) {
    std::fprintf(stderr, "sgbackend: --cpu-work '%s': want a duration such as 2ms\n",
                 opt.cpu_work.c_str());
    return 2;
  }
  config.cpu_work_ns = *cpu_work;
  if (config.id.empty() || config.id.find_first_of("\r\n") != std::string::npos) {
    std::fprintf(stderr, "sgbackend: --id must be a non-empty single line\n");
    return 2;
  }
  auto delay = parseDurationNs(opt.delay);
  if (!delay) {
    std::fprintf(stderr, "sgbackend: --delay '%s': want a duration such as 5ms\n",
                 opt.delay.c_str());
    return 2;
  }
  config.delay_ns = *delay;
  if (app.count("--delay-dist") > 0) {
    if (app.count("--delay") > 0) {
      std::fprintf(stderr, "sgbackend: give --delay or --delay-dist, not both\n");
      return 2;
    }
    std::string error;
    auto dist = parseDelayDist(opt.delay_dist, &error);
    if (!dist) {
      std::fprintf(stderr, "sgbackend: --delay-dist '%s': %s\n", opt.delay_dist.c_str(),
                   error.c_str());
      return 2;
    }
    config.delay_dist = std::move(*dist);
  }
  if (opt.body_size.empty()) {
    config.default_body = config.id + "\n";
  } else {
    auto size = parseSizeText(opt.body_size);
    if (!size || *size > (uint64_t{64} << 20)) {
      std::fprintf(stderr, "sgbackend: --body-size '%s': want 0..64M\n", opt.body_size.c_str());
      return 2;
    }
    config.default_body.resize(*size);
    for (size_t i = 0; i < *size; ++i) config.default_body[i] = static_cast<char>('a' + i % 26);
    if (*size > 0) config.default_body.back() = '\n';
  }
  auto head = [&](bool keep_alive) {
    std::string h = "HTTP/1.1 200 OK\r\nX-Backend: " + config.id + "\r\n" +
                    config.identity_headers + "Content-Type: text/plain\r\nContent-Length: " +
                    std::to_string(config.default_body.size()) + "\r\n";
    if (!keep_alive) h += "Connection: close\r\n";
    return h + "\r\n";
  };
  config.default_head_keep_alive = head(true);
  config.default_head_close = head(false);
  config.default_keep_alive = config.default_head_keep_alive + config.default_body;
  config.default_close = config.default_head_close + config.default_body;

  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  if (!parseListenAddress(opt.listen, &addr, &addr_len)) {
    std::fprintf(stderr, "sgbackend: --listen '%s': want HOST:PORT, e.g. 127.0.0.1:0\n",
                 opt.listen.c_str());
    return 2;
  }
  raiseFileLimit();

  // The first listener fixes the port (port 0 picks one); the others share it by
  // SO_REUSEPORT so the kernel spreads connections over the threads.
  std::vector<int> listeners;
  int first = openListener(addr, addr_len);
  if (first < 0) {
    std::fprintf(stderr, "sgbackend: listen on %s: %s\n", opt.listen.c_str(), std::strerror(errno));
    return 1;
  }
  listeners.push_back(first);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(first, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  uint16_t port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (addr.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
  }
  for (int i = 1; i < opt.threads; ++i) {
    int fd = openListener(addr, addr_len);
    if (fd < 0) {
      std::fprintf(stderr, "sgbackend: second listener on port %u: %s\n", port,
                   std::strerror(errno));
      return 1;
    }
    listeners.push_back(fd);
  }

  // SIGTERM/SIGINT are taken synchronously by the main thread; workers never see them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Memory figures for health answers: sampled now, then once a second with the rest.
  g_phys_kb = std::max<uint64_t>(1, static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                                        static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / 1024);
  const uint64_t page_kb = static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) / 1024;
  auto sampleRss = [&] {
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      unsigned long long size = 0, resident = 0;
      if (std::fscanf(f, "%llu %llu", &size, &resident) == 2) {
        g_rss_kb.store(resident * page_kb, std::memory_order_relaxed);
      }
      std::fclose(f);
    }
  };
  sampleRss();

  std::vector<std::unique_ptr<WorkerCounters>> counters;
  std::random_device seed_source;
  for (int i = 0; i < opt.threads; ++i) {
    counters.push_back(std::make_unique<WorkerCounters>());
    uint64_t seed = (uint64_t{seed_source()} << 32) | seed_source();
    std::thread([fd = listeners[i], c = counters.back().get(), seed] {
      Worker(config, fd, c, seed).run();
    }).detach();
  }

  if (!opt.port_file.empty() && !writePortFile(opt.port_file, port)) {
    std::fprintf(stderr, "sgbackend: cannot write --port-file %s: %s\n", opt.port_file.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::string host = opt.listen.substr(0, opt.listen.rfind(':'));
  if (host.empty() || host == "*") host = "0.0.0.0";
  std::printf("sgbackend %s listening on %s:%u\n", config.id.c_str(), host.c_str(), port);
  std::fflush(stdout);

  // Once a second: the load figures health answers report.
  auto cpuNs = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
  };
  auto totalRequests = [&] {
    uint64_t n = 0;
    for (const auto& c : counters) n += c->requests.load(std::memory_order_relaxed);
    return n;
  };
  int64_t last_wall = nowNs(), last_cpu = cpuNs();
  uint64_t last_requests = totalRequests();
  int sig = 0;
  for (;;) {
    timespec wait{1, 0};
    sig = sigtimedwait(&stop_signals, nullptr, &wait);
    if (sig > 0) break;
    const int64_t wall = nowNs(), cpu = cpuNs();
    const uint64_t requests = totalRequests();
    if (wall > last_wall) {
      double util = static_cast<double>(cpu - last_cpu) /
                    (static_cast<double>(wall - last_wall) * opt.threads);
      util = std::clamp(util, 0.0, 1.0);
      g_cpu_millis.store(static_cast<uint64_t>(util * 1000 + 0.5), std::memory_order_relaxed);
      g_rps.store(static_cast<uint64_t>(static_cast<double>(requests - last_requests) * 1e9 /
                                            static_cast<double>(wall - last_wall) +
                                        0.5),
                  std::memory_order_relaxed);
    }
    last_wall = wall;
    last_cpu = cpu;
    last_requests = requests;
    sampleRss();
  }
  if (!opt.quiet) {
    uint64_t requests = 0, connections = 0;
    for (const auto& c : counters) {
      requests += c->requests.load(std::memory_order_relaxed);
      connections += c->connections.load(std::memory_order_relaxed);
    }
    std::fprintf(stderr, "sgbackend %s: %s, exiting after %llu requests on %llu connections\n",
                 config.id.c_str(), strsignal(sig), static_cast<unsigned long long>(requests),
                 static_cast<unsigned long long>(connections));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);  // workers are detached and own nothing that needs tearing down
}

}  // namespace
}  // namespace scalegate::bench

int main(int argc, char** argv) { return scalegate::bench::runMain(argc, argv); }
