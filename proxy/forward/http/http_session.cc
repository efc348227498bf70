#include "forward/http/http_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "forward/http/access_log.h"
#include "forward/http/header_rules.h"
#include "forward/listener.h"
#include "forward/upstream_pool.h"
#include "log.h"

namespace nsproxy {
namespace {

HttpSession* self(http_parser* p) {
  return static_cast<HttpSession*>(p->data);
}

const http_parser_settings kRequestSettings = [] {
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* p) { return self(p)->req_message_begin(); };
  s.on_url = [](http_parser* p, const char* at, size_t n) { return self(p)->req_url(at, n); };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    return self(p)->req_header_field(at, n);
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    return self(p)->req_header_value(at, n);
  };
  s.on_headers_complete = [](http_parser* p) { return self(p)->req_headers_complete(); };
  s.on_body = [](http_parser* p, const char* at, size_t n) { return self(p)->req_body(at, n); };
  s.on_message_complete = [](http_parser* p) { return self(p)->req_message_complete(); };
  return s;
}();

template <bool (HttpSession::*Handler)()>
void io_cb(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<HttpSession*>(w->data);
  if (!(s->*Handler)()) delete s;
}

template <bool (HttpSession::*Handler)()>
void timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* s = static_cast<HttpSession*>(w->data);
  if (!(s->*Handler)()) delete s;
}

void linger_cb(struct ev_loop*, ev_timer* w, int) {
  delete static_cast<HttpSession*>(w->data);
}

std::string peer_ip_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  } else {
    return "unknown";
  }
  return buf;
}

}  // namespace

// ---- HttpSession -----------------------------------------------------------------------

std::unique_ptr<Session> make_http_session(Listener* listener, Worker* worker, UniqueFd client,
                                           const sockaddr_storage& peer, bool over_limit) {
  return std::make_unique<HttpSession>(listener, worker, std::move(client), peer, over_limit);
}

HttpSession::HttpSession(Listener* listener, Worker* worker, UniqueFd client,
                         const sockaddr_storage& peer, bool over_limit)
    : Session(listener, worker),
      loop_(worker->loop),
      client_(loop_, this, io_cb<&HttpSession::on_client_readable>,
              io_cb<&HttpSession::on_client_writable>),
      client_in_(&worker->pool),
      to_upstream_(&worker->pool),
      to_client_(&worker->pool),
      req_fields_(&worker->pool),
      resp_fields_(&worker->pool),
      peer_ip_(peer_ip_of(peer)),
      over_limit_(over_limit) {
  client_.attach(std::move(client));
  ev_init(&client_t_, (timer_cb<&HttpSession::on_client_timer>));
  ev_init(&upstream_t_, (timer_cb<&HttpSession::on_upstream_timer>));
  ev_init(&linger_t_, linger_cb);
  client_t_.data = upstream_t_.data = linger_t_.data = this;
  http_parser_init(&req_parser_, HTTP_REQUEST);
  req_parser_.data = this;
  http_parser_init(&resp_parser_, HTTP_RESPONSE);
  resp_parser_.data = this;
}

HttpSession::~HttpSession() {
  leave_line();
  release_slot();
  ev_timer_stop(loop_, &client_t_);
  ev_timer_stop(loop_, &upstream_t_);
  ev_timer_stop(loop_, &linger_t_);
}

bool HttpSession::start() {
  if (const TlsServer* tls = listener_->tls()) {
    SSL* ssl = tls->new_ssl();
    if (ssl == nullptr || SSL_set_fd(ssl, client_.fd()) != 1) {
      SSL_free(ssl);
      LOG_ERROR("tenant %s: cannot start TLS (out of memory?); closing",
                listener_->tenant_name().c_str());
      return false;
    }
    SSL_set_accept_state(ssl);  // the handshake runs inside the first reads (or writes)
    client_.set_tls(ssl);
  }
  if (over_limit_) {
    // The daemon's budget is spent and nothing could be reclaimed for this tenant:
    // answered at once, without holding a slot while a head arrives.
    return refuse(Refusal::ConnectionLimit, 503, "Service Unavailable", "connection limit reached",
                  1);
  }
  set_phase(Phase::kHead);
  return pump();
}

