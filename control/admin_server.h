#pragma once
// The admin HTTP API on the control event_base (libevent evhttp): health and readiness for
// orchestrators, Prometheus metrics, and /v1 for the scaler, sgctl and operators to read pools
// and events and to add, re-weight, drain and remove members. Control thread only: every
// handler runs on the control loop and works on the PoolRegistry directly.
//
//   client ──HTTP/1.1──► evhttp ──► AdminServer::handle ──┬─► /healthz /readyz /metrics (open)
//                                                          └─► /v1/* ─ bearer token ─► PoolRegistry
//                                                                    (mutations) ─► hooks.changed
//
// Endpoints (JSON in and out, Content-Type: application/json, unless said otherwise):
//   GET  /healthz                              200 {"status":"ok"}                 no auth
//   GET  /readyz                               200 {"status":"ready"} | 503 {"status":"not_ready"}
//                                                                                   no auth
//   GET  /metrics                              hooks.metrics() as text/plain; version=0.0.4
//                                              (no auth, as Prometheus scrapes expect; bind the
//                                              admin listener to a trusted network)
//   GET  /v1/pools                             {"pools":[{name, balance, members, healthy,
//                                               draining, drained, ejected}]}
//   GET  /v1/pools/{pool}                      the pool and every member (see memberJson)
//   GET  /v1/pools/{pool}/members              {"members":[...]}
//   GET  /v1/pools/{pool}/members/{id}         the member
//   PUT  /v1/pools/{pool}/members/{id}         body {"address","zone","fault_domain","weight",
//                                              "version","protected"}: 201 created | 200
//                                              updated, with the member. address is required
//                                              for a new member; absent fields keep their
//                                              current values (new member: zone "",
//                                              fault_domain 0, weight 1, version "", not
//                                              protected; in a uniform pool the others' weight
//                                              and version). Unknown fields are 400. A uniform
//                                              pool refuses (400) a weight or version that
//                                              differs from its other members'.
//   GET|POST|DELETE /v1/pools/{pool}/{scale,autoscale,metrics,upgrade}
//                                              the autoscaler's endpoints (hooks.pool_action;
//                                              control/README.md "Autoscale API")
//   DELETE /v1/pools/{pool}/members/{id}       200 with the removed member | 404
//   POST /v1/pools/{pool}/members/{id}/drain   optional body {"timeout":"30s"}: 202 with the
//                                              member ("drain": "draining" or "drained")
//   GET  /v1/events?since=SEQ&limit=N          {"events":[...], "first_seq", "last_seq",
//                                               "next_since", "truncated"}: oldest first; with
//                                              since, the first N events after SEQ (paging
//                                              forward), else the latest N; N 1..1000,
//                                              default 100. truncated = events after SEQ were
//                                              already dropped from the ring.
//   HEAD is accepted wherever GET is.
//
// Errors: {"error":{"code":404,"message":"pool \"x\" not found"}} with 400 (bad JSON, bad
// field, unknown field, bad query), 401 (missing or wrong bearer token, with
// WWW-Authenticate: Bearer), 404, 405 (with Allow), 409 (address used by another member), 413
// (body over the limit), 500 (the change is in effect but hooks.changed failed, e.g. the state
// file could not be written). /v1 checks the token before anything else, so an unauthenticated
// client learns nothing about pools. A body over the limit is refused by evhttp itself as
// soon as its Content-Length (or the chunks received) exceed it, before the handler runs and
// before the rest is read: that 413 carries evhttp's own small HTML body and Connection: close
// (libevent 2.1 has no hook to replace it).
//
// TLS (admin.tls): the same port speaks only TLS; a plain-HTTP client's bytes fail the
// handshake and the connection is closed. mTLS (client_ca_file): the handshake fails without a
// client certificate from that CA. The bearer token is required on /v1 either way.
// Audit (setAuditLog): every PUT/POST/DELETE/PATCH on /v1 — accepted or refused, 401
// included — is one line in the audit log, except successful metric pushes
// (POST /v1/pools/{pool}/metrics): those are a data feed, often one per second, that changes
// neither membership nor capacity, and would bury the changes the log exists for.

#include <event2/event.h>

#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/address.h"
#include "common/status.h"
#include "config/model.h"
#include "control/audit_log.h"
#include "control/pool_registry.h"

struct evhttp;
struct bufferevent;
struct ssl_ctx_st;
struct evhttp_request;
struct evhttp_bound_socket;

