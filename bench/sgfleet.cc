// sgfleet: a fleet of tiny pool members in one process, for measuring scalegate's control plane
// (health probes over thousands of members) without thousands of processes.
//
//   scalegate prober ──TCP connect / GET /health──►  port P     ┐
//                    ──────────────────────────────► port P+1   │ one epoll loop, one thread,
//                    ──────────────────────────────► ...        │ N listening sockets
//                    ──────────────────────────────► port P+N-1 ┘
//
// Every listener answers every HTTP/1.x request with "200 OK", Content-Length: 0 (plus an
// optional X-Load header); keep-alive and pipelining work, request bodies framed by
// Content-Length are skipped. A TCP-connect probe is accepted and closed when the prober hangs
// up. Level-triggered epoll, non-blocking sockets, one read per readiness event.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace scalegate::bench {
namespace {

constexpr size_t kReadChunk = 16 * 1024;       // one read() per readiness event, at most
constexpr size_t kMaxHeadBytes = 16 * 1024;    // request line + headers; beyond: 431 and close
constexpr size_t kMaxPendingOutput = 1 << 20;  // a client that never reads is closed
constexpr int kMaxEvents = 256;
constexpr int kAcceptsPerEvent = 64;  // then other listeners get their turn
constexpr int kFdSlack = 256;         // descriptors beyond the listeners
constexpr uint64_t kListenerTag = uint64_t{1} << 63;
constexpr uint64_t kSignalTag = uint64_t{1} << 62;

struct Options {
  std::string host = "127.0.0.1";
  int base_port = 0;
  int count = 1;
  std::string port_file;
  std::string x_load;
  bool quiet = false;
};

// One accepted connection. `in` holds bytes not yet parsed, `out` bytes not yet sent.
struct Connection {
  int fd = -1;
  std::string in;
  std::string out;
  uint64_t body_left = 0;        // request body bytes still to skip
  bool close_after_out = false;  // close once `out` is sent
  bool want_write = false;       // EPOLLOUT armed
};

struct Responses {
  std::string keep_alive;
  std::string close;
  std::string head_too_large;   // 431, close
  std::string bad_request;      // 400, close
  std::string not_implemented;  // 501, close (Transfer-Encoding is not supported)
};

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated header value lists `token` (case-insensitive).
bool hasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

class Fleet {
 public:
  Fleet(const Responses& responses, int epoll_fd) : responses_(responses), epoll_fd_(epoll_fd) {}

  // Registers listening socket number `index` (its fd) with the loop.
  bool addListener(int fd, size_t index) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerTag | index;
    listeners_.push_back(fd);
    return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0;
  }