void HttpSession::own_upstream(std::unique_ptr<Connection> conn) {
  conn->rebind(this, io_cb<&HttpSession::on_upstream_readable>,
               io_cb<&HttpSession::on_upstream_writable>);
  upstream_ = std::move(conn);
}

void HttpSession::join(IntrusiveList<Session>& list) {
  listed_at = ev_now(loop_);
  list.push_back(this);
}

void HttpSession::set_phase(Phase p) {
  phase_ = p;
  TenantShard& t = *shard_;
  if (p != Phase::kExchange) leave_line();  // waiting for a slot is part of an exchange
  if (p == Phase::kHead) {
    join(t.heads);
  } else if (p == Phase::kIdle) {
    join(t.idle);
  } else if (hook.list != &t.waiting) {
    unlink(this);
  }
  const ProxyConfig& cfg = *worker_->config;
  ev_timer_stop(loop_, &client_t_);
  if (p == Phase::kHead) {
    ev_timer_set(&client_t_, cfg.head_timeout, 0.);
    ev_timer_start(loop_, &client_t_);
  } else if (p == Phase::kIdle) {
    ev_timer_set(&client_t_, cfg.idle_timeout, 0.);
    ev_timer_start(loop_, &client_t_);
  } else if (p == Phase::kClosing) {
    // A tenant that never reads its last response must not hold the connection forever.
    ev_timer_set(&client_t_, cfg.body_timeout, 0.);
    ev_timer_start(loop_, &client_t_);
  }
}

void HttpSession::touch_tunnel() {
  ev_timer_stop(loop_, &client_t_);
  ev_timer_set(&client_t_, worker_->config->idle_timeout, 0.);
  ev_timer_start(loop_, &client_t_);
}

void HttpSession::restart_upstream_timer(double seconds) {
  ev_timer_stop(loop_, &upstream_t_);
  ev_timer_set(&upstream_t_, seconds, 0.);
  ev_timer_start(loop_, &upstream_t_);
}

// ---- tenant side -------------------------------------------------------------------

bool HttpSession::on_client_readable() {
  // A TLS write that waited for the tenant's bytes (its handshake) goes on first.
  if (client_.tls_retry_write() && !on_client_writable()) return false;
  if (phase_ == Phase::kTunnel) {
    ssize_t n = tunnel_->client_readable();
    if (n == Connection::kError) return client_failed("read");
    if (n > 0) {
      shard_->stats.received_bytes += static_cast<uint64_t>(n);
      touch_tunnel();
    }
    return pump();
  }
  if (phase_ == Phase::kClosing) {  // lingering: discard until the tenant closes
    char buf[kReadSize];
    ssize_t n = client_.read(buf, sizeof buf);
    if (n == Connection::kError) return client_failed("read");
    if (n > 0) shard_->stats.received_bytes += static_cast<uint64_t>(n);
    return n >= 0;
  }
  ssize_t n = client_.read_into(&client_in_);
  if (n == 0) return true;  // nothing to read now
  if (n == Connection::kError) return client_failed("read");
  if (n == Connection::kEof) {
    client_eof_ = true;
    if (client_.tls() != nullptr && phase_ == Phase::kHead && client_in_.empty() &&
        (!client_.tls_handshake_done() || TlsServer::unmatched_name(client_.tls()) != nullptr)) {
      return tls_abandoned();
    }
    if (phase_ == Phase::kHead || phase_ == Phase::kIdle) return false;  // gone between requests
    if (!ex_.req_complete) {
      LOG_INFO("tenant %s: closed the connection in the middle of a request",
               listener_->tenant_name().c_str());
      return false;
    }
    ex_.keep_alive = false;  // deliver the response, then close
    return pump();
  }
  shard_->stats.received_bytes += static_cast<uint64_t>(n);
  if (phase_ == Phase::kIdle) set_phase(Phase::kHead);
  return process_client_input();
}

