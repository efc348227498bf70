// The daemon-wide connection budget (--max-connections), shared fairly among tenants.
//
// A tenant's fair share is the budget divided among the tenants that hold connections
// (the one asking counted). While the budget is spent:
//   - a tenant at or above its share is not accepted at all: its listeners stop
//     accepting and the excess waits in its backlog (as at its own limit), until a
//     connection ends anywhere;
//   - a tenant below its share that connects gets a slot made at the expense of the
//     largest holder above its share: that holder's oldest idle keep-alive connection
//     is closed, else its oldest incomplete request head; when neither exists the new
//     connection gets 503 (http) or a close (tcp) at once, without waiting for a head.
// Out of file descriptors, the oldest idle keep-alive connection goes before anything is
// refused (Worker::reclaim_idle).
//
// Only http connections between requests or inside a request head are ever reclaimed: a
// request in flight, a tunnel and a tcp connection are not cut for someone else.
//
// The main thread keeps this book (it decides at accept); the connections themselves
// live in the workers, which close the one chosen (Acceptor::reclaim_for). A tenant
// whose last connection ended on a worker stays among the holders until the book is
// next consulted (prune()): workers never touch it.
#pragma once

#include <cstddef>
#include <vector>

namespace nsproxy {

struct Tenant;

class ConnectionBudget {
 public:
  // Tenant t's connection count went 0 -> 1 (main thread, at accept); remove_holder when
  // its last listener goes. A holder without connections is dropped by prune().
  void add_holder(Tenant& t);
  void remove_holder(Tenant& t);
  void prune();
  size_t holders() const { return holders_.size(); }

  // What t may hold when `budget` connections are shared out now.
  size_t fair_share(const Tenant& t, size_t budget);
  // The budget is spent and t, below its fair share, wants one more connection: the
  // largest holder above that share with an idle connection or an incomplete head on
  // some worker, or null (t gets refused).
  Tenant* donor_for(const Tenant& t, size_t budget);
  // The budget is spent and t holds its share: its listeners stop accepting (over_share)
  // until release_held(), called when a connection ends below the budget.
  void hold(Tenant& t);
  void release_held();
  bool holding() const { return !held_.empty(); }
  void forget(Tenant& t);  // t's last listener goes
  const std::vector<Tenant*>& holder_list() const { return holders_; }

 private:
  std::vector<Tenant*> holders_;
  std::vector<Tenant*> held_;  // over_share, their listeners waiting
};

// Idle keep-alive connections and incomplete heads t has on all workers (the main
// thread's view: what a reclaim could close).
size_t reclaimable(const Tenant& t);

}  // namespace nsproxy
