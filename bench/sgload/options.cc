#include "bench/sgload/options.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>

#include "common/units.h"

namespace scalegate::bench {
namespace {

struct ArgError {
  std::string message;
};

// "10s", "250ms", "1m30s"; a bare number means seconds (as in wrk).
uint64_t parseDurationArg(const std::string& flag, const std::string& text) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc() && end == text.data() + text.size()) {
    if (seconds < 0 || !std::isfinite(seconds)) throw ArgError{flag + ": negative duration"};
    return static_cast<uint64_t>(seconds * 1e9);
  }
  auto d = parseDuration(text);
  if (!d) throw ArgError{flag + ": " + d.status().message()};
  return static_cast<uint64_t>(d->count());
}

double parseRate(const std::string& flag, std::string_view text) {
  double rate = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rate);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(rate) || rate < 0)
    throw ArgError{flag + ": bad rate \"" + std::string(text) + "\" (requests per second)"};
  return rate;
}

// "30s:200,60s:2000,30s:200"
std::vector<Stage> parseStages(const std::string& text) {
  std::vector<Stage> stages;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos)
      throw ArgError{"--stages: \"" + std::string(item) + "\" is not DURATION:RATE"};
    Stage s;
    s.duration_ns = parseDurationArg("--stages", std::string(item.substr(0, colon)));
    s.rate = parseRate("--stages", item.substr(colon + 1));
    if (s.duration_ns == 0) throw ArgError{"--stages: a stage lasts 0s"};
    stages.push_back(s);
  }
  if (stages.empty()) throw ArgError{"--stages: empty list"};
  return stages;
}

std::string readFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArgError{flag + ": cannot read " + path + ": " + std::strerror(errno)};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void parseUrl(const std::string& url, Options* o) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    o->tls = true;
    rest.remove_prefix(8);
  } else {
    throw ArgError{"URL must start with http:// or https://: " + url};
  }
  const size_t slash = rest.find_first_of("/?");
  std::string_view hostport = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (path[0] == '?') path.insert(0, "/");
  if (hostport.empty()) throw ArgError{"URL has no host: " + url};
  std::string_view host = hostport;
  std::string_view port_text;
  if (hostport.front() == '[') {
    const size_t close = hostport.find(']');
    if (close == std::string_view::npos) throw ArgError{"bad IPv6 host in URL: " + url};
    host = hostport.substr(1, close - 1);
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw ArgError{"bad host:port in URL: " + url};
      port_text = after.substr(1);
    }
  } else if (const size_t colon = hostport.rfind(':'); colon != std::string_view::npos) {
    host = hostport.substr(0, colon);
    port_text = hostport.substr(colon + 1);
  }
  uint16_t port = o->tls ? 443 : 80;
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 ||
        value > 65535)
      throw ArgError{"bad port in URL: " + url};
    port = static_cast<uint16_t>(value);
  }
  if (host.empty()) throw ArgError{"URL has no host: " + url};
  o->host = std::string(host);
  o->port = port;
  o->authority = std::string(hostport);
  o->paths.push_back(path);
}

}  // namespace