bool HttpSession::client_failed(const char* what) {
  if (client_.tls() != nullptr && !client_.tls_error().empty()) {
    // Plain HTTP, a garbage or downgraded ClientHello, a certificate the tenant refused
    // (its alert), a renegotiation: counted, and worth a line naming the tenant
    // (throttled per tenant).
    if (client_.tls_renegotiation()) {
      shard_->stats.refuse(Refusal::TlsRenegotiation);
    } else if (!client_.tls_handshake_done()) {
      shard_->stats.refuse(Refusal::TlsHandshake);
    }
    if (shard_->refusal_log.allow(ev_now(loop_))) {
      const std::string& why = client_.tls_error();
      const char* asked = TlsServer::unmatched_name(client_.tls());
      LOG_INFO("tenant %s: TLS %s failed: %s%s%s%s%s; closing", listener_->tenant_name().c_str(),
               client_.tls_handshake_done() ? what : "handshake", why.c_str(),
               why == "http request" ? " (plain HTTP sent to an https listener)" : "",
               asked != nullptr ? " (it asked for " : "", asked != nullptr ? asked : "",
               asked != nullptr ? ", which no certificate names: the default was presented)" : "");
    }
    return false;
  }
  LOG_DEBUG("tenant %s: %s: %s", listener_->tenant_name().c_str(), what, std::strerror(errno));
  return false;
}

// The tenant closed during the TLS handshake, or before a request: quietly (a port
// check), unless it had asked for a name no certificate carries, which is why clients give
// up (curl checks the name once the handshake is done, then closes).
bool HttpSession::tls_abandoned() {
  const char* asked = TlsServer::unmatched_name(client_.tls());
  if (asked != nullptr && shard_->refusal_log.allow(ev_now(loop_))) {
    LOG_INFO(
        "tenant %s: TLS client closed without a request after asking for %s, which no "
        "certificate names (the default was presented)",
        listener_->tenant_name().c_str(), asked);
  } else if (asked == nullptr) {
    LOG_DEBUG("tenant %s: closed during the TLS handshake", listener_->tenant_name().c_str());
  }
  return false;
}

bool HttpSession::process_client_input() {
  while (!client_in_.empty() && (phase_ == Phase::kHead || phase_ == Phase::kIdle ||
                                 (phase_ == Phase::kExchange && !ex_.req_complete))) {
    if (phase_ == Phase::kIdle) set_phase(Phase::kHead);
    if (to_upstream_.size() >= kHighWater) break;  // backpressure: parse more later
    std::string_view in = client_in_.front();
    size_t done = http_parser_execute(&req_parser_, &kRequestSettings, in.data(), in.size());
    client_in_.consume(done);
    http_errno err = HTTP_PARSER_ERRNO(&req_parser_);
    if (err == HPE_PAUSED) {
      // A complete request; following bytes wait (pipelining) until its response is done.
      break;
    }
    if (err != HPE_OK) {
      if (ex_.head_error == HeadError::kTooLarge || err == HPE_HEADER_OVERFLOW) {
        return refuse(Refusal::HeadTooLarge, 431, "Request Header Fields Too Large",
                      "request head larger than " + std::to_string(worker_->config->max_head_size) +
                          " bytes");
      }
      if (ex_.head_error == HeadError::kBadTransferEncoding) {
        return refuse(Refusal::BadRequest, 400, "Bad Request",
                      "Transfer-Encoding other than \"chunked\"");
      }
      if (ex_.head_error == HeadError::kBadHeaderName) {
        return refuse(Refusal::BadRequest, 400, "Bad Request",
                      "invalid character (or whitespace) in a header name");
      }
      return refuse(Refusal::BadRequest, 400, "Bad Request",
                    std::string("malformed request: ") + http_errno_description(err));
    }
    if (ex_.ready) break;
    if (done == 0) break;
  }
  if (ex_.ready) {
    ex_.ready = false;
    if (req_parser_.method == HTTP_CONNECT) {
      return refuse(Refusal::MethodNotAllowed, 405, "Method Not Allowed", "CONNECT is not proxied");
    }
    Tenant& t = listener_->tenant();
    if (!t.rate.take(ev_now(loop_))) {
      char why[96];
      std::snprintf(why, sizeof why, "request rate limit (%g/s, burst %g) exceeded", t.rate.rate(),
                    t.rate.burst());
      long retry = t.rate.retry_after(ev_now(loop_));
      if (ex_.req_complete && !ex_.has_body && !ex_.upgrade && !ex_.http10 && client_in_.empty()) {
        // Nothing of this request left to read, nothing pipelined behind it (answered
        // here, pipelined requests would recurse without bound): the connection stays
        // for the next one, a rate-limited client need not reconnect.
        shard_->stats.refuse(Refusal::RateLimit);
        return answer_and_continue(429, "Too Many Requests", why, retry,
                                   shard_->refusal_log.allow(ev_now(loop_)));
      }
      return refuse(Refusal::RateLimit, 429, "Too Many Requests", why, retry);
    }
    if (acquire_slot() && !connect_upstream()) return false;
    // Body bytes that arrived with the head (queued while the request waits in line).
    return process_client_input();
  }
  return pump();
}

