#include "control/admin_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/openssl_error.h"
#include "common/units.h"

namespace scalegate::control {
namespace {

using Json = nlohmann::json;

constexpr uint32_t kMaxWeight = 1000000;
constexpr uint32_t kMaxFaultDomain = 255;
constexpr uint64_t kDefaultEventLimit = 100;
constexpr Duration kMaxDrainTimeout = std::chrono::hours(24);
constexpr int kIdleTimeoutSeconds = 30;
constexpr ev_ssize_t kMaxHeaderBytes = 16 * 1024;
constexpr char kJson[] = "application/json";
constexpr char kPrometheusText[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kGet[] = "GET, HEAD";
constexpr char kMemberMethods[] = "GET, HEAD, PUT, DELETE";

// For messages: names come from URLs, so they are quoted, cut short and kept printable.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s.substr(0, 80)) {
    auto c = static_cast<unsigned char>(ch);
    out += (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') ? '?' : ch;
  }
  if (s.size() > 80) out += "...";
  out += '"';
  return out;
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// "2023-11-14T22:13:20.000Z"; "" for the zero time (never happened).
std::string isoTime(WallTime t) {
  if (t == WallTime{}) return "";
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  tm parts{};
  gmtime_r(&secs, &parts);
  char buf[40];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &parts);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

Json timeOrNull(WallTime t) {
  std::string s = isoTime(t);
  return s.empty() ? Json(nullptr) : Json(s);
}

double millis(Duration d) { return static_cast<double>(d.count()) / 1e6; }

uint64_t sumActive(const MemberRecord& m) {
  if (!m.stats) return 0;
  return m.stats->sum(
      [](const l7proxy::MemberWorkerStats& s) -> const l7proxy::Counter& { return s.rq_active; });
}

uint64_t sumTotal(const MemberRecord& m) {
  if (!m.stats) return 0;
  return m.stats->sum(
      [](const l7proxy::MemberWorkerStats& s) -> const l7proxy::Counter& { return s.rq_total; });
}

Json memberJson(const PoolRecord& pool, const MemberRecord& m, MonoTime now) {
  const config::HealthCheck& hc = pool.cfg->health;
  Json j{{"id", m.spec.id},
         {"address", m.spec.address.toString()},
         {"zone", m.spec.zone},
         {"fault_domain", m.spec.fault_domain},
         {"weight", m.spec.weight},
         {"version", m.spec.version},
         {"protected", m.spec.scale_in_protected},
         {"origin", m.origin == MemberOrigin::kApi ? "api" : "config"},
         {"added_at", timeOrNull(m.added_at)},
         {"health", healthStateName(m.health)},
         {"probe_healthy", m.probeHealthy(hc)},
         {"drain", drainStateName(m.drain)},
         {"ejected", m.ejected},
         {"ejections", m.ejections},
         {"load", Json::object()},
         {"probes_ok", m.probes_ok},
         {"probes_failed", m.probes_failed},
         {"in_flight", sumActive(m)},
         {"requests_total", sumTotal(m)}};
  for (const auto& [name, value] : m.load) j["load"][name] = value;
  if (!m.app_health.empty()) j["app_health"] = m.app_health;
  if (m.ejected) j["ejected_for_ms"] = std::max<int64_t>(0, toMillis(m.ejected_until - now));
  if (m.drain == DrainState::kDraining) {
    j["drain_deadline_in_ms"] = std::max<int64_t>(0, toMillis(m.drain_deadline - now));
  }
  if (m.last_probe.has_value()) {
    const ProbeOutcome& p = *m.last_probe;
    j["last_probe"] = Json{{"ok", p.ok},
                           {"status", p.http_status},
                           {"error", p.error},
                           {"duration_ms", millis(p.duration)},
                           {"at", timeOrNull(m.last_probe_at)}};
  } else {
    j["last_probe"] = nullptr;
  }
  return j;
}

Json poolSummary(const PoolRecord& p) {
  size_t healthy = 0, draining = 0, drained = 0, ejected = 0;
  for (const MemberRecord& m : p.members) {
    if (m.probeHealthy(p.cfg->health) && !m.ejected) ++healthy;
    if (m.drain == DrainState::kDraining) ++draining;
    if (m.drain == DrainState::kDrained) ++drained;
    if (m.ejected) ++ejected;
  }
  return Json{{"name", p.name},
              {"balance", config::balanceName(p.cfg->balance)},
              {"mode", p.cfg->mode == config::PoolMode::kFlexible ? "flexible" : "uniform"},
              {"member_count", p.members.size()},
              {"healthy_count", healthy},
              {"draining_count", draining},
              {"drained_count", drained},
              {"ejected_count", ejected}};
}

Json eventJson(const Event& e) {
  return Json{{"seq", e.seq},   {"at", timeOrNull(e.at)}, {"type", e.type},
              {"pool", e.pool}, {"member", e.member},     {"detail", e.detail}};
}

const char* reasonPhrase(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 413:
      return "Content Too Large";
    case 503:
      return "Service Unavailable";
    default:
      break;
  }
  return code >= 500 ? "Internal Server Error" : "Error";
}

int httpCodeOf(StatusCode c) {
  switch (c) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kUnavailable:
      return 503;
    default:
      break;
  }
  return 500;
}

bool parseUint(std::string_view s, uint64_t* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return !s.empty() && ec == std::errc() && ptr == s.data() + s.size();
}

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
    if (path.empty()) out.emplace_back();  // trailing slash: an empty segment
  }
  return out;
}

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view s) {
  Digest d{};
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), d.data(), &len, EVP_sha256(), nullptr) != 1) {
    d.fill(0xFF);  // never equal to a real token's digest... unless that also failed
  }
  return d;
}

