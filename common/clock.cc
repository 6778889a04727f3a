#include "common/clock.h"

namespace scalegate {

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace scalegate