int HttpSession::req_message_begin() {
  ex_ = Exchange{};
  req_fields_.clear();
  return 0;
}

// false (and the error noted) when the head grew beyond --max-head-size.
bool HttpSession::count_head_bytes(size_t len) {
  ex_.head_bytes += len;
  if (ex_.head_bytes <= worker_->config->max_head_size) return true;
  ex_.head_error = HeadError::kTooLarge;
  return false;
}

int HttpSession::req_url(const char* at, size_t len) {
  if (!count_head_bytes(len)) return 1;
  req_fields_.add_start(at, len);
  return 0;
}

int HttpSession::req_header_field(const char* at, size_t len) {
  if (!count_head_bytes(len)) return 1;
  if (!valid_header_name_piece({at, len})) {
    ex_.head_error = HeadError::kBadHeaderName;
    return 1;
  }
  // A field arrives in pieces across reads; a new field starts after a value (which may
  // have been empty).
  req_fields_.add_name(at, len);
  return 0;
}

int HttpSession::req_header_value(const char* at, size_t len) {
  if (!count_head_bytes(len)) return 1;
  if (!req_fields_.add_value(at, len)) return 1;
  return 0;
}

int HttpSession::req_headers_complete() {
  ev_timer_stop(loop_, &client_t_);  // the head is in: no more head timeout
  phase_ = Phase::kExchange;
  unlink(this);  // out of its tenant's incomplete heads
  ex_.method = http_method_str(static_cast<http_method>(req_parser_.method));
  ex_.http10 = req_parser_.http_major == 1 && req_parser_.http_minor == 0;
  ex_.req_chunked = (req_parser_.flags & F_CHUNKED) != 0;
  ex_.has_body = ex_.req_chunked ||
                 (req_parser_.content_length > 0 && req_parser_.content_length != ULLONG_MAX);
  ex_.upgrade = req_parser_.upgrade != 0;
  ex_.keep_alive = http_should_keep_alive(&req_parser_) != 0;
  ex_.tenant_closes = !ex_.keep_alive;
  if (ex_.req_chunked && !chunked_only(req_fields_)) {
    ex_.head_error = HeadError::kBadTransferEncoding;
    return -1;
  }
  build_request_head();
  ex_.ready = true;
  http_parser_init(&resp_parser_, HTTP_RESPONSE);
  resp_parser_.data = this;
  return 0;
}

void HttpSession::build_request_head() {
  write_request_head();
  // A request without a body can be replayed on a fresh connection if a pooled one
  // turns out to have been closed by the upstream.
  bool idempotent = req_parser_.method == HTTP_GET || req_parser_.method == HTTP_HEAD ||
                    req_parser_.method == HTTP_OPTIONS;
  ex_.retry_ok = !ex_.has_body && !ex_.upgrade && idempotent;
}

