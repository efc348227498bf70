// `tcp` mode: a bidirectional byte stream between a tenant connection and its upstream.
//
// Backpressure lives in one place, update_interest(): read a side only while the buffer
// towards the other side has room, write a side only while bytes for it are pending.
// Half-close: when one side ends its stream, the other side's write half is shut only
// after everything that side sent has been delivered. The session ends when both
// directions are finished, on any socket error, or when the upstream connect fails or
// times out. With "proxy_protocol": "v2" a PROXY protocol v2 header (proxy_protocol.h)
// precedes the tenant's bytes towards the upstream.
#pragma once

#include <ev.h>

#include "forward/byte_pump.h"
#include "forward/byte_queue.h"
#include "forward/connection.h"
#include "forward/session.h"
#include "unique_fd.h"

namespace nsproxy {

// SessionFactory of tcp mode (over_limit does not reach it: the listener closes those).
std::unique_ptr<Session> make_tcp_session(Listener* listener, Worker* worker, UniqueFd client,
                                          const sockaddr_storage& peer, bool over_limit);

class TcpSession : public Session {
 public:
  TcpSession(Listener* listener, Worker* worker, UniqueFd client, const sockaddr_storage& peer);
  ~TcpSession() override;

  bool start() override;

  // Event handlers. Each returns false when the session is over (the caller deletes it).
  bool on_client_readable();
  bool on_client_writable();
  bool on_upstream_readable();
  bool on_upstream_writable();
  bool on_connect_timeout();

 private:
  bool on_connected();  // the upstream connect completed
  // PROXY v2 (listener spec says so): the header into to_upstream_, before any tenant byte.
  bool queue_proxy_header();
  bool pump();  // writes and interest; false when both directions are done or one failed
  bool fail(const char* what, int err);             // logs; false (the session ends)
  bool upstream_failed(const char* what, int err);  // counts it for /metrics, then fail()

  sockaddr_storage peer_;  // the tenant's address (for the PROXY v2 header)
  struct ev_loop* loop_;
  Connection client_;
  Connection upstream_;
  ev_timer connect_t_;
  ByteQueue to_upstream_;  // tenant -> upstream
  ByteQueue to_client_;    // upstream -> tenant
  BytePump pump_;
  bool connected_ = false;
};

}  // namespace nsproxy
