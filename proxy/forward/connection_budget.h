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
// Out of file descriptors, the oldest idle keep-alive connection of any tenant goes
// before anything is refused.
//
// Only http connections between requests or inside a request head are ever reclaimed: a
// request in flight, a tunnel and a tcp connection are not cut for someone else.
#pragma once

#include <cstddef>
#include <vector>

namespace nsproxy {

struct Tenant;

class ConnectionBudget {
 public:
  // Tenant t's connection count went 0 -> 1 / 1 -> 0.
  void add_holder(Tenant& t);
  void remove_holder(Tenant& t);
  size_t holders() const { return holders_.size(); }

  // What t may hold when `budget` connections are shared out now.
  size_t fair_share(const Tenant& t, size_t budget) const;
  // The budget is spent and t wants one more connection: when t is below its fair share,
  // closes one reclaimable connection of the largest holder above its share and returns
  // true (t may have the slot). False: t gets refused.
  bool reclaim_for(const Tenant& t, size_t budget);
  // The budget is spent and t holds its share: its listeners stop accepting (over_share)
  // until release_held(), called when a connection ends below the budget.
  void hold(Tenant& t);
  void release_held();
  void forget(Tenant& t);  // t's last listener goes
  // Out of fds: closes the oldest idle keep-alive connection of any tenant. False: none.
  bool reclaim_idle();
  // socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC); out of fds, reclaims an
  // idle keep-alive connection and tries once more. -1 with errno set on failure.
  int stream_socket(int family);

 private:
  std::vector<Tenant*> holders_;
  std::vector<Tenant*> held_;  // over_share, their listeners waiting
};

}  // namespace nsproxy
