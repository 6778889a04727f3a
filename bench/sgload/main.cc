// sgload: scalegate's HTTP load generator. Closed loop (like wrk, h2load) or open loop at a
// constant or staged rate with latency measured from the intended send time (like wrk2);
// HTTP/1.1 with pipelining or HTTP/2 with streams, over TCP or TLS; full percentiles from a
// log-linear histogram; text, JSON and per-second CSV output. See bench/sgload/README.md.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
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

// One blocking connect before the run: if the target cannot be reached at all, say so and
// exit 1 instead of reporting a run made only of connect errors.
bool preflight(const Options& o) {
  const int fd = socket(o.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::fprintf(stderr, "sgload: socket: %s\n", std::strerror(errno));
    return false;
  }
  int err = 0;
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
  close(fd);
  if (err != 0) {
    std::fprintf(stderr, "sgload: cannot connect to %s port %u: %s\n", o.host.c_str(), o.port,
                 std::strerror(err));
    return false;
  }
  return true;
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
        o.requests == 0 ? 0
                        : o.requests / static_cast<uint64_t>(o.threads) +
                              (static_cast<uint64_t>(t) < o.requests % static_cast<uint64_t>(o.threads) ? 1 : 0);
    const double share = static_cast<double>(conns) / static_cast<double>(o.connections);
    workers.push_back(std::make_unique<Worker>(o, requests, clock, &collector, t, conns, share,
                                               budget));
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
  IntervalStats iv;
  for (;;) {
    if (collector.take(&iv, 100)) {
      emit(iv, 1.0);
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
