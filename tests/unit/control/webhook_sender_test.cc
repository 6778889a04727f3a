#include "control/webhook_sender.h"
#include "tests/unit/control/test_support.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "control/state_file.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;
using Steady = std::chrono::steady_clock;

constexpr char kSecret[] = "whsec_YXV0b3NjYWxlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=";

// What the test server does with one request.
struct Reply {
  Reply(int s = 200, std::string ra = "", bool h = false)  // NOLINT(google-explicit-constructor)
      : status(s), retry_after(std::move(ra)), hang(h) {}
  int status;
  std::string retry_after;  // "" = no header
  bool hang;                // never answer
};

struct Received {
  std::string id, timestamp, signature, content_type, body;
  Steady::time_point at;
};

// A real HTTP server on 127.0.0.1:0 in the same event_base (evhttp).
class TestServer {
 public:
  explicit TestServer(event_base* base) : http_(evhttp_new(base)) {
    port_ = test_support::bindLoopback(http_);
    evhttp_set_gencb(http_, &TestServer::onRequest, this);
  }
  ~TestServer() { evhttp_free(http_); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks"; }
  void script(std::vector<Reply> replies) { replies_.assign(replies.begin(), replies.end()); }
  void setDefault(Reply r) { default_ = r; }
  const std::vector<Received>& received() const { return received_; }

 private:
  static void onRequest(evhttp_request* req, void* arg) {
    auto* self = static_cast<TestServer*>(arg);
    evkeyvalq* h = evhttp_request_get_input_headers(req);
    auto header = [&](const char* name) {
      const char* v = evhttp_find_header(h, name);
      return v == nullptr ? std::string() : std::string(v);
    };
    Received r;
    r.id = header("webhook-id");
    r.timestamp = header("webhook-timestamp");
    r.signature = header("webhook-signature");
    r.content_type = header("Content-Type");
    evbuffer* in = evhttp_request_get_input_buffer(req);
    r.body.resize(evbuffer_get_length(in));
    evbuffer_copyout(in, r.body.data(), r.body.size());
    r.at = Steady::now();
    self->received_.push_back(std::move(r));
    Reply reply = self->default_;
    if (!self->replies_.empty()) {
      reply = self->replies_.front();
      self->replies_.pop_front();
    }
    if (reply.hang) return;  // freed with its connection
    if (!reply.retry_after.empty()) {
      evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                        reply.retry_after.c_str());
    }
    evbuffer* out = evbuffer_new();
    evbuffer_add_printf(out, "reply %d\n", reply.status);
    evhttp_send_reply(req, reply.status, "X", out);
    evbuffer_free(out);
  }

  evhttp* http_;
  uint16_t port_ = 0;
  std::deque<Reply> replies_;
  Reply default_;
  std::vector<Received> received_;
};

struct Outcome {
  std::string id;
  ScaleEvent event;
  std::string error;
};

class WebhookSenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    server_ = std::make_unique<TestServer>(base_);
    char tmpl[] = "/tmp/sg_outbox_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    outbox_ = dir_ + "/outbox.json";
  }
  void TearDown() override {
    sender_.reset();
    server_.reset();
    event_base_free(base_);
    std::remove(outbox_.c_str());
    rmdir(dir_.c_str());
  }

  std::unique_ptr<WebhookSender> makeSender(std::string outbox) {
    WebhookSender::Hooks hooks;
    hooks.on_delivered = [this](const std::string& id, const ScaleEvent& e) {
      delivered_.push_back({id, e, ""});
    };
    hooks.on_failed = [this](const std::string& id, const ScaleEvent& e, const std::string& err) {
      failed_.push_back({id, e, err});
    };
    hooks.secret_for = [](const std::string& pool, const std::string&) {
      return pool == "web" ? std::string(kSecret) : std::string();
    };
    return std::make_unique<WebhookSender>(base_, SystemClock::instance(), std::move(outbox),
                                           std::move(hooks));
  }

  WebhookTarget target() {
    WebhookTarget t;
    t.url = server_->url();
    t.secret = kSecret;
    t.timeout = 2s;
    t.max_attempts = 5;
    t.max_backoff = 50ms;
    return t;
  }

  static ScaleEvent event() {
    ScaleEvent e;
    e.type = ScaleEventType::kScaleOut;
    e.pool = "web";
    e.old_capacity = 2;
    e.new_capacity = 3;
    e.reason.kind = ScaleReasonKind::kRule;
    e.reason.metric = "cpu";
    e.reason.value = 90;
    e.reason.threshold = 75;
    e.zones = {{"1", 1}};
    e.created_at = SystemClock::instance().wallNow();
    return e;
  }

  // Runs the loop until pred() holds or `limit` passes (bounded).
  bool runUntil(const std::function<bool()>& pred, Duration limit = 10s) {
    const auto end = Steady::now() + limit;
    while (!pred()) {
      if (Steady::now() >= end) return false;
      timeval tv{0, 10'000};
      event_base_loopexit(base_, &tv);
      event_base_loop(base_, EVLOOP_ONCE);
    }
    return true;
  }

  void expectSigned(const Received& r) {
    auto key = WebhookKey::fromSecret(kSecret);
    ASSERT_TRUE(key.isOk());
    Status st =
        key->verify(r.id, r.timestamp, r.signature, r.body, SystemClock::instance().wallNow());
    EXPECT_TRUE(st.isOk()) << st.message();
  }

  event_base* base_ = nullptr;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<WebhookSender> sender_;
  std::string dir_, outbox_;
  std::vector<Outcome> delivered_, failed_;
};

TEST_F(WebhookSenderTest, DeliversASignedEvent) {
  sender_ = makeSender(outbox_);
  const std::string id = sender_->enqueue(event(), target());
  EXPECT_EQ(id.size(), 30u);
  EXPECT_EQ(id.rfind("msg_", 0), 0u);
  EXPECT_EQ(sender_->counters().pending, 1u);
  // The outbox holds the delivery before any attempt.
  auto text = readWholeFile(outbox_);
  ASSERT_TRUE(text.isOk());
  EXPECT_EQ(Json::parse(*text)["deliveries"][0]["id"], id);

  ASSERT_TRUE(runUntil([&] { return !delivered_.empty(); }));
  ASSERT_EQ(server_->received().size(), 1u);
  const Received& r = server_->received()[0];
  EXPECT_EQ(r.id, id);
  EXPECT_EQ(r.content_type, "application/json");
  expectSigned(r);
  Json body = Json::parse(r.body);
  EXPECT_EQ(body["type"], "scale_out");
  EXPECT_EQ(body["id"], id);
  EXPECT_EQ(body["data"]["new_capacity"], 3);
  EXPECT_EQ(delivered_[0].id, id);
  EXPECT_EQ(delivered_[0].event.new_capacity, 3u);
  EXPECT_TRUE(failed_.empty());
  const WebhookCounters& c = sender_->counters();
  EXPECT_EQ(c.delivered, 1u);
  EXPECT_EQ(c.attempts, 1u);
  EXPECT_EQ(c.retries, 0u);
  EXPECT_EQ(c.pending, 0u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_GT(c.last_success_latency.count(), 0);
  EXPECT_TRUE(Json::parse(*readWholeFile(outbox_))["deliveries"].empty());
}

TEST_F(WebhookSenderTest, AzureFormatIsSentWhenAsked) {
  sender_ = makeSender("");
  WebhookTarget t = target();
  t.format = WebhookFormat::kAzure;
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty(); }));
  Json body = Json::parse(server_->received().at(0).body);
  EXPECT_EQ(body["operation"], "Scale Out");
  EXPECT_EQ(body["context"]["newCapacity"], "3");
  expectSigned(server_->received()[0]);
}

TEST_F(WebhookSenderTest, RetriesA500WithTheSameIdAndBody) {
  server_->script({{500}, {200}});
  sender_ = makeSender(outbox_);
  const std::string id = sender_->enqueue(event(), target());
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty(); }));
  ASSERT_EQ(server_->received().size(), 2u);
  EXPECT_EQ(server_->received()[0].id, id);
  EXPECT_EQ(server_->received()[1].id, id);
  EXPECT_EQ(server_->received()[0].body, server_->received()[1].body);
  expectSigned(server_->received()[1]);
  // Back-off after the first failure: min(max_backoff 50ms, 1s) with equal jitter: 25..50 ms.
  auto gap = server_->received()[1].at - server_->received()[0].at;
  EXPECT_GE(gap, 24ms);
  EXPECT_LT(gap, 1s);
  const WebhookCounters& c = sender_->counters();
  EXPECT_EQ(c.failed_attempts[static_cast<size_t>(AttemptOutcome::kHttp5xx)], 1u);
  EXPECT_EQ(c.retries, 1u);
  EXPECT_EQ(c.delivered, 1u);
}

