#pragma once
// sgload's command line: what to send, where, how fast and for how long. Parsed once on the
// main thread; workers get a const reference.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace scalegate::bench {

// One open-loop stage: `duration_ns` at `rate` requests/s (in total, over all threads).
struct Stage {
  uint64_t duration_ns = 0;
  double rate = 0;
};

struct Options {
  // Target, from the URL.
  bool tls = false;
  std::string host;  // as written in the URL (name or literal; IPv6 without brackets)
  uint16_t port = 0;
  std::string authority;  // Host header / :authority ("host" or "host:port")
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  // --source: the local address every connection binds to before connecting (port 0);
  // source_len 0 = the kernel's choice. Lets one machine stand for several client IPs.
  sockaddr_storage source{};
  socklen_t source_len = 0;

  int connections = 10;
  int threads = 1;
  int streams = 1;
  uint64_t duration_ns = 0;  // 0: until `requests` are done
  uint64_t requests = 0;     // 0: no limit
  std::optional<double> rate;
  std::vector<Stage> stages;  // non-empty: open loop in steps; rate/duration derived
  uint64_t warmup_ns = 0;
  uint64_t timeout_ns = 10'000'000'000;
  bool h2 = false;
  bool insecure = false;
  bool json = false;
  bool quiet = false;
  std::string csv_path;

  std::string method = "GET";
  std::vector<std::string> headers;  // "Name: value", as given
  std::string body;
  std::vector<std::string> paths;  // at least one

  bool openLoop() const { return rate.has_value() || !stages.empty(); }
};

// Parses argv. On --help prints usage and returns exit code 0 in *exit_code; on a bad argument
// prints a clear message on stderr and sets *exit_code to 2; on an unresolvable host, 1.
// Returns nullopt in those cases.
std::optional<Options> parseOptions(int argc, char** argv, int* exit_code);

}  // namespace scalegate::bench
