// HttpSession, the upstream side: connecting (pooled or new), sending the request,
// parsing and relaying the response, timeouts, and giving the connection back.
#include <cerrno>
#include <climits>
#include <memory>

#include "forward/http/header_rules.h"
#include "forward/http/http_session.h"
#include "forward/listener.h"
#include "forward/upstream_pool.h"
#include "log.h"

namespace nsproxy {
namespace {

HttpSession* self(http_parser* p) {
  return static_cast<HttpSession*>(p->data);
}

const http_parser_settings kResponseSettings = [] {
  http_parser_settings s;
  http_parser_settings_init(&s);
  s.on_message_begin = [](http_parser* p) { return self(p)->resp_message_begin(); };
  s.on_status = [](http_parser* p, const char* at, size_t n) {
    return self(p)->resp_status(at, n);
  };
  s.on_header_field = [](http_parser* p, const char* at, size_t n) {
    return self(p)->resp_header_field(at, n);
  };
  s.on_header_value = [](http_parser* p, const char* at, size_t n) {
    return self(p)->resp_header_value(at, n);
  };
  s.on_headers_complete = [](http_parser* p) { return self(p)->resp_headers_complete(); };
  s.on_body = [](http_parser* p, const char* at, size_t n) { return self(p)->resp_body(at, n); };
  s.on_message_complete = [](http_parser* p) { return self(p)->resp_message_complete(); };
  return s;
}();

}  // namespace

bool HttpSession::connect_upstream(bool fresh) {
  const Address& up = listener_->upstream();
  UpstreamPool* pool = worker_->upstreams;
  upstream_reused_ = false;
  if (pool != nullptr && !fresh) {
    if (std::unique_ptr<Connection> idle = pool->take(listener_->upstream_key())) {
      own_upstream(std::move(idle));
      upstream_reused_ = true;
      return upstream_connected();
    }
  }
  own_upstream(std::make_unique<Connection>(loop_, nullptr, nullptr, nullptr));
  int err = 0;
  switch (upstream_->connect(worker_, up, &err)) {
    case Connection::Connect::kConnected:
      return upstream_connected();
    case Connection::Connect::kFailed:  // 502
      return upstream_failed(*upstream_ ? "connect to upstream" : "upstream socket for", err);
    case Connection::Connect::kInProgress:
      break;
  }
  restart_upstream_timer(worker_->config->connect_timeout);
  return true;
}

bool HttpSession::upstream_connected() {
  // A new connection to a TLS upstream: the handshake runs inside the first writes.
  if (const TlsClient* tls = listener_->upstream_tls(); tls != nullptr && !upstream_->tls()) {
    SSL* ssl = tls->new_ssl(upstream_->fd());
    if (ssl == nullptr) return upstream_failed("TLS to upstream (out of memory?)", ENOMEM);
    upstream_->set_tls(ssl);
  }
  const ProxyConfig& cfg = *worker_->config;
  restart_upstream_timer(ex_.req_complete ? cfg.response_timeout : cfg.body_timeout);
  return pump();
}

bool HttpSession::on_upstream_writable() {
  if (upstream_->connecting()) {
    int err = upstream_->finish_connect();
    if (err != 0) return upstream_failed("connect to upstream", err);
    return upstream_connected();
  }
  // A TLS read that waited for room to send (its handshake) goes on instead.
  if (upstream_->tls_retry_read()) return on_upstream_readable();
  ssize_t n = upstream_->write_from(&to_upstream_);
  if (n == Connection::kError) return upstream_failed("write to upstream", errno);
  if (n > 0 && phase_ == Phase::kExchange && !ex_.req_complete) {
    restart_upstream_timer(worker_->config->body_timeout);
  }
  // Room again towards the upstream: parse buffered tenant bytes.
  if (phase_ == Phase::kExchange && !ex_.req_complete && !client_in_.empty()) {
    return process_client_input();
  }
  return pump();
}

bool HttpSession::on_upstream_readable() {
  // A TLS write that waited for the upstream's bytes (its handshake) goes on first.
  if (upstream_->tls_retry_write() && !on_upstream_writable()) return false;
  if (phase_ == Phase::kTunnel) {
    ssize_t n = tunnel_->upstream_readable();
    if (n == Connection::kError) return upstream_failed("read from upstream", errno);
    if (n > 0) touch_tunnel();
    return pump();
  }
  char buf[kReadSize];
  ssize_t n = upstream_->read(buf, sizeof buf);
  if (n == 0) return true;  // nothing to read now
  if (n == Connection::kError && errno != ECONNRESET) {
    return upstream_failed("read from upstream", errno);
  }
  // End of stream, or a reset (a pooled connection the upstream dropped): handled alike,
  // and may retry.
  if (n < 0) {
    upstream_eof_ = true;
    if (!ex_.resp_started && ex_.status == 0 && upstream_reused_ && ex_.retry_ok) {
      // The pooled connection was closed by the upstream before it saw our request:
      // replay the (bodiless) request once on a fresh connection.
      LOG_DEBUG("tenant %s: pooled upstream connection was closed; retrying",
                listener_->tenant_name().c_str());
      upstream_.reset();
      upstream_eof_ = false;
      to_upstream_.clear();
      write_request_head();
      ex_.retry_ok = false;
      http_parser_init(&resp_parser_, HTTP_RESPONSE);
      resp_parser_.data = this;
      if (!connect_upstream(/*fresh=*/true)) return false;
      return true;
    }
    // End of stream: completes a body delimited by close, or breaks the response.
    http_parser_execute(&resp_parser_, &kResponseSettings, nullptr, 0);
    if (ex_.resp_complete) return finish_exchange();
    return upstream_failed("upstream closed the connection", ECONNRESET);
  }
  size_t done = http_parser_execute(&resp_parser_, &kResponseSettings, buf, static_cast<size_t>(n));
  http_errno err = HTTP_PARSER_ERRNO(&resp_parser_);
  if (err != HPE_OK && err != HPE_PAUSED) {
    shard_->stats.upstream_failed(UpstreamError::Malformed);
    LOG_WARN_F(({{"tenant", listener_->tenant().id},
                 {"listen", listener_->spec().listen},
                 {"upstream", listener_->upstream().text},
                 {"error", http_errno_description(err)}}),
               "tenant %s: malformed response from upstream %s: %s",
               listener_->tenant_name().c_str(), listener_->upstream().text.c_str(),
               http_errno_description(err));
    if (!ex_.resp_started) return respond_error(502, "Bad Gateway", "malformed upstream response");
    return false;
  }
  if (ex_.tunnel_next) {
    // 101: what follows the head belongs to the new protocol, both ways.
    ex_.tunnel_next = false;
    complete_response(101);
    phase_ = Phase::kTunnel;
    release_slot();  // a tunnel is bounded by the connection limit, not the in-flight cap
    ev_timer_stop(loop_, &upstream_t_);
    touch_tunnel();
    to_client_.append(buf + done, static_cast<size_t>(n) - done);
    to_upstream_.splice(client_in_);
    end_request();
    tunnel_.emplace(&client_, upstream_.get(), &to_upstream_, &to_client_, kHighWater);
    if (client_eof_) tunnel_->client_ended();
    return pump();
  }
  if (ex_.resp_complete) {
    if (done < static_cast<size_t>(n)) {
      // Bytes after a complete response: the upstream connection is not reusable.
      upstream_eof_ = true;
    }
    return finish_exchange();
  }
  if (ex_.resp_started) restart_upstream_timer(worker_->config->body_timeout);
  return pump();
}

int HttpSession::resp_message_begin() {
  resp_fields_.clear();
  ex_.interim = false;
  return 0;
}

int HttpSession::resp_status(const char* at, size_t len) {
  if (resp_fields_.start().size() + len > 1024) return 1;
  resp_fields_.add_start(at, len);
  return 0;
}

int HttpSession::resp_header_field(const char* at, size_t len) {
  if (resp_fields_.size() > 1000) return 1;
  resp_fields_.add_name(at, len);
  return 0;
}

int HttpSession::resp_header_value(const char* at, size_t len) {
  if (!resp_fields_.add_value(at, len)) return 1;
  return 0;
}

int HttpSession::resp_headers_complete() {
  ex_.status = resp_parser_.status_code;
  if (ex_.status >= 100 && ex_.status < 200 && ex_.status != 101) {
    // Interim (100 Continue, 103 Early Hints): pass on to HTTP/1.1 tenants, keep going.
    ex_.interim = true;
    if (!ex_.http10) {
      to_client_.append("HTTP/1.1 ");
      to_client_.append_decimal(static_cast<uint64_t>(ex_.status));
      to_client_.push_back(' ');
      to_client_.append(resp_fields_.start());
      to_client_.append("\r\n\r\n");
    }
    return 0;
  }
  ev_timer_stop(loop_, &upstream_t_);
  if (ex_.status == 101) {
    if (!ex_.upgrade) return -1;  // unsolicited protocol switch: a broken upstream
    ex_.tunnel_next = true;
  }
  build_response_head();
  resp_fields_.release();  // the head is rewritten; its fields are no longer needed
  ex_.resp_started = true;
  // HEAD, 204 and 304 responses may carry a Content-Length but never a body: tell the
  // parser, or it would wait for bytes that never come.
  return (req_parser_.method == HTTP_HEAD || ex_.status == 204 || ex_.status == 304) ? 1 : 0;
}

void HttpSession::build_response_head() {
  ResponseFacts r;
  r.status = ex_.status;
  r.chunked = (resp_parser_.flags & F_CHUNKED) != 0;
  r.has_length = resp_parser_.content_length != ULLONG_MAX;
  r.content_length = resp_parser_.content_length;
  r.head_request = req_parser_.method == HTTP_HEAD;
  r.http10 = ex_.http10;
  r.upgrade_requested = ex_.upgrade;
  ResponsePlan plan = plan_response(r, ex_.keep_alive);
  ex_.keep_alive = plan.keep_alive;
  ex_.chunked_out = plan.chunked_out;
  append_response_head(&to_client_, resp_fields_, r, plan);
}

int HttpSession::resp_body(const char* at, size_t len) {
  ex_.bytes_out += len;
  append_body(&to_client_, {at, len}, ex_.chunked_out);
  return 0;
}

int HttpSession::resp_message_complete() {
  if (ex_.interim) {
    ex_.interim = false;
    return 0;  // the final response follows on the same connection
  }
  if (ex_.chunked_out) to_client_.append("0\r\n\r\n", 5);
  ex_.resp_complete = true;
  http_parser_pause(&resp_parser_, 1);
  return 0;
}

bool HttpSession::on_upstream_timer() {
  if (slot_granted_) {
    slot_granted_ = false;
    if (!connect_upstream()) return false;
    return process_client_input();
  }
  if (hook.list == &shard_->waiting) {
    leave_line();
    return refuse(Refusal::InFlightLimit, 503, "Service Unavailable",
                  "too many requests of this tenant in flight to upstreams", 1);
  }
  if (upstream_connecting()) return upstream_failed("connect to upstream", ETIMEDOUT);
  if (!ex_.resp_started) {
    if (!ex_.req_complete) {
      return refuse(Refusal::BodyTimeout, 408, "Request Timeout", "request body stalled");
    }
    shard_->stats.upstream_failed(UpstreamError::Timeout);
    LOG_INFO("tenant %s: upstream %s did not answer within %g s", listener_->tenant_name().c_str(),
             listener_->upstream().text.c_str(), worker_->config->response_timeout);
    return respond_error(504, "Gateway Timeout", "upstream did not answer in time");
  }
  shard_->stats.upstream_failed(UpstreamError::Timeout);
  LOG_INFO("tenant %s: response body from %s stalled; closing", listener_->tenant_name().c_str(),
           listener_->upstream().text.c_str());
  return false;
}

bool HttpSession::upstream_failed(const char* what, int err) {
  if (upstream_ && upstream_->tls() != nullptr && !upstream_->tls_error().empty()) {
    // Why TLS failed says more than the errno: "certificate verify failed", an alert...
    const std::string why =
        std::string("TLS to upstream (") + upstream_->tls_error() + "), " + what;
    report_upstream_failure(why.c_str(), err);
  } else {
    report_upstream_failure(what, err);
  }
  if (ex_.resp_started || phase_ == Phase::kTunnel) return false;  // too late for a status
  if (err == ETIMEDOUT) return respond_error(504, "Gateway Timeout", "upstream connect timed out");
  return respond_error(502, "Bad Gateway", "upstream unavailable");
}

void HttpSession::release_upstream(bool reusable) {
  ev_timer_stop(loop_, &upstream_t_);
  slot_granted_ = false;
  release_slot();
  if (phase_ == Phase::kTunnel) return;  // the tunnel keeps the connection
  // Bytes of this request that were never sent die with this upstream connection: they
  // must never be sent in front of the next request.
  to_upstream_.clear();
  UpstreamPool* pool = worker_->upstreams;
  if (reusable && pool != nullptr && upstream_ && *upstream_ && ex_.status != 101) {
    pool->put(listener_->upstream_key(), std::move(upstream_));
  }
  upstream_.reset();
  upstream_eof_ = false;
}

}  // namespace nsproxy