  // Runs until SIGTERM/SIGINT arrive on `signal_fd` (SIGUSR1 prints the counters and goes on).
  // Returns the signal number.
  int run(int signal_fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kSignalTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, signal_fd, &ev);
    spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    epoll_event events[kMaxEvents];
    while (true) {
      int n = epoll_wait(epoll_fd_, events, kMaxEvents, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        std::perror("sgfleet: epoll_wait");
        return 0;
      }
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        if (tag == kSignalTag) {
          signalfd_siginfo si{};
          if (read(signal_fd, &si, sizeof(si)) != sizeof(si)) continue;
          if (si.ssi_signo != SIGUSR1) return static_cast<int>(si.ssi_signo);
          printCounters();
          continue;
        }
        if (tag & kListenerTag) {
          acceptFrom(listeners_[tag & ~kListenerTag]);
          continue;
        }
        int fd = static_cast<int>(tag);
        if (static_cast<size_t>(fd) >= conns_.size() || !conns_[fd]) continue;
        Connection& c = *conns_[fd];
        if ((events[i].events & EPOLLOUT) && !flush(c)) continue;
        // Errors and hang-ups show up as a failing or empty read; a stale event for a
        // descriptor that was closed and reused within this batch just finds nothing to read.
        if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) onReadable(c);
      }
    }
  }

  // "sgfleet: counters requests=R connections=C" on stderr (what SIGUSR1 asks for).
  void printCounters() const {
    std::fprintf(stderr, "sgfleet: counters requests=%llu connections=%llu\n",
                 static_cast<unsigned long long>(requests_),
                 static_cast<unsigned long long>(connections_));
    std::fflush(stderr);
  }

  uint64_t connections() const { return connections_; }
  uint64_t requests() const { return requests_; }

 private:
  void acceptFrom(int listener) {
    for (int i = 0; i < kAcceptsPerEvent; ++i) {
      int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: free the spare one to accept and drop this client, so the
          // level-triggered listener does not spin.
          if (spare_fd_ >= 0) {
            close(spare_fd_);
            int dropped = accept(listener, nullptr, nullptr);
            if (dropped >= 0) close(dropped);
            spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
          }
          if (!emfile_logged_) {
            std::fprintf(stderr, "sgfleet: out of file descriptors; dropping new connections\n");
            emfile_logged_ = true;
          }
        }
        return;  // EAGAIN, ECONNABORTED, ...: nothing more to take now
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (static_cast<size_t>(fd) >= conns_.size()) conns_.resize(static_cast<size_t>(fd) + 1024);
      auto c = std::make_unique<Connection>();
      c->fd = fd;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = static_cast<uint64_t>(fd);
      if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        continue;
      }
      conns_[fd] = std::move(c);
      ++connections_;
    }
  }

  void onReadable(Connection& c) {
    char buf[kReadChunk];
    ssize_t n = read(c.fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      closeConnection(c);  // the peer hung up (a TCP-connect probe ends here) or reset
      return;
    }
    if (n < 0) return;
    if (c.close_after_out) return;  // answered with close: ignore anything else it sends
    c.in.append(buf, static_cast<size_t>(n));
    if (!parseRequests(c)) return;
    flush(c);
  }

  // Answers every complete request in c.in. False when the connection was closed.
  bool parseRequests(Connection& c) {
    size_t pos = 0;
    while (pos < c.in.size() && !c.close_after_out) {
      if (c.body_left > 0) {
        size_t skip = static_cast<size_t>(std::min<uint64_t>(c.body_left, c.in.size() - pos));
        pos += skip;
        c.body_left -= skip;
        continue;
      }
      std::string_view rest(c.in.data() + pos, c.in.size() - pos);
      size_t end = rest.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (rest.size() > kMaxHeadBytes) answerAndClose(c, responses_.head_too_large);
        break;
      }
      if (end + 4 > kMaxHeadBytes) {
        answerAndClose(c, responses_.head_too_large);
        break;
      }
      answer(c, rest.substr(0, end));
      pos += end + 4;
    }
    c.in.erase(0, pos);
    if (c.out.size() > kMaxPendingOutput) {
      closeConnection(c);
      return false;
    }
    return true;
  }

  // One request head (without the final CRLFCRLF): queue its response.
  void answer(Connection& c, std::string_view head) {
    size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    std::string_view headers = eol == std::string_view::npos ? "" : head.substr(eol + 2);
    size_t sp1 = line.find(' ');
    size_t sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) {
      answerAndClose(c, responses_.bad_request);
      return;
    }
    std::string_view version = line.substr(sp2 + 1);
    bool http11 = version == "HTTP/1.1";
    if (!http11 && version != "HTTP/1.0") {
      answerAndClose(c, responses_.bad_request);
      return;
    }
    bool keep_alive = http11;
    std::optional<uint64_t> content_length;
    while (!headers.empty()) {
      size_t next = headers.find("\r\n");
      std::string_view field = headers.substr(0, next);
      headers = next == std::string_view::npos ? "" : headers.substr(next + 2);
      size_t colon = field.find(':');
      if (colon == std::string_view::npos) {
        answerAndClose(c, responses_.bad_request);
        return;
      }
      std::string_view name = field.substr(0, colon);
      std::string_view value = trim(field.substr(colon + 1));
      if (equalsIgnoreCase(name, "content-length")) {
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || p != value.data() + value.size() ||
            (content_length && *content_length != v)) {
          answerAndClose(c, responses_.bad_request);
          return;
        }
        content_length = v;
      } else if (equalsIgnoreCase(name, "transfer-encoding")) {
        answerAndClose(c, responses_.not_implemented);
        return;
      } else if (equalsIgnoreCase(name, "connection")) {
        if (hasToken(value, "close")) keep_alive = false;
        if (!http11 && hasToken(value, "keep-alive")) keep_alive = true;
      }
    }
    ++requests_;
    c.body_left = content_length.value_or(0);
    if (keep_alive) {
      c.out += responses_.keep_alive;
    } else {
      answerAndClose(c, responses_.close);
    }
  }

  void answerAndClose(Connection& c, const std::string& response) {
    c.out += response;
    c.close_after_out = true;
  }

  // Sends what `out` holds; arms or disarms EPOLLOUT. False when the connection was closed.
  bool flush(Connection& c) {
    while (!c.out.empty()) {
      ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        closeConnection(c);
        return false;
      }
      c.out.erase(0, static_cast<size_t>(n));
    }
    if (c.out.empty() && c.close_after_out) {
      closeConnection(c);
      return false;
    }
    bool want = !c.out.empty();
    if (want != c.want_write) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (want ? uint32_t{EPOLLOUT} : 0u);
      ev.data.u64 = static_cast<uint64_t>(c.fd);
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_write = want;
    }
    return true;
  }

  void closeConnection(Connection& c) {
    int fd = c.fd;
    close(fd);  // also removes it from the epoll set
    conns_[fd].reset();
  }

  const Responses& responses_;
  int epoll_fd_;
  int spare_fd_ = -1;
  bool emfile_logged_ = false;
  std::vector<int> listeners_;
  std::vector<std::unique_ptr<Connection>> conns_;  // by fd
  uint64_t connections_ = 0;
  uint64_t requests_ = 0;
};