std::optional<Options> parseOptions(int argc, char** argv, int* exit_code) {
  Options o;
  CLI::App app{
      "sgload: HTTP/1.1 and HTTP/2 load generator (closed loop, or open loop with "
      "coordinated-omission-corrected latency)",
      "sgload"};
  std::string url, duration, rate, stages, warmup, timeout, body, body_file, paths_file;
  std::vector<std::string> paths;
  int64_t requests = 0;
  app.add_option("URL", url, "http://host:port/path or https://...")->required();
  app.add_option("-c,--connections", o.connections, "connections in total (default 10)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("-t,--threads", o.threads, "threads, each its own event loop (default 1)")
      ->check(CLI::Range(1, 1024));
  app.add_option("-m,--streams", o.streams,
                 "concurrent requests per connection: HTTP/2 streams, HTTP/1.1 pipelining depth")
      ->check(CLI::Range(1, 65536));
  app.add_option("-d,--duration", duration, "run time, e.g. 10s (default 10s unless -n)");
  app.add_option("-n,--requests", requests, "stop after N requests in total")
      ->check(CLI::Range(int64_t{1}, INT64_MAX));
  app.add_option("--rate", rate, "open loop: requests/s in total, constant arrival");
  app.add_option("--stages", stages,
                 "open loop in steps, \"30s:200,60s:2000\" (DURATION:RATE; overrides --rate/-d)");
  app.add_option("--warmup", warmup, "run this long first without recording (default 0)");
  app.add_flag("--h2", o.h2, "HTTP/2 (TLS ALPN for https, h2c prior knowledge for http)");
  app.add_option("-X,--method", o.method, "request method (default GET)");
  app.add_option("-H,--header", o.headers, "\"Name: value\", repeatable");
  auto* body_opt = app.add_option("--body", body, "request body");
  app.add_option("--body-file", body_file, "request body from a file")->excludes(body_opt);
  app.add_option("--path", paths, "repeatable: cycle through these paths");
  app.add_option("--paths-file", paths_file, "one path per line");
  app.add_option("--timeout", timeout, "per request (default 10s)");
  app.add_flag("--insecure", o.insecure, "do not verify TLS certificates");
  std::string source;
  app.add_option("--source", source, "local IP address to connect from (e.g. 127.0.0.2)");
  app.add_flag("--json", o.json, "summary as JSON on stdout");
  app.add_option("--csv", o.csv_path, "per-second time series to FILE");
  app.add_flag("-q,--quiet", o.quiet, "no live progress line");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    *exit_code = app.exit(e);
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    *exit_code = 2;
    return std::nullopt;
  }

  try {
    parseUrl(url, &o);
    if (!duration.empty()) o.duration_ns = parseDurationArg("--duration", duration);
    if (requests > 0) o.requests = static_cast<uint64_t>(requests);
    if (duration.empty() && o.requests == 0) o.duration_ns = 10'000'000'000;
    if (!duration.empty() && o.duration_ns == 0) throw ArgError{"--duration: must be > 0"};
    if (!rate.empty()) {
      o.rate = parseRate("--rate", rate);
      if (*o.rate <= 0) throw ArgError{"--rate: must be > 0"};
    }
    if (!stages.empty()) {
      o.stages = parseStages(stages);
      o.rate.reset();
      o.duration_ns = 0;
      for (const Stage& s : o.stages) o.duration_ns += s.duration_ns;
    } else if (o.rate) {
      o.stages.push_back(Stage{o.duration_ns ? o.duration_ns : UINT64_MAX / 4, *o.rate});
    }
    if (!warmup.empty()) o.warmup_ns = parseDurationArg("--warmup", warmup);
    if (!timeout.empty()) {
      o.timeout_ns = parseDurationArg("--timeout", timeout);
      if (o.timeout_ns == 0) throw ArgError{"--timeout: must be > 0"};
    }
    if (!body_file.empty()) {
      o.body = readFile("--body-file", body_file);
    } else {
      o.body = body;
    }
    if (!paths.empty() || !paths_file.empty()) o.paths.clear();
    for (const std::string& p : paths) o.paths.push_back(p);
    if (!paths_file.empty()) {
      std::istringstream lines(readFile("--paths-file", paths_file));
      for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) o.paths.push_back(line);
      }
      if (o.paths.empty()) throw ArgError{"--paths-file: no paths in " + paths_file};
    }
    for (const std::string& p : o.paths) {
      if (p.empty() || (p[0] != '/' && p != "*"))
        throw ArgError{"path must start with '/': \"" + p + "\""};
      if (p.find_first_of(" \r\n") != std::string::npos)
        throw ArgError{"path contains a space or line break: \"" + p + "\""};
    }
    for (const std::string& h : o.headers) {
      const size_t colon = h.find(':');
      if (colon == 0 || colon == std::string::npos || h.find_first_of("\r\n") != std::string::npos)
        throw ArgError{"-H: expected \"Name: value\", got \"" + h + "\""};
    }
    if (o.method.empty() || o.method.find_first_of(" \r\n") != std::string::npos)
      throw ArgError{"-X: bad method \"" + o.method + "\""};
    if (o.threads > o.connections) o.threads = o.connections;
  } catch (const ArgError& e) {
    std::fprintf(stderr, "sgload: %s\nRun with --help for usage.\n", e.message.c_str());
    *exit_code = 2;
    return std::nullopt;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(o.port);
  const int rc = getaddrinfo(o.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    std::fprintf(stderr, "sgload: cannot resolve %s: %s\n", o.host.c_str(), gai_strerror(rc));
    *exit_code = 1;
    return std::nullopt;
  }
  std::memcpy(&o.addr, res->ai_addr, res->ai_addrlen);
  o.addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  if (!source.empty()) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&o.source);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&o.source);
    if (o.addr.ss_family == AF_INET && inet_pton(AF_INET, source.c_str(), &s4->sin_addr) == 1) {
      s4->sin_family = AF_INET;
      o.source_len = sizeof(sockaddr_in);
    } else if (o.addr.ss_family == AF_INET6 &&
               inet_pton(AF_INET6, source.c_str(), &s6->sin6_addr) == 1) {
      s6->sin6_family = AF_INET6;
      o.source_len = sizeof(sockaddr_in6);
    } else {
      std::fprintf(stderr, "sgload: --source: %s is not an address of the target's family\n",
                   source.c_str());
      *exit_code = 2;
      return std::nullopt;
    }
  }
  return o;
}

}  // namespace scalegate::bench
