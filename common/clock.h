#pragma once
// Injectable clock. Production code takes a Clock& so tests can drive time by hand.

#include <chrono>
#include <cstdint>

namespace scalegate {

using Duration = std::chrono::nanoseconds;
using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;      // monotonic
  virtual WallTime wallNow() const = 0;  // for timestamps shown to people
};

// The real clocks. Thread-safe.
class SystemClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
  static SystemClock& instance();
};

// A clock that moves only when told. Not thread-safe; for tests.
class ManualClock final : public Clock {
 public:
  MonoTime now() const override { return mono_; }
  WallTime wallNow() const override { return wall_; }
  void advance(Duration d) {
    mono_ += d;
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  MonoTime mono_{std::chrono::seconds(1000)};
  WallTime wall_{std::chrono::seconds(1'700'000'000)};
};

// Milliseconds of a Duration, for APIs that take them.
inline int64_t toMillis(Duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace scalegate
