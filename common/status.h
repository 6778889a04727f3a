#pragma once
// Status and Result<T>: the error currency of scalegate. No exceptions cross a data path, an
// event loop or a thread (STYLE.md); fallible functions return one of these.

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace scalegate {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong (config, request, flag)
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kOutOfRange,
  kUnavailable,  // a peer or resource is not there now; retrying may help
  kIo,           // an OS call failed
  kInternal,     // a scalegate bug
};

const char* statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid_argument: <message>" or "ok".
  std::string toString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalidArgument(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status notFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status ioError(std::string m) { return Status(StatusCode::kIo, std::move(m)); }
inline Status unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }
inline Status internalError(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
// ioError with strerror(errno_value) appended: "what: Connection refused".
Status errnoStatus(const std::string& what, int errno_value);

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}  // NOLINT(google-explicit-constructor)

  bool isOk() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return isOk(); }
  const Status& status() const {
    static const Status kOk;
    return isOk() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace scalegate

// Returns early from the enclosing function when `expr` (a Status) is not ok.
#define SG_RETURN_IF_ERROR(expr)               \
  do {                                         \
    ::scalegate::Status sg_status_ = (expr);   \
    if (!sg_status_.isOk()) return sg_status_; \
  } while (0)
