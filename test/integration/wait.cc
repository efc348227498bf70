#include "wait.h"

#include <thread>

namespace nspit {

using detail::Clock;

bool wait_until(const std::function<bool()>& condition, Millis timeout, Millis every) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

namespace detail {

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace detail
}  // namespace nspit