bool isGet(evhttp_cmd_type m) { return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD; }

const char* methodName(evhttp_cmd_type m) {
  switch (m) {
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
    default:
      break;
  }
  return "GET";
}

bool isMutating(evhttp_cmd_type m) {
  return m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_DELETE ||
         m == EVHTTP_REQ_PATCH;
}

// The token part of "Bearer <token>" (trimmed); empty when the header is absent or another
// scheme.
std::string_view bearerOf(const char* header) {
  if (header == nullptr) return {};
  std::string_view h(header);
  constexpr std::string_view kScheme = "bearer";
  if (h.size() <= kScheme.size() || strncasecmp(h.data(), kScheme.data(), kScheme.size()) != 0 ||
      (h[kScheme.size()] != ' ' && h[kScheme.size()] != '\t')) {
    return {};
  }
  h.remove_prefix(kScheme.size());
  while (!h.empty() && (h.front() == ' ' || h.front() == '\t')) h.remove_prefix(1);
  while (!h.empty() && (h.back() == ' ' || h.back() == '\t')) h.remove_suffix(1);
  return h;
}

// The admin listener's server context. Caller owns the result.
Result<SSL_CTX*> newAdminContext(const config::AdminTls& cfg) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return internalError("admin.tls: SSL_CTX_new: " + takeOpensslErrors());
  auto fail = [&](const std::string& what) -> Result<SSL_CTX*> {
    std::string msg = "admin.tls: " + what + ": " + takeOpensslErrors();
    SSL_CTX_free(ctx);
    return invalidArgument(msg);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cfg.cert_file.c_str()) != 1) {
    return fail("cert_file " + cfg.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("key_file " + cfg.key_file);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return fail("key_file " + cfg.key_file + " does not match cert_file " + cfg.cert_file);
  }
  if (!cfg.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, cfg.client_ca_file.c_str(), nullptr) != 1) {
      return fail("client_ca_file " + cfg.client_ca_file);
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.client_ca_file.c_str());
    if (names == nullptr) return fail("client_ca_file " + cfg.client_ca_file);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return ctx;
}

}  // namespace

struct AdminServer::Reply {
  int code = 200;
  std::string body;
  std::string content_type = kJson;
  std::vector<std::pair<std::string, std::string>> headers;

  static Reply json(int code, const Json& j) {
    Reply r;
    r.code = code;
    r.body = dump(j);
    r.body += '\n';
    return r;
  }
  static Reply error(int code, const std::string& message) {
    return json(code, Json{{"error", Json{{"code", code}, {"message", message}}}});
  }
  static Reply methodNotAllowed(const char* allow) {
    Reply r = error(405, std::string("method not allowed here; allowed: ") + allow);
    r.headers.emplace_back("Allow", allow);
    return r;
  }
};