TEST_F(WebhookSenderTest, HonoursRetryAfter) {
  server_->script({{503, "1"}, {429, "0"}, {200}});
  sender_ = makeSender("");
  WebhookTarget t = target();
  t.max_backoff = 10ms;  // the computed back-off alone would be at most 10 ms
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty(); }));
  ASSERT_EQ(server_->received().size(), 3u);
  auto gap = server_->received()[1].at - server_->received()[0].at;
  EXPECT_GE(gap, 990ms);
  EXPECT_LT(gap, 3s);
  EXPECT_EQ(sender_->counters().failed_attempts[static_cast<size_t>(AttemptOutcome::kHttp429)], 1u);
}

TEST_F(WebhookSenderTest, TimesOutAHangingScalerAndGivesUp) {
  server_->setDefault(Reply(200, "", /*hang=*/true));
  sender_ = makeSender(outbox_);
  WebhookTarget t = target();
  t.timeout = 200ms;
  t.max_attempts = 2;
  t.max_backoff = 20ms;
  const auto start = Steady::now();
  const std::string id = sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !failed_.empty(); }));
  EXPECT_GE(Steady::now() - start, 400ms);
  EXPECT_EQ(server_->received().size(), 2u);
  EXPECT_EQ(failed_[0].id, id);
  EXPECT_NE(failed_[0].error.find("timeout"), std::string::npos) << failed_[0].error;
  EXPECT_NE(failed_[0].error.find("after 2 attempts"), std::string::npos) << failed_[0].error;
  const WebhookCounters& c = sender_->counters();
  EXPECT_EQ(c.failed_attempts[static_cast<size_t>(AttemptOutcome::kTimeout)], 2u);
  EXPECT_EQ(c.given_up, 1u);
  EXPECT_EQ(c.in_flight, 0u);
  EXPECT_EQ(c.pending, 0u);
  EXPECT_TRUE(Json::parse(*readWholeFile(outbox_))["deliveries"].empty());
}

TEST_F(WebhookSenderTest, GivesUpAfterMaxAttempts) {
  server_->setDefault({401});
  sender_ = makeSender("");
  WebhookTarget t = target();
  t.max_attempts = 3;
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !failed_.empty(); }));
  EXPECT_EQ(server_->received().size(), 3u);
  EXPECT_NE(failed_[0].error.find("HTTP 401: reply 401"), std::string::npos) << failed_[0].error;
  EXPECT_EQ(sender_->counters().failed_attempts[static_cast<size_t>(AttemptOutcome::kHttp4xx)], 3u);
  EXPECT_EQ(sender_->counters().retries, 2u);
  EXPECT_TRUE(delivered_.empty());
}

TEST_F(WebhookSenderTest, GoneIsNotRetried) {
  server_->setDefault({410});
  sender_ = makeSender("");
  sender_->enqueue(event(), target());
  ASSERT_TRUE(runUntil([&] { return !failed_.empty(); }));
  EXPECT_EQ(server_->received().size(), 1u);
  EXPECT_NE(failed_[0].error.find("410"), std::string::npos);
}

TEST_F(WebhookSenderTest, RefusedConnectionsAreRetried) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);  // nothing listens on this port now
  sender_ = makeSender("");
  WebhookTarget t = target();
  t.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/";
  t.max_attempts = 2;
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !failed_.empty(); }));
  EXPECT_EQ(sender_->counters().failed_attempts[static_cast<size_t>(AttemptOutcome::kConnect)], 2u);
}

