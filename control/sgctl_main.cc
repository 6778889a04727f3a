// sgctl: the admin CLI of scalegate. A thin client of the /v1 admin API (README.md "Admin API"):
// every command is one HTTP request; the answer is printed as a table or, with --json, as the
// JSON the API returned. Exit status: 0 on 2xx, 1 when the API refused (its message is printed),
// 2 on usage errors, 3 when the admin API could not be reached.

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

namespace {

using Json = nlohmann::json;

struct Endpoint {
  std::string host = "127.0.0.1";
  std::string port = "9900";
};

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// "http://host:port" (the only scheme the admin API serves today), "host:port" or ":port".
bool parseAdminUrl(std::string url, Endpoint* out, std::string* error) {
  if (url.rfind("http://", 0) == 0) url = url.substr(7);
  if (url.rfind("https://", 0) == 0) {
    *error = "https admin URLs are not supported by this sgctl";
    return false;
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  size_t colon = url.rfind(':');
  if (colon == std::string::npos || colon + 1 == url.size()) {
    *error = "admin address must look like http://127.0.0.1:9900";
    return false;
  }
  std::string host = url.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out->host = host.empty() ? "127.0.0.1" : host;
  out->port = url.substr(colon + 1);
  return true;
}

bool sendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// One request with Connection: close; the whole answer is read until EOF (bounded by a deadline).
bool request(const Endpoint& ep, const std::string& token, const std::string& method,
             const std::string& path, const std::string& body, int timeout_ms, HttpAnswer* out,
             std::string* error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &res);
  if (rc != 0) {
    *error = "cannot resolve " + ep.host + ": " + gai_strerror(rc);
    return false;
  }
  int fd = -1;
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    last = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    *error = "cannot connect to the admin API at " + ep.host + ":" + ep.port + ": " + last;
    return false;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + ep.host + ":" + ep.port +
                    "\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: sgctl\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  if (!sendAll(fd, req)) {
    *error = std::string("cannot send the request: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  std::string raw;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[16384];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) {
      *error = "timed out waiting for the admin API";
      ::close(fd);
      return false;
    }
    pollfd p{fd, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::string("read failed: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || raw.size() < 12) {
    *error = "the admin API sent a malformed answer";
    return false;
  }
  out->status = std::atoi(raw.c_str() + 9);
  std::string head = raw.substr(0, head_end);
  out->body = raw.substr(head_end + 4);
  // The admin API answers with Content-Length; a chunked body is decoded for robustness.
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) {
    std::string decoded;
    size_t pos = 0;
    while (pos < out->body.size()) {
      size_t eol = out->body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(out->body.c_str() + pos, nullptr, 16);
      if (len == 0) break;
      decoded.append(out->body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    out->body = decoded;
  }
  return true;
}

std::string readToken(const std::string& file) {
  std::string token;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) {
      std::fprintf(stderr, "sgctl: cannot read token file %s\n", file.c_str());
      std::exit(2);
    }
    std::stringstream ss;
    ss << in.rdbuf();
    token = ss.str();
  } else if (const char* env = std::getenv("SCALEGATE_ADMIN_TOKEN"); env != nullptr) {
    token = env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

void printMembers(const Json& members) {
  std::printf("%-16s %-22s %-5s %-3s %-6s %-10s %-9s %-8s %-9s %s\n", "ID", "ADDRESS", "ZONE", "FD",
              "WEIGHT", "VERSION", "HEALTH", "DRAIN", "INFLIGHT", "REQUESTS");
  for (const Json& m : members) {
    std::string health = str(m, "health");
    if (m.value("ejected", false)) health += "(ejected)";
    std::string version = str(m, "version");
    if (version.empty()) version = "-";
    if (m.value("protected", false)) version += "*";
    std::printf("%-16s %-22s %-5s %-3s %-6s %-10s %-9s %-8s %-9s %s\n", str(m, "id").c_str(),
                str(m, "address").c_str(), str(m, "zone").empty() ? "-" : str(m, "zone").c_str(),
                str(m, "fault_domain").c_str(), str(m, "weight").c_str(), version.c_str(),
                health.c_str(), str(m, "drain").c_str(), str(m, "in_flight").c_str(),
                str(m, "requests_total").c_str());
  }
}

void printPools(const Json& pools) {
  std::printf("%-16s %-9s %-14s %-8s %-8s %-9s %-8s %s\n", "POOL", "MODE", "BALANCE", "MEMBERS",
              "HEALTHY", "DRAINING", "EJECTED", "CAPACITY");
  for (const Json& p : pools) {
    std::string cap = "-";
    if (p.contains("capacity") && p["capacity"].is_object()) {
      const Json& c = p["capacity"];
      cap = str(c, "desired") + " (" + str(c, "min") + ".." + str(c, "max") + ")";
    }
    std::printf("%-16s %-9s %-14s %-8s %-8s %-9s %-8s %s\n", str(p, "name").c_str(),
                str(p, "mode").c_str(), str(p, "balance").c_str(), str(p, "member_count").c_str(),
                str(p, "healthy_count").c_str(), str(p, "draining_count").c_str(),
                str(p, "ejected_count").c_str(), cap.c_str());
  }
}

void printEvents(const Json& events) {
  for (const Json& e : events) {
    std::string who = str(e, "pool");
    if (!str(e, "member").empty() && str(e, "member") != "-") who += "/" + str(e, "member");
    std::printf("%6s %s %-18s %-20s %s\n", str(e, "seq").c_str(), str(e, "at").c_str(),
                str(e, "type").c_str(), who.c_str(), str(e, "detail").c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "sgctl: command-line client of scalegate's admin API (/v1).\n\n"
      "The token comes from --token-file, else the SCALEGATE_ADMIN_TOKEN environment variable.\n"
      "Exit status: 0 ok, 1 the API refused (its message is printed), 2 usage, 3 unreachable.",
      "sgctl"};
  cli.require_subcommand(1);
  std::string admin = "http://127.0.0.1:9900";
  std::string token_file;
  bool json_out = false;
  int timeout_ms = 10000;
  cli.add_option("-a,--admin", admin, "admin API address (default http://127.0.0.1:9900)")
      ->envname("SCALEGATE_ADMIN");
  cli.add_option("-t,--token-file", token_file, "file holding the admin bearer token");
  cli.add_flag("--json", json_out, "print the API's JSON answer instead of a table");
  cli.add_option("--timeout-ms", timeout_ms, "how long to wait for an answer (default 10000)")
      ->check(CLI::Range(100, 600000));

  std::string pool, member, address, zone, version, timeout, value_text;
  uint32_t weight = 1, fault_domain = 0, count = 0;
  uint64_t since = 0;
  bool follow = false, off = false, status_only = false, abort_upgrade = false;
  std::string batch = "20%", max_unhealthy, max_unhealthy_upgraded, pause;

  auto* c_pools = cli.add_subcommand("pools", "list pools with member counts and capacity");
  auto* c_pool = cli.add_subcommand("pool", "show one pool and its members");
  c_pool->add_option("pool", pool, "pool name")->required();
  auto* c_members = cli.add_subcommand("members", "list a pool's members");
  c_members->add_option("pool", pool, "pool name")->required();

  auto* c_add = cli.add_subcommand("add", "register (or update) a member");
  c_add->add_option("pool", pool, "pool name")->required();
  c_add->add_option("id", member, "member id")->required();
  c_add->add_option("address", address, "ip:port")->required();
  auto* o_zone = c_add->add_option("--zone", zone, "availability zone");
  auto* o_fd = c_add->add_option("--fault-domain", fault_domain, "fault domain (0..255)");
  auto* o_weight = c_add->add_option("--weight", weight, "weight (0..1000000)");
  auto* o_version = c_add->add_option("--version", version, "version label of the instance");

  auto* c_remove = cli.add_subcommand("remove", "deregister a member");
  c_remove->add_option("pool", pool, "pool name")->required();
  c_remove->add_option("id", member, "member id")->required();

  auto* c_drain = cli.add_subcommand("drain", "stop new requests to a member; in-flight finish");
  c_drain->add_option("pool", pool, "pool name")->required();
  c_drain->add_option("id", member, "member id")->required();
  c_drain->add_option("--timeout", timeout, "deadline for in-flight requests, e.g. 30s");

  auto* c_protect = cli.add_subcommand("protect", "protect a member from scale-in (--off clears)");
  c_protect->add_option("pool", pool, "pool name")->required();
  c_protect->add_option("id", member, "member id")->required();
  c_protect->add_flag("--off", off, "remove the protection");

  auto* c_scale = cli.add_subcommand("scale", "manual scaling: set the pool's capacity");
  c_scale->add_option("pool", pool, "pool name")->required();
  c_scale->add_option("capacity", count, "instance count (bounded by min and max)")->required();

  auto* c_autoscale = cli.add_subcommand("autoscale", "show a pool's autoscale state");
  c_autoscale->add_option("pool", pool, "pool name")->required();

  auto* c_upgrade = cli.add_subcommand(
      "upgrade", "rolling upgrade: drain a batch, ask the scaler to upgrade it, wait, repeat");
  c_upgrade->add_option("pool", pool, "pool name")->required();
  c_upgrade->add_option("--version", version, "version to roll out");
  c_upgrade->add_option("--batch", batch, "instances per batch: N or N% (default 20%)");
  c_upgrade->add_option("--max-unhealthy", max_unhealthy,
                        "abort when more of the pool is unhealthy: N or N%");
  c_upgrade->add_option("--max-unhealthy-upgraded", max_unhealthy_upgraded,
                        "abort when more upgraded instances are unhealthy: N or N%");
  c_upgrade->add_option("--pause", pause, "pause between batches, e.g. 10s");
  c_upgrade->add_flag("--status", status_only, "show the running or last upgrade");
  c_upgrade->add_flag("--abort", abort_upgrade, "abort the running upgrade");

  auto* c_metric = cli.add_subcommand("metric", "push a custom metric value for autoscale rules");
  c_metric->add_option("pool", pool, "pool name")->required();
  c_metric->add_option("name", member, "metric name ([a-z0-9_]{1,32})")->required();
  c_metric->add_option("value", value_text, "number")->required();

  auto* c_events = cli.add_subcommand("events", "recent events (membership, health, autoscale)");
  c_events->add_option("--since", since, "only events after this seq");
  c_events->add_flag("-f,--follow", follow, "keep printing new events (Ctrl-C stops)");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }

  Endpoint ep;
  std::string error;
  if (!parseAdminUrl(admin, &ep, &error)) {
    std::fprintf(stderr, "sgctl: %s\n", error.c_str());
    return 2;
  }
  const std::string token = readToken(token_file);
  const std::string base = "/v1/pools/" + pool;

  auto call = [&](const std::string& method, const std::string& path, const std::string& body,
                  Json* out) -> int {
    HttpAnswer a;
    if (!request(ep, token, method, path, body, timeout_ms, &a, &error)) {
      std::fprintf(stderr, "sgctl: %s\n", error.c_str());
      return 3;
    }
    Json j = Json::parse(a.body, nullptr, false);
    if (a.status < 200 || a.status >= 300) {
      std::string msg = a.body;
      if (j.is_object() && j.contains("error")) {
        const Json& e = j["error"];
        msg = e.is_object() ? str(e, "message") : str(j, "error");
      }
      std::fprintf(stderr, "sgctl: %s %s: HTTP %d: %s\n", method.c_str(), path.c_str(), a.status,
                   msg.c_str());
      return 1;
    }
    *out = j.is_discarded() ? Json(a.body) : j;
    return 0;
  };
  auto show = [&](const Json& j) { std::printf("%s\n", j.dump(2).c_str()); };

  Json j;
  int rc = 0;
  if (c_pools->parsed()) {
    if ((rc = call("GET", "/v1/pools", "", &j)) != 0) return rc;
    json_out ? show(j) : printPools(j["pools"]);
  } else if (c_pool->parsed() || c_members->parsed()) {
    if ((rc = call("GET", base, "", &j)) != 0) return rc;
    if (json_out) {
      show(j);
    } else {
      if (c_pool->parsed()) printPools(Json::array({j}));
      printMembers(j["members"]);
    }
  } else if (c_add->parsed()) {
    Json body{{"address", address}};
    if (o_zone->count() > 0) body["zone"] = zone;
    if (o_fd->count() > 0) body["fault_domain"] = fault_domain;
    if (o_weight->count() > 0) body["weight"] = weight;
    if (o_version->count() > 0) body["version"] = version;
    if ((rc = call("PUT", base + "/members/" + member, body.dump(), &j)) != 0) return rc;
    json_out ? show(j) : printMembers(Json::array({j}));
  } else if (c_remove->parsed()) {
    if ((rc = call("DELETE", base + "/members/" + member, "", &j)) != 0) return rc;
    json_out ? show(j) : (void)std::printf("removed %s from %s\n", member.c_str(), pool.c_str());
  } else if (c_drain->parsed()) {
    Json body = Json::object();
    if (!timeout.empty()) body["timeout"] = timeout;
    if ((rc = call("POST", base + "/members/" + member + "/drain", body.dump(), &j)) != 0)
      return rc;
    json_out ? show(j) : printMembers(Json::array({j}));
  } else if (c_protect->parsed()) {
    Json body{{"protected", !off}};
    if ((rc = call("PUT", base + "/members/" + member, body.dump(), &j)) != 0) return rc;
    json_out ? show(j) : printMembers(Json::array({j}));
  } else if (c_scale->parsed()) {
    if ((rc = call("POST", base + "/scale", Json{{"capacity", count}}.dump(), &j)) != 0) return rc;
    show(j);
  } else if (c_autoscale->parsed()) {
    if ((rc = call("GET", base + "/autoscale", "", &j)) != 0) return rc;
    show(j);
  } else if (c_upgrade->parsed()) {
    if (abort_upgrade) {
      rc = call("DELETE", base + "/upgrade", "", &j);
    } else if (status_only) {
      rc = call("GET", base + "/upgrade", "", &j);
    } else {
      if (version.empty()) {
        std::fprintf(stderr, "sgctl: upgrade needs --version (or --status / --abort)\n");
        return 2;
      }
      Json body{{"version", version}, {"batch", batch}};
      if (!max_unhealthy.empty()) body["max_unhealthy"] = max_unhealthy;
      if (!max_unhealthy_upgraded.empty()) body["max_unhealthy_upgraded"] = max_unhealthy_upgraded;
      if (!pause.empty()) body["pause"] = pause;
      rc = call("POST", base + "/upgrade", body.dump(), &j);
    }
    if (rc != 0) return rc;
    show(j);
  } else if (c_metric->parsed()) {
    char* end = nullptr;
    double v = std::strtod(value_text.c_str(), &end);
    if (end == value_text.c_str() || *end != '\0') {
      std::fprintf(stderr, "sgctl: metric value must be a number, not \"%s\"\n",
                   value_text.c_str());
      return 2;
    }
    if ((rc = call("POST", base + "/metrics", Json{{"metrics", {{member, v}}}}.dump(), &j)) != 0)
      return rc;
    show(j);
  } else if (c_events->parsed()) {
    for (;;) {
      std::string path = "/v1/events";
      if (since > 0) path += "?since=" + std::to_string(since);
      if ((rc = call("GET", path, "", &j)) != 0) return rc;
      json_out ? show(j) : printEvents(j["events"]);
      std::fflush(stdout);
      if (!follow) break;
      since = j.value("next_since", since);
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  return 0;
}