Status parseMemberBody(std::string_view body, MemberSpec* spec, bool* address_seen) {
  *address_seen = false;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return invalidArgument(
        "a JSON object body is required, such as {\"address\":\"10.0.0.5:8080\",\"weight\":1}");
  }
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalidArgument("the body is not valid JSON");
  if (!j.is_object()) return invalidArgument("the body must be a JSON object");
  MemberSpec next = *spec;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (key == "address") {
      if (!v.is_string()) {
        return invalidArgument("address must be a string such as \"10.0.0.5:8080\"");
      }
      const std::string& text = v.get_ref<const std::string&>();
      auto a = SocketAddress::parse(text);
      if (!a.isOk())
        return invalidArgument("bad address " + quote(text) + ": " + a.status().message());
      next.address = *a;
      *address_seen = true;
    } else if (key == "zone") {
      if (!v.is_string()) return invalidArgument("zone must be a string");
      next.zone = v.get_ref<const std::string&>();
    } else if (key == "version") {
      if (!v.is_string()) return invalidArgument("version must be a string");
      next.version = v.get_ref<const std::string&>();
    } else if (key == "protected") {
      if (!v.is_boolean()) return invalidArgument("protected must be true or false");
      next.scale_in_protected = v.get<bool>();
    } else if (key == "fault_domain" || key == "weight") {
      const uint64_t hi = key == "weight" ? kMaxWeight : kMaxFaultDomain;
      if (!v.is_number_unsigned() || v.get<uint64_t>() > hi) {
        return invalidArgument(key + " must be a whole number in 0.." + std::to_string(hi));
      }
      (key == "weight" ? next.weight : next.fault_domain) =
          static_cast<uint32_t>(v.get<uint64_t>());
    } else {
      return invalidArgument("unknown field " + quote(key) +
                             " (allowed: address, zone, fault_domain, weight, version, "
                             "protected)");
    }
  }
  *spec = next;
  return Status::ok();
}

Status parseDrainBody(std::string_view body, std::optional<Duration>* timeout) {
  timeout->reset();
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return Status::ok();
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalidArgument("the body is not valid JSON");
  if (!j.is_object()) return invalidArgument("the body must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "timeout") {
      return invalidArgument("unknown field " + quote(it.key()) + " (allowed: timeout)");
    }
    if (!it->is_string())
      return invalidArgument("timeout must be a duration string such as \"30s\"");
    auto d = parseDuration(it->get_ref<const std::string&>());
    if (!d.isOk()) return invalidArgument("timeout: " + d.status().message());
    if (*d > kMaxDrainTimeout) return invalidArgument("timeout must be at most 24h");
    *timeout = *d;
  }
  return Status::ok();
}

AdminServer::AdminServer(event_base* base, PoolRegistry& registry, Hooks hooks)
    : base_(base), registry_(registry), hooks_(std::move(hooks)) {
  http_ = evhttp_new(base_);
  if (http_ == nullptr) return;
  // Every method reaches the handler, so a wrong one gets a JSON 405 with Allow.
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                        EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_max_headers_size(http_, kMaxHeaderBytes);
  evhttp_set_max_body_size(http_, static_cast<ev_ssize_t>(max_body_bytes_));
  evhttp_set_timeout(http_, kIdleTimeoutSeconds);
  // An oversized body is read and discarded before the 413, so the client sees the answer
  // instead of a reset.
  evhttp_set_flags(http_, EVHTTP_SERVER_LINGERING_CLOSE);
  evhttp_set_gencb(http_, &AdminServer::onRequest, this);
  evhttp_set_bevcb(http_, &AdminServer::onNewConnection, this);
}

AdminServer::~AdminServer() {
  if (http_ != nullptr) evhttp_free(http_);
  if (tls_ctx_ != nullptr) SSL_CTX_free(tls_ctx_);
}

Status AdminServer::setTls(const config::AdminTls& cfg) {
  if (!cfg.enabled) {
    if (tls_ctx_ != nullptr) {
      return Status(StatusCode::kFailedPrecondition,
                    "admin.tls was removed; the admin listener stays TLS until a restart");
    }
    return Status::ok();
  }
  Result<SSL_CTX*> ctx = newAdminContext(cfg);
  if (!ctx.isOk()) return ctx.status();
  if (tls_ctx_ != nullptr) SSL_CTX_free(tls_ctx_);
  tls_ctx_ = *ctx;
  return Status::ok();
}

