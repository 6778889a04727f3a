#include "common/log.h"

#include <errno.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace scalegate {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};
std::atomic<int> g_fd{2};

const char* levelUpper(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

const char* levelLower(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

// "2026-11-28T13:29:07.123Z" (UTC, milliseconds).
void appendTimestamp(std::string* out) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm_utc {};
  gmtime_r(&secs, &tm_utc);
  char buf[96];  // generous: the compiler cannot prove tm fields are in range
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm_utc.tm_year + 1900,
                tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min, tm_utc.tm_sec,
                static_cast<int>(ms % 1000));
  *out += buf;
}

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
size_t utf8SequenceLength(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t len;
  uint32_t min_cp;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, min_cp = 0x80, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, min_cp = 0x800, cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, min_cp = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

// A JSON string body: escapes quotes, backslashes and control bytes; invalid UTF-8 becomes
// U+FFFD so every line stays valid JSON whatever a message contains.
void appendJsonEscaped(std::string* out, std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = utf8SequenceLength(s, i);
      if (len == 0) {
        *out += "\xEF\xBF\xBD";
        ++i;
      } else {
        out->append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          *out += static_cast<char>(c);
        }
    }
    ++i;
  }
}

// Text format keeps one record per line: control bytes are escaped, not written raw.
void appendTextEscaped(std::string* out, std::string_view s, bool quote_specials) {
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      *out += "\\n";
    } else if (c == '\r') {
      *out += "\\r";
    } else if (c == '\t') {
      *out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      *out += buf;
    } else if (quote_specials && (c == '"' || c == '\\')) {
      *out += '\\';
      *out += ch;
    } else {
      *out += ch;
    }
  }
}

bool needsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char ch : v) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c == 0x7F) return true;
  }
  return false;
}

void writeRecord(const std::string& line) {
  int fd = g_fd.load(std::memory_order_relaxed);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere left to report a logging failure
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void emit(LogLevel level, std::string_view msg,
          const std::vector<std::pair<std::string, std::string>>* fields) {
  std::string line;
  line.reserve(128 + msg.size());
  if (static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)) == LogFormat::kJson) {
    line += "{\"ts\":\"";
    appendTimestamp(&line);
    line += "\",\"level\":\"";
    line += levelLower(level);
    line += "\",\"msg\":\"";
    appendJsonEscaped(&line, msg);
    line += '"';
    if (fields != nullptr) {
      for (const auto& [key, value] : *fields) {
        line += ",\"";
        appendJsonEscaped(&line, key);
        line += "\":\"";
        appendJsonEscaped(&line, value);
        line += '"';
      }
    }
    line += "}\n";
  } else {
    appendTimestamp(&line);
    line += ' ';
    line += levelUpper(level);
    line += ' ';
    appendTextEscaped(&line, msg, false);
    if (fields != nullptr) {
      for (const auto& [key, value] : *fields) {
        line += ' ';
        appendTextEscaped(&line, key, false);
        line += '=';
        if (needsQuotes(value)) {
          line += '"';
          appendTextEscaped(&line, value, true);
          line += '"';
        } else {
          appendTextEscaped(&line, value, false);
        }
      }
    }
    line += '\n';
  }
  writeRecord(line);
}

}  // namespace

bool parseLogLevel(std::string_view s, LogLevel* out) {
  if (s == "debug") {
    *out = LogLevel::kDebug;
  } else if (s == "info") {
    *out = LogLevel::kInfo;
  } else if (s == "warn") {
    *out = LogLevel::kWarn;
  } else if (s == "error") {
    *out = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

bool parseLogFormat(std::string_view s, LogFormat* out) {
  if (s == "text") {
    *out = LogFormat::kText;
  } else if (s == "json") {
    *out = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

void setLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
void setLogFormat(LogFormat format) { g_format.store(static_cast<int>(format)); }
void setLogFd(int fd) { g_fd.store(fd); }

bool logEnabled(LogLevel level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void logPrintf(LogLevel level, const char* fmt, ...) {
  if (!logEnabled(level)) return;
  char stack_buf[1024];
  va_list args;
  va_start(args, fmt);
  va_list retry;
  va_copy(retry, args);
  int n = std::vsnprintf(stack_buf, sizeof(stack_buf), fmt, args);
  va_end(args);
  if (n < 0) {
    va_end(retry);
    emit(level, "(log format error)", nullptr);
    return;
  }
  if (static_cast<size_t>(n) < sizeof(stack_buf)) {
    va_end(retry);
    emit(level, std::string_view(stack_buf, static_cast<size_t>(n)), nullptr);
    return;
  }
  std::string big(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(big.data(), big.size(), fmt, retry);
  va_end(retry);
  big.resize(static_cast<size_t>(n));
  emit(level, big, nullptr);
}

void logEvent(LogLevel level, std::string_view msg,
              const std::vector<std::pair<std::string, std::string>>& fields) {
  if (!logEnabled(level)) return;
  emit(level, msg, &fields);
}

}  // namespace scalegate
