// Fuzz target for the receiving side of webhooks: what a scaler (bench/sgscaler) does with a
// delivery, signature verification in common/webhook_signature.*, and the scalegate-format body
// parser in control/webhook_payload.* (the sender's outbox reads its events back with it).
//
// Input: "secret\nwebhook-id\nwebhook-timestamp\nwebhook-signature\nbody" (missing lines are
// empty). Checks beyond the sanitizers:
//   - base64: decode(encode(x)) == x for every decoded secret;
//   - a delivery the key signs itself verifies; one that verifies names the exact signature the
//     key computes, and the same headers with a changed body or id are refused (no forgery);
//   - parseRfc3339(formatRfc3339(t, 9)) == t for every timestamp it parses;
//   - a body parseScalegatePayload accepts renders to a body it accepts again, and that one
//     renders identically (render/parse is a fixed point after one round).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/webhook_signature.h"
#include "control/webhook_payload.h"

namespace {

#define SG_FUZZ_CHECK(cond)                                                         \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

using scalegate::WallTime;
using scalegate::WebhookKey;

std::string_view nextLine(std::string_view* rest) {
  size_t nl = rest->find('\n');
  std::string_view line = rest->substr(0, nl);
  *rest = nl == std::string_view::npos ? std::string_view() : rest->substr(nl + 1);
  return line;
}

bool containsToken(std::string_view list, std::string_view want) {
  size_t at = 0;
  while (at <= list.size()) {
    size_t sp = list.find(' ', at);
    if (sp == std::string_view::npos) sp = list.size();
    if (list.substr(at, sp - at) == want) return true;
    at = sp + 1;
  }
  return false;
}

void fuzzSignature(std::string_view secret, std::string_view id, std::string_view timestamp,
                   std::string_view signatures, std::string_view body) {
  if (auto decoded = scalegate::base64Decode(secret); decoded.isOk()) {
    auto again = scalegate::base64Decode(scalegate::base64Encode(*decoded));
    SG_FUZZ_CHECK(again.isOk() && *again == *decoded);
  }
  auto key = WebhookKey::fromSecret(secret);
  if (!key.isOk()) {
    SG_FUZZ_CHECK(!key.status().message().empty());
    return;
  }
  SG_FUZZ_CHECK(key->size() > 0);
  const int64_t now_s = 1'800'000'000;
  const WallTime now{std::chrono::seconds(now_s)};

  // What the key signs itself verifies.
  const std::string own = key->sign(id.empty() ? "msg_1" : id, now_s - 10, body);
  SG_FUZZ_CHECK(
      key->verify(id.empty() ? "msg_1" : id, std::to_string(now_s - 10), own, body, now).isOk());

  const scalegate::Status st = key->verify(id, timestamp, signatures, body, now);
  if (!st.isOk()) {
    SG_FUZZ_CHECK(!st.message().empty());
    return;
  }
  const int64_t ts = std::stoll(std::string(timestamp));
  SG_FUZZ_CHECK(ts >= now_s - 300 && ts <= now_s + 300);
  SG_FUZZ_CHECK(containsToken(signatures, key->sign(id, ts, body)));
  const std::string other_body = std::string(body) + "x";
  SG_FUZZ_CHECK(!key->verify(id, timestamp, signatures, other_body, now).isOk());
  const std::string other_id = std::string(id) + "x";
  SG_FUZZ_CHECK(!key->verify(other_id, timestamp, signatures, body, now).isOk());
}

void fuzzTimestamp(std::string_view text) {
  auto t = scalegate::control::parseRfc3339(text);
  if (!t.isOk()) return;
  auto again = scalegate::control::parseRfc3339(scalegate::control::formatRfc3339(*t, 9));
  SG_FUZZ_CHECK(again.isOk() && *again == *t);
}

void fuzzPayload(std::string_view body) {
  auto event = scalegate::control::parseScalegatePayload(body);
  if (!event.isOk()) {
    SG_FUZZ_CHECK(!event.status().message().empty());
    return;
  }
  const std::string first = scalegate::control::renderScalegatePayload(*event, "msg_fuzz");
  auto reparsed = scalegate::control::parseScalegatePayload(first);
  SG_FUZZ_CHECK(reparsed.isOk());
  const std::string second = scalegate::control::renderScalegatePayload(*reparsed, "msg_fuzz");
  SG_FUZZ_CHECK(first == second);
  // The Azure rendering of anything the parser accepts must not fail either.
  const std::string azure = scalegate::control::renderAzurePayload(
      *event, "msg_fuzz", scalegate::control::AzureContext{});
  SG_FUZZ_CHECK(!azure.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view secret = nextLine(&rest);
  const std::string_view id = nextLine(&rest);
  const std::string_view timestamp = nextLine(&rest);
  const std::string_view signatures = nextLine(&rest);
  const std::string_view body = rest;
  fuzzSignature(secret, id, timestamp, signatures, body);
  fuzzTimestamp(timestamp);
  fuzzTimestamp(body);
  fuzzPayload(body);
  return 0;
}