// Makes room for `needed` descriptors: the soft limit goes up to the hard one (and the hard one
// up too when the process may). False when even that is not enough.
bool raiseFileLimit(rlim_t needed, rlim_t* have) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed) {
    rlimit more = rl;
    more.rlim_max = needed;
    more.rlim_cur = needed;
    if (setrlimit(RLIMIT_NOFILE, &more) == 0) rl = more;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  *have = rl.rlim_cur;
  return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= needed;
}

// A listening socket on host:port (port 0: the kernel picks). No SO_REUSEPORT, so a port that
// something else holds is an error rather than shared. Returns the fd, or -1 with errno set.
int openListener(const sockaddr_storage& addr, socklen_t len) {
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 || listen(fd, SOMAXCONN) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

uint16_t boundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  return ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
}

bool writePortFile(const std::string& path, const std::vector<uint16_t>& ports) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return false;
  for (uint16_t p : ports) std::fprintf(f, "%u\n", p);
  bool ok = std::fclose(f) == 0;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}

constexpr const char* kFooter = R"footer(
Every request on every port gets "HTTP/1.1 200 OK" with Content-Length: 0 (and X-Load: VALUE
with --x-load); keep-alive and pipelining work, Content-Length bodies are skipped,
"Connection: close" and HTTP/1.0 are honoured, Transfer-Encoding gets 501. A connection that
sends nothing (a TCP-connect probe) is closed when the peer closes it.
On start it prints "sgfleet listening on HOST ports FIRST..LAST (N listeners)"; SIGTERM/SIGINT
exit 0 (without --quiet after printing connections and requests served, on stderr). SIGUSR1
prints "sgfleet: counters requests=R connections=C" on stderr (even with --quiet) and goes on:
the probe rate as the members see it.

Examples:
  sgfleet --base-port 20000 --count 5000              ports 20000..24999
  sgfleet --count 5000 --port-file ports.txt          kernel-chosen ports, one a line
  sgfleet --count 3 --port-file p --x-load "cpu=0.42, queue=7"
)footer";

