// WebhookSender over https://: a real TLS server (evhttp + bufferevent_openssl) on 127.0.0.1
// with a self-signed certificate made here for IP 127.0.0.1.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "control/webhook_sender.h"
#include "tests/unit/control/test_support.h"

namespace scalegate::control {
namespace {

using namespace std::chrono_literals;

constexpr char kSecret[] = "raw secret bytes";

// A self-signed P-256 certificate for IP:127.0.0.1, written to `cert_path`.
struct SelfSigned {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  SelfSigned() {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("scaler"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_EXTENSION* bc = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "CA:TRUE");
    X509_add_ext(cert, bc, -1);
    X509_EXTENSION_free(bc);
    X509_sign(cert, key, EVP_sha256());
  }
  ~SelfSigned() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  void write(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
  }
};

class TlsServer {
 public:
  TlsServer(event_base* base, const SelfSigned& id) : http_(evhttp_new(base)) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx_, id.cert);
    SSL_CTX_use_PrivateKey(ctx_, id.key);
    evhttp_set_bevcb(
        http_,
        [](event_base* b, void* arg) -> bufferevent* {
          return bufferevent_openssl_socket_new(b, -1, SSL_new(static_cast<SSL_CTX*>(arg)),
                                                BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
        },
        ctx_);
    port_ = test_support::bindLoopback(http_);
    evhttp_set_gencb(
        http_,
        [](evhttp_request* req, void* arg) {
          auto* self = static_cast<TlsServer*>(arg);
          const char* id = evhttp_find_header(evhttp_request_get_input_headers(req), "webhook-id");
          self->ids.push_back(id != nullptr ? id : "");
          evhttp_send_reply(req, 204, "No Content", nullptr);
        },
        this);
  }
  ~TlsServer() {
    evhttp_free(http_);
    SSL_CTX_free(ctx_);
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<std::string> ids;

 private:
  evhttp* http_;
  SSL_CTX* ctx_ = nullptr;
  uint16_t port_ = 0;
};

class WebhookSenderTls : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    server_ = std::make_unique<TlsServer>(base_, id_);
    char tmpl[] = "/tmp/sg_ca_XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    ca_ = tmpl;
    id_.write(ca_);
    WebhookSender::Hooks hooks;
    hooks.on_delivered = [this](const std::string& id, const ScaleEvent&) { delivered_ = id; };
    hooks.on_failed = [this](const std::string&, const ScaleEvent&, const std::string& e) {
      failed_ = e;
    };
    sender_ = std::make_unique<WebhookSender>(base_, SystemClock::instance(), "", hooks);
  }
  void TearDown() override {
    sender_.reset();
    server_.reset();
    event_base_free(base_);
    std::remove(ca_.c_str());
  }
  bool runUntil(const std::function<bool()>& pred) {
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      timeval tv{0, 10'000};
      event_base_loopexit(base_, &tv);
      event_base_loop(base_, EVLOOP_ONCE);
    }
    return true;
  }
  WebhookTarget target() {
    WebhookTarget t;
    t.url = server_->url();
    t.secret = kSecret;
    t.timeout = 2s;
    t.max_attempts = 2;
    t.max_backoff = 20ms;
    t.ca_file = ca_;
    return t;
  }
  static ScaleEvent event() {
    ScaleEvent e;
    e.pool = "web";
    e.old_capacity = 1;
    e.new_capacity = 2;
    e.created_at = SystemClock::instance().wallNow();
    return e;
  }

  SelfSigned id_;
  event_base* base_ = nullptr;
  std::unique_ptr<TlsServer> server_;
  std::unique_ptr<WebhookSender> sender_;
  std::string ca_, delivered_, failed_;
};

TEST_F(WebhookSenderTls, DeliversOverHttps) {
  const std::string id = sender_->enqueue(event(), target());
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty() || !failed_.empty(); }));
  EXPECT_EQ(failed_, "");
  EXPECT_EQ(delivered_, id);
  ASSERT_EQ(server_->ids.size(), 1u);
  EXPECT_EQ(server_->ids[0], id);
}

TEST_F(WebhookSenderTls, RefusesAnUntrustedCertificate) {
  WebhookTarget t = target();
  t.ca_file = "";  // the system's CAs do not know this certificate
  sender_->enqueue(event(), t);
  ASSERT_TRUE(runUntil([&] { return !delivered_.empty() || !failed_.empty(); }));
  EXPECT_EQ(delivered_, "");
  EXPECT_NE(failed_.find("certificate verify failed"), std::string::npos) << failed_;
  EXPECT_TRUE(server_->ids.empty());
  EXPECT_EQ(sender_->counters().failed_attempts[static_cast<size_t>(AttemptOutcome::kConnect)], 2u);
}

}  // namespace
}  // namespace scalegate::control
