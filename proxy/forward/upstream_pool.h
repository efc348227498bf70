// Idle keep-alive connections to upstreams, per upstream address, for http mode.
// An idle connection is watched: if the upstream closes it (or sends anything) it is
// dropped; it is also closed after the idle timeout, and at most `idle_max` are kept per
// upstream. Counters say how often a request reused a pooled connection.
//
// The pool holds the sessions' Connection objects themselves, read watcher and all: it
// re-points the callbacks at itself while the connection is parked and the session that
// takes it re-points them at itself, and the watcher stays active throughout, so parking
// and reusing a connection never changes its registration in epoll (no epoll_ctl).
//
// Parking and taking a connection costs no heap allocation in steady state: the
// per-upstream entry stays while its connections come and go (it is removed when its
// last connection is dropped, or swept once many entries stand empty), and the records
// of parked connections are recycled through a bounded free list.
#pragma once

#include <ev.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "forward/connection.h"

namespace nsproxy {

class UpstreamPool {
 public:
  UpstreamPool(struct ev_loop* loop, size_t idle_max, double idle_timeout)
      : loop_(loop), idle_max_(idle_max), idle_timeout_(idle_timeout) {}
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // An idle connection to `key` (the upstream's address text), or null. Its read watcher
  // is still active: the taker rebinds it to itself before the loop runs again.
  std::unique_ptr<Connection> take(const std::string& key);
  // Parks a connection that finished a response cleanly and may be reused (nothing left
  // to write): its callbacks now lead here, its read watcher is (kept) on.
  void put(const std::string& key, std::unique_ptr<Connection> conn);

  size_t idle() const { return idle_count_; }
  uint64_t reused() const { return reused_; }

  struct Bucket;
  // One parked connection, linked oldest to newest in its bucket.
  struct Idle {
    UpstreamPool* pool = nullptr;
    Bucket* bucket = nullptr;
    Idle* prev = nullptr;
    Idle* next = nullptr;
    std::unique_ptr<Connection> conn;
    ev_timer timer;
  };
  struct Bucket {
    Idle* oldest = nullptr;
    Idle* newest = nullptr;
    size_t count = 0;
    const std::string* key = nullptr;  // the map's own key
  };
  void drop(Idle* idle);  // for the watchers' callbacks

 private:
  static constexpr size_t kMaxSpareIdle = 256;    // recycled Idle records kept
  static constexpr size_t kMaxEmptyBuckets = 64;  // empty entries tolerated before a sweep

  void unlink(Idle* idle);   // out of its bucket, timer stopped, connection closed (if held)
  void recycle(Idle* idle);  // onto the free list (or deleted)
  void sweep_empty_buckets();

  struct ev_loop* loop_;
  size_t idle_max_;
  double idle_timeout_;
  size_t idle_count_ = 0;
  uint64_t reused_ = 0;
  size_t empty_buckets_ = 0;
  std::unordered_map<std::string, Bucket> buckets_;
  Idle* spare_ = nullptr;  // free list, linked through next
  size_t spare_count_ = 0;
};

}  // namespace nsproxy
