// sgctl: the admin CLI of scalegate. A thin client of the /v1 admin API (README.md "Admin API"):
// every command is one HTTP request; the answer is printed as a table or, with --json, as the
// JSON the API returned. Exit status: 0 on 2xx, 1 when the API refused (its message is printed),
// 2 on usage errors, 3 when the admin API could not be reached (or its TLS certificate did not
// verify). https:// admin URLs use TLS, verified against --cacert (else the system CAs).

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "common/openssl_error.h"

namespace {

using Json = nlohmann::json;
using scalegate::takeOpensslErrors;

struct Endpoint {
  std::string host = "127.0.0.1";
  std::string port = "9900";
  bool tls = false;
};

// TLS settings for an https:// admin URL.
struct TlsOptions {
  std::string ca_file;    // "" = the system's default CA paths
  std::string cert_file;  // client certificate (admin.tls.client_ca_file on the server)
  std::string key_file;
};

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// "http://host:port", "https://host:port", "host:port" or ":port".
bool parseAdminUrl(std::string url, Endpoint* out, std::string* error) {
  if (url.rfind("http://", 0) == 0) {
    url = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    url = url.substr(8);
    out->tls = true;
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  size_t colon = url.rfind(':');
  if (colon == std::string::npos || colon + 1 == url.size()) {
    *error = "admin address must look like http://127.0.0.1:9900 or https://host:9900";
    return false;
  }
  std::string host = url.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  out->host = host.empty() ? "127.0.0.1" : host;
  out->port = url.substr(colon + 1);
  return true;
}

// One connection to the admin API, plain or TLS; blocking I/O bounded by socket timeouts.
class Connection {
 public:
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool open(const Endpoint& ep, const TlsOptions& tls, int timeout_ms, std::string* error) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(ep.host.c_str(), ep.port.c_str(), &hints, &res);
    if (rc != 0) {
      *error = "cannot resolve " + ep.host + ": " + gai_strerror(rc);
      return false;
    }
    std::string last = "no address";
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      fd_ = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd_ < 0) continue;
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      if (::connect(fd_, ai->ai_addr, ai->ai_addrlen) == 0) break;
      last = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
    freeaddrinfo(res);
    if (fd_ < 0) {
      *error = "cannot connect to the admin API at " + ep.host + ":" + ep.port + ": " + last;
      return false;
    }
    if (!ep.tls) return true;
    ERR_clear_error();
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (ctx_ == nullptr) {
      *error = "TLS: " + takeOpensslErrors("connection closed during the handshake");
      return false;
    }
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // The admin server may close without close_notify after a Connection: close answer; a
    // truncated answer is caught by its Content-Length instead.
    SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    int ok = tls.ca_file.empty()
                 ? SSL_CTX_set_default_verify_paths(ctx_)
                 : SSL_CTX_load_verify_locations(ctx_, tls.ca_file.c_str(), nullptr);
    if (ok != 1) {
      *error = "cannot load the CA file " + tls.ca_file + ": " + takeOpensslErrors();
      return false;
    }
    if (!tls.cert_file.empty()) {
      const std::string& key = tls.key_file.empty() ? tls.cert_file : tls.key_file;
      if (SSL_CTX_use_certificate_chain_file(ctx_, tls.cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        *error = "cannot load the client certificate " + tls.cert_file + ": " + takeOpensslErrors();
        return false;
      }
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    // The certificate must name what the URL names: an IP address (SAN IP) or a host name
    // (SAN DNS, also sent as SNI).
    in6_addr ip{};
    const bool is_ip = inet_pton(AF_INET, ep.host.c_str(), &ip) == 1 ||
                       inet_pton(AF_INET6, ep.host.c_str(), &ip) == 1;
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, ep.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_, ep.host.c_str());
      SSL_set1_host(ssl_, ep.host.c_str());
    }
    if (SSL_connect(ssl_) != 1) {
      long verify = SSL_get_verify_result(ssl_);
      *error = "TLS handshake with " + ep.host + ":" + ep.port + " failed: " +
               (verify != X509_V_OK ? std::string(X509_verify_cert_error_string(verify))
                                    : takeOpensslErrors("connection closed during the handshake"));
      return false;
    }
    return true;
  }
  bool sendAll(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n;
      if (ssl_ != nullptr) {
        n = SSL_write(ssl_, data.data() + off, static_cast<int>(data.size() - off));
      } else {
        n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
      }
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // > 0 bytes, 0 at the end of the answer, < 0 on an error or timeout.
  ssize_t read(char* buf, size_t len) {
    if (ssl_ != nullptr) {
      int n = SSL_read(ssl_, buf, static_cast<int>(len));
      if (n > 0) return n;
      int err = SSL_get_error(ssl_, n);
      // The peer closing (with or without close_notify) ends an HTTP/1.1 Connection: close
      // answer.
      if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0)) return 0;
      if (errno == 0) errno = EPROTO;
      return -1;
    }
    for (;;) {
      ssize_t n = ::recv(fd_, buf, len, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

// One request with Connection: close; the whole answer is read until EOF (bounded by a deadline).
bool request(const Endpoint& ep, const TlsOptions& tls, const std::string& token,
             const std::string& method, const std::string& path, const std::string& body,
             int timeout_ms, HttpAnswer* out, std::string* error) {
  Connection conn;
  if (!conn.open(ep, tls, timeout_ms, error)) return false;
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + ep.host + ":" + ep.port +
                    "\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: sgctl\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  if (!conn.sendAll(req)) {
    *error = std::string("cannot send the request: ") + std::strerror(errno);
    return false;
  }
  std::string raw;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[16384];
  for (;;) {
    if (std::chrono::steady_clock::now() >= deadline) {
      *error = "timed out waiting for the admin API";
      return false;
    }
    ssize_t n = conn.read(buf, sizeof(buf));
    if (n < 0) {
      *error = errno == EAGAIN || errno == EWOULDBLOCK
                   ? std::string("timed out waiting for the admin API")
                   : std::string("read failed: ") + std::strerror(errno);
      return false;
    }
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
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
  if (size_t cl = lower.find("\r\ncontent-length:"); cl != std::string::npos) {
    const size_t want = std::strtoul(lower.c_str() + cl + 17, nullptr, 10);
    if (out->body.size() < want) {
      *error = "the admin API's answer was cut short (" + std::to_string(out->body.size()) +
               " of " + std::to_string(want) + " bytes)";
      return false;
    }
  }
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
  cli.add_option("-a,--admin", admin,
                 "admin API address: http://host:port or https://host:port (default "
                 "http://127.0.0.1:9900)")
      ->envname("SCALEGATE_ADMIN");
  cli.add_option("-t,--token-file", token_file, "file holding the admin bearer token");
  TlsOptions tls;
  cli.add_option("--cacert", tls.ca_file,
                 "PEM CA file to verify an https:// admin API's certificate (default: the "
                 "system's CAs)")
      ->envname("SCALEGATE_ADMIN_CACERT");
  cli.add_option("--cert", tls.cert_file, "PEM client certificate (admin.tls.client_ca_file)");
  cli.add_option("--key", tls.key_file, "PEM key of --cert (default: in the --cert file)");
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

  std::signal(SIGPIPE, SIG_IGN);  // a peer that closes early is an error to report, not a kill
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
    if (!request(ep, tls, token, method, path, body, timeout_ms, &a, &error)) {
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
