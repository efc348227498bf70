// Idle keep-alive connections to upstreams, per upstream address, for http mode.
// An idle connection is watched: if the upstream closes it (or sends anything) it is
// dropped; it is also closed after the idle timeout, and at most `idle_max` are kept per
// upstream. Counters say how often a request reused a pooled connection.
#pragma once

#include <ev.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "unique_fd.h"

namespace nsproxy {

class UpstreamPool {
 public:
  UpstreamPool(struct ev_loop* loop, size_t idle_max, double idle_timeout)
      : loop_(loop), idle_max_(idle_max), idle_timeout_(idle_timeout) {}
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // An idle connection to `key` (the upstream's address text), or an empty fd.
  UniqueFd take(const std::string& key);
  // Parks a connection that finished a response cleanly and may be reused.
  void put(const std::string& key, UniqueFd fd);

  size_t idle() const { return idle_count_; }
  uint64_t reused() const { return reused_; }

  struct Idle {
    UpstreamPool* pool;
    std::string key;
    UniqueFd fd;
    ev_io read_w;
    ev_timer timer;
    std::list<std::unique_ptr<Idle>>::iterator self;
  };
  void drop(Idle* idle);  // for the watchers' callbacks

 private:
  struct ev_loop* loop_;
  size_t idle_max_;
  double idle_timeout_;
  size_t idle_count_ = 0;
  uint64_t reused_ = 0;
  std::unordered_map<std::string, std::list<std::unique_ptr<Idle>>> idle_;
};

}  // namespace nsproxy
