#pragma once
// SG_ASSERT: debug-only invariant. SG_BUG: release builds log and count, never crash.
// SG_CHECK: always fatal; for startup invariants only. Never assert on network input.

#include <cstdint>

namespace scalegate {
[[noreturn]] void checkFailed(const char* file, int line, const char* expr);
void bugHit(const char* file, int line, const char* expr);
// Number of SG_BUG hits since start (all threads).
uint64_t bugCount();
}  // namespace scalegate

#define SG_CHECK(cond) ((cond) ? (void)0 : ::scalegate::checkFailed(__FILE__, __LINE__, #cond))
#define SG_BUG(cond) ((cond) ? (void)0 : ::scalegate::bugHit(__FILE__, __LINE__, #cond))
#ifdef NDEBUG
#define SG_ASSERT(cond) ((void)0)
#else
#define SG_ASSERT(cond) SG_CHECK(cond)
#endif
