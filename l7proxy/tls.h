#pragma once
// TLS (OpenSSL) for the L7 data path: the server side of a listener (one SSL_CTX per
// certificate, SNI picks among them, ALPN, session tickets under rotating keys) and client
// contexts (upstreams, HTTPS probes).
//
// Control builds a TlsServerContext when it builds a snapshot; workers only create SSL objects
// from it. A connection keeps the SSL_CTX it started with (OpenSSL reference counts), so a
// certificate reload never touches connections already open.
//
//   control: files ─► TlsServerContext::build ─► Snapshot::listener_tls ──► worker
//   worker:  accept ─► newSsl() ─ ClientHello ─► onServerName: pickCertificate(SNI) ─► SSL_CTX
//                                              └► onAlpn: h2 | http/1.1
//                                              └► onTicketKey: TicketKeyRing (from the snapshot)

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "config/model.h"

namespace scalegate::l7proxy {

// True when `pattern` (a certificate name, lowercase: "example.com" or "*.example.com") covers
// `host` (case-insensitive). A wildcard stands for exactly one leftmost label (RFC 6125).
bool sniMatches(std::string_view pattern, std::string_view host);

// Index of the certificate for `sni`: an exact name first, then a wildcard, else `fallback`.
// names[i] are the names of certificate i. Pure; any thread.
int pickCertificate(const std::vector<std::vector<std::string>>& names, std::string_view sni,
                    int fallback);

// One session ticket key (RFC 5077 layout: name, AES-256 key, HMAC-SHA256 key).
struct TicketKey {
  uint8_t name[16] = {};
  uint8_t aes[32] = {};
  uint8_t hmac[32] = {};
};

// The keys tickets are sealed and opened with. Immutable once built; the first key seals new
// tickets, every key opens them (a ticket under an older key is accepted and renewed).
struct TicketKeyRing {
  std::vector<TicketKey> keys;  // newest first
  const TicketKey* find(const uint8_t name[16]) const;
};

// A ring with `fresh` in front of old's keys, at most `keep` keys in all (old may be null).
std::shared_ptr<const TicketKeyRing> rotateTicketKeys(const TicketKeyRing* old,
                                                      const TicketKey& fresh, size_t keep);
// A key from the OpenSSL CSPRNG.
Result<TicketKey> randomTicketKey();

// The server side of one TLS listener. Built by control (files read here), shared read-only
// by the workers through the snapshot.
class TlsServerContext {
 public:
  // control thread: reads and checks every certificate and key.
  static Result<std::shared_ptr<const TlsServerContext>> build(const config::ListenerTls& cfg);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  // worker: a server SSL on `fd` whose tickets use `keys` (may be null: tickets off). The
  // keys must outlive the handshake (the snapshot holding them is retained by the caller).
  SSL* newSsl(int fd, const TicketKeyRing* keys) const;
  // Names of certificate i (for tests and logs).
  const std::vector<std::string>& names(size_t i) const { return certs_[i].names; }
  size_t certificateCount() const { return certs_.size(); }

 private:
  TlsServerContext() = default;
  static int onServerName(SSL* ssl, int* alert, void* arg);
  static int onAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                    const unsigned char* in, unsigned int inlen, void* arg);

  struct Cert {
    SSL_CTX* ctx = nullptr;
    std::vector<std::string> names;
  };
  std::vector<Cert> certs_;
  std::vector<std::vector<std::string>> all_names_;  // parallel to certs_, for pickCertificate
  int default_ = 0;
  std::string alpn_wire_;  // length-prefixed protocol list, server preference order
};

// Ends the handshake's use of the ticket ring (call once the handshake completes; the ring
// may be freed afterwards while the connection lives on).
void forgetTicketKeys(SSL* ssl);

// A client context (upstream TLS, HTTPS probes): TLS 1.2+, peer verified against `ca_file`
// when `verify` (system default paths when ca_file is empty). Caller owns the result.
Result<SSL_CTX*> newClientContext(const std::string& ca_file, bool verify);

}  // namespace scalegate::l7proxy
