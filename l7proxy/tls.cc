#include "l7proxy/tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "common/openssl_error.h"

namespace scalegate::l7proxy {
namespace {

// TLS 1.2 suites with forward secrecy and AEAD only (Mozilla "intermediate"); TLS 1.3 keeps
// OpenSSL's defaults, which are all AEAD.
constexpr const char* kModernCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr unsigned char kSessionIdContext[] = "scalegate";

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

int ticketRingIndex() {
  static const int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

// Seals (enc=1) or opens (enc=0) a session ticket with the connection's key ring.
int onTicketKey(SSL* ssl, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cctx,
                EVP_MAC_CTX* hctx, int enc) {
  auto* ring = static_cast<const TicketKeyRing*>(SSL_get_ex_data(ssl, ticketRingIndex()));
  if (ring == nullptr || ring->keys.empty()) return enc ? -1 : 0;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (enc) {
    const TicketKey& k = ring->keys.front();
    if (RAND_bytes(iv, 16) != 1) return -1;
    std::memcpy(key_name, k.name, 16);
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    if (EVP_MAC_init(hctx, k.hmac, sizeof(k.hmac), params) != 1) return -1;
    return 1;
  }
  const TicketKey* k = ring->find(key_name);
  if (k == nullptr) return 0;  // unknown or retired key: full handshake
  if (EVP_MAC_init(hctx, k->hmac, sizeof(k->hmac), params) != 1) return -1;
  if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k->aes, iv) != 1) return -1;
  return k == &ring->keys.front() ? 1 : 2;  // 2: valid, but issue a ticket under the new key
}

// DNS names in the certificate's SAN, else its CN; lowercase.
std::vector<std::string> certificateNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type != GEN_DNS) continue;
      const unsigned char* p = ASN1_STRING_get0_data(g->d.dNSName);
      std::string n(reinterpret_cast<const char*>(p),
                    static_cast<size_t>(ASN1_STRING_length(g->d.dNSName)));
      for (char& ch : n) ch = lower(ch);
      names.push_back(std::move(n));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert);
    char cn[256];
    int n = X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn));
    if (n > 0) {
      std::string s(cn, static_cast<size_t>(n));
      for (char& ch : s) ch = lower(ch);
      names.push_back(std::move(s));
    }
  }
  return names;
}

}  // namespace

bool sniMatches(std::string_view pattern, std::string_view host) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() <= suffix.size()) return false;
    std::string_view label = host.substr(0, host.size() - suffix.size());
    if (label.find('.') != std::string_view::npos) return false;  // one label only
    return equalsIgnoreCase(host.substr(label.size()), suffix);
  }
  return equalsIgnoreCase(pattern, host);
}

int pickCertificate(const std::vector<std::vector<std::string>>& names, std::string_view sni,
                    int fallback) {
  if (sni.empty()) return fallback;
  for (size_t i = 0; i < names.size(); ++i) {
    for (const std::string& n : names[i]) {
      if (n[0] != '*' && equalsIgnoreCase(n, sni)) return static_cast<int>(i);
    }
  }
  for (size_t i = 0; i < names.size(); ++i) {
    for (const std::string& n : names[i]) {
      if (n[0] == '*' && sniMatches(n, sni)) return static_cast<int>(i);
    }
  }
  return fallback;
}

const TicketKey* TicketKeyRing::find(const uint8_t name[16]) const {
  for (const TicketKey& k : keys) {
    if (std::memcmp(k.name, name, 16) == 0) return &k;
  }
  return nullptr;
}

std::shared_ptr<const TicketKeyRing> rotateTicketKeys(const TicketKeyRing* old,
                                                      const TicketKey& fresh, size_t keep) {
  auto ring = std::make_shared<TicketKeyRing>();
  ring->keys.push_back(fresh);
  if (old != nullptr) {
    for (const TicketKey& k : old->keys) {
      if (ring->keys.size() >= keep) break;
      ring->keys.push_back(k);
    }
  }
  return ring;
}

Result<TicketKey> randomTicketKey() {
  TicketKey k;
  if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
      RAND_bytes(k.hmac, sizeof(k.hmac)) != 1) {
    return internalError("RAND_bytes: " + takeOpensslErrors());
  }
  return k;
}