void HttpSession::write_request_head() {
  const Tenant& t = listener_->tenant();
  const ProxyConfig& cfg = *worker_->config;
  Identity id;
  id.tenant_id = t.id;
  id.labels = t.labels;
  id.tenant_header = t.tenant_header;
  id.label_header_prefix = t.label_header_prefix;
  id.default_tenant_header = cfg.tenant_header;
  id.default_label_header_prefix = cfg.label_header_prefix;
  id.peer_ip = peer_ip_;
  RequestFraming framing;
  framing.chunked = ex_.req_chunked;
  framing.has_length = !ex_.req_chunked && req_parser_.content_length != ULLONG_MAX &&
                       (req_parser_.content_length > 0 || req_parser_.flags & F_CONTENTLENGTH);
  framing.content_length = req_parser_.content_length;
  framing.upgrade = ex_.upgrade;
  append_request_head(&to_upstream_, ex_.method, req_fields_, framing, id);
}

int HttpSession::req_body(const char* at, size_t len) {
  ex_.bytes_in += len;
  append_body(&to_upstream_, {at, len}, ex_.req_chunked);
  return 0;
}

int HttpSession::req_message_complete() {
  if (ex_.req_chunked) to_upstream_.append("0\r\n\r\n", 5);
  ex_.req_complete = true;
  http_parser_pause(&req_parser_, 1);  // the next request waits for this response
  if (upstream_ && !upstream_->connecting() && !ex_.resp_started) {
    restart_upstream_timer(worker_->config->response_timeout);
  }
  return 0;
}

bool HttpSession::on_client_writable() {
  // A TLS read that waited for room to send (its handshake) goes on instead.
  if (client_.tls_retry_read()) return on_client_readable();
  ssize_t n = client_.write_from(&to_client_);
  if (n == Connection::kError) return client_failed("write");
  client_sent(n);
  return pump();
}

bool HttpSession::on_client_timer() {
  if (phase_ == Phase::kIdle || phase_ == Phase::kClosing) return false;  // close quietly
  if (phase_ == Phase::kTunnel) {
    LOG_INFO("tenant %s: tunnel idle for %g s; closing", listener_->tenant_name().c_str(),
             worker_->config->idle_timeout);
    return false;
  }
  if (client_.tls() != nullptr && !client_.tls_handshake_done()) {
    shard_->stats.refuse(Refusal::TlsHandshake);
    if (shard_->refusal_log.allow(ev_now(loop_))) {
      LOG_INFO("tenant %s: TLS handshake not completed within %g s; closing",
               listener_->tenant_name().c_str(), worker_->config->head_timeout);
    }
    return false;
  }
  // kHead: the request head did not arrive in time (slowloris).
  return refuse(Refusal::HeadTimeout, 408, "Request Timeout", "request head not received in time");
}

bool HttpSession::finish_exchange() {
  complete_response(ex_.status);
  bool fully_sent = to_upstream_.empty();
  bool reusable =
      ex_.req_complete && !upstream_eof_ && http_should_keep_alive(&resp_parser_) && fully_sent;
  release_upstream(reusable);
  end_request();
  // Answered before the whole request was parsed or sent: the rest of this request is
  // still in flight from the tenant, so the connection cannot carry another request.
  if (!ex_.req_complete || !fully_sent) ex_.keep_alive = false;
  if (!ex_.keep_alive) {
    set_phase(Phase::kClosing);
    return pump();
  }
  // Next request: the parser was paused after the previous one.
  http_parser_init(&req_parser_, HTTP_REQUEST);
  req_parser_.data = this;
  ex_ = Exchange{};
  set_phase(Phase::kIdle);
  if (!client_in_.empty()) return process_client_input();  // pipelined
  return pump();
}

void HttpSession::end_request() {
  ex_.method = nullptr;
  ex_.retry_ok = false;
  req_fields_.release();
  resp_fields_.release();
}

