// `http` mode: an HTTP/1.1 reverse proxy for one tenant connection. The class is defined
// in three files: http_session.cc (phases, the tenant side, interest), http_upstream.cc
// (the upstream side) and http_answers.cc (nsproxyd's own answers, the in-flight line).
//
// Requests are parsed with http-parser; the daemon rewrites each request head (removes
// hop-by-hop headers and every identity header the tenant sent, adds the identity it
// vouches for: tenant id, labels, X-Forwarded-For, Forwarded) and streams bodies in
// both directions with backpressure, re-framing chunked bodies. Upstream connections
// come from the worker's pool and go back to it after a clean response.
//
// Phases (one at a time):
//   kHead     reading a request head (head timeout: slowloris protection)
//   kIdle     keep-alive, waiting for the next request (idle timeout)
//   kExchange request forwarded; request body and/or response in flight
//   kTunnel   after 101 Switching Protocols: raw bytes both ways, half-close aware,
//             closed after --idle-timeout without traffic
//   kClosing  flushing the last response, then a short lingering read, then close
//
// Errors answer with a short text body while no response byte was sent yet:
// 400 malformed or smuggling-shaped request, 408 head or body too slow, 429 over the
// tenant's request rate (Retry-After), 431 head too large, 502 upstream refused or broke,
// 503 the daemon's connection budget spent (answered at once) or a request waited longer
// than --connect-timeout for one of the tenant's in-flight slots, 504 upstream
// connect/response timeout.
#pragma once

#include <ev.h>
#include <http_parser.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "forward/byte_pump.h"
#include "forward/byte_queue.h"
#include "forward/chunk_pool.h"
#include "forward/connection.h"
#include "forward/http/exchange.h"
#include "forward/http/head_fields.h"
#include "forward/session.h"
#include "forward/tenant_stats.h"
#include "unique_fd.h"

namespace nsproxy {

// SessionFactory of http mode.
std::unique_ptr<Session> make_http_session(Listener* listener, Worker* worker, UniqueFd client,
                                           const sockaddr_storage& peer, bool over_limit);

class HttpSession : public Session {
 public:
  HttpSession(Listener* listener, Worker* worker, UniqueFd client, const sockaddr_storage& peer,
              bool over_limit);
  ~HttpSession() override;

  bool start() override;
  void grant_slot() override;

  // libev handlers: each returns false when the session is over (the caller deletes it).
  bool on_client_readable();
  bool on_client_writable();
  bool on_upstream_readable();
  bool on_upstream_writable();
  bool on_client_timer();
  bool on_upstream_timer();

  // http-parser callbacks (request side).
  int req_message_begin();
  int req_url(const char* at, size_t len);
  int req_header_field(const char* at, size_t len);
  int req_header_value(const char* at, size_t len);
  int req_headers_complete();
  int req_body(const char* at, size_t len);
  int req_message_complete();
  // http-parser callbacks (response side).
  int resp_message_begin();
  int resp_status(const char* at, size_t len);
  int resp_header_field(const char* at, size_t len);
  int resp_header_value(const char* at, size_t len);
  int resp_headers_complete();
  int resp_body(const char* at, size_t len);
  int resp_message_complete();

 private:
  enum class Phase { kHead, kIdle, kExchange, kTunnel, kClosing };
  static constexpr size_t kHighWater = 64 * 1024;  // stop reading a side beyond this queued
  static constexpr size_t kReadSize = 16 * 1024;
  static constexpr double kLingerSeconds = 2.0;

