// A listening socket that lives in a tenant's network namespace, served from the host
// side. Accepts a bounded number of connections per wakeup; on EMFILE/ENFILE it pauses
// accepting for a moment instead of spinning. Owns the sessions it accepted.
#pragma once

#include <ev.h>

#include <memory>
#include <string>

#include "address.h"
#include "control_protocol.h"
#include "forward/intrusive_list.h"
#include "forward/session.h"
#include "forward/tenant.h"
#include "forward/worker.h"
#include "unique_fd.h"

namespace nsproxy {

class Listener {
 public:
  // fd: a bound, listening, non-blocking socket. spec: outlives the listener (its
  // registration's). upstream: shared by the listeners toward the same address.
  // make_session: the session of spec.mode for each accepted connection.
  Listener(Worker* worker, UniqueFd fd, const ListenerSpec& spec,
           std::shared_ptr<const Address> upstream, std::shared_ptr<Tenant> tenant,
           SessionFactory make_session);
  ~Listener();  // stops accepting and closes every session it accepted
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  // Handover: stop accepting and close this process's copy of the listening socket (the
  // new daemon holds it now); sessions already accepted keep running.
  void stop_accepting();
  int fd() const { return fd_.get(); }
  // Serving: accepting, or paused for a moment (out of fds), or holding back while its
  // tenant is at its connection limit or over its share of a spent daemon budget.
  bool accepting() const {
    return fd_ && (ev_is_active(&accept_w_) || ev_is_active(&pause_t_) || tenant_->holding());
  }
  // Starts or stops the accept watchers of every listener of t after t.at_limit or
  // t.over_share changed (a paused or handed-over listener stays as it is).
  static void update_tenant(Tenant& t);
  size_t connections() const { return sessions_.size(); }

  const ListenerSpec& spec() const { return *spec_; }
  const Address& upstream() const { return *upstream_; }
  const std::string& tenant_name() const { return tenant_->display; }
  Tenant& tenant() const { return *tenant_; }
  Worker* worker() const { return worker_; }

  // The one log line (with tenant, listen, upstream and error fields) for a socket call
  // toward the upstream that failed with err; upstream_failed also counts it in the
  // tenant's upstream error counters. Both sessions report through these.
  void log_upstream_problem(const char* what, int err) const;
  void upstream_failed(const char* what, int err) const;

  // Called by Session's constructor and destructor.
  void add_session(Session* s) { sessions_.push_back(s); }
  void remove_session(Session* s) { sessions_.remove(s); }

  void on_acceptable();
  void on_pause_over();

 private:
  // Stops accepting for kPauseSeconds (out of fds or memory): never spin.
  void pause(const char* why);

  static constexpr int kAcceptsPerWakeup = 64;
  static constexpr double kPauseSeconds = 0.1;

  Worker* worker_;
  UniqueFd fd_;
  const ListenerSpec* spec_;
  std::shared_ptr<const Address> upstream_;
  std::shared_ptr<Tenant> tenant_;
  SessionFactory make_session_;
  ev_io accept_w_;
  ev_timer pause_t_;
  IntrusiveList<Session, &Session::in_listener> sessions_;  // no allocation per connection
};

}  // namespace nsproxy