Result<std::shared_ptr<const TlsServerContext>> TlsServerContext::build(
    const config::ListenerTls& cfg) {
  std::shared_ptr<TlsServerContext> t(new TlsServerContext());
  for (const std::string& p : cfg.alpn) {
    t->alpn_wire_.push_back(static_cast<char>(p.size()));
    t->alpn_wire_ += p;
  }
  ERR_clear_error();
  for (size_t i = 0; i < cfg.certificates.size(); ++i) {
    const config::TlsCertificate& c = cfg.certificates[i];
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) return internalError("SSL_CTX_new: " + takeOpensslErrors());
    t->certs_.push_back(Cert{ctx, {}});
    SSL_CTX_set_min_proto_version(
        ctx, cfg.min_version == config::TlsVersion::k13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    const char* ciphers = cfg.ciphers.empty() ? kModernCiphers : cfg.ciphers.c_str();
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
      return invalidArgument("tls.ciphers: no usable cipher in \"" + std::string(ciphers) +
                             "\": " + takeOpensslErrors());
    }
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_file.c_str()) != 1) {
      return invalidArgument("cannot load certificate " + c.cert_file + ": " + takeOpensslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return invalidArgument("cannot load key " + c.key_file + ": " + takeOpensslErrors());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return invalidArgument("key " + c.key_file + " does not match certificate " + c.cert_file);
    }
    SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1);
    // Resumption is stateless (tickets): no per-worker session cache to share or lock.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (cfg.session_tickets) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, onTicketKey);
      SSL_CTX_set_num_tickets(ctx, 1);
    } else {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, onServerName);
    SSL_CTX_set_tlsext_servername_arg(ctx, t.get());
    SSL_CTX_set_alpn_select_cb(ctx, onAlpn, t.get());
    X509* leaf = SSL_CTX_get0_certificate(ctx);
    t->certs_.back().names = certificateNames(leaf);
    t->all_names_.push_back(t->certs_.back().names);
    if (c.is_default) t->default_ = static_cast<int>(i);
  }
  if (t->certs_.empty()) return invalidArgument("tls: no certificate");
  return std::shared_ptr<const TlsServerContext>(std::move(t));
}

TlsServerContext::~TlsServerContext() {
  for (Cert& c : certs_) SSL_CTX_free(c.ctx);
}

SSL* TlsServerContext::newSsl(int fd, const TicketKeyRing* keys) const {
  SSL* ssl = SSL_new(certs_[default_].ctx);
  if (ssl == nullptr) return nullptr;
  SSL_set_fd(ssl, fd);
  SSL_set_accept_state(ssl);
  SSL_set_ex_data(ssl, ticketRingIndex(), const_cast<TicketKeyRing*>(keys));
  return ssl;
}

void forgetTicketKeys(SSL* ssl) { SSL_set_ex_data(ssl, ticketRingIndex(), nullptr); }

int TlsServerContext::onServerName(SSL* ssl, int*, void* arg) {
  auto* t = static_cast<const TlsServerContext*>(arg);
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni == nullptr) return SSL_TLSEXT_ERR_OK;
  int i = pickCertificate(t->all_names_, sni, t->default_);
  SSL_CTX* want = t->certs_[i].ctx;
  if (SSL_get_SSL_CTX(ssl) != want) SSL_set_SSL_CTX(ssl, want);
  return SSL_TLSEXT_ERR_OK;
}

int TlsServerContext::onAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
                             const unsigned char* in, unsigned int inlen, void* arg) {
  auto* t = static_cast<const TlsServerContext*>(arg);
  unsigned char* sel = nullptr;
  // Server preference: the first of ours that the client offers.
  int rc = SSL_select_next_proto(&sel, outlen,
                                 reinterpret_cast<const unsigned char*>(t->alpn_wire_.data()),
                                 static_cast<unsigned int>(t->alpn_wire_.size()), in, inlen);
  if (rc != OPENSSL_NPN_NEGOTIATED) return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

Result<SSL_CTX*> newClientContext(const std::string& ca_file, bool verify) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return internalError("SSL_CTX_new: " + takeOpensslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (verify) {
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                             : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
    if (ok != 1) {
      std::string err = takeOpensslErrors();
      SSL_CTX_free(ctx);
      return invalidArgument("cannot load CA file " + ca_file + ": " + err);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

}  // namespace scalegate::l7proxy