  bool process_client_input();                // parse what the tenant sent; false when over
  bool connect_upstream(bool fresh = false);  // pooled (unless fresh) or new; false when over
  bool upstream_connected();
  // The upstream connection becomes this session's: its callbacks lead here.
  void own_upstream(std::unique_ptr<Connection> conn);
  bool upstream_connecting() const { return upstream_ && upstream_->connecting(); }
  bool finish_exchange();  // response complete: log, pool, next request
  // retry_after > 0: a Retry-After header (seconds). log: one INFO line (refuse() limits
  // them per tenant).
  bool respond_error(int status, const char* reason, const std::string& why, long retry_after = 0,
                     bool log = true);
  bool upstream_failed(const char* what, int err);  // 502/504 or close
  bool pump();                           // watcher interest (the tunnel's pump); false when over
  bool client_failed(const char* what);  // a read or write of the tenant's failed: false
  bool tls_abandoned();         // the tenant closed in the TLS handshake or before a request: false
  void client_sent(ssize_t n);  // n bytes went to the tenant: counters, body timeout
  void set_phase(Phase p);
  void release_upstream(bool reusable);
  void restart_upstream_timer(double seconds);
  void touch_tunnel();                // (re)starts the tunnel's idle timeout
  void build_request_head();          // into to_upstream_; decides whether a retry is allowed
  void write_request_head();          // the rewritten request head, into to_upstream_
  void build_response_head();         // into to_client_
  void end_request();                 // forgets the request (and response) head: no block held
  bool count_head_bytes(size_t len);  // false: head too large (noted in ex_)
  // A response went to the tenant (or the tunnel began): metrics and access log.
  void complete_response(int status);
  void access_log(int status, std::chrono::steady_clock::duration elapsed);
  // Counts why the tenant was turned away, then answers with respond_error.
  bool refuse(Refusal why, int status, const char* reason, const std::string& detail,
              long retry_after = 0);
  // nsproxyd's own short text/plain answer, into to_client_ (Retry-After when > 0).
  void queue_own_response(int status, const char* reason, const std::string& why, long retry_after,
                          bool close);
  // Answers a complete bodiless request itself and goes on with the connection (keep-alive
  // unless the tenant asked to close), as after an upstream's response.
  bool answer_and_continue(int status, const char* reason, const std::string& why, long retry_after,
                           bool log);
  // The tenant's in-flight cap (over all workers): true when this request may go to its
  // upstream now; false: it waits in the tenant's line on this worker (upstream_t_ bounds
  // the wait) until grant_slot().
  bool acquire_slot();
  // At the end of the exchange: passes the slot to the next in line here, else frees it
  // and tells the workers where requests of the tenant wait.
  void release_slot();
  void leave_line();                        // out of the line (timed out, closing, gone), if in it
  void join(IntrusiveList<Session>& list);  // into one of its tenant's lists, newest

  struct ev_loop* loop_;
  Connection client_;
  // The upstream connection, while there is one: made for a new connect, or taken from
  // the worker's upstream pool and given back to it, watchers and all (upstream_pool.h).
  std::unique_ptr<Connection> upstream_;
  ev_timer client_t_, upstream_t_, linger_t_;
  http_parser req_parser_;
  http_parser resp_parser_;
  ByteQueue client_in_;  // tenant bytes not yet parsed
  ByteQueue to_upstream_;
  ByteQueue to_client_;
  HeadFields req_fields_;   // URL and headers of the current request
  HeadFields resp_fields_;  // reason and headers of the response being parsed
  std::string peer_ip_;     // the tenant's address as seen in its namespace

  Phase phase_ = Phase::kHead;
  bool over_limit_;
  bool upstream_reused_ = false;
  bool holds_slot_ = false;         // counted in the tenant's in_flight
  bool slot_granted_ = false;       // handed a slot while waiting: connect on upstream_t_
  bool client_eof_ = false;         // the tenant ended its stream (before a tunnel)
  bool upstream_eof_ = false;       // the upstream connection ended (before a tunnel)
  bool lingering_ = false;          // closing: our write half is shut, draining the tenant's
  std::optional<BytePump> tunnel_;  // after 101: the two connections, as tcp mode pumps them

  Exchange ex_;  // the current request and its response
};

}  // namespace nsproxy
