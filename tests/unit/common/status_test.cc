#include "common/status.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>

#include "common/assert.h"
#include "common/clock.h"

namespace scalegate {
namespace {

TEST(Status, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.isOk());
  EXPECT_TRUE(static_cast<bool>(s));
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.toString(), "ok");
  EXPECT_TRUE(Status::ok().isOk());
}

TEST(Status, CarriesCodeAndMessage) {
  Status s = invalidArgument("bad flag");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "bad flag");
  EXPECT_EQ(s.toString(), "invalid_argument: bad flag");
  EXPECT_EQ(notFound("x").toString(), "not_found: x");
  EXPECT_EQ(unavailable("x").code(), StatusCode::kUnavailable);
  EXPECT_EQ(internalError("x").code(), StatusCode::kInternal);
}

TEST(Status, CodeNames) {
  EXPECT_STREQ(statusCodeName(StatusCode::kAlreadyExists), "already_exists");
  EXPECT_STREQ(statusCodeName(StatusCode::kFailedPrecondition), "failed_precondition");
  EXPECT_STREQ(statusCodeName(StatusCode::kOutOfRange), "out_of_range");
  EXPECT_STREQ(statusCodeName(StatusCode::kIo), "io");
}

TEST(Status, ErrnoStatus) {
  Status s = errnoStatus("connect 127.0.0.1:1", ECONNREFUSED);
  EXPECT_EQ(s.code(), StatusCode::kIo);
  EXPECT_EQ(s.message(), "connect 127.0.0.1:1: Connection refused");
}

Status failIf(bool fail) {
  if (fail) return invalidArgument("failed");
  return Status::ok();
}

Status chain(bool fail, bool* reached_end) {
  SG_RETURN_IF_ERROR(failIf(fail));
  *reached_end = true;
  return Status::ok();
}

TEST(Status, ReturnIfError) {
  bool reached = false;
  EXPECT_FALSE(chain(true, &reached).isOk());
  EXPECT_FALSE(reached);
  EXPECT_TRUE(chain(false, &reached).isOk());
  EXPECT_TRUE(reached);
}

Result<int> half(int v) {
  if (v % 2 != 0) return invalidArgument("odd");
  return v / 2;
}

TEST(Result, ValueOrStatus) {
  Result<int> good = half(84);
  ASSERT_TRUE(good.isOk());
  EXPECT_EQ(*good, 42);
  EXPECT_TRUE(good.status().isOk());
  Result<int> bad = half(3);
  EXPECT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().message(), "odd");
}

TEST(Result, MoveOnlyValue) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.isOk());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Assert, BugCountsWithoutCrashing) {
  uint64_t before = bugCount();
  SG_BUG(1 + 1 == 3);
  SG_BUG(true);
  EXPECT_EQ(bugCount(), before + 1);
}

TEST(AssertDeathTest, CheckIsFatal) { EXPECT_DEATH(SG_CHECK(1 + 1 == 3), "check failed"); }

TEST(Clock, ManualClockMovesOnlyWhenTold) {
  ManualClock clock;
  MonoTime t0 = clock.now();
  WallTime w0 = clock.wallNow();
  EXPECT_EQ(clock.now(), t0);
  clock.advance(std::chrono::milliseconds(1500));
  EXPECT_EQ(toMillis(clock.now() - t0), 1500);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::milliseconds>(clock.wallNow() - w0).count(),
            1500);
  EXPECT_EQ(&SystemClock::instance(), &SystemClock::instance());
}

}  // namespace
}  // namespace scalegate
