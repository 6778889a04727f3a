#include "common/assert.h"

#include <atomic>
#include <cstdlib>

#include "common/log.h"

namespace scalegate {
namespace {

std::atomic<uint64_t> g_bug_count{0};

// Logs the first hits in full, then only at powers of two, so a bug on a busy path cannot
// flood the log while the count still shows how often it happens.
bool shouldLogBug(uint64_t nth) { return nth <= 16 || (nth & (nth - 1)) == 0; }

}  // namespace

void checkFailed(const char* file, int line, const char* expr) {
  logPrintf(LogLevel::kError, "check failed at %s:%d: %s", file, line, expr);
  std::abort();
}

void bugHit(const char* file, int line, const char* expr) {
  uint64_t nth = g_bug_count.fetch_add(1, std::memory_order_relaxed) + 1;
  if (shouldLogBug(nth)) {
    logPrintf(LogLevel::kError, "BUG at %s:%d: %s (hit %llu times)", file, line, expr,
              static_cast<unsigned long long>(nth));
  }
}

uint64_t bugCount() { return g_bug_count.load(std::memory_order_relaxed); }

}  // namespace scalegate