bufferevent* AdminServer::onNewConnection(event_base* base, void* arg) {
  auto* self = static_cast<AdminServer*>(arg);
  if (self->tls_ctx_ == nullptr) return nullptr;
  SSL* ssl = SSL_new(self->tls_ctx_);
  if (ssl == nullptr) return nullptr;
  // fd -1: evhttp sets the accepted socket on it; the handshake starts then.
  bufferevent* bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  // A client that closes without close_notify (curl, many HTTP/1.1 clients) is not an error.
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

void AdminServer::setMaxBodyBytes(uint64_t bytes) {
  max_body_bytes_ = bytes;
  if (http_ != nullptr) {
    evhttp_set_max_body_size(http_, static_cast<ev_ssize_t>(std::min<uint64_t>(bytes, INT64_MAX)));
  }
}

void AdminServer::setToken(std::string token) {
  token_ = std::move(token);
  token_digest_ = sha256(token_);
}

Status AdminServer::listen(const SocketAddress& addr) {
  const std::string what = "admin listener " + addr.toString();
  if (http_ == nullptr) return internalError(what + ": evhttp_new failed");
  if (socket_ != nullptr)
    return Status(StatusCode::kFailedPrecondition, what + ": already listening");
  if (!addr.valid()) return invalidArgument(what + ": not an IP address and port");
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errnoStatus(what + ": socket", errno);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, addr.sockaddrPtr(), addr.sockaddrLen()) != 0) {
    int err = errno;
    ::close(fd);
    return errnoStatus(what + ": bind", err);
  }
  if (::listen(fd, 128) != 0) {
    int err = errno;
    ::close(fd);
    return errnoStatus(what + ": listen", err);
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    int err = errno;
    ::close(fd);
    return errnoStatus(what + ": getsockname", err);
  }
  socket_ = evhttp_accept_socket_with_handle(http_, fd);
  if (socket_ == nullptr) {
    ::close(fd);
    return internalError(what + ": evhttp_accept_socket failed");
  }
  bound_ = SocketAddress(reinterpret_cast<const sockaddr*>(&ss), len);
  return Status::ok();
}

bool AdminServer::authorized(const char* header) const {
  if (token_.empty() || header == nullptr) return false;
  std::string_view h = bearerOf(header);
  if (h.empty()) return false;
  // Digests of equal length are compared in constant time, so neither the token's length nor
  // the position of the first wrong byte shows in the time taken.
  Digest presented = sha256(h);
  return CRYPTO_memcmp(presented.data(), token_digest_.data(), presented.size()) == 0;
}

void AdminServer::onRequest(evhttp_request* req, void* arg) {
  static_cast<AdminServer*>(arg)->handle(req);
}

void AdminServer::handle(evhttp_request* req) {
  Reply r;
  try {
    r = route(req);
  } catch (const std::exception& e) {
    SG_LOG(kError, "admin: internal error: %s", e.what());
    r = Reply::error(500, "internal error");
  } catch (...) {
    r = Reply::error(500, "internal error");
  }
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_add_header(out, "Content-Type", r.content_type.c_str());
  evhttp_add_header(out, "Cache-Control", "no-store");
  for (const auto& [name, value] : r.headers) evhttp_add_header(out, name.c_str(), value.c_str());
  // evhttp 2.1 would send a body even for HEAD.
  if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
    evbuffer_add(evhttp_request_get_output_buffer(req), r.body.data(), r.body.size());
  }
  if (audit_ != nullptr && isMutating(evhttp_request_get_command(req))) audit(req, r);
  evhttp_send_reply(req, r.code, reasonPhrase(r.code), nullptr);
}

