// `http` mode: an HTTP/1.1 reverse proxy for one tenant connection.
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
#include <string>
#include <string_view>
#include <utility>

#include "forward/byte_queue.h"
#include "forward/chunk_pool.h"
#include "forward/session.h"
#include "forward/tenant_stats.h"
#include "unique_fd.h"

namespace nsproxy {

// What a session keeps of one message head while it is parsed: the start-line text (the
// request URL or the response reason) and every header's name and value. http-parser
// hands them over in pieces (a name or value may span reads); they are stored back to
// back in one block, so each stays contiguous: a chunk from the ChunkPool, or, for a head
// that outgrows it, a heap block twice the size. The block is taken at the first piece
// and given back by release(): a connection between requests holds none, and a request
// in steady state costs no heap allocation.
class HeadFields {
 public:
  explicit HeadFields(ChunkPool* pool) : pool_(pool) {}
  ~HeadFields() { release(); }
  HeadFields(const HeadFields&) = delete;
  HeadFields& operator=(const HeadFields&) = delete;

  void clear();    // forgets the contents, keeps the block
  void release();  // forgets the contents, gives the block back

  // More of the start-line text; only before the first header.
  void add_start(const char* at, size_t len);
  // A piece of a header name: starts a new header unless it continues the last name.
  void add_name(const char* at, size_t len);
  // A piece of the last header's value (may be empty). false when there is no header.
  bool add_value(const char* at, size_t len);

  std::string_view start() const { return {block_ == nullptr ? "" : block_, start_len_}; }
  size_t size() const { return count_; }
  std::string_view name(size_t i) const;
  std::string_view value(size_t i) const;
  bool holds_block() const { return block_ != nullptr; }

  // for (auto [name, value] : fields)
  struct iterator {
    const HeadFields* fields;
    size_t i;
    std::pair<std::string_view, std::string_view> operator*() const {
      return {fields->name(i), fields->value(i)};
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator!=(const iterator& o) const { return i != o.i; }
  };
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, count_}; }

 private:
  struct Field {  // records grow down from the block's end
    uint32_t off;
    uint32_t name_len;
    uint32_t value_len;
  };
  Field* field(size_t i) const { return reinterpret_cast<Field*>(block_ + cap_) - (i + 1); }
  void append_text(const char* at, size_t len, size_t new_fields);

  ChunkPool* pool_;
  char* block_ = nullptr;
  size_t cap_ = 0;
  bool pooled_ = false;  // block_ is a pool chunk (else new[]'d)
  size_t text_len_ = 0;
  size_t start_len_ = 0;
  size_t count_ = 0;
  bool last_was_value_ = false;
};

// One access log line: a JSON object without the newline, written exactly as
// nlohmann::json::dump(-1, ' ', false, error_handler_t::replace) wrote it before
// (sorted keys; invalid UTF-8 replaced by U+FFFD), but with no heap allocation once
// `out` has capacity. The pieces are exposed for tests.
struct AccessLogRecord {
  std::string_view tenant, listen, method, path;
  int status = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  double duration_ms = 0;
};
void append_access_log_line(std::string* out, const AccessLogRecord& r);
void append_json_string(std::string* out, std::string_view s);  // quoted and escaped
void append_json_number(std::string* out, double v);            // "1.5", "2.0", "0.0"

// SessionFactory of http mode.
std::unique_ptr<Session> make_http_session(Listener* listener, UniqueFd client, bool over_limit);

class HttpSession : public Session {
 public:
  HttpSession(Listener* listener, UniqueFd client, bool over_limit);
  ~HttpSession() override;

  bool start() override;

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

