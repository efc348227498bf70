// A Prometheus histogram with fixed bucket bounds: one counter per bucket, a sum and a
// count. observe() is a few comparisons and additions; no allocation, no lock. One
// thread observes, any thread may read (relaxed atomics, counter.h).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>

#include "forward/counter.h"

namespace nsproxy {

// Bucket bounds of nsproxy_listener_setup_duration_seconds: creating a listener takes
// tens of microseconds; bringing lo up (an ioctl, with the kernel adding 127.0.0.1 and ::1) about
// a hundred; adding a service address by netlink, up to milliseconds.
inline constexpr double kListenerSetupBounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025,
                                                  0.0005,  0.001,    0.0025,  0.01,   0.1};

class Histogram {
 public:
  // The most bounds a histogram here has (kRequestDurationBounds): every tenant holds one,
  // so the counts are sized to it, not rounded up.
  static constexpr size_t kMaxBuckets = 11;

  // bounds: strictly increasing upper bounds (seconds), at most kMaxBuckets; must outlive
  // the histogram (a static array).
  explicit Histogram(std::span<const double> bounds)
      : bounds_(bounds.first(std::min(bounds.size(), kMaxBuckets))) {}

  void observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];  // counts_[bounds_.size()]: above the last bound (+Inf only)
    sum_ += v;
  }
  void add(const Histogram& o) {  // same bounds
    for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i] += o.counts_[i].get();
    sum_ += o.sum_.get();
  }

  std::span<const double> bounds() const { return bounds_; }
  // Observations <= bounds()[i] (cumulative, as the exposition format wants).
  uint64_t cumulative(size_t i) const {
    uint64_t n = 0;
    for (size_t j = 0; j <= i; ++j) n += counts_[j].get();
    return n;
  }
  double sum() const { return sum_.get(); }
  uint64_t count() const { return cumulative(bounds_.size()); }

 private:
  std::span<const double> bounds_;
  std::array<Counter, kMaxBuckets + 1> counts_{};
  DoubleCounter sum_;
};

static_assert(std::size(kListenerSetupBounds) <= Histogram::kMaxBuckets);

}  // namespace nsproxy
