#pragma once
// Delivers ScaleEvents to the scaler as signed webhooks (DESIGN.md "Scaler webhooks"), on the
// control thread's event loop, never blocking it:
//
//   enqueue(event, target) ──► outbox file (atomic rewrite) ──► attempt: POST url
//        │ webhook-id               ▲                             webhook-id / -timestamp /
//        ▼                          │ every change               -signature
//        (common/webhook_signature)
//   on_delivered(id, event)  ◄── 2xx                               │ evhttp client, own deadline
//   on_failed(id, event, err) ◄── 410, or max_attempts used ◄──────┤
//                                 other answers / timeout / refused: back off, try again
//
// Retry policy (control/README.md "Webhook contract"):
//   - 2xx = delivered. Everything else is a failed attempt: timeouts, refused or reset
//     connections, 3xx (redirects are not followed), 4xx and 5xx. A 401 is retried too: a
//     scaler whose secret is being rotated heals itself, and the attempts are bounded anyway.
//   - 410 Gone gives up at once (the Standard Webhooks "endpoint disabled" answer).
//   - The delay after failed attempt n is an exponential back-off with equal jitter:
//     b = min(max_backoff, 1s × 2^(n-1)), delay uniform in [b/2, b]. A Retry-After answer
//     (delta seconds or an HTTP date) replaces it, capped at kMaxRetryAfter.
//   - After max_attempts attempts the delivery is given up and on_failed is called.
// The same webhook-id is used on every attempt (and after a restart), so the scaler can
// de-duplicate; the body is rendered once and sent byte-identical each time, only the
// timestamp and signature change.
//
// Persistence: every pending delivery (id, event, body, url, format, limits, attempts made,
// next attempt time) is written to the outbox file with replaceFileAtomically (state_file.h)
// on every change. loadOutbox() resumes them after a restart with the same ids. Secrets are
// never written to disk; hooks.secret_for supplies them again on load.
//
// Thread: everything here runs on the control thread (the event_base's thread).

#include <event2/event.h>
#include <event2/http.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "common/webhook_signature.h"
#include "control/webhook_payload.h"

struct evdns_base;
struct ssl_ctx_st;

namespace scalegate::control {

// Where and how to deliver. The lead maps config autoscale.scaler into this.
struct WebhookTarget {
  std::string url;     // http://host:port/path or https://...
  std::string secret;  // "whsec_<base64>" or raw bytes (common/webhook_signature.h)
  WebhookFormat format = WebhookFormat::kScalegate;
  Duration timeout = std::chrono::seconds(5);  // per attempt: connect + request + answer
  uint32_t max_attempts = 8;                   // >= 1
  Duration max_backoff = std::chrono::seconds(60);
  AzureContext azure;   // used by the Azure format
  std::string ca_file;  // https: CA bundle; "" = the system's default verify paths
};

// Why an attempt failed (index into WebhookCounters::failed_attempts).
enum class AttemptOutcome : uint8_t {
  kTimeout,  // no full answer within the target's timeout
  kConnect,  // refused, reset or closed before an answer (and TLS failures)
  kHttp3xx,
  kHttp4xx,  // other than 408, 410 and 429
  kHttp408,
  kHttp410,
  kHttp429,
  kHttp5xx,
  kCount
};
const char* attemptOutcomeName(AttemptOutcome o);  // "timeout", "connect", "http_5xx", ...

// Outcome counters for /metrics: totals since start, plus gauges. Plain integers read on the
// control thread.
struct WebhookCounters {
  uint64_t enqueued = 0;
  uint64_t attempts = 0;   // attempts started
  uint64_t delivered = 0;  // deliveries answered 2xx
  uint64_t given_up = 0;   // deliveries abandoned (max_attempts or 410)
  std::array<uint64_t, static_cast<size_t>(AttemptOutcome::kCount)> failed_attempts{};
  uint64_t retries = 0;         // attempts after the first of a delivery
  uint64_t persist_errors = 0;  // outbox writes that failed (logged)
  uint64_t pending = 0;         // gauge: deliveries not yet delivered nor given up
  uint64_t in_flight = 0;       // gauge: attempts waiting for an answer
  Duration last_latency{};      // of the last answered attempt (any status)
  Duration last_success_latency{};
};

class WebhookSender {
 public:
  struct Hooks {
    std::function<void(const std::string& id, const ScaleEvent& event)> on_delivered;
    std::function<void(const std::string& id, const ScaleEvent& event, const std::string& error)>
        on_failed;
    // The secret for a delivery read back from the outbox: (pool, url) -> secret, or "" when
    // there is none any more (the delivery is then given up with on_failed).
    std::function<std::string(const std::string& pool, const std::string& url)> secret_for;
  };

