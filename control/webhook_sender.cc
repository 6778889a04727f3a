#include "control/webhook_sender.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/log.h"
#include "control/state_file.h"

namespace scalegate::control {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxAnswerBytes = 64 * 1024;
constexpr int kOutboxVersion = 1;

timeval toTimeval(Duration d) {
  if (d < Duration::zero()) d = Duration::zero();
  const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

int64_t unixMillis(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

bool isNumericHost(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

const char* requestErrorName(int error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT:
      return "timed out";
    case EVREQ_HTTP_EOF:
      return "connection closed before an answer";
    case EVREQ_HTTP_INVALID_HEADER:
      return "invalid answer header";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "answer too long";
    default:
      return "connection failed";
  }
}

}  // namespace

const char* attemptOutcomeName(AttemptOutcome o) {
  static constexpr const char* kNames[] = {"timeout",  "connect",  "http_3xx", "http_4xx",
                                           "http_408", "http_410", "http_429", "http_5xx"};
  return kNames[static_cast<size_t>(o)];
}

struct WebhookSender::Delivery {
  WebhookSender* owner = nullptr;
  std::string id;
  uint64_t seq = 0;
  ScaleEvent event;
  std::string body;
  WebhookTarget target;
  std::optional<WebhookKey> key;
  std::string setup_error;  // bad url or secret: given up on the first attempt
  uint32_t attempts = 0;    // attempts finished
  WallTime next_attempt{};
  std::string last_error;
  ::event* timer = nullptr;     // the next attempt
  ::event* deadline = nullptr;  // the current attempt's timeout
  evhttp_connection* conn = nullptr;
  int request_error = -1;  // from evhttp's error callback, for the current attempt
  MonoTime attempt_started{};

  ~Delivery() {
    if (timer != nullptr) event_free(timer);
    if (deadline != nullptr) event_free(deadline);
  }
};

WebhookSender::WebhookSender(event_base* base, const Clock& clock, std::string outbox_path,
                             Hooks hooks)
    : base_(base),
      clock_(clock),
      outbox_path_(std::move(outbox_path)),
      hooks_(std::move(hooks)),
      rng_(std::random_device{}()) {
  reap_event_ = event_new(base_, -1, 0, &WebhookSender::onReapEvent, this);
}

WebhookSender::~WebhookSender() {
  for (auto& [id, d] : deliveries_) {
    if (d->conn != nullptr) evhttp_connection_free(d->conn);
    d->conn = nullptr;
  }
  deliveries_.clear();
  for (evhttp_connection* c : to_free_) evhttp_connection_free(c);
  if (reap_event_ != nullptr) event_free(reap_event_);
  if (dns_ != nullptr) evdns_base_free(dns_, 0);
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
}

Duration WebhookSender::backoffBase(uint32_t failed_attempts, Duration max_backoff) {
  Duration b = std::chrono::seconds(1);
  for (uint32_t i = 1; i < failed_attempts && b < max_backoff; ++i) b *= 2;
  return std::min(b, max_backoff);
}

std::optional<Duration> WebhookSender::parseRetryAfter(std::string_view value, WallTime now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (value[0] >= '0' && value[0] <= '9') {
    uint64_t secs = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), secs);
    if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
    secs = std::min<uint64_t>(secs, 365ull * 86400);
    return std::chrono::seconds(secs);
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::string text(value);
  tm t{};
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &t);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const WallTime when{std::chrono::seconds(timegm(&t))};
  if (when <= now) return Duration::zero();
  return std::chrono::duration_cast<Duration>(when - now);
}

Result<WebhookSender::Url> WebhookSender::parseUrl(const std::string& url) {
  Url out;
  std::string_view rest = url;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
    out.port = 80;
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    out.https = true;
    out.port = 443;
  } else {
    return invalidArgument("scaler url \"" + url + "\" must start with http:// or https://");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) {
    return invalidArgument("scaler url \"" + url + "\": user info is not supported");
  }
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return invalidArgument("scaler url \"" + url + "\": bad IPv6 host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalidArgument("scaler url \"" + url + "\": bad host");
      port = after.substr(1);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return invalidArgument("scaler url \"" + url + "\" has no host");
  if (!port.empty()) {
    uint32_t p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) {
      return invalidArgument("scaler url \"" + url + "\": bad port");
    }
    out.port = static_cast<uint16_t>(p);
  }
  out.host = std::string(host);
  return out;
}

