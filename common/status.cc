#include "common/status.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

namespace scalegate {

const char* statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kNotFound:
      return "not_found";
    case StatusCode::kAlreadyExists:
      return "already_exists";
    case StatusCode::kFailedPrecondition:
      return "failed_precondition";
    case StatusCode::kOutOfRange:
      return "out_of_range";
    case StatusCode::kUnavailable:
      return "unavailable";
    case StatusCode::kIo:
      return "io";
    case StatusCode::kInternal:
      return "internal";
  }
  return "unknown";
}

std::string Status::toString() const {
  if (isOk()) return "ok";
  std::string out = statusCodeName(code_);
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status errnoStatus(const std::string& what, int errno_value) {
  // strerror_r comes in a GNU and an XSI flavour; pick by overload so either compiles.
  char buf[256];
  buf[0] = '\0';
  const char* text = buf;
  auto pick = [&](auto r) {
    if constexpr (std::is_same_v<decltype(r), char*>) {
      text = r;  // GNU: may return a static string instead of filling buf
    } else if (r != 0) {
      std::snprintf(buf, sizeof(buf), "errno %d", errno_value);
    }
  };
  pick(strerror_r(errno_value, buf, sizeof(buf)));
  return ioError(what + ": " + text);
}

}  // namespace scalegate
