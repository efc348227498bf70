// One accepted tenant connection and everything it forwards to. The main thread accepts
// it and hands it to a worker thread (acceptor.h); the session lives in that worker's
// loop from then on and never leaves it. A session is owned by the Listener that
// accepted it: the listener has its worker delete its sessions when it closes, and a
// session that finishes deletes itself (at the top of a libev callback, never deep in
// its own call chain) and unlinks from the listener in its destructor.
//
// Forwarding modes plug in here: TcpSession (forward/tcp_session.h, a byte stream) and
// HttpSession (forward/http/http_session.h). A listener is given the factory of its mode
// by whoever creates it, so that forward/ never includes the modes built on top of it.
#pragma once

#include <sys/socket.h>

#include <memory>

#include "forward/intrusive_list.h"
#include "unique_fd.h"

namespace nsproxy {

class Listener;
class Session;
struct Tenant;
struct TenantShard;
struct Worker;

// The session, served by `worker`, for a connection the listener accepted from `peer`
// (the tenant's address in its namespace, as accept4 reported it: no getpeername per
// connection). over_limit: the daemon-wide connection budget is spent and nothing could
// be reclaimed (http mode still reads the request to answer 503; tcp mode closes).
using SessionFactory = std::unique_ptr<Session> (*)(Listener* listener, Worker* worker,
                                                    UniqueFd client, const sockaddr_storage& peer,
                                                    bool over_limit);

class Session {
 public:
  // In worker's thread. Counts the connection in the worker, its tenant's shard there,
  // and the listener's sessions on that worker.
  Session(Listener* listener, Worker* worker);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts the session (e.g. connects upstream). false: it failed; caller deletes it.
  virtual bool start() = 0;
  // It waited in its tenant's line (shard().waiting) and now holds an in-flight slot
  // (http mode; Worker::offer_slots).
  virtual void grant_slot() {}

  Tenant& tenant() const;
  TenantShard& shard() const { return *shard_; }
  // A socket call toward the upstream failed with err: counted in the tenant's upstream
  // errors and logged (Listener::log_upstream_problem).
  void report_upstream_failure(const char* what, int err);

  // In one of its tenant's lists (idle, heads, waiting), or none.
  ListHook<Session> hook;
  ListHook<Session> in_listener;  // the listener's list of its sessions (Listener::sessions_)
  double listed_at = 0;           // ev_now() when it joined that list

 protected:
  Listener* listener_;
  Worker* worker_;      // the worker whose loop serves it
  TenantShard* shard_;  // its tenant's shard on that worker
};

}  // namespace nsproxy