  // `base` and `clock` must outlive the sender. `outbox_path` "" = no persistence (tests).
  WebhookSender(event_base* base, const Clock& clock, std::string outbox_path, Hooks hooks);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Reads the outbox (a missing file is fine) and schedules what it holds, keeping ids, attempt
  // counts and next attempt times (overdue ones go at once). Call once, before enqueue.
  // Returns how many deliveries were resumed; an unreadable or malformed file is an error (the
  // file is left alone for a person to look at, and nothing is resumed).
  Result<size_t> loadOutbox();
  // loadOutbox() on the file's text; `name` (the path) starts every error. outboxText() is
  // what the outbox file gets. Tests and tests/fuzz use both directly.
  Result<size_t> loadOutboxText(const std::string& name, const std::string& text);
  std::string outboxText() const;

  // Queues a delivery and starts its first attempt on the next loop pass. Returns its
  // webhook-id ("msg_" + 26 random [0-9a-z]). A bad url or secret is reported through
  // on_failed (from the loop, not from inside this call) and counted as given up.
  std::string enqueue(const ScaleEvent& event, const WebhookTarget& target);
  // The same with a webhook-id the caller reserved (reserveId()) and wrote down before, so that
  // a crash between writing it and queueing cannot lead to a second id for one event. When
  // `id` is already pending nothing is queued again (re-queueing after a restart is safe).
  std::string enqueue(const ScaleEvent& event, const WebhookTarget& target, const std::string& id);
  // A fresh webhook-id that no pending delivery has, for enqueue(event, target, id).
  std::string reserveId() { return newId(); }
  bool isPending(const std::string& id) const { return deliveries_.count(id) != 0; }

  const WebhookCounters& counters() const { return counters_; }
  size_t pending() const { return deliveries_.size(); }
  // Pending ids, oldest first (for the admin API and tests).
  std::vector<std::string> pendingIds() const;

  // Longest Retry-After honoured; longer answers are cut to this.
  static constexpr Duration kMaxRetryAfter = std::chrono::minutes(10);
  // Back-off of failed attempt n >= 1 before jitter: min(max_backoff, 1s × 2^(n-1)).
  static Duration backoffBase(uint32_t failed_attempts, Duration max_backoff);
  // Parses Retry-After: delta seconds or an IMF-fixdate HTTP date (relative to `now`). nullopt
  // when malformed; a date in the past is 0.
  static std::optional<Duration> parseRetryAfter(std::string_view value, WallTime now);

 private:
  struct Delivery;
  struct Url {
    bool https = false;
    std::string host;
    uint16_t port = 0;
    std::string path;  // with query
  };
  static Result<Url> parseUrl(const std::string& url);

  void schedule(Delivery* d, Duration delay);
  void startAttempt(Delivery* d);
  void onAnswer(Delivery* d, evhttp_request* req);
  void onAttemptFailed(Delivery* d, AttemptOutcome outcome, std::string error,
                       std::optional<Duration> retry_after);
  void finish(Delivery* d, bool delivered, const std::string& error);
  void releaseConnection(Delivery* d);
  void persist();
  std::string newId();
  Result<evhttp_connection*> connect(Delivery* d, const Url& url);

  static void onTimerEvent(evutil_socket_t, short, void* arg);
  static void onDeadlineEvent(evutil_socket_t, short, void* arg);
  static void onRequestDone(evhttp_request* req, void* arg);
  static void onRequestError(evhttp_request_error error, void* arg);
  static void onReapEvent(evutil_socket_t, short, void* arg);

  event_base* base_;
  const Clock& clock_;
  std::string outbox_path_;
  Hooks hooks_;
  std::map<std::string, std::unique_ptr<Delivery>> deliveries_;  // by id
  uint64_t next_seq_ = 0;                    // enqueue order, for pendingIds() and the outbox
  std::vector<evhttp_connection*> to_free_;  // freed from reap_event_, outside evhttp callbacks
  ::event* reap_event_ = nullptr;
  evdns_base* dns_ = nullptr;      // created on first use of a host name
  ssl_ctx_st* ssl_ctx_ = nullptr;  // created on first https url
  std::string ssl_ca_file_;
  std::mt19937_64 rng_;
  WebhookCounters counters_;
};

}  // namespace scalegate::control
