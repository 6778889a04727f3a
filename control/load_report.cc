#include "control/load_report.h"

#include <charconv>
#include <cmath>
#include <exception>
#include <nlohmann/json.hpp>
#include <system_error>

namespace scalegate::control {
namespace {

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) return false;
  }
  return true;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Lower-cases `raw` into *out and checks the result; false (out unspecified) when invalid.
bool normalizeName(std::string_view raw, std::string* out) {
  if (raw.empty() || raw.size() > kMaxLoadNameBytes) return false;
  out->assign(raw.size(), '\0');
  for (size_t i = 0; i < raw.size(); ++i) (*out)[i] = lowerAscii(raw[i]);
  return isLoadName(*out);
}

bool parseNumber(std::string_view text, double* out) {
  if (text.empty()) return false;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

// Adds name=value unless the name is invalid or the report is full. With overwrite == false an
// existing value is kept.
void addValue(std::string_view raw_name, double value, bool overwrite, LoadReport* out) {
  std::string name;
  if (!normalizeName(raw_name, &name) || !std::isfinite(value)) return;
  auto it = out->values.find(name);
  if (it != out->values.end()) {
    if (overwrite) it->second = value;
    return;
  }
  if (out->values.size() >= kMaxLoadValues) return;
  out->values.emplace(std::move(name), value);
}

bool isJsonContentType(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  media = trimOws(media);
  if (equalsIgnoreCase(media, "application/json")) return true;
  return media.size() > 5 && equalsIgnoreCase(media.substr(media.size() - 5), "+json");
}

// Maximum bracket nesting of a JSON text, ignoring brackets inside strings; stops counting
// once past `limit`.
int jsonDepth(std::string_view text, int limit) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > limit) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

void addNumbers(const nlohmann::json& object, LoadReport* out) {
  for (const auto& [key, value] : object.items()) {
    if (value.is_number()) addValue(key, value.get<double>(), /*overwrite=*/false, out);
  }
}

}  // namespace

bool isLoadName(std::string_view name) {
  if (name.empty() || name.size() > kMaxLoadNameBytes) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

const char* canonicalAppHealth(std::string_view value) {
  static constexpr const char* kStates[] = {"Initializing", "Healthy", "Unhealthy", "Unknown"};
  for (const char* state : kStates) {
    if (equalsIgnoreCase(value, state)) return state;
  }
  return "Unknown";
}

void addLoadHeader(std::string_view value, LoadReport* out) {
  while (!value.empty()) {
    size_t sep = value.find_first_of(",;");
    std::string_view pair = value.substr(0, sep);
    value = sep == std::string_view::npos ? std::string_view() : value.substr(sep + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    double number = 0;
    if (!parseNumber(trimOws(pair.substr(eq + 1)), &number)) continue;
    addValue(trimOws(pair.substr(0, eq)), number, /*overwrite=*/true, out);
  }
}

LoadReport parseLoadHeader(std::string_view value) {
  LoadReport report;
  addLoadHeader(value, &report);
  return report;
}

bool parseLoadBody(std::string_view body, std::string_view content_type, LoadReport* out) {
  if (body.size() > kMaxLoadBodyBytes) return false;
  std::string_view start = body;
  while (!start.empty() && (start.front() == ' ' || start.front() == '\t' ||
                            start.front() == '\r' || start.front() == '\n')) {
    start.remove_prefix(1);
  }
  if (!isJsonContentType(content_type) && (start.empty() || start.front() != '{')) return false;
  if (jsonDepth(body, kMaxLoadJsonDepth) > kMaxLoadJsonDepth) return false;

  // parse(..., allow_exceptions = false) reports errors as a discarded value; the try block
  // covers what may still throw (allocation, and anything a library update changes).
  try {
    nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (!doc.is_object()) return false;
    LoadReport parsed = *out;
    addNumbers(doc, &parsed);
    for (const auto& [key, value] : doc.items()) {
      if (equalsIgnoreCase(key, "custom") || equalsIgnoreCase(key, "metrics")) {
        if (value.is_object()) addNumbers(value, &parsed);
      } else if (equalsIgnoreCase(key, "applicationhealthstate")) {
        parsed.app_health =
            value.is_string() ? canonicalAppHealth(value.get_ref<const std::string&>()) : "Unknown";
      }
    }
    *out = std::move(parsed);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace scalegate::control