void HttpSession::complete_response(int status) {
  auto elapsed = std::chrono::steady_clock::now() - ex_.started;
  shard_->stats.record_response(status, std::chrono::duration<double>(elapsed).count());
  access_log(status, elapsed);
}

void HttpSession::access_log(int status, std::chrono::steady_clock::duration elapsed) {
  FILE* out = worker_->config->access_log;
  if (out == nullptr) return;
  auto ms = std::chrono::duration<double, std::milli>(elapsed);
  AccessLogRecord r;
  r.tenant = listener_->tenant().id;
  r.listen = listener_->spec().listen;
  r.method = ex_.method == nullptr ? "-" : ex_.method;
  r.path = req_fields_.start();
  r.status = status;
  r.bytes_in = ex_.bytes_in;
  r.bytes_out = ex_.bytes_out;
  r.duration_ms = static_cast<int64_t>(ms.count() * 1000) / 1000.0;
  write_access_log(out, r);
}

// ---- interest, tunnel and closing ---------------------------------------------------

bool HttpSession::pump() {
  if (phase_ == Phase::kTunnel) {
    size_t sent = 0;
    BytePump::State state = tunnel_->update(true, &sent);
    shard_->stats.sent_bytes += sent;
    switch (state) {
      case BytePump::State::kOpen:
        return true;
      case BytePump::State::kDone:
        return false;
      case BytePump::State::kClientWriteFailed:
        return client_failed("write");
      case BytePump::State::kUpstreamWriteFailed:
        return upstream_failed("write to upstream", errno);
    }
    return false;
  }
  // What waits for the tenant goes at once; the write watcher is armed only while its
  // socket is full, so a response that fits costs no epoll_ctl.
  ssize_t n = client_.flush(&to_client_);
  if (n == Connection::kError) return client_failed("write");
  client_sent(n);
  if (phase_ == Phase::kClosing) {
    if (to_client_.empty()) {
      if (lingering_) return true;
      // The tenant said this request was its last and sent it whole, and nothing came
      // after it: no tenant byte can arrive to turn the close into a reset, so close
      // now (the kernel still delivers what is queued, then FIN), as nginx does,
      // without the half-close, the lingering read and their three system calls.
      if (ex_.tenant_closes && ex_.req_complete && client_in_.empty() && !client_eof_) {
        return false;
      }
      // All sent: end our side, then read and discard briefly so that unread tenant
      // bytes do not turn the close into a reset that destroys the response in flight.
      client_.shutdown_write();
      lingering_ = true;
      if (client_eof_) return false;
      ev_timer_set(&linger_t_, kLingerSeconds, 0.);
      ev_timer_start(loop_, &linger_t_);
      client_.want_read(true);
    } else {
      client_.want_read(false);
    }
    return true;
  }
  // Read interest stays on through an exchange too: pipelined bytes and an early close
  // are read and wait in client_in_ (parsing waits for the response), instead of
  // stopping and restarting the watcher, two epoll_ctl, per request.
  client_.want_read(!client_eof_ && to_upstream_.size() < kHighWater &&
                    client_in_.size() < kHighWater);
  if (upstream_ && !upstream_->connecting()) {
    n = upstream_->flush(&to_upstream_);
    if (n == Connection::kError) return upstream_failed("write to upstream", errno);
    if (n > 0 && phase_ == Phase::kExchange && !ex_.req_complete) {
      restart_upstream_timer(worker_->config->body_timeout);
      // Room again towards the upstream: parse buffered tenant bytes.
      if (!client_in_.empty() && to_upstream_.size() < kHighWater) return process_client_input();
    }
    upstream_->want_read(phase_ == Phase::kExchange && !ex_.resp_complete &&
                         to_client_.size() < kHighWater);
  }
  return true;
}

void HttpSession::client_sent(ssize_t n) {
  if (n <= 0) return;
  shard_->stats.sent_bytes += static_cast<uint64_t>(n);
  if (phase_ == Phase::kExchange && ex_.resp_started) {
    restart_upstream_timer(worker_->config->body_timeout);
  }
}

}  // namespace nsproxy