TEST_F(WebhookSenderTest, BadTargetsFailFromTheLoop) {
  sender_ = makeSender("");
  WebhookTarget t = target();
  t.url = "ftp://x/";
  sender_->enqueue(event(), t);
  EXPECT_TRUE(failed_.empty());  // never from inside enqueue
  t = target();
  t.secret = "whsec_***";
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return failed_.size() == 2; }));
  EXPECT_NE(failed_[0].error.find("http://"), std::string::npos) << failed_[0].error;
  EXPECT_NE(failed_[1].error.find("secret"), std::string::npos) << failed_[1].error;
  EXPECT_EQ(sender_->counters().attempts, 0u);
  EXPECT_EQ(sender_->counters().given_up, 2u);
}

TEST_F(WebhookSenderTest, OutboxSurvivesARestart) {
  server_->setDefault({500});
  sender_ = makeSender(outbox_);
  WebhookTarget t = target();
  t.max_backoff = 60s;  // the next attempt would be 0.5..1 s away
  ScaleEvent e = event();
  e.type = ScaleEventType::kScaleIn;
  e.old_capacity = 3;
  e.new_capacity = 2;
  e.instances = {"vm-2"};
  const std::string id = sender_->enqueue(e, t);
  ASSERT_TRUE(runUntil([&] { return sender_->counters().failed_attempts[7] == 1; }));
  Json saved = Json::parse(*readWholeFile(outbox_));
  ASSERT_EQ(saved["deliveries"].size(), 1u);
  EXPECT_EQ(saved["deliveries"][0]["attempts"], 1);
  EXPECT_EQ(saved["deliveries"][0]["url"], t.url);
  EXPECT_EQ(saved.dump().find("YXV0b3Nj"), std::string::npos) << "the secret must not be saved";

  sender_.reset();  // "restart"
  server_->setDefault({200});
  sender_ = makeSender(outbox_);
  auto resumed = sender_->loadOutbox();
  ASSERT_TRUE(resumed.isOk()) << resumed.status().toString();
  EXPECT_EQ(*resumed, 1u);
  EXPECT_EQ(sender_->pendingIds(), std::vector<std::string>{id});
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty(); }));
  EXPECT_EQ(delivered_[0].id, id);
  EXPECT_EQ(delivered_[0].event.instances, e.instances);
  EXPECT_EQ(delivered_[0].event.type, ScaleEventType::kScaleIn);
  ASSERT_EQ(server_->received().size(), 2u);
  EXPECT_EQ(server_->received()[1].id, id);
  EXPECT_EQ(server_->received()[1].body, server_->received()[0].body);
  expectSigned(server_->received()[1]);
  // The first attempt happened before the restart: this sender made one.
  EXPECT_EQ(sender_->counters().attempts, 1u);
  EXPECT_EQ(sender_->counters().retries, 1u);
  EXPECT_TRUE(Json::parse(*readWholeFile(outbox_))["deliveries"].empty());
}

TEST_F(WebhookSenderTest, OutboxWithoutSecretGivesUp) {
  server_->setDefault({500});
  sender_ = makeSender(outbox_);
  ScaleEvent e = event();
  e.pool = "gone";
  WebhookTarget t = target();
  t.max_backoff = 60s;
  sender_->enqueue(e, t);
  ASSERT_TRUE(runUntil(
      [&] { return sender_->counters().attempts == 1 && sender_->counters().in_flight == 0; }));
  sender_.reset();
  sender_ = makeSender(outbox_);
  ASSERT_TRUE(sender_->loadOutbox().isOk());
  ASSERT_TRUE(runUntil([&] { return !failed_.empty(); }));
  EXPECT_NE(failed_[0].error.find("no scaler secret for pool gone"), std::string::npos);
}

TEST_F(WebhookSenderTest, MalformedOutboxIsAnError) {
  ASSERT_TRUE(replaceFileAtomically(outbox_, "{\"version\":1,\"deliveries\":[{\"id\":3}]}").isOk());
  sender_ = makeSender(outbox_);
  auto r = sender_->loadOutbox();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("deliveries[0]"), std::string::npos) << r.status().message();
  std::remove(outbox_.c_str());
  EXPECT_EQ(*makeSender(outbox_)->loadOutbox(), 0u);  // a missing file is an empty outbox
}