int runMain(int argc, char** argv) {
  Options opt;
  CLI::App app{
      "sgfleet: many tiny pool members in one process. N listening sockets on one epoll loop, "
      "each answering every HTTP request with an empty 200, for measuring scalegate's health "
      "prober and membership handling at scale."};
  app.footer(kFooter);
  app.add_option("--host", opt.host, "IPv4 or IPv6 address to listen on")->capture_default_str();
  app.add_option("--base-port", opt.base_port,
                 "first port; listeners take BASE..BASE+COUNT-1 (every one must be free). 0: "
                 "the kernel picks each port (use --port-file to learn them)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--count", opt.count, "number of listeners (instances)")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  app.add_option("--port-file", opt.port_file,
                 "write the bound ports here, one a line in listener order (atomically, by "
                 "rename) once every listener is open");
  app.add_option("--x-load", opt.x_load,
                 "add \"X-Load: VALUE\" to every response, e.g. \"cpu=0.42, queue=7\"");
  app.add_flag("--quiet", opt.quiet, "no diagnostics (the listening line is still printed)");
  CLI11_PARSE(app, argc, argv);

  if (opt.base_port != 0 && opt.base_port + opt.count - 1 > 65535) {
    std::fprintf(stderr, "sgfleet: --base-port %d --count %d goes beyond port 65535\n",
                 opt.base_port, opt.count);
    return 2;
  }
  if (opt.x_load.find_first_of("\r\n") != std::string::npos) {
    std::fprintf(stderr, "sgfleet: --x-load must be a single line\n");
    return 2;
  }
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, opt.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, opt.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    addr_len = sizeof(sockaddr_in6);
  } else {
    std::fprintf(stderr, "sgfleet: --host '%s': want an IPv4 or IPv6 address\n", opt.host.c_str());
    return 2;
  }

  rlim_t needed = static_cast<rlim_t>(opt.count) + kFdSlack;
  rlim_t have = 0;
  if (!raiseFileLimit(needed, &have)) {
    std::fprintf(stderr,
                 "sgfleet: %d listeners need about %llu file descriptors; the limit is %llu "
                 "(raise the hard limit: ulimit -Hn)\n",
                 opt.count, static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(have));
    return 1;
  }

  Responses responses;
  std::string extra = opt.x_load.empty() ? "" : "X-Load: " + opt.x_load + "\r\n";
  responses.keep_alive = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + extra + "\r\n";
  responses.close =
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + extra + "Connection: close\r\n\r\n";
  responses.head_too_large =
      "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
      "Connection: close\r\n\r\n";
  responses.bad_request =
      "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  responses.not_implemented =
      "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    std::perror("sgfleet: epoll_create1");
    return 1;
  }
  Fleet fleet(responses, epoll_fd);
  std::vector<uint16_t> ports;
  ports.reserve(static_cast<size_t>(opt.count));
  for (int i = 0; i < opt.count; ++i) {
    uint16_t want = opt.base_port == 0 ? 0 : static_cast<uint16_t>(opt.base_port + i);
    if (addr.ss_family == AF_INET6) {
      v6->sin6_port = htons(want);
    } else {
      v4->sin_port = htons(want);
    }
    int fd = openListener(addr, addr_len);
    if (fd < 0) {
      std::fprintf(stderr, "sgfleet: listener %d of %d on %s port %u: %s\n", i + 1, opt.count,
                   opt.host.c_str(), want, std::strerror(errno));
      return 1;
    }
    if (!fleet.addListener(fd, static_cast<size_t>(i))) {
      std::fprintf(stderr, "sgfleet: epoll_ctl: %s\n", std::strerror(errno));
      return 1;
    }
    ports.push_back(boundPort(fd));
  }

  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR1);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) {
    std::perror("sgfleet: signalfd");
    return 1;
  }

  if (!opt.port_file.empty() && !writePortFile(opt.port_file, ports)) {
    std::fprintf(stderr, "sgfleet: cannot write --port-file %s: %s\n", opt.port_file.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::printf("sgfleet listening on %s ports %u..%u (%d listeners)\n", opt.host.c_str(),
              ports.front(), ports.back(), opt.count);
  std::fflush(stdout);

  int sig = fleet.run(signal_fd);
  if (!opt.quiet) {
    std::fprintf(stderr, "sgfleet: %s, exiting after %llu requests on %llu connections\n",
                 sig != 0 ? strsignal(sig) : "error",
                 static_cast<unsigned long long>(fleet.requests()),
                 static_cast<unsigned long long>(fleet.connections()));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(sig != 0 ? 0 : 1);  // the kernel closes every socket
}

}  // namespace
}  // namespace scalegate::bench

int main(int argc, char** argv) { return scalegate::bench::runMain(argc, argv); }
