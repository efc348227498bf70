// The main thread's side of the data path: every tenant listener is served by the main
// loop, which decides whether to accept (the tenant's own limit, its fair share of the
// daemon-wide budget, out of fds), accepts, and hands each connection to a worker
// (worker.h): the one with the fewest open connections. Per tenant this costs one fd
// and one epoll registration, whatever the number of workers (docs/workers.md).
//
// Counting crosses threads: the main thread raises a tenant's and the daemon's open
// connection counts when it accepts, the worker lowers them when the session ends, and
// wakes the main thread (ev_async) when that may let a held tenant accept again.
#pragma once

#include <ev.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "forward/connection_budget.h"
#include "forward/counter.h"
#include "forward/proxy_config.h"

namespace nsproxy {

struct Tenant;
struct Worker;

class Acceptor {
 public:
  Acceptor(struct ev_loop* loop, const ProxyConfig* config);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  struct ev_loop* loop() const {
    return loop_;
  }
  const ProxyConfig& config() const { return *config_; }

  // Before anything is accepted: the workers, in index order.
  void add_worker(Worker* w);
  const std::vector<Worker*>& workers() const { return workers_; }
  size_t threads() const;  // worker threads (0: the one worker runs in the main loop)
  // The worker with the fewest open connections (the first such, from a rotating start).
  Worker* pick();

  ConnectionBudget& budget() { return budget_; }
  uint64_t connections() const { return connections_.load(); }  // open, daemon-wide
  uint64_t connections_total() const { return connections_total_.get(); }

  // Main thread: a connection of t was accepted (it goes to a worker next).
  void accepted(Tenant& t);
  // The worker whose session of t ended (any thread).
  void ended(Tenant& t);
  // Main thread: t reached its own connection limit: its listeners stop until one of its
  // connections ends.
  void limit_reached(Tenant& t);
  // Main thread: the budget is spent and t holds its share (ConnectionBudget::hold).
  void hold(Tenant& t);
  void forget(Tenant& t);  // main thread: t's last listener goes
  // Any thread: the main loop looks again at the tenants held back (ev_async).
  void wake();
  void on_wake();

  // Main thread, budget spent: a slot for t, below its fair share, made by having a
  // worker close the largest holder's oldest idle (else incomplete-head) connection.
  // False: nothing to reclaim, t is refused.
  bool reclaim_for(Tenant& t);
  // Main thread, out of fds at accept: the oldest idle keep-alive connection goes.
  //   kNone    nothing idle anywhere
  //   kDone    closed already (a worker in the main loop)
  //   kPosted  a worker thread was asked to; the fd comes free shortly
  enum class Reclaim { kNone, kDone, kPosted };
  Reclaim reclaim_idle();

  // Set by a worker whose upstream socket() failed with EMFILE/ENFILE: the next listener
  // to accept pauses instead of accepting connections it cannot serve.
  std::atomic<bool> out_of_fds{false};
  // Main thread, per accepted connection: whether out_of_fds was set, clearing it (a plain
  // load while it is not, the usual case: no read-modify-write per accept).
  bool take_out_of_fds() {
    return out_of_fds.load(std::memory_order_relaxed) && out_of_fds.exchange(false);
  }

 private:
  struct ev_loop* loop_;
  const ProxyConfig* config_;
  std::vector<Worker*> workers_;
  size_t next_ = 0;
  ConnectionBudget budget_;
  std::atomic<uint64_t> connections_{0};
  Counter connections_total_;
  std::atomic<bool> held_{false};  // the budget holds tenants back: workers wake us
  std::vector<Tenant*> limited_;   // at their own limit
  // A worker on which t has an idle connection (idle), or a connection inside a request
  // head (!idle); null when none has.
  Worker* worker_holding(const Tenant& t, bool idle) const;
  ev_async wake_w_;
};

}  // namespace nsproxy
