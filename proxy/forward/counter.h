// A counter that one thread bumps and any thread may read: a relaxed atomic. A worker
// thread counts its tenants' requests, bytes and refusals in its own counters and the
// main thread adds them up when Prometheus scrapes (TenantStats::add); a bump is a plain
// load, add and store (no locked instruction: there is one writer), and a read never
// tears. Copying reads the value (a snapshot, for sums and tests).
#pragma once

#include <atomic>
#include <cstdint>

namespace nsproxy {

class Counter {
 public:
  Counter() = default;
  Counter(uint64_t v) : v_(v) {}  // NOLINT(google-explicit-constructor): a number
  Counter(const Counter& o) : v_(o.get()) {}
  Counter& operator=(const Counter& o) {
    set(o.get());
    return *this;
  }

  uint64_t get() const { return v_.load(std::memory_order_relaxed); }
  operator uint64_t() const { return get(); }  // NOLINT(google-explicit-constructor)
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  // Only the thread that owns the counter writes it.
  Counter& operator+=(uint64_t n) {
    set(get() + n);
    return *this;
  }
  Counter& operator++() { return *this += 1; }

 private:
  std::atomic<uint64_t> v_{0};
};

// The same for a sum of doubles (a histogram's sum of observations).
class DoubleCounter {
 public:
  DoubleCounter() = default;
  DoubleCounter(const DoubleCounter& o) : v_(o.get()) {}
  DoubleCounter& operator=(const DoubleCounter& o) {
    v_.store(o.get(), std::memory_order_relaxed);
    return *this;
  }
  double get() const { return v_.load(std::memory_order_relaxed); }
  DoubleCounter& operator+=(double d) {
    v_.store(get() + d, std::memory_order_relaxed);
    return *this;
  }

 private:
  std::atomic<double> v_{0};
};

}  // namespace nsproxy
