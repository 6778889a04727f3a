#include "common/webhook_signature.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace scalegate {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kSecretPrefix = "whsec_";

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string_view nextToken(std::string_view* list) {
  while (!list->empty() && list->front() == ' ') list->remove_prefix(1);
  size_t end = list->find(' ');
  std::string_view tok = list->substr(0, end);
  list->remove_prefix(end == std::string_view::npos ? list->size() : end);
  return tok;
}

}  // namespace

std::string base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto at = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    out.push_back(kAlphabet[v >> 18 & 63]);
    out.push_back(kAlphabet[v >> 12 & 63]);
    out.push_back(kAlphabet[v >> 6 & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0);
    out.push_back(kAlphabet[v >> 18 & 63]);
    out.push_back(kAlphabet[v >> 12 & 63]);
    out.push_back(rest == 2 ? kAlphabet[v >> 6 & 63] : '=');
    out.push_back('=');
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return invalidArgument("base64 length is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return invalidArgument("base64 padding in the middle");
      v[k] = base64Value(c);
      if (v[k] < 0) return invalidArgument("not a base64 character");
    }
    uint32_t n = static_cast<uint32_t>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out.push_back(static_cast<char>(n >> 16 & 0xff));
    if (pad < 2) out.push_back(static_cast<char>(n >> 8 & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xff));
  }
  return out;
}

Result<WebhookKey> WebhookKey::fromSecret(std::string_view secret) {
  if (secret.starts_with(kSecretPrefix)) {
    auto key = base64Decode(secret.substr(kSecretPrefix.size()));
    if (!key.isOk()) {
      return invalidArgument("a whsec_ secret must be base64 after the prefix: " +
                             key.status().message());
    }
    if (key->empty()) return invalidArgument("the whsec_ secret is empty");
    return WebhookKey(std::move(*key));
  }
  if (secret.empty()) return invalidArgument("the webhook secret is empty");
  return WebhookKey(std::string(secret));
}

std::string WebhookKey::sign(std::string_view id, int64_t timestamp, std::string_view body) const {
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id).push_back('.');
  content.append(std::to_string(timestamp)).push_back('.');
  content.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(content.data()), content.size(), mac, &mac_len);
  return "v1," + base64Encode(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
}

Status WebhookKey::verify(std::string_view id, std::string_view timestamp,
                          std::string_view signatures, std::string_view body, WallTime now,
                          Duration tolerance) const {
  if (id.empty()) return invalidArgument("missing webhook-id header");
  if (timestamp.empty()) return invalidArgument("missing webhook-timestamp header");
  if (signatures.empty()) return invalidArgument("missing webhook-signature header");
  int64_t ts = 0;
  auto [end, ec] = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ts);
  if (ec != std::errc() || end != timestamp.data() + timestamp.size() || ts < 0) {
    return invalidArgument("webhook-timestamp is not unix seconds");
  }
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const int64_t tol_s = std::chrono::duration_cast<std::chrono::seconds>(tolerance).count();
  if (ts < now_s - tol_s) {
    return invalidArgument("message timestamp too old (" + std::to_string(now_s - ts) +
                           " s; tolerance " + std::to_string(tol_s) + " s)");
  }
  if (ts > now_s + tol_s) {
    return invalidArgument("message timestamp too new (" + std::to_string(ts - now_s) +
                           " s ahead; tolerance " + std::to_string(tol_s) + " s)");
  }
  const std::string expected = sign(id, ts, body);
  bool saw_v1 = false;
  for (std::string_view list = signatures; !list.empty();) {
    std::string_view tok = nextToken(&list);
    if (!tok.starts_with("v1,")) continue;
    saw_v1 = true;
    if (tok.size() == expected.size() &&
        CRYPTO_memcmp(tok.data(), expected.data(), expected.size()) == 0) {
      return Status::ok();
    }
  }
  return invalidArgument(saw_v1 ? "no matching signature" : "no v1 signature in webhook-signature");
}

Result<std::string> readSecretFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return notFound("secret file " + path + ": does not exist");
    return errnoStatus("open secret file " + path, err);
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return errnoStatus("read secret file " + path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 64 * 1024) {
      ::close(fd);
      return invalidArgument("secret file " + path + " is larger than 64 KiB");
    }
  }
  ::close(fd);
  while (!out.empty() &&
         (out.back() == '\n' || out.back() == '\r' || out.back() == ' ' || out.back() == '\t')) {
    out.pop_back();
  }
  if (out.empty()) return invalidArgument("secret file " + path + " is empty");
  return out;
}

}  // namespace scalegate