namespace scalegate::control {

class AdminServer {
 public:
  // What a pool action answers: code < 400 sends `body`; code >= 400 sends {"error": error}.
  struct ActionReply {
    int code = 200;
    nlohmann::json body;
    std::string error;
    std::string allow;  // for 405
  };
  struct Hooks {
    // Prometheus text for /metrics; absent: an empty body.
    std::function<std::string()> metrics;
    // /readyz; absent: always ready.
    std::function<bool()> ready;
    // Called after every successful mutation (PUT, DELETE, drain), before the reply is sent:
    // App rebuilds the snapshot when registry.version() moved and saves the state file when
    // persistVersion() moved. An error (the state file could not be written) turns the reply
    // into a 500 that says the change is in effect but not saved; the client may retry (PUT and
    // drain are idempotent). Absent: nothing is called.
    std::function<Status()> changed;
    // Adds fields (capacity, autoscale state) to a pool's JSON in GET /v1/pools[/{pool}].
    std::function<void(const std::string& pool, nlohmann::json* summary)> decorate_pool;
    // /v1/pools/{pool}/{action} for actions other than "members" (the autoscaler's scale,
    // autoscale, metrics and upgrade); method is GET/POST/PUT/DELETE/OTHER. nullopt: no such
    // endpoint (404). The pool exists when it is called.
    std::function<std::optional<ActionReply>(const std::string& pool, const std::string& action,
                                             const std::string& method, const std::string& body)>
        pool_action;
  };

  // The registry must outlive the server. Nothing is served until listen().
  AdminServer(event_base* base, PoolRegistry& registry, Hooks hooks);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and listens (port 0 = any free port; see boundAddress()). Once only.
  Status listen(const SocketAddress& addr);
  // The address actually bound; invalid before a successful listen().
  SocketAddress boundAddress() const { return bound_; }

  // The bearer token /v1 requires. "" (the default) = every /v1 request gets 401.
  void setToken(std::string token);
  // Request bodies over this are refused with 413 (admin.max_request_body_bytes).
  void setMaxBodyBytes(uint64_t bytes);
  // admin.tls: every connection accepted from now on is TLS (the same port serves /metrics,
  // /healthz and /v1); with client_ca_file a client certificate signed by it is required.
  // Reads and checks the files; on error the running TLS settings stay. Call before listen()
  // to serve TLS from the first connection; again (SIGHUP) to pick up renewed files. Turning
  // TLS off (cfg.enabled false) is refused once TLS is on: a listener never downgrades.
  Status setTls(const config::AdminTls& cfg);
  bool tlsEnabled() const { return tls_ctx_ != nullptr; }
  // Where mutating /v1 calls are recorded (may be null: none). Not owned; must outlive the
  // server or be reset first.
  void setAuditLog(AuditLog* log) { audit_ = log; }

 private:
  struct Reply;
  static void onRequest(evhttp_request* req, void* arg);
  // evhttp's per-connection bufferevent factory: a server-side OpenSSL bufferevent when TLS
  // is on, else null (evhttp then makes a plain socket bufferevent).
  static bufferevent* onNewConnection(event_base* base, void* arg);
  void audit(evhttp_request* req, const Reply& reply);
  void handle(evhttp_request* req);
  Reply route(evhttp_request* req);
  bool authorized(const char* header) const;

  event_base* base_;
  PoolRegistry& registry_;
  Hooks hooks_;
  evhttp* http_ = nullptr;
  evhttp_bound_socket* socket_ = nullptr;
  SocketAddress bound_;
  std::string token_;
  std::array<unsigned char, 32> token_digest_{};  // SHA-256 of token_
  uint64_t max_body_bytes_ = 64 * 1024;
  ssl_ctx_st* tls_ctx_ = nullptr;  // owned; SSL objects hold their own references
  AuditLog* audit_ = nullptr;
};

// Parses a PUT member body into `spec`, starting from `spec` (the current values, or the
// defaults for a new member); `address_seen` says whether the body named an address. Errors
// are kInvalidArgument with a message for the client. Pure; exposed for tests and the fuzzer.
Status parseMemberBody(std::string_view body, MemberSpec* spec, bool* address_seen);
// Parses a drain body ("" or {} or {"timeout":"30s"}); *timeout stays empty when not given.
Status parseDrainBody(std::string_view body, std::optional<Duration>* timeout);

}  // namespace scalegate::control