  bool process_client_input();    // parse what the tenant sent; false when over
  bool connect_upstream(bool fresh = false);  // pooled (unless fresh) or new; false when over
  bool upstream_connected();
  bool finish_exchange();         // response complete: log, pool, next request
  // retry_after > 0: a Retry-After header (seconds). log: one INFO line (refuse() limits
  // them per tenant).
  bool respond_error(int status, const char* reason, const std::string& why,
                     long retry_after = 0, bool log = true);
  bool upstream_failed(const char* what, int err);  // 502/504 or close
  bool pump();                    // tunnel half-close + watcher interest; false when over
  void set_phase(Phase p);
  void release_upstream(bool reusable);
  void restart_upstream_timer(double seconds);
  void touch_tunnel();         // (re)starts the tunnel's idle timeout
  void build_request_head();   // into to_upstream_; decides whether a retry is allowed
  void write_request_head();   // the rewritten request head, into to_upstream_
  void build_response_head();  // into to_client_
  void end_request();          // forgets the request (and response) head: no block held
  // A response went to the tenant (or the tunnel began): metrics and access log.
  void complete_response(int status);
  void access_log(int status, std::chrono::steady_clock::duration elapsed);
  // Counts why the tenant was turned away, then answers with respond_error.
  bool refuse(Refusal why, int status, const char* reason, const std::string& detail,
              long retry_after = 0);
  // nsproxyd's own short text/plain answer, into to_client_ (Retry-After when > 0).
  void queue_own_response(int status, const char* reason, const std::string& why,
                          long retry_after, bool close);
  // Answers a complete bodiless request itself and goes on with the connection (keep-alive
  // unless the tenant asked to close), as after an upstream's response.
  bool answer_and_continue(int status, const char* reason, const std::string& why,
                           long retry_after, bool log);
  // The tenant's in-flight cap: true when this request may go to its upstream now; false:
  // it waits in the tenant's line (upstream_t_ bounds the wait) until grant_slot().
  bool acquire_slot();
  void release_slot();  // at the end of the exchange; passes the slot to the next in line
  void grant_slot();
  void join(IntrusiveList<Session>& list);  // into one of its tenant's lists, newest

  struct ev_loop* loop_;
  UniqueFd client_;
  UniqueFd upstream_;
  ev_io client_r_, client_w_, upstream_r_, upstream_w_;
  ev_timer client_t_, upstream_t_, linger_t_;
  http_parser req_parser_;
  http_parser resp_parser_;
  ByteQueue client_in_;     // tenant bytes not yet parsed
  ByteQueue to_upstream_;
  ByteQueue to_client_;
  HeadFields req_fields_;   // URL and headers of the current request
  HeadFields resp_fields_;  // reason and headers of the response being parsed
  std::string peer_ip_;     // the tenant's address as seen in its namespace

  Phase phase_ = Phase::kHead;
  bool over_limit_;
  bool upstream_connecting_ = false;
  bool upstream_reused_ = false;
  bool holds_slot_ = false;      // counted in the tenant's in_flight
  bool slot_granted_ = false;    // handed a slot while waiting: connect on upstream_t_
  bool client_eof_ = false;
  bool upstream_eof_ = false;
  bool client_shut_ = false;
  bool upstream_shut_ = false;

  // The current request.
  const char* method_ = nullptr;  // http_method_str(), once the head is in
  size_t head_bytes_ = 0;
  bool head_too_large_ = false;
  bool bad_header_name_ = false;
  bool bad_transfer_encoding_ = false;
  bool req_chunked_ = false;
  bool req_complete_ = false;
  bool req_keep_alive_ = true;
  bool req_http10_ = false;
  bool req_upgrade_ = false;
  bool req_has_body_ = false;
  bool exchange_ready_ = false;  // head parsed; the upstream must be engaged
  bool retry_ok_ = false;        // a bodiless idempotent request: may be replayed once on a
                                 // fresh connection (its head is rebuilt from req_fields_)
  uint64_t bytes_in_ = 0;
  std::chrono::steady_clock::time_point started_;  // request's first byte (or accept)

  // The current response.
  bool resp_started_ = false;     // a response head was queued to the tenant
  bool resp_complete_ = false;
  bool resp_chunked_out_ = false; // we send chunked framing to the tenant
  bool resp_interim_ = false;     // the message being parsed is a 1xx
  bool client_keep_alive_ = true; // the tenant connection stays open after this response
  bool tunnel_next_ = false;      // 101 accepted: switch to kTunnel after the head
  int status_ = 0;
  uint64_t bytes_out_ = 0;
};

}  // namespace nsproxy
