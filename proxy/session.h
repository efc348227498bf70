// One accepted tenant connection and everything it forwards to. A session is owned by
// the Listener that accepted it: the listener deletes its sessions when it closes, and
// a session that finishes deletes itself (at the top of a libev callback, never deep in
// its own call chain) and unlinks from the listener in its destructor.
//
// Forwarding modes plug in here: TcpSession (byte stream) today, an HTTP session later.
#pragma once

#include "intrusive_list.h"

namespace nsproxy {

class Listener;

class Session {
 public:
  explicit Session(Listener* listener);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts the session (e.g. connects upstream). false: it failed; caller deletes it.
  virtual bool start() = 0;

  // In one of its tenant's lists (idle, heads, waiting), or none.
  ListHook<Session> hook;
  double listed_at = 0;  // ev_now() when it joined that list

 protected:
  Listener* listener_;
};

}  // namespace nsproxy