std::string WebhookSender::newId() {
  static constexpr char kChars[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (;;) {
    std::string id = "msg_";
    for (int i = 0; i < 26; ++i) id.push_back(kChars[rng_() % 36]);
    if (deliveries_.count(id) == 0) return id;
  }
}

std::vector<std::string> WebhookSender::pendingIds() const {
  std::vector<const Delivery*> v;
  for (const auto& [id, d] : deliveries_) v.push_back(d.get());
  std::sort(v.begin(), v.end(),
            [](const Delivery* a, const Delivery* b) { return a->seq < b->seq; });
  std::vector<std::string> out;
  for (const Delivery* d : v) out.push_back(d->id);
  return out;
}

std::string WebhookSender::enqueue(const ScaleEvent& event, const WebhookTarget& target) {
  return enqueue(event, target, newId());
}

std::string WebhookSender::enqueue(const ScaleEvent& event, const WebhookTarget& target,
                                   const std::string& id_in) {
  if (deliveries_.count(id_in) != 0) return id_in;
  auto d = std::make_unique<Delivery>();
  d->owner = this;
  d->id = id_in.empty() ? newId() : id_in;
  d->seq = next_seq_++;
  d->event = event;
  d->target = target;
  if (d->target.max_attempts == 0) d->target.max_attempts = 1;
  d->body = renderPayload(target.format, event, d->id, target.azure);
  auto key = WebhookKey::fromSecret(target.secret);
  if (key.isOk()) {
    d->key = std::move(*key);
  } else {
    d->setup_error = "scaler secret: " + key.status().message();
  }
  if (auto url = parseUrl(target.url); !url.isOk()) d->setup_error = url.status().message();
  d->timer = evtimer_new(base_, &WebhookSender::onTimerEvent, d.get());
  d->deadline = evtimer_new(base_, &WebhookSender::onDeadlineEvent, d.get());
  Delivery* raw = d.get();
  const std::string id = d->id;
  deliveries_.emplace(id, std::move(d));
  ++counters_.enqueued;
  counters_.pending = deliveries_.size();
  schedule(raw, Duration::zero());
  persist();
  logEvent(LogLevel::kInfo, "webhook queued",
           {{"id", id},
            {"type", scaleEventTypeName(event.type)},
            {"pool", event.pool},
            {"old_capacity", std::to_string(event.old_capacity)},
            {"new_capacity", std::to_string(event.new_capacity)}});
  return id;
}

void WebhookSender::schedule(Delivery* d, Duration delay) {
  d->next_attempt = clock_.wallNow() + std::chrono::duration_cast<WallTime::duration>(delay);
  timeval tv = toTimeval(delay);
  evtimer_add(d->timer, &tv);
}

void WebhookSender::onTimerEvent(evutil_socket_t, short, void* arg) {
  auto* d = static_cast<Delivery*>(arg);
  d->owner->startAttempt(d);
}

void WebhookSender::onDeadlineEvent(evutil_socket_t, short, void* arg) {
  auto* d = static_cast<Delivery*>(arg);
  WebhookSender* self = d->owner;
  // Outside any evhttp callback: the connection (and its request) can go at once.
  if (d->conn != nullptr) {
    evhttp_connection_free(d->conn);
    d->conn = nullptr;
    --self->counters_.in_flight;
  }
  self->onAttemptFailed(d, AttemptOutcome::kTimeout,
                        "no answer within " + std::to_string(toMillis(d->target.timeout)) + " ms",
                        std::nullopt);
}

Result<evhttp_connection*> WebhookSender::connect(Delivery* d, const Url& url) {
  evdns_base* dns = nullptr;
  if (!isNumericHost(url.host)) {
    if (dns_ == nullptr) dns_ = evdns_base_new(base_, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (dns_ == nullptr) return unavailable("cannot set up the DNS resolver");
    dns = dns_;
  }
  bufferevent* bev = nullptr;
  if (url.https) {
    if (ssl_ctx_ == nullptr || ssl_ca_file_ != d->target.ca_file) {
      if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
      ssl_ctx_ = SSL_CTX_new(TLS_client_method());
      if (ssl_ctx_ == nullptr) return internalError("SSL_CTX_new failed");
      SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
      SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
      int ok = d->target.ca_file.empty()
                   ? SSL_CTX_set_default_verify_paths(ssl_ctx_)
                   : SSL_CTX_load_verify_locations(ssl_ctx_, d->target.ca_file.c_str(), nullptr);
      if (ok != 1) {
        SSL_CTX_free(ssl_ctx_);
        ssl_ctx_ = nullptr;
        return invalidArgument("cannot load CA certificates " + d->target.ca_file);
      }
      ssl_ca_file_ = d->target.ca_file;
    }
    SSL* ssl = SSL_new(ssl_ctx_);
    if (ssl == nullptr) return internalError("SSL_new failed");
    // The certificate must name the host: DNS names via SNI + host check, IP literals via
    // the certificate's IP addresses.
    if (isNumericHost(url.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, url.host.c_str());
      SSL_set1_host(ssl, url.host.c_str());
    }
    bev = bufferevent_openssl_socket_new(base_, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == nullptr) {
      SSL_free(ssl);
      return internalError("bufferevent_openssl_socket_new failed");
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  }
  evhttp_connection* conn =
      evhttp_connection_base_bufferevent_new(base_, dns, bev, url.host.c_str(), url.port);
  if (conn == nullptr) {
    if (bev != nullptr) bufferevent_free(bev);
    return internalError("evhttp_connection_base_bufferevent_new failed");
  }
  evhttp_connection_set_retries(conn, 0);
  timeval tv = toTimeval(d->target.timeout);
  evhttp_connection_set_timeout_tv(conn, &tv);
  evhttp_connection_set_max_body_size(conn, kMaxAnswerBytes);
  evhttp_connection_set_max_headers_size(conn, kMaxAnswerBytes);
  return conn;
}

void WebhookSender::startAttempt(Delivery* d) {
  if (!d->setup_error.empty()) {
    finish(d, false, d->setup_error);
    return;
  }
  auto url = parseUrl(d->target.url);  // checked at enqueue
  ++counters_.attempts;
  if (d->attempts > 0) ++counters_.retries;
  d->request_error = -1;
  d->attempt_started = clock_.now();
  auto conn = connect(d, *url);
  if (!conn.isOk()) {
    onAttemptFailed(d, AttemptOutcome::kConnect, conn.status().message(), std::nullopt);
    return;
  }
  d->conn = *conn;
  evhttp_request* req = evhttp_request_new(&WebhookSender::onRequestDone, d);
  evhttp_request_set_error_cb(req, &WebhookSender::onRequestError);
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  std::string host = url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
  if (url->port != (url->https ? 443 : 80)) host += ":" + std::to_string(url->port);
  const int64_t ts =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.wallNow().time_since_epoch()).count();
  const std::string signature = d->key->sign(d->id, ts, d->body);
  evhttp_add_header(headers, "Host", host.c_str());
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "User-Agent", "scalegate/" SG_VERSION);
  evhttp_add_header(headers, "Connection", "close");
  evhttp_add_header(headers, "webhook-id", d->id.c_str());
  evhttp_add_header(headers, "webhook-timestamp", std::to_string(ts).c_str());
  evhttp_add_header(headers, "webhook-signature", signature.c_str());
  evbuffer_add(evhttp_request_get_output_buffer(req), d->body.data(), d->body.size());
  ++counters_.in_flight;
  timeval tv = toTimeval(d->target.timeout);
  evtimer_add(d->deadline, &tv);
  if (evhttp_make_request(d->conn, req, EVHTTP_REQ_POST, url->path.c_str()) != 0) {
    // On failure the request was taken off the connection but not freed.
    evhttp_request_free(req);
    evtimer_del(d->deadline);
    evhttp_connection_free(d->conn);
    d->conn = nullptr;
    --counters_.in_flight;
    onAttemptFailed(d, AttemptOutcome::kConnect, "cannot start the request", std::nullopt);
  }
}

void WebhookSender::onRequestError(evhttp_request_error error, void* arg) {
  static_cast<Delivery*>(arg)->request_error = error;
}

void WebhookSender::onRequestDone(evhttp_request* req, void* arg) {
  auto* d = static_cast<Delivery*>(arg);
  d->owner->onAnswer(d, req);
}

void WebhookSender::onAnswer(Delivery* d, evhttp_request* req) {
  evtimer_del(d->deadline);
  --counters_.in_flight;
  const int code = req == nullptr ? 0 : evhttp_request_get_response_code(req);
  std::string tls_error;
  if (code == 0 && d->conn != nullptr) {
    if (bufferevent* bev = evhttp_connection_get_bufferevent(d->conn)) {
      if (unsigned long e = bufferevent_get_openssl_error(bev); e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        tls_error = std::string("TLS: ") + buf;
      }
    }
  }
  // evhttp must not free its connection from inside this callback: hand it to the reaper.
  releaseConnection(d);
  if (code == 0) {
    if (d->request_error == EVREQ_HTTP_TIMEOUT) {
      onAttemptFailed(d, AttemptOutcome::kTimeout, "timed out", std::nullopt);
    } else {
      onAttemptFailed(d, AttemptOutcome::kConnect,
                      tls_error.empty() ? requestErrorName(d->request_error) : tls_error,
                      std::nullopt);
    }
    return;
  }
  const Duration latency = clock_.now() - d->attempt_started;
  counters_.last_latency = latency;
  if (code >= 200 && code < 300) {
    counters_.last_success_latency = latency;
    finish(d, true, "");
    return;
  }
  std::optional<Duration> retry_after;
  if (const char* ra = evhttp_find_header(evhttp_request_get_input_headers(req), "Retry-After")) {
    retry_after = parseRetryAfter(ra, clock_.wallNow());
  }
  AttemptOutcome outcome = code >= 500   ? AttemptOutcome::kHttp5xx
                           : code == 429 ? AttemptOutcome::kHttp429
                           : code == 410 ? AttemptOutcome::kHttp410
                           : code == 408 ? AttemptOutcome::kHttp408
                           : code >= 400 ? AttemptOutcome::kHttp4xx
                                         : AttemptOutcome::kHttp3xx;
  std::string error = "HTTP " + std::to_string(code);
  // Keep the scaler's reason (sgscaler says why it refused a signature) for the log.
  evbuffer* in = evhttp_request_get_input_buffer(req);
  size_t n = std::min<size_t>(evbuffer_get_length(in), 200);
  if (n > 0) {
    std::string text(n, '\0');
    evbuffer_copyout(in, text.data(), n);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    for (char& c : text) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    error += ": " + text;
  }
  onAttemptFailed(d, outcome, std::move(error), retry_after);
}

void WebhookSender::releaseConnection(Delivery* d) {
  if (d->conn == nullptr) return;
  to_free_.push_back(d->conn);
  d->conn = nullptr;
  event_active(reap_event_, EV_TIMEOUT, 0);
}

void WebhookSender::onReapEvent(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<WebhookSender*>(arg);
  std::vector<evhttp_connection*> conns;
  conns.swap(self->to_free_);
  for (evhttp_connection* c : conns) evhttp_connection_free(c);
}

void WebhookSender::onAttemptFailed(Delivery* d, AttemptOutcome outcome, std::string error,
                                    std::optional<Duration> retry_after) {
  ++d->attempts;
  ++counters_.failed_attempts[static_cast<size_t>(outcome)];
  d->last_error = std::string(attemptOutcomeName(outcome)) + ": " + error;
  if (outcome == AttemptOutcome::kHttp410) {
    finish(d, false, d->last_error + " (410 Gone: not retried)");
    return;
  }
  if (d->attempts >= d->target.max_attempts) {
    finish(d, false, d->last_error + " (after " + std::to_string(d->attempts) + " attempts)");
    return;
  }
  Duration delay;
  if (retry_after) {
    delay = std::min(*retry_after, kMaxRetryAfter);
  } else {
    const Duration base = backoffBase(d->attempts, d->target.max_backoff);
    std::uniform_int_distribution<int64_t> jitter(0, base.count() / 2);
    delay = base - base / 2 + Duration(jitter(rng_));
  }
  logEvent(LogLevel::kWarn, "webhook attempt failed",
           {{"id", d->id},
            {"type", scaleEventTypeName(d->event.type)},
            {"pool", d->event.pool},
            {"attempt", std::to_string(d->attempts) + "/" + std::to_string(d->target.max_attempts)},
            {"error", d->last_error},
            {"retry_in_ms", std::to_string(toMillis(delay))}});
  schedule(d, delay);
  persist();
}

void WebhookSender::finish(Delivery* d, bool delivered, const std::string& error) {
  auto it = deliveries_.find(d->id);
  std::unique_ptr<Delivery> owned = std::move(it->second);
  deliveries_.erase(it);
  counters_.pending = deliveries_.size();
  if (owned->conn != nullptr) releaseConnection(owned.get());
  persist();
  if (delivered) {
    ++counters_.delivered;
    logEvent(LogLevel::kInfo, "webhook delivered",
             {{"id", owned->id},
              {"type", scaleEventTypeName(owned->event.type)},
              {"pool", owned->event.pool},
              {"attempts", std::to_string(owned->attempts + 1)}});
    if (hooks_.on_delivered) hooks_.on_delivered(owned->id, owned->event);
  } else {
    ++counters_.given_up;
    logEvent(LogLevel::kError, "webhook given up",
             {{"id", owned->id},
              {"type", scaleEventTypeName(owned->event.type)},
              {"pool", owned->event.pool},
              {"error", error}});
    if (hooks_.on_failed) hooks_.on_failed(owned->id, owned->event, error);
  }
}

void WebhookSender::persist() {
  if (outbox_path_.empty()) return;
  Status st = replaceFileAtomically(outbox_path_, outboxText());
  if (!st.isOk()) {
    ++counters_.persist_errors;
    SG_LOG(kError, "webhook outbox: %s", st.message().c_str());
  }
}

std::string WebhookSender::outboxText() const {
  std::vector<const Delivery*> v;
  for (const auto& [id, d] : deliveries_) v.push_back(d.get());
  std::sort(v.begin(), v.end(),
            [](const Delivery* a, const Delivery* b) { return a->seq < b->seq; });
  Json list = Json::array();
  for (const Delivery* d : v) {
    Json item = Json::object();
    item["id"] = d->id;
    item["event"] = Json::parse(renderScalegatePayload(d->event, d->id));
    item["body"] = d->body;
    item["url"] = d->target.url;
    item["format"] = webhookFormatName(d->target.format);
    item["timeout_ms"] = toMillis(d->target.timeout);
    item["max_attempts"] = d->target.max_attempts;
    item["max_backoff_ms"] = toMillis(d->target.max_backoff);
    item["ca_file"] = d->target.ca_file;
    item["attempts"] = d->attempts;
    item["next_attempt_unix_ms"] = unixMillis(d->next_attempt);
    item["last_error"] = d->last_error;
    list.push_back(std::move(item));
  }
  Json root = {{"version", kOutboxVersion}, {"deliveries", std::move(list)}};
  return root.dump(1, ' ', false, Json::error_handler_t::replace) + "\n";
}

Result<size_t> WebhookSender::loadOutbox() {
  if (outbox_path_.empty()) return size_t{0};
  auto text = readWholeFile(outbox_path_);
  if (!text.isOk()) {
    if (text.status().code() == StatusCode::kNotFound) return size_t{0};
    return text.status();
  }
  return loadOutboxText(outbox_path_, *text);
}

Result<size_t> WebhookSender::loadOutboxText(const std::string& name, const std::string& text) {
  const std::string where = "webhook outbox " + name + ": ";
  Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return invalidArgument(where + "not a JSON object");
  const auto version = root.find("version");
  if (version == root.end() || !version->is_number_integer() ||
      version->get<int64_t>() != kOutboxVersion) {
    return invalidArgument(where + "unknown version (want " + std::to_string(kOutboxVersion) + ")");
  }
  auto list = root.find("deliveries");
  if (list == root.end() || !list->is_array()) return invalidArgument(where + "no deliveries list");
  std::vector<std::unique_ptr<Delivery>> loaded;
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& item = (*list)[i];
    const std::string at = where + "deliveries[" + std::to_string(i) + "]: ";
    if (!item.is_object()) return invalidArgument(at + "not an object");
    auto d = std::make_unique<Delivery>();
    d->owner = this;
    try {
      d->id = item.at("id").get<std::string>();
      auto event = parseScalegatePayload(item.at("event").dump());
      if (!event.isOk()) return invalidArgument(at + "event: " + event.status().message());
      d->event = std::move(*event);
      d->body = item.at("body").get<std::string>();
      d->target.url = item.at("url").get<std::string>();
      if (!parseWebhookFormat(item.at("format").get<std::string>(), &d->target.format)) {
        return invalidArgument(at + "format: unknown");
      }
      d->target.timeout = std::chrono::milliseconds(stateMillis(item.at("timeout_ms")));
      d->target.max_attempts = std::max<uint32_t>(1, stateUint32(item.at("max_attempts")));
      d->target.max_backoff = std::chrono::milliseconds(stateMillis(item.at("max_backoff_ms")));
      d->target.ca_file = item.value("ca_file", "");
      d->attempts = stateUint32(item.at("attempts"));
      d->next_attempt = WallTime(std::chrono::duration_cast<WallTime::duration>(
          std::chrono::milliseconds(stateMillis(item.at("next_attempt_unix_ms")))));
      d->last_error = item.value("last_error", "");
    } catch (const Json::exception& e) {
      return invalidArgument(at + e.what());
    }
    if (d->id.empty() || d->id.find('.') != std::string::npos) {
      return invalidArgument(at + "bad id");
    }
    loaded.push_back(std::move(d));
  }
  size_t resumed = 0;
  for (auto& d : loaded) {
    if (deliveries_.count(d->id) != 0) continue;
    std::string secret =
        hooks_.secret_for ? hooks_.secret_for(d->event.pool, d->target.url) : std::string();
    auto key = WebhookKey::fromSecret(secret);
    if (key.isOk()) {
      d->key = std::move(*key);
    } else {
      d->setup_error = "no scaler secret for pool " + d->event.pool + " after a restart";
    }
    if (auto url = parseUrl(d->target.url); !url.isOk()) d->setup_error = url.status().message();
    d->seq = next_seq_++;
    d->timer = evtimer_new(base_, &WebhookSender::onTimerEvent, d.get());
    d->deadline = evtimer_new(base_, &WebhookSender::onDeadlineEvent, d.get());
    Delivery* raw = d.get();
    const WallTime next = d->next_attempt;
    deliveries_.emplace(d->id, std::move(d));
    Duration wait = std::chrono::duration_cast<Duration>(next - clock_.wallNow());
    schedule(raw, std::max(wait, Duration::zero()));
    ++resumed;
    logEvent(LogLevel::kInfo, "webhook resumed from the outbox",
             {{"id", raw->id},
              {"type", scaleEventTypeName(raw->event.type)},
              {"pool", raw->event.pool},
              {"attempts_made", std::to_string(raw->attempts)}});
  }
  counters_.pending = deliveries_.size();
  return resumed;
}

}  // namespace scalegate::control
