// A token bucket: admits `rate` events per second on average and up to `burst` at once.
// Time is the caller's clock in seconds (the event loop's ev_now): no system call here.
//
// One bucket per tenant, taken from by every worker thread that serves one of the
// tenant's connections: it is kept as the generic cell rate algorithm (GCRA), a single
// atomic "theoretical arrival time" advanced by compare-and-swap, so take() needs no lock
// and the tenant's rate holds across workers exactly as on one.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>

namespace nsproxy {

class TokenBucket {
 public:
  // rate 0: off (take() always admits). The bucket starts full. Not concurrent with take().
  void configure(double rate, double burst, double now) {
    rate_ = rate;
    burst_ = std::max(1.0, burst);
    interval_ = rate > 0 ? 1.0 / rate : 0;
    tolerance_ = (burst_ - 1) * interval_;
    tat_.store(now, std::memory_order_relaxed);
  }
  bool enabled() const { return rate_ > 0; }
  double rate() const { return rate_; }
  double burst() const { return burst_; }

  // Takes one token; false (and nothing taken) when none is left.
  bool take(double now) {
    if (!enabled()) return true;
    double tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      double from = std::max(tat, now);
      if (from - now > tolerance_ + kSlack) return false;
      if (tat_.compare_exchange_weak(tat, from + interval_, std::memory_order_relaxed)) {
        return true;
      }
    }
  }
  // Whole seconds until take() succeeds again (for Retry-After), at least 1.
  long retry_after(double now) const {
    if (!enabled()) return 1;
    double wait = std::max(tat_.load(std::memory_order_relaxed), now) - tolerance_ - now;
    return std::max(1L, static_cast<long>(std::ceil(wait - kSlack)));
  }

 private:
  static constexpr double kSlack = 1e-9;  // rounding of the sums of intervals

  double rate_ = 0;
  double burst_ = 1;
  double interval_ = 0;   // seconds per token
  double tolerance_ = 0;  // how far ahead of now the arrival time may run: burst - 1 tokens
  std::atomic<double> tat_{0};
};

}  // namespace nsproxy
