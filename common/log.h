#pragma once
// Leveled logging, as text lines or JSON lines, to stderr. Thread-safe: each record is
// formatted into one buffer and written with one write(2). Not for hot paths (STYLE.md).
//
//   SG_LOG(kInfo, "listening on %s", addr.c_str());
//   logEvent(LogLevel::kWarn, "reload_failed", {{"file", path}, {"error", msg}});

#include <cstdarg>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace scalegate {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// Parses "debug" | "info" | "warn" | "error"; false when unknown.
bool parseLogLevel(std::string_view s, LogLevel* out);
bool parseLogFormat(std::string_view s, LogFormat* out);  // "text" | "json"

// Process-wide settings; call before starting threads.
void setLogLevel(LogLevel level);
void setLogFormat(LogFormat format);
// Redirects output to a file descriptor (default 2). For tests.
void setLogFd(int fd);
bool logEnabled(LogLevel level);

// printf-style message. Text: "2026-11-28T13:29:07.123Z INFO message key=value".
// JSON: {"ts":"...","level":"info","msg":"..."}.
void logPrintf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// A message with structured fields; in text format fields print as key=value.
void logEvent(LogLevel level, std::string_view msg,
              const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace scalegate

#define SG_LOG(level, ...)                                               \
  do {                                                                   \
    if (::scalegate::logEnabled(::scalegate::LogLevel::level))           \
      ::scalegate::logPrintf(::scalegate::LogLevel::level, __VA_ARGS__); \
  } while (0)
