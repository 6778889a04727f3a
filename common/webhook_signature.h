#pragma once
// Standard Webhooks v1 signatures (https://www.standardwebhooks.com, spec v1.0.0): the sender
// (control/webhook_sender) signs every delivery, a scaler (bench/sgscaler) verifies it.
//
//   webhook-id:        msg_2b3c...                (the same on every retry: the idempotency key)
//   webhook-timestamp: 1700000000                 (unix seconds when this attempt was sent)
//   webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>
//
// Secrets: a secret written "whsec_<base64>" is the base64-decoded bytes after the prefix (as
// the Standard Webhooks libraries do); any other secret is used as its raw bytes, so a plain
// passphrase in a file works too. Pure functions; any thread.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/clock.h"
#include "common/status.h"

namespace scalegate {

inline constexpr std::string_view kWebhookIdHeader = "webhook-id";
inline constexpr std::string_view kWebhookTimestampHeader = "webhook-timestamp";
inline constexpr std::string_view kWebhookSignatureHeader = "webhook-signature";
// The reference libraries' tolerance, both ways (a clock ahead or behind by more is refused).
inline constexpr Duration kWebhookTolerance = std::chrono::minutes(5);

// RFC 4648 base64 with padding.
std::string base64Encode(std::string_view bytes);
// Strict: standard alphabet, padding required, no whitespace. kInvalidArgument otherwise.
Result<std::string> base64Decode(std::string_view text);

// The HMAC key for a secret: "whsec_<base64>" decodes the part after the prefix (bad base64 is
// an error); anything else is taken as raw bytes. An empty key is an error.
class WebhookKey {
 public:
  static Result<WebhookKey> fromSecret(std::string_view secret);

  // "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>".
  std::string sign(std::string_view id, int64_t timestamp, std::string_view body) const;

  // Checks one delivery. `signatures` is the webhook-signature header: a space-separated list
  // of "<version>,<base64>" entries, any v1 entry that matches (constant-time compare) is
  // enough; other versions (v1a, ...) are skipped. Refused (kInvalidArgument, with a reason that
  // names the problem) when a header is empty, the timestamp is not an integer, it is more than
  // `tolerance` older or newer than `now`, or no v1 signature matches.
  Status verify(std::string_view id, std::string_view timestamp, std::string_view signatures,
                std::string_view body, WallTime now, Duration tolerance = kWebhookTolerance) const;

  size_t size() const { return key_.size(); }

 private:
  explicit WebhookKey(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

// Reads a secret file: the whole file with trailing CR/LF/space/tab removed. Errors name the
// file: "secret file /x: does not exist", "... is empty", "open /x: Permission denied".
Result<std::string> readSecretFile(const std::string& path);

}  // namespace scalegate
