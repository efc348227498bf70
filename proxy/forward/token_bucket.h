// A token bucket: admits `rate` events per second on average and up to `burst` at once.
// Time is the caller's clock in seconds (the event loop's ev_now): no system call here.
#pragma once

#include <algorithm>
#include <cmath>

namespace nsproxy {

class TokenBucket {
 public:
  // rate 0: off (take() always admits). The bucket starts full.
  void configure(double rate, double burst, double now) {
    rate_ = rate;
    burst_ = std::max(1.0, burst);
    tokens_ = burst_;
    last_ = now;
  }
  bool enabled() const { return rate_ > 0; }
  double rate() const { return rate_; }
  double burst() const { return burst_; }

  // Takes one token; false (and nothing taken) when none is left.
  bool take(double now) {
    if (!enabled()) return true;
    refill(now);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // Whole seconds until take() succeeds again (for Retry-After), at least 1.
  long retry_after(double now) {
    refill(now);
    if (!enabled() || tokens_ >= 1) return 1;
    return std::max(1L, static_cast<long>(std::ceil((1 - tokens_) / rate_)));
  }

 private:
  void refill(double now) {
    if (now > last_) {
      tokens_ = std::min(burst_, tokens_ + (now - last_) * rate_);
      last_ = now;
    }
  }

  double rate_ = 0;
  double burst_ = 1;
  double tokens_ = 1;
  double last_ = 0;
};

}  // namespace nsproxy
