// Time in the integration tests: Millis, and waiting on an observable condition instead
// of sleeping.
#pragma once

#include <chrono>
#include <functional>

namespace nspit {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// Synchronisation on an observable condition instead of a sleep: calls `condition`
// every `every` until it returns true (then true) or `timeout` passed (then false). The
// timeout is a bound against a hang, not a measurement: make it
// generous (the condition is usually true within milliseconds).
bool wait_until(const std::function<bool()>& condition, Millis timeout = 20000ms,
                Millis every = 20ms);

namespace detail {

using Clock = std::chrono::steady_clock;
// Milliseconds left until `deadline` (0 once it passed), for poll(2) timeouts.
int remaining_ms(Clock::time_point deadline);

}  // namespace detail
}  // namespace nspit
