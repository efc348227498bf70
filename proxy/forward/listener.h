// A listening socket that lives in a tenant's network namespace, served from the host
// side. The main loop accepts (a bounded number of connections per wakeup; on
// EMFILE/ENFILE it pauses for a moment instead of spinning) and hands each connection to
// a worker (acceptor.h). Owns the sessions it accepted, on whichever worker they run.
#pragma once

#include <ev.h>

#include <memory>
#include <string>

#include "address.h"
#include "control_protocol.h"
#include "forward/acceptor.h"
#include "forward/intrusive_list.h"
#include "forward/session.h"
#include "forward/tenant.h"
#include "forward/tls_client.h"
#include "forward/tls_server.h"
#include "forward/worker.h"
#include "unique_fd.h"

namespace nsproxy {

class Listener {
 public:
  // fd: a bound, listening, non-blocking socket. spec: outlives the listener (its
  // registration's). upstream: shared by the listeners toward the same address.
  // make_session: the session of spec.mode for each accepted connection.
  Listener(Acceptor* acceptor, UniqueFd fd, const ListenerSpec& spec,
           std::shared_ptr<const Address> upstream, std::shared_ptr<Tenant> tenant,
           SessionFactory make_session);
  // Stops accepting and closes every session it accepted: each worker it ever handed a
  // connection to closes them in its own thread while this waits (a round trip per such
  // worker).
  ~Listener();
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
  size_t connections() const;  // its open sessions, all workers (main thread)

  const ListenerSpec& spec() const { return *spec_; }
  const Address& upstream() const { return *upstream_; }
  const std::string& tenant_name() const { return tenant_->display; }
  // https mode: the certificates its sessions present (set before start()).
  void set_tls(std::shared_ptr<TlsServer> tls) { tls_ = std::move(tls); }
  const TlsServer* tls() const { return tls_.get(); }
  // TLS towards the upstream (set before start()), or null.
  void set_upstream_tls(std::shared_ptr<TlsClient> tls) { upstream_tls_ = std::move(tls); }
  const TlsClient* upstream_tls() const { return upstream_tls_.get(); }
  // The upstream pool's key for this listener's connections: the address, and the TLS
  // settings when there are any.
  const std::string& upstream_key() const {
    return upstream_tls_ ? upstream_tls_->pool_key() : upstream_->text;
  }
  Tenant& tenant() const { return *tenant_; }
  Acceptor* acceptor() const { return acceptor_; }

  // The one log line (with tenant, listen, upstream and error fields) for a socket call
  // toward the upstream that failed with err (Session::report_upstream_failure also
  // counts it). Both sessions report through it.
  void log_upstream_problem(const char* what, int err) const;

  // Worker thread: the session for a connection this listener accepted and handed to w.
  void serve(Worker* w, UniqueFd fd, const sockaddr_storage& peer, bool over_limit);
  // Called by Session's constructor and destructor, in the session's worker.
  void add_session(Session* s, const Worker& w) { on_worker_[w.index].sessions.push_back(s); }
  void remove_session(Session* s, const Worker& w) { on_worker_[w.index].sessions.remove(s); }

  void on_acceptable();
  void on_pause_over();

 private:
  // Stops accepting for `seconds` (out of fds or memory: never spin); logged when `why`.
  void pause(const char* why, double seconds = kPauseSeconds);

  static constexpr int kAcceptsPerWakeup = 64;
  static constexpr double kPauseSeconds = 0.1;
  // Out of fds with an idle connection being closed on a worker thread: try again soon.
  static constexpr double kReclaimPauseSeconds = 0.001;

  using SessionList = IntrusiveList<Session, &Session::in_listener>;

  Acceptor* acceptor_;
  UniqueFd fd_;
  const ListenerSpec* spec_;
  std::shared_ptr<const Address> upstream_;
  std::shared_ptr<TlsServer> tls_;
  std::shared_ptr<TlsClient> upstream_tls_;
  std::shared_ptr<Tenant> tenant_;
  SessionFactory make_session_;
  ev_io accept_w_;
  ev_timer pause_t_;
  // Per worker, made at the first connection it hands over (an idle listener has none):
  // its sessions there (changed by that worker only; no allocation per connection), and
  // whether it ever handed that worker a connection (main thread only: only those
  // workers are asked to close its sessions when it goes).
  struct OnWorker {
    SessionList sessions;
    bool handed = false;
  };
  std::unique_ptr<OnWorker[]> on_worker_;
};

}  // namespace nsproxy