TEST_F(WebhookSenderTest, OutboxTextIsWhatTheFileHoldsAndLoadsAgain) {
  server_->setDefault({500});
  sender_ = makeSender(outbox_);
  WebhookTarget t = target();
  t.max_backoff = 60s;
  const std::string id = sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return sender_->counters().failed_attempts[7] == 1; }));
  const std::string text = *readWholeFile(outbox_);
  EXPECT_EQ(sender_->outboxText(), text);
  sender_.reset();

  sender_ = makeSender("");  // no file: the text is all there is
  auto resumed = sender_->loadOutboxText("copied.outbox.json", text);
  ASSERT_TRUE(resumed.isOk()) << resumed.status().toString();
  EXPECT_EQ(*resumed, 1u);
  EXPECT_EQ(sender_->pendingIds(), std::vector<std::string>{id});
  EXPECT_EQ(sender_->outboxText(), text);

  auto bad = makeSender("")->loadOutboxText("copied.outbox.json", text.substr(0, text.size() / 2));
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().message().rfind("webhook outbox copied.outbox.json: ", 0), 0u)
      << bad.status().message();
}

// Found by tests/fuzz autoscale_state: numbers that nlohmann converts with undefined behaviour
// (floats out of range) or that overflow nanoseconds are refused, and nothing is resumed.
TEST_F(WebhookSenderTest, OutboxNumbersOutOfRangeAreAnError) {
  sender_ = makeSender(outbox_);
  server_->setDefault({500});
  WebhookTarget t = target();
  t.max_backoff = 60s;
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return sender_->counters().failed_attempts[7] == 1; }));
  const Json good = Json::parse(sender_->outboxText());
  sender_.reset();
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, Json>>{{"timeout_ms", Json(INT64_MAX)},
                                                 {"max_backoff_ms", Json(-1e30)},
                                                 {"next_attempt_unix_ms", Json(UINT64_MAX)},
                                                 {"attempts", Json(-1)},
                                                 {"max_attempts", Json(1e20)}}) {
    Json j = good;
    j["deliveries"][0][key] = value;
    auto s = makeSender("");
    auto r = s->loadOutboxText("x.outbox.json", j.dump());
    ASSERT_FALSE(r.isOk()) << key;
    EXPECT_NE(r.status().message().find("x.outbox.json: deliveries[0]: "), std::string::npos)
        << r.status().message();
    EXPECT_EQ(s->pending(), 0u);
  }
  Json j = good;
  j["version"] = 1e100;
  EXPECT_FALSE(makeSender("")->loadOutboxText("x.outbox.json", j.dump()).isOk());
}

TEST(WebhookBackoff, DoublesUpToTheCap) {
  EXPECT_EQ(WebhookSender::backoffBase(1, 60s), 1s);
  EXPECT_EQ(WebhookSender::backoffBase(2, 60s), 2s);
  EXPECT_EQ(WebhookSender::backoffBase(3, 60s), 4s);
  EXPECT_EQ(WebhookSender::backoffBase(6, 60s), 32s);
  EXPECT_EQ(WebhookSender::backoffBase(7, 60s), 60s);
  EXPECT_EQ(WebhookSender::backoffBase(1000, 60s), 60s);
  EXPECT_EQ(WebhookSender::backoffBase(1, 200ms), 200ms);
}

TEST(WebhookRetryAfter, SecondsAndDates) {
  const WallTime now{std::chrono::seconds(784111777)};  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(WebhookSender::parseRetryAfter("120", now), Duration(120s));
  EXPECT_EQ(WebhookSender::parseRetryAfter(" 0 ", now), Duration(0s));
  EXPECT_EQ(WebhookSender::parseRetryAfter("Sun, 06 Nov 1994 08:50:07 GMT", now), Duration(30s));
  EXPECT_EQ(WebhookSender::parseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now), Duration(0s));
  EXPECT_FALSE(WebhookSender::parseRetryAfter("soon", now));
  EXPECT_FALSE(WebhookSender::parseRetryAfter("-1", now));
  EXPECT_FALSE(WebhookSender::parseRetryAfter("12s", now));
  EXPECT_FALSE(WebhookSender::parseRetryAfter("", now));
}

}  // namespace
}  // namespace scalegate::control
