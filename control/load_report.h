#pragma once
// Load reports that instances attach to their health answers, parsed by the prober:
//
//   X-Load: cpu=0.82, mem=0.61, queue=12            (header; ',' or ';' between pairs)
//   {"cpu": 0.82, "queue": 12, "custom": {"sessions": 40}}       (JSON body)
//   {"ApplicationHealthState": "Healthy"}           (Azure Application Health rich body)
//
// Names are [a-z0-9_]{1,32} after lower-casing; values are finite numbers. Bad pairs and bad
// names are skipped, never fatal: a report is advisory and an instance must not be able to
// break its own probe with a typo. At most kMaxLoadValues values per report (the first ones
// win). Pure functions over the bytes given, no exceptions; any thread.

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

namespace scalegate::control {

inline constexpr size_t kMaxLoadValues = 32;
inline constexpr size_t kMaxLoadNameBytes = 32;
// Bodies longer than this are not parsed (the prober reads at most 64 KiB anyway).
inline constexpr size_t kMaxLoadBodyBytes = 64 * 1024;
// JSON nesting deeper than this is refused before parsing (bounds parser and destructor work).
inline constexpr int kMaxLoadJsonDepth = 16;

struct LoadReport {
  std::map<std::string, double> values;  // name -> value
  // Rich health state, canonical spelling: "Initializing", "Healthy", "Unhealthy" or "Unknown";
  // "" when no ApplicationHealthState key was reported.
  std::string app_health;
};

// Parses one X-Load header value. Example: "cpu=0.82, mem=0.61;queue=12".
LoadReport parseLoadHeader(std::string_view value);
// The same, adding to *out (several X-Load fields accumulate; a repeated name takes the later
// value; no new names once out->values holds kMaxLoadValues).
void addLoadHeader(std::string_view value, LoadReport* out);

// Parses a JSON body when content_type is application/json (or any +json type) or the body
// starts with '{' (after whitespace): numbers at the top level and one level under "custom" or
// "metrics" objects (flattened: {"custom": {"sessions": 40}} -> "sessions"; a top-level value
// wins over a nested one of the same name, and values already in *out are kept), and the rich
// health key ApplicationHealthState (key and value matched case-insensitively, as Azure does;
// any other value -> "Unknown"). Returns true when the body was a JSON object, false when it is
// not JSON or malformed (then *out is unchanged).
bool parseLoadBody(std::string_view body, std::string_view content_type, LoadReport* out);

// Canonical rich-health state for a reported value (case-insensitive); "Unknown" for anything
// that is not one of the four states.
const char* canonicalAppHealth(std::string_view value);

// True when `name` (already lower-cased) is a valid load value name: [a-z0-9_]{1,32}.
bool isLoadName(std::string_view name);

}  // namespace scalegate::control
