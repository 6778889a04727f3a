#include "common/units.h"

#include <cstdio>
#include <limits>

namespace scalegate {
namespace {

constexpr int64_t kNs = 1;
constexpr int64_t kUs = 1000 * kNs;
constexpr int64_t kMs = 1000 * kUs;
constexpr int64_t kSec = 1000 * kMs;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kHour = 60 * kMin;
constexpr int64_t kDay = 24 * kHour;

struct DurationUnit {
  std::string_view name;
  int64_t ns;
};
constexpr DurationUnit kDurationUnits[] = {{"ns", kNs}, {"us", kUs},  {"ms", kMs}, {"s", kSec},
                                           {"m", kMin}, {"h", kHour}, {"d", kDay}};

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isSpace(char c) { return c == ' ' || c == '\t'; }
bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out.append(s);
  out += '"';
  return out;
}

Status badDuration(std::string_view text, const std::string& why) {
  return invalidArgument("bad duration " + quoted(text) + ": " + why);
}

Status badSize(std::string_view text, const std::string& why) {
  return invalidArgument("bad size " + quoted(text) + ": " + why);
}

}  // namespace

Result<Duration> parseDuration(std::string_view text) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  size_t i = 0;
  const size_t n = text.size();
  while (i < n && isSpace(text[i])) ++i;
  if (i == n) return badDuration(text, "empty");
  if (text[i] == '-') return badDuration(text, "negative durations are not allowed");
  if (text[i] == '+') ++i;
  // "0" needs no unit: zero is zero in every unit, and "slow_start: 0" reads naturally.
  {
    size_t j = i;
    while (j < n && text[j] == '0') ++j;
    size_t k = j;
    while (k < n && isSpace(text[k])) ++k;
    if (j > i && k == n) return Duration(0);
  }
  int64_t total = 0;
  int components = 0;
  while (i < n) {
    if (!isDigit(text[i]) && text[i] != '.') {
      return badDuration(text, "expected a number at " + quoted(text.substr(i)));
    }
    uint64_t whole = 0;
    bool whole_overflow = false;
    size_t digits = 0;
    while (i < n && isDigit(text[i])) {
      if (whole > (std::numeric_limits<uint64_t>::max() - 9) / 10) whole_overflow = true;
      if (!whole_overflow) whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
      ++i;
      ++digits;
    }
    // Fraction: keep up to 18 digits; anything finer is below a nanosecond for every unit.
    uint64_t frac = 0;
    uint64_t frac_scale = 1;
    if (i < n && text[i] == '.') {
      ++i;
      size_t frac_digits = 0;
      while (i < n && isDigit(text[i])) {
        if (frac_digits < 18) {
          frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
          frac_scale *= 10;
        }
        ++i;
        ++frac_digits;
        ++digits;
      }
      if (frac_digits == 0) return badDuration(text, "expected digits after '.'");
    }
    if (digits == 0) return badDuration(text, "expected a number");
    while (i < n && isSpace(text[i])) ++i;
    size_t unit_start = i;
    while (i < n && (isAlpha(text[i]) || text[i] == '\xc2' || text[i] == '\xb5')) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty()) {
      if (unit_start == n) {
        return badDuration(text, "missing unit (use ns, us, ms, s, m, h or d, e.g. \"" +
                                     std::string(text.substr(0, n)) + "s\")");
      }
      return badDuration(text, "unexpected " + quoted(text.substr(unit_start)));
    }
    int64_t unit_ns = 0;
    for (const auto& u : kDurationUnits) {
      if (u.name == unit) unit_ns = u.ns;
    }
    if (unit == "\xc2\xb5s") unit_ns = kUs;  // "µs"
    if (unit_ns == 0) {
      return badDuration(text, "unknown unit " + quoted(unit) + " (use ns, us, ms, s, m, h or d)");
    }
    if (whole_overflow || whole > static_cast<uint64_t>(kMax / unit_ns)) {
      return badDuration(text, "too large");
    }
    int64_t value = static_cast<int64_t>(whole) * unit_ns;
    if (frac != 0) {
      auto part =
          static_cast<unsigned __int128>(frac) * static_cast<uint64_t>(unit_ns) / frac_scale;
      if (static_cast<int64_t>(part) > kMax - value) return badDuration(text, "too large");
      value += static_cast<int64_t>(part);
    }
    if (value > kMax - total) return badDuration(text, "too large");
    total += value;
    ++components;
    while (i < n && isSpace(text[i])) ++i;
  }
  if (components == 0) return badDuration(text, "expected a number");
  return Duration(total);
}

std::string formatDuration(Duration d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out;
  uint64_t left;
  if (ns < 0) {
    out = "-";
    left = static_cast<uint64_t>(-(ns + 1)) + 1;  // -INT64_MIN without overflow
  } else {
    left = static_cast<uint64_t>(ns);
  }
  char buf[32];
  auto append = [&](uint64_t v, const char* unit) {
    std::snprintf(buf, sizeof(buf), "%llu%s", static_cast<unsigned long long>(v), unit);
    out += buf;
  };
  const uint64_t big[] = {kDay, kHour, kMin};
  const char* big_names[] = {"d", "h", "m"};
  for (int k = 0; k < 3; ++k) {
    if (left >= big[k]) {
      append(left / big[k], big_names[k]);
      left %= big[k];
    }
  }
  if (left == 0) return out;
  const uint64_t secs = left / kSec;
  const uint64_t sub = left % kSec;
  if (sub == 0) {
    append(secs, "s");
  } else if (secs > 0) {
    // Whole seconds and a fraction: "1.5s" is exact and shorter than "1s500ms".
    std::snprintf(buf, sizeof(buf), "%llu.%09llu", static_cast<unsigned long long>(secs),
                  static_cast<unsigned long long>(sub));
    std::string s = buf;
    while (s.back() == '0') s.pop_back();
    out += s;
    out += 's';
  } else if (sub % kMs == 0) {
    append(sub / kMs, "ms");
  } else if (sub % kUs == 0) {
    append(sub / kUs, "us");
  } else {
    append(sub, "ns");
  }
  return out;
}

Result<uint64_t> parseSize(std::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n && isSpace(text[i])) ++i;
  size_t end = n;
  while (end > i && isSpace(text[end - 1])) --end;
  if (i == end) return badSize(text, "empty");
  if (text[i] == '-') return badSize(text, "negative sizes are not allowed");
  if (text[i] == '+') ++i;
  uint64_t value = 0;
  size_t digits = 0;
  while (i < end && isDigit(text[i])) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - d) / 10) return badSize(text, "too large");
    value = value * 10 + d;
    ++i;
    ++digits;
  }
  if (digits == 0) return badSize(text, "expected a number");
  if (i < end && text[i] == '.') {
    return badSize(text, "fractions are not allowed; use a smaller unit (e.g. 1536k)");
  }
  while (i < end && isSpace(text[i])) ++i;
  std::string_view suffix = text.substr(i, end - i);
  int shift = 0;
  if (!suffix.empty()) {
    switch (suffix[0]) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      default:
        break;
    }
    std::string_view rest = shift != 0 ? suffix.substr(1) : suffix;
    if (!(rest.empty() || rest == "B" || (shift != 0 && rest == "iB"))) {
      return badSize(text, "unknown unit " + quoted(suffix) + " (use k, M, G or T, e.g. 16k)");
    }
  }
  if (shift != 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return badSize(text, "too large");
  }
  return value << shift;
}

}  // namespace scalegate
