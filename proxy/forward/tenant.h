// Who a listener serves: the identity the daemon vouches for to upstreams. Shared by a
// registration's listeners and kept alive by them (and so by their sessions).
//
// Threads: the main thread accepts every tenant connection and hands it to a worker
// thread (acceptor.h). What decides whether to accept (the listeners, at_limit,
// over_share, the budget's bookkeeping) is the main thread's; what the sessions of one
// worker keep per tenant (their lists, counters, log throttles) is that worker's
// TenantShard; the few things every thread touches are atomics: the open connection
// count, the request rate (token_bucket.h) and the in-flight slots.
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control_protocol.h"
#include "forward/counter.h"
#include "forward/intrusive_list.h"
#include "forward/proxy_config.h"
#include "forward/session.h"
#include "forward/tenant_stats.h"
#include "forward/token_bucket.h"

namespace nsproxy {

inline const std::map<std::string, std::string> kNoLabels;

// Refusals (and reclaimed connections) are logged at most once a second per tenant per
// worker; the rest are counted.
struct LogThrottle {
  double last = -1;
  size_t suppressed = 0;
  bool allow(double now) {
    if (last >= 0 && now - last < 1.0) {
      ++suppressed;
      return false;
    }
    last = now;
    return true;
  }
};

// What one worker holds of one tenant. Made by the worker when it gets the tenant's
// first connection (an idle tenant has none), freed with the tenant. Only its worker
// changes it; the main thread reads the counters and the lists' sizes.
struct TenantShard {
  // Its http connections on this worker by what they are doing, each oldest first: what
  // the daemon reclaims when its connection budget runs out (see ConnectionBudget).
  IntrusiveList<Session> idle;     // keep-alive, between requests
  IntrusiveList<Session> heads;    // a request head not complete yet (or none sent)
  IntrusiveList<Session> waiting;  // a request waiting for an in-flight slot
  TenantStats stats;               // for /metrics and nsproxyctl list (summed over shards)
  LogThrottle refusal_log, reclaim_log;
  size_t connections = 0;   // open on this worker
  size_t holder_index = 0;  // in its worker's holders (while connections > 0)
};

struct Tenant : std::enable_shared_from_this<Tenant> {
  // workers: how many worker threads may serve its connections (one shard slot each).
  explicit Tenant(size_t workers = 1)
      : shards_(std::make_unique<std::atomic<TenantShard*>[]>(workers)), shard_slots_(workers) {}
  ~Tenant() {
    for (size_t i = 0; i < shard_slots_; ++i) delete shards_[i].load(std::memory_order_relaxed);
  }
  Tenant(const Tenant&) = delete;
  Tenant& operator=(const Tenant&) = delete;

  // Its id, labels and header names are views into its registration's request (which
  // outlives the tenant's listeners and so their sessions), the header names resolved to
  // the daemon's defaults when the registration names none; a tenant holds no copies.
  std::string_view id;  // container id (CNI) or the manual --id
  std::string display;  // "net/cid/eth0" or the manual id, for logs
  const std::map<std::string, std::string>* labels = &kNoLabels;
  std::string_view tenant_header;
  std::string_view label_header_prefix;

  // Open connections over all its listeners and workers: raised by the main thread when
  // it accepts one, lowered by the worker whose session ends.
  std::atomic<size_t> connections{0};
  Counter connections_total;  // accepted (refused ones included); the main thread counts
  Counter refused_at_accept;  // tcp connections closed at once: daemon budget spent

  // Main thread. Its listeners (they add and remove themselves). While the tenant is at
  // its connection limit none of them accepts: the excess waits in their backlogs, held
  // by the kernel, and costs the daemon nothing (no fd, no session, no budget).
  std::vector<class Listener*> listeners;
  std::atomic<bool> at_limit{false};  // workers read it to wake the main thread
  // Holding the excess in the backlogs as well: the daemon's connection budget is spent
  // and this tenant holds its fair share or more (see ConnectionBudget).
  bool over_share = false;
  bool holding() const { return at_limit.load(std::memory_order_relaxed) || over_share; }
  bool in_holders = false;  // in the ConnectionBudget's holders
  size_t holder_index = 0;
  // Its connections a worker was asked to close for another tenant and has not yet
  // (Acceptor::reclaim_for): raised by the main thread, lowered by the worker.
  std::atomic<size_t> reclaims_pending{0};

  // Limits, resolved from the registration's "limits" and the daemon's defaults; set
  // before its listeners start and not changed after.
  size_t max_connections = 0;        // its listeners stop accepting at this many connections
  TokenBucket rate;                  // requests admitted (http mode); 429 beyond
  size_t max_in_flight = 0;          // requests at upstreams at once; more wait in line
  std::atomic<size_t> in_flight{0};  // slots held now, over all workers
  std::atomic<size_t> in_line{0};    // requests waiting for a slot, over all workers

  // One in-flight slot if one is free.
  bool try_take_slot() {
    size_t n = in_flight.load();
    while (n < max_in_flight) {
      if (in_flight.compare_exchange_weak(n, n + 1)) return true;
    }
    return false;
  }

  // The shard of worker `index`, made on first use: called by that worker only.
  TenantShard& shard(size_t index) {
    TenantShard* s = shards_[index].load(std::memory_order_relaxed);
    if (s == nullptr) {
      s = new TenantShard;
      shards_[index].store(s, std::memory_order_release);
    }
    return *s;
  }
  // Any thread: the shard of worker `index`, or null while that worker never served it
  // (only that worker may change it).
  TenantShard* find_shard(size_t index) const {
    return index < shard_slots_ ? shards_[index].load(std::memory_order_acquire) : nullptr;
  }
  size_t shard_slots() const { return shard_slots_; }
  // Its counters summed over the workers (a snapshot; the main thread's view).
  TenantStats total_stats() const {
    TenantStats s;
    s.connections_total = connections_total.get();
    s.refused[static_cast<size_t>(Refusal::ConnectionLimit)] = refused_at_accept.get();
    for (size_t i = 0; i < shard_slots_; ++i) {
      if (const TenantShard* sh = find_shard(i)) s.add(sh->stats);
    }
    return s;
  }

  // The limits in effect: the registration's own, else the daemon's defaults. Every
  // Tenant gets this before its listeners start (a limit of 0 would hold them).
  void apply_limits(const ProxyConfig& cfg, const TenantLimits& own, double now) {
    max_connections = own.connections.value_or(cfg.max_connections_per_tenant);
    double r = own.rate.value_or(cfg.tenant_rate);
    double b = own.burst              ? *own.burst
               : cfg.tenant_burst > 0 ? static_cast<double>(cfg.tenant_burst)
                                      : std::ceil(r);
    rate.configure(r, b, now);
    max_in_flight = cfg.tenant_max_in_flight;
  }

 private:
  std::unique_ptr<std::atomic<TenantShard*>[]> shards_;
  size_t shard_slots_;
};

}  // namespace nsproxy