void AdminServer::audit(evhttp_request* req, const Reply& reply) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string_view path = raw_path != nullptr ? raw_path : "";
  if (path != "/v1" && path.rfind("/v1/", 0) != 0) return;
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  // Metric pushes are a data feed, not a change (see the header); refused ones are kept.
  const bool metric_push = method == EVHTTP_REQ_POST && path.size() > 8 &&
                           path.substr(path.size() - 8) == "/metrics" &&
                           path.rfind("/v1/pools/", 0) == 0;
  if (metric_push && reply.code < 400) return;

  AuditRecord a;
  a.at = registry_.clock().wallNow();
  a.method = methodName(method);
  a.path = std::string(path);
  a.status = reply.code;
  if (reply.code >= 400) {
    Json j = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("error") && j["error"].is_object()) {
      a.error = j["error"].value("message", "");
    }
  }
  a.token = tokenIdentity(
      bearerOf(evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization")));
  evhttp_connection* conn = evhttp_request_get_connection(req);
  if (conn != nullptr) {
    char* host = nullptr;
    uint16_t port = 0;
    evhttp_connection_get_peer(conn, &host, &port);
    if (host != nullptr) {
      const bool v6 = std::string_view(host).find(':') != std::string_view::npos;
      a.remote =
          (v6 ? "[" + std::string(host) + "]" : std::string(host)) + ":" + std::to_string(port);
    }
    bufferevent* bev = evhttp_connection_get_bufferevent(conn);
    SSL* ssl = (bev != nullptr && tls_ctx_ != nullptr) ? bufferevent_openssl_get_ssl(bev) : nullptr;
    if (ssl != nullptr) {
      if (X509* cert = SSL_get1_peer_certificate(ssl); cert != nullptr) {
        char subject[256];
        X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
        a.client_cert = subject;
        X509_free(cert);
      }
    }
  }
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const size_t len = std::min<size_t>(evbuffer_get_length(in), max_body_bytes_);
  std::string body(len, '\0');
  if (len > 0) evbuffer_copyout(in, body.data(), len);
  a.body = body;
  audit_->write(a);
}

AdminServer::Reply AdminServer::route(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string path = raw_path != nullptr ? raw_path : "";
  const char* raw_query = uri != nullptr ? evhttp_uri_get_query(uri) : nullptr;
  const evhttp_cmd_type method = evhttp_request_get_command(req);

  if (path == "/healthz") {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    return Reply::json(200, Json{{"status", "ok"}});
  }
  if (path == "/readyz") {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    bool ready = !hooks_.ready || hooks_.ready();
    return Reply::json(ready ? 200 : 503, Json{{"status", ready ? "ready" : "not_ready"}});
  }
  if (path == "/metrics") {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    Reply r;
    r.content_type = kPrometheusText;
    if (hooks_.metrics) r.body = hooks_.metrics();
    return r;
  }
  if (path != "/v1" && path.rfind("/v1/", 0) != 0) {
    return Reply::error(404, "no such endpoint: " + quote(path));
  }

  // /v1: the token first, so an unauthenticated client learns nothing else.
  const char* auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
  if (!authorized(auth)) {
    Reply r = Reply::error(
        401, token_.empty()    ? "no admin token is configured (admin.token_file): /v1 is disabled"
             : auth == nullptr ? "missing Authorization: Bearer <token>"
                               : "invalid bearer token");
    r.headers.emplace_back("WWW-Authenticate",
                           auth == nullptr || token_.empty()
                               ? "Bearer realm=\"scalegate\""
                               : "Bearer realm=\"scalegate\", error=\"invalid_token\"");
    return r;
  }
  evbuffer* in = evhttp_request_get_input_buffer(req);
  const size_t body_len = evbuffer_get_length(in);
  if (body_len > max_body_bytes_) {
    return Reply::error(413, "request body of " + std::to_string(body_len) +
                                 " bytes is over the limit of " + std::to_string(max_body_bytes_));
  }
  std::string body(body_len, '\0');
  if (body_len > 0) evbuffer_copyout(in, body.data(), body_len);

  std::vector<std::string_view> seg =
      splitPath(path.size() > 4 ? std::string_view(path).substr(4) : std::string_view());
  const std::string_view q = raw_query != nullptr ? raw_query : "";
  if (!q.empty() && !(seg.size() == 1 && seg[0] == "events")) {
    return Reply::error(400, "this endpoint takes no query parameters");
  }
  if (!seg.empty() &&
      std::any_of(seg.begin(), seg.end(), [](std::string_view s) { return s.empty(); })) {
    return Reply::error(404, "no such endpoint: " + quote(path));
  }
  const MonoTime now = registry_.clock().now();

  if (seg.size() == 1 && seg[0] == "events") {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    std::optional<uint64_t> since;
    uint64_t limit = kDefaultEventLimit;
    if (!q.empty()) {
      evkeyvalq params;
      params.tqh_first = nullptr;
      params.tqh_last = &params.tqh_first;
      const std::string query(q);
      if (evhttp_parse_query_str(query.c_str(), &params) != 0) {
        evhttp_clear_headers(&params);
        return Reply::error(400, "malformed query string");
      }
      std::string problem;
      for (evkeyval* kv = params.tqh_first; kv != nullptr && problem.empty();
           kv = kv->next.tqe_next) {
        std::string_view key = kv->key;
        uint64_t v = 0;
        if (key == "since") {
          if (!parseUint(kv->value, &v)) problem = "since must be a whole number (an event seq)";
          since = v;
        } else if (key == "limit") {
          if (!parseUint(kv->value, &v) || v < 1 || v > PoolRegistry::kMaxEvents) {
            problem =
                "limit must be a whole number in 1.." + std::to_string(PoolRegistry::kMaxEvents);
          }
          limit = v;
        } else {
          problem = "unknown query parameter " + quote(key) + " (allowed: since, limit)";
        }
      }
      evhttp_clear_headers(&params);
      if (!problem.empty()) return Reply::error(400, problem);
    }
    const auto& events = registry_.events();
    Json list = Json::array();
    bool truncated = false;
    if (since.has_value()) {
      truncated = !events.empty() && events.front().seq > *since + 1;
      for (const Event& e : events) {
        if (e.seq <= *since) continue;
        if (list.size() >= limit) break;
        list.push_back(eventJson(e));
      }
    } else {
      size_t start = events.size() > limit ? events.size() - limit : 0;
      for (size_t i = start; i < events.size(); ++i) list.push_back(eventJson(events[i]));
    }
    uint64_t next_since = since.value_or(0);
    if (!list.empty()) next_since = list.back()["seq"].get<uint64_t>();
    return Reply::json(200, Json{{"events", std::move(list)},
                                 {"first_seq", events.empty() ? 0 : events.front().seq},
                                 {"last_seq", events.empty() ? 0 : events.back().seq},
                                 {"next_since", next_since},
                                 {"truncated", truncated}});
  }

  // Pool endpoints of the autoscaler: /v1/pools/{pool}/{scale,autoscale,metrics,upgrade}.
  if (seg.size() == 3 && seg[0] == "pools" && seg[2] != "members" && hooks_.pool_action) {
    if (registry_.findPool(std::string(seg[1])) == nullptr) {
      return Reply::error(404, "pool " + quote(seg[1]) + " not found");
    }
    const char* verb = method == EVHTTP_REQ_GET      ? "GET"
                       : method == EVHTTP_REQ_HEAD   ? "GET"
                       : method == EVHTTP_REQ_POST   ? "POST"
                       : method == EVHTTP_REQ_PUT    ? "PUT"
                       : method == EVHTTP_REQ_DELETE ? "DELETE"
                                                     : "OTHER";
    std::optional<ActionReply> a =
        hooks_.pool_action(std::string(seg[1]), std::string(seg[2]), verb, body);
    if (a.has_value()) {
      if (a->code >= 400) return Reply::error(a->code, a->error);
      Reply r = Reply::json(a->code, a->body);
      if (a->code == 405 && !a->allow.empty()) r.headers.emplace_back("Allow", a->allow);
      return r;
    }
  }
  if (seg.empty() || seg[0] != "pools" || seg.size() > 5 ||
      (seg.size() >= 3 && seg[2] != "members") || (seg.size() == 5 && seg[4] != "drain")) {
    return Reply::error(404, "no such endpoint: " + quote(path));
  }
  if (seg.size() == 1) {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    Json pools = Json::array();
    for (const PoolRecord& p : registry_.pools()) {
      Json summary = poolSummary(p);
      if (hooks_.decorate_pool) hooks_.decorate_pool(p.name, &summary);
      pools.push_back(std::move(summary));
    }
    return Reply::json(200, Json{{"pools", std::move(pools)}});
  }

  const std::string pool_name(seg[1]);
  const PoolRecord* pool = registry_.findPool(pool_name);
  if (pool == nullptr) return Reply::error(404, "pool " + quote(pool_name) + " not found");

  if (seg.size() == 2 || seg.size() == 3) {
    if (!isGet(method)) return Reply::methodNotAllowed(kGet);
    Json members = Json::array();
    for (const MemberRecord& m : pool->members) members.push_back(memberJson(*pool, m, now));
    if (seg.size() == 3) return Reply::json(200, Json{{"members", std::move(members)}});
    Json j = poolSummary(*pool);
    if (hooks_.decorate_pool) hooks_.decorate_pool(pool->name, &j);
    j["drain_timeout_ms"] = toMillis(pool->cfg->drain_timeout);
    j["slow_start_ms"] = toMillis(pool->cfg->slow_start);
    j["health_checks"] = pool->cfg->health.enabled;
    j["ejections_total"] = pool->ejections_total;
    j["members"] = std::move(members);
    return Reply::json(200, j);
  }

  const std::string id(seg[3]);
  auto notFoundMember = [&]() {
    return Reply::error(404, "member " + quote(id) + " not found in pool " + quote(pool_name));
  };
  // After a successful mutation: the hook publishes and persists; the change stands either way.
  auto afterChange = [&](int code, const std::string& what) -> Reply {
    Status st = hooks_.changed ? hooks_.changed() : Status::ok();
    const PoolRecord* p = registry_.findPool(pool_name);
    const MemberRecord* m = p != nullptr ? p->find(id) : nullptr;
    if (!st.isOk()) {
      return Reply::error(500, what + " is in effect but was not saved: " + st.message());
    }
    Reply r = Reply::json(code, m != nullptr ? memberJson(*p, *m, now) : Json::object());
    return r;
  };

  if (seg.size() == 5) {
    if (method != EVHTTP_REQ_POST) return Reply::methodNotAllowed("POST");
    std::optional<Duration> timeout;
    if (Status st = parseDrainBody(body, &timeout); !st.isOk()) {
      return Reply::error(400, st.message());
    }
    if (Status st = registry_.drainMember(pool_name, id, timeout); !st.isOk()) {
      return Reply::error(httpCodeOf(st.code()), st.message());
    }
    return afterChange(202, "the drain");
  }

  const MemberRecord* member = pool->find(id);
  switch (method) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
      if (member == nullptr) return notFoundMember();
      return Reply::json(200, memberJson(*pool, *member, now));
    case EVHTTP_REQ_PUT: {
      MemberSpec spec;
      if (member != nullptr) {
        spec =
            MemberSpec{member->spec.address, member->spec.zone,    member->spec.fault_domain,
                       member->spec.weight,  member->spec.version, member->spec.scale_in_protected};
      } else if (pool->cfg->mode == config::PoolMode::kUniform && !pool->members.empty()) {
        // A new member of a uniform pool is what the others are unless the body says otherwise.
        spec.weight = pool->members.front().spec.weight;
        spec.version = pool->model_known ? pool->model_version : pool->members.front().spec.version;
      }
      bool address_seen = false;
      if (Status st = parseMemberBody(body, &spec, &address_seen); !st.isOk()) {
        return Reply::error(400, st.message());
      }
      if (member == nullptr && !address_seen) {
        return Reply::error(400, "address is required for a new member");
      }
      Result<bool> created = registry_.upsertMember(pool_name, id, spec);
      if (!created.isOk()) {
        return Reply::error(httpCodeOf(created.status().code()), created.status().message());
      }
      Reply r = afterChange(*created ? 201 : 200, "the member");
      if (r.code == 201)
        r.headers.emplace_back("Location", "/v1/pools/" + pool_name + "/members/" + id);
      return r;
    }
    case EVHTTP_REQ_DELETE: {
      if (member == nullptr) return notFoundMember();
      Json removed = memberJson(*pool, *member, now);
      if (Status st = registry_.removeMember(pool_name, id); !st.isOk()) {
        return Reply::error(httpCodeOf(st.code()), st.message());
      }
      Reply r = afterChange(200, "the removal");
      if (r.code == 200) r = Reply::json(200, removed);
      return r;
    }
    default:
      return Reply::methodNotAllowed(kMemberMethods);
  }
}

}  // namespace scalegate::control
