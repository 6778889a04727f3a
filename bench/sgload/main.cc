// sgload: scalegate's HTTP load generator. Closed loop (like wrk, h2load) or open loop at a
// constant or staged rate with latency measured from the intended send time (like wrk2);
// HTTP/1.1 with pipelining or HTTP/2 with streams, over TCP or TLS; full percentiles from a
// log-linear histogram; text, JSON and per-second CSV output. See bench/sgload/README.md.

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "bench/sgload/options.h"
#include "bench/sgload/report.h"
#include "bench/sgload/request.h"
#include "bench/sgload/stats.h"
#include "bench/sgload/worker.h"

namespace scalegate::bench {
namespace {

constexpr int kPreflightTimeoutMs = 5000;

void onSignal(int) { requestStop(); }

// A blocking TLS handshake on fd with the run's settings: a certificate that does not verify,
// or a server without h2 when --h2 asked for it, stops the run before it starts.
bool preflightTls(const Options& o, int fd) {
  const int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  timeval tv{kPreflightTimeoutMs / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (o.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  static const unsigned char kH2[] = "\x02h2";
  static const unsigned char kH1[] = "\x08http/1.1";
  if (o.h2) {
    SSL_CTX_set_alpn_protos(ctx, kH2, sizeof kH2 - 1);
  } else {
    SSL_CTX_set_alpn_protos(ctx, kH1, sizeof kH1 - 1);
  }
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  in6_addr ip;
  const bool literal =
      inet_pton(AF_INET, o.host.c_str(), &ip) == 1 || inet_pton(AF_INET6, o.host.c_str(), &ip) == 1;
  if (!literal) SSL_set_tlsext_host_name(ssl, o.host.c_str());
  if (!o.insecure) {
    if (literal) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), o.host.c_str());
    } else {
      SSL_set1_host(ssl, o.host.c_str());
    }
  }
  bool ok = true;
  if (SSL_connect(ssl) != 1) {
    char buf[256] = "connection closed during the handshake";
    if (const unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, buf, sizeof buf);
    const long verify = SSL_get_verify_result(ssl);
    std::fprintf(stderr, "sgload: TLS handshake with %s port %u failed: %s%s%s\n", o.host.c_str(),
                 o.port, buf, verify != X509_V_OK ? ": " : "",
                 verify != X509_V_OK ? X509_verify_cert_error_string(verify) : "");
    if (verify != X509_V_OK)
      std::fprintf(stderr, "sgload: --insecure skips certificate verification\n");
    ok = false;
  } else if (o.h2) {
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &proto, &len);
    if (len != 2 || std::memcmp(proto, "h2", 2) != 0) {
      std::fprintf(stderr, "sgload: %s port %u did not select h2 by ALPN (--h2)\n", o.host.c_str(),
                   o.port);
      ok = false;
    }
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

// One blocking connect before the run: if the target cannot be reached at all, say so and
// exit 1 instead of reporting a run made only of connect errors.
bool preflight(const Options& o) {
  const int fd = socket(o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "sgload: socket: %s\n", std::strerror(errno));
    return false;
  }
  int err = 0;
  if (o.source_len > 0 &&
      bind(fd, reinterpret_cast<const sockaddr*>(&o.source), o.source_len) != 0) {
    std::fprintf(stderr, "sgload: bind --source: %s\n", std::strerror(errno));
    close(fd);
    return false;
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&o.addr), o.addr_len) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      const int timeout_ms =
          static_cast<int>(std::min<uint64_t>(o.timeout_ns / 1'000'000, kPreflightTimeoutMs));
      const int rc = poll(&p, 1, timeout_ms);
      if (rc == 0) {
        err = ETIMEDOUT;
      } else {
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      }
    }
  }
  if (err != 0) {
    close(fd);
    std::fprintf(stderr, "sgload: cannot connect to %s port %u: %s\n", o.host.c_str(), o.port,
                 std::strerror(err));
    return false;
  }
  const bool ok = !o.tls || preflightTls(o, fd);
  close(fd);
  return ok;
}

int run(int argc, char** argv) {
  int exit_code = 0;
  std::optional<Options> parsed = parseOptions(argc, argv, &exit_code);
  if (!parsed) return exit_code;
  const Options& o = *parsed;

  std::FILE* csv = nullptr;
  if (!o.csv_path.empty()) {
    csv = std::fopen(o.csv_path.c_str(), "w");
    if (csv == nullptr) {
      std::fprintf(stderr, "sgload: --csv: cannot write %s: %s\n", o.csv_path.c_str(),
                   std::strerror(errno));
      return 2;
    }
    writeCsvHeader(csv);
  }
  signal(SIGPIPE, SIG_IGN);
  if (!preflight(o)) {
    if (csv) std::fclose(csv);
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = onSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const RequestSet requests(o);
  IntervalCollector collector(o.threads);
  RunClock clock;
  clock.start_ns = monoNowNs() + 5'000'000;  // time for the threads to start
  clock.record_start_ns = clock.start_ns + o.warmup_ns;
  clock.end_ns = o.duration_ns ? clock.record_start_ns + o.duration_ns : UINT64_MAX;

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; ++t) {
    const int conns = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
    const uint64_t budget =
        o.requests == 0
            ? 0
            : o.requests / static_cast<uint64_t>(o.threads) +
                  (static_cast<uint64_t>(t) < o.requests % static_cast<uint64_t>(o.threads) ? 1
                                                                                            : 0);
    const double share = static_cast<double>(conns) / static_cast<double>(o.connections);
    workers.push_back(
        std::make_unique<Worker>(o, requests, clock, &collector, t, conns, share, budget));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  const double target = targetRate(o);
  uint64_t total = 0;
  auto emit = [&](const IntervalStats& iv, double length_s) {
    if (length_s < 0.01) return;
    total += iv.requests;
    if (!o.quiet) printProgress(iv, length_s, total, target);
    if (csv) writeCsvRow(csv, iv, length_s);
  };
  // A worker still winding down after -d (a slow last response, a loaded machine) closes
  // seconds past the end, empty: they are not part of the run, so neither printed nor in the
  // CSV (and a partial last second counts for its own length).
  const double planned_s =
      o.duration_ns ? static_cast<double>(o.duration_ns) / 1e9 : std::numeric_limits<double>::max();
  IntervalStats iv;
  for (;;) {
    if (collector.take(&iv, 100)) {
      emit(iv, std::min(1.0, planned_s - static_cast<double>(iv.second)));
      continue;
    }
    if (std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->finished(); }))
      break;
  }
  for (auto& th : threads) th.join();

  RunStats stats;
  uint64_t stopped = clock.record_start_ns;
  for (auto& w : workers) {
    stats.add(w->stats());
    stopped = std::max(stopped, w->stoppedNs());
  }
  const double duration_s = static_cast<double>(stopped - clock.record_start_ns) / 1e9;
  while (collector.takeAny(&iv)) {
    emit(iv, std::min(1.0, duration_s - static_cast<double>(iv.second)));
  }
  if (csv) std::fclose(csv);

  if (o.json) {
    printJsonSummary(o, stats, duration_s);
  } else {
    printTextSummary(o, stats, duration_s);
  }
  return 0;
}

}  // namespace
}  // namespace scalegate::bench

int main(int argc, char** argv) { return scalegate::bench::run(argc, argv); }
