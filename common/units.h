#pragma once
// Durations ("250ms", "10s", "5m", "1h30m", "2d") and sizes ("512", "16k", "4M", "1G",
// binary multiples; "16KiB"/"16kB" are also accepted as 1024-based) as config strings.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"

namespace scalegate {

// Units: ns, us, ms, s, m, h, d; components may be chained ("1m30s"). A bare number is an
// error (the unit must be explicit), except "0". Negative values are errors. Errors read
// `bad duration "5 parsecs": unknown unit "parsecs" ...`, ready to follow "file:line: key: ".
Result<Duration> parseDuration(std::string_view text);
// "1.5s" style decimal is accepted per component.
std::string formatDuration(Duration d);  // shortest exact form: "1m30s", "250ms", "0s"

// Bytes; suffix k/K, M, G, T (powers of 1024), optional trailing "B"/"iB". Bare numbers are
// bytes. Rejects overflow, negatives, junk.
Result<uint64_t> parseSize(std::string_view text);

}  // namespace scalegate
