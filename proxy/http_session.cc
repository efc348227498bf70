#include "http_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cctype>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string_view>

#include <nlohmann/json.hpp>

#include "listener.h"
#include "log.h"
#include "upstream_pool.h"

namespace nsproxy {
namespace {

constexpr size_t kHighWater = 64 * 1024;  // stop reading a side beyond this much queued
constexpr size_t kReadSize = 16 * 1024;
constexpr double kLingerSeconds = 2.0;

HttpSession* self(http_parser* p) { return static_cast<HttpSession*>(p->data); }

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

void linger_cb(struct ev_loop*, ev_timer* w, int) { delete static_cast<HttpSession*>(w->data); }

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// Header names as CGI-style upstreams (WSGI, Rack, PHP) see them: case-insensitive and
// '_' equal to '-' (both become HTTP_X_TENANT_ID). Identity checks use this form, so
// "X_Tenant_Id" cannot slip past the stripping.
char cgi_fold(char c) {
  return c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool cgi_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (cgi_fold(a[i]) != cgi_fold(b[i])) return false;
  }
  return true;
}

bool cgi_starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && cgi_equals(s.substr(0, prefix.size()), prefix);
}

// Hop-by-hop headers (RFC 9110 7.6.1) plus the framing headers the proxy re-creates.
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive",        "te",           "trailer", "proxy-connection",
      "upgrade",    "transfer-encoding", "content-length"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

// Header names listed in Connection: header values (comma-separated tokens).
std::vector<std::string> connection_tokens(const std::vector<std::pair<std::string, std::string>>& h) {
  std::vector<std::string> out;
  for (const auto& [name, value] : h) {
    if (!iequals(name, "connection")) continue;
    size_t i = 0;
    while (i < value.size()) {
      size_t j = value.find(',', i);
      if (j == std::string::npos) j = value.size();
      std::string tok = value.substr(i, j - i);
      size_t a = tok.find_first_not_of(" \t");
      size_t b = tok.find_last_not_of(" \t");
      if (a != std::string::npos) out.push_back(tok.substr(a, b - a + 1));
      i = j + 1;
    }
  }
  return out;
}

bool listed(const std::vector<std::string>& tokens, std::string_view name) {
  for (const auto& t : tokens) {
    if (iequals(t, name)) return true;
  }
  return false;
}

std::string chunk_header(size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx\r\n", n);
  return buf;
}

std::string peer_ip_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "unknown";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  } else if (ss.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  } else {
    return "unknown";
  }
  return buf;
}

}  // namespace

HttpSession::HttpSession(Listener* listener, UniqueFd client, bool over_limit)
    : Session(listener),
      loop_(listener->worker()->loop),
      client_(std::move(client)),
      over_limit_(over_limit) {
  ev_io_init(&client_r_, (io_cb<&HttpSession::on_client_readable>), client_.get(), EV_READ);
  ev_io_init(&client_w_, (io_cb<&HttpSession::on_client_writable>), client_.get(), EV_WRITE);
  ev_io_init(&upstream_r_, (io_cb<&HttpSession::on_upstream_readable>), -1, EV_READ);
  ev_io_init(&upstream_w_, (io_cb<&HttpSession::on_upstream_writable>), -1, EV_WRITE);
  ev_init(&client_t_, (timer_cb<&HttpSession::on_client_timer>));
  ev_init(&upstream_t_, (timer_cb<&HttpSession::on_upstream_timer>));
  ev_init(&linger_t_, linger_cb);
  client_r_.data = client_w_.data = upstream_r_.data = upstream_w_.data = this;
  client_t_.data = upstream_t_.data = linger_t_.data = this;
  http_parser_init(&req_parser_, HTTP_REQUEST);
  req_parser_.data = this;
  http_parser_init(&resp_parser_, HTTP_RESPONSE);
  resp_parser_.data = this;
}

HttpSession::~HttpSession() {
  ev_io_stop(loop_, &client_r_);
  ev_io_stop(loop_, &client_w_);
  ev_io_stop(loop_, &upstream_r_);
  ev_io_stop(loop_, &upstream_w_);
  ev_timer_stop(loop_, &client_t_);
  ev_timer_stop(loop_, &upstream_t_);
  ev_timer_stop(loop_, &linger_t_);
}

bool HttpSession::start() {
  peer_ip_ = peer_ip_of(client_.get());
  set_phase(Phase::kHead);
  return pump();
}

void HttpSession::set_phase(Phase p) {
  phase_ = p;
  const ProxyConfig& cfg = *listener_->worker()->config;
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
  ev_timer_set(&client_t_, listener_->worker()->config->idle_timeout, 0.);
  ev_timer_start(loop_, &client_t_);
}

void HttpSession::restart_upstream_timer(double seconds) {
  ev_timer_stop(loop_, &upstream_t_);
  ev_timer_set(&upstream_t_, seconds, 0.);
  ev_timer_start(loop_, &upstream_t_);
}

// ---- tenant side -------------------------------------------------------------------

bool HttpSession::on_client_readable() {
  char buf[kReadSize];
  ssize_t n;
  do {
    n = ::read(client_.get(), buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (would_block(errno)) return true;
    LOG_DEBUG("tenant %s: read: %s", listener_->tenant_name().c_str(), std::strerror(errno));
    return false;
  }
  if (phase_ == Phase::kClosing) {  // lingering: discard until the tenant closes
    return n > 0;
  }
  if (n == 0) {
    client_eof_ = true;
    if (phase_ == Phase::kTunnel) return pump();
    if (phase_ == Phase::kHead || phase_ == Phase::kIdle) return false;  // gone between requests
    if (!req_complete_) {
      LOG_INFO("tenant %s: closed the connection in the middle of a request",
               listener_->tenant_name().c_str());
      return false;
    }
    client_keep_alive_ = false;  // deliver the response, then close
    return pump();
  }
  if (phase_ == Phase::kTunnel) {
    to_upstream_.append(buf, static_cast<size_t>(n));
    touch_tunnel();
    return pump();
  }
  client_in_.append(buf, static_cast<size_t>(n));
  if (phase_ == Phase::kIdle) set_phase(Phase::kHead);
  return process_client_input();
}

bool HttpSession::process_client_input() {
  while (!client_in_.empty() && (phase_ == Phase::kHead || phase_ == Phase::kIdle ||
                                 (phase_ == Phase::kExchange && !req_complete_))) {
    if (phase_ == Phase::kIdle) set_phase(Phase::kHead);
    if (to_upstream_.size() >= kHighWater) break;  // backpressure: parse more later
    std::string_view in = client_in_.view();
    size_t done = http_parser_execute(&req_parser_, &kRequestSettings, in.data(), in.size());
    client_in_.consume(done);
    http_errno err = HTTP_PARSER_ERRNO(&req_parser_);
    if (err == HPE_PAUSED) {
      // A complete request; following bytes wait (pipelining) until its response is done.
      break;
    }
    if (err != HPE_OK) {
      if (head_too_large_ || err == HPE_HEADER_OVERFLOW) {
        return respond_error(431, "Request Header Fields Too Large",
                             "request head larger than " +
                                 std::to_string(listener_->worker()->config->max_head_size) +
                                 " bytes");
      }
      if (bad_transfer_encoding_) {
        return respond_error(400, "Bad Request", "Transfer-Encoding other than \"chunked\"");
      }
      if (bad_header_name_) {
        return respond_error(400, "Bad Request", "invalid character (or whitespace) in a header name");
      }
      return respond_error(400, "Bad Request",
                           std::string("malformed request: ") + http_errno_description(err));
    }
    if (exchange_ready_) break;
    if (done == 0) break;
  }
  if (exchange_ready_) {
    exchange_ready_ = false;
    if (over_limit_) {
      return respond_error(503, "Service Unavailable", "connection limit reached");
    }
    if (req_parser_.method == HTTP_CONNECT) {
      return respond_error(405, "Method Not Allowed", "CONNECT is not proxied");
    }
    if (!connect_upstream()) return false;
    // Body bytes that arrived with the head.
    return process_client_input();
  }
  return pump();
}

int HttpSession::req_message_begin() {
  method_.clear();
  url_.clear();
  req_headers_.clear();
  req_last_was_value_ = false;
  head_bytes_ = 0;
  head_too_large_ = false;
  bad_header_name_ = false;
  bad_transfer_encoding_ = false;
  req_chunked_ = false;
  req_complete_ = false;
  req_upgrade_ = false;
  req_has_body_ = false;
  bytes_in_ = 0;
  started_ = std::chrono::steady_clock::now();
  return 0;
}

int HttpSession::req_url(const char* at, size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > listener_->worker()->config->max_head_size) {
    head_too_large_ = true;
    return 1;
  }
  url_.append(at, len);
  return 0;
}

int HttpSession::req_header_field(const char* at, size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > listener_->worker()->config->max_head_size) {
    head_too_large_ = true;
    return 1;
  }
  // Only token characters: "Host : x" (whitespace before the colon) is a smuggling shape
  // that http-parser tolerates; refuse it here.
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = static_cast<unsigned char>(at[i]);
    if (!std::isalnum(c) && std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) ==
                                std::string_view::npos) {
      bad_header_name_ = true;
      return 1;
    }
  }
  // A field arrives in pieces across reads; a new field starts after a value (which may
  // have been empty).
  if (req_headers_.empty() || req_last_was_value_) {
    req_headers_.emplace_back(std::string(at, len), std::string());
  } else {
    req_headers_.back().first.append(at, len);
  }
  req_last_was_value_ = false;
  return 0;
}

int HttpSession::req_header_value(const char* at, size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > listener_->worker()->config->max_head_size) {
    head_too_large_ = true;
    return 1;
  }
  if (req_headers_.empty()) return 1;
  req_headers_.back().second.append(at, len);
  req_last_was_value_ = true;
  return 0;
}

int HttpSession::req_headers_complete() {
  ev_timer_stop(loop_, &client_t_);  // the head is in: no more head timeout
  phase_ = Phase::kExchange;
  method_ = http_method_str(static_cast<http_method>(req_parser_.method));
  req_http10_ = req_parser_.http_major == 1 && req_parser_.http_minor == 0;
  req_keep_alive_ = http_should_keep_alive(&req_parser_) != 0;
  req_chunked_ = (req_parser_.flags & F_CHUNKED) != 0;
  req_has_body_ = req_chunked_ || (req_parser_.content_length > 0 &&
                                   req_parser_.content_length != ULLONG_MAX);
  req_upgrade_ = req_parser_.upgrade != 0;
  client_keep_alive_ = req_keep_alive_;
  if (req_chunked_) {
    // Only "chunked" itself: another coding (gzip, chunked) would reach the upstream
    // without its coding, since the body is re-framed here.
    std::vector<std::string> codings;
    for (const auto& [name, value] : req_headers_) {
      if (!iequals(name, "transfer-encoding")) continue;
      for (const auto& tok : connection_tokens({{"connection", value}})) codings.push_back(tok);
    }
    if (codings.size() != 1 || !iequals(codings[0], "chunked")) {
      bad_transfer_encoding_ = true;
      return -1;
    }
  }
  build_request_head();
  exchange_ready_ = true;
  // Response state for this exchange.
  resp_started_ = resp_complete_ = resp_chunked_out_ = resp_interim_ = tunnel_next_ = false;
  status_ = 0;
  bytes_out_ = 0;
  http_parser_init(&resp_parser_, HTTP_RESPONSE);
  resp_parser_.data = this;
  return 0;
}

void HttpSession::build_request_head() {
  const Tenant& t = listener_->tenant();
  const ProxyConfig& cfg = *listener_->worker()->config;
  std::vector<std::string> conn_tokens = connection_tokens(req_headers_);
  std::string head;
  head.reserve(512 + head_bytes_);
  head += method_;
  head += ' ';
  head += url_;
  head += " HTTP/1.1\r\n";
  for (const auto& [name, value] : req_headers_) {
    if (hop_by_hop(name) || listed(conn_tokens, name)) continue;
    // Identity is the daemon's to state: drop every version the tenant sent.
    if (cgi_equals(name, t.tenant_header) || cgi_equals(name, cfg.tenant_header) ||
        cgi_starts_with(name, t.label_header_prefix) ||
        cgi_starts_with(name, cfg.label_header_prefix) || cgi_equals(name, "x-forwarded-for") ||
        cgi_equals(name, "forwarded")) {
      continue;
    }
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  head += t.tenant_header + ": " + t.id + "\r\n";
  for (const auto& [k, v] : t.labels) head += t.label_header_prefix + k + ": " + v + "\r\n";
  head += "X-Forwarded-For: " + peer_ip_ + "\r\n";
  bool v6 = peer_ip_.find(':') != std::string::npos;
  head += v6 ? "Forwarded: for=\"[" + peer_ip_ + "]\"\r\n" : "Forwarded: for=" + peer_ip_ + "\r\n";
  if (req_chunked_) {
    head += "Transfer-Encoding: chunked\r\n";
  } else if (req_parser_.content_length != ULLONG_MAX &&
             (req_parser_.content_length > 0 || req_parser_.flags & F_CONTENTLENGTH)) {
    head += "Content-Length: " + std::to_string(req_parser_.content_length) + "\r\n";
  }
  if (req_upgrade_) {
    for (const auto& [name, value] : req_headers_) {
      if (iequals(name, "upgrade")) head += "Upgrade: " + value + "\r\n";
    }
    head += "Connection: upgrade\r\n";
  }
  head += "\r\n";
  // A request without a body can be replayed on a fresh connection if a pooled one
  // turns out to have been closed by the upstream.
  bool idempotent = req_parser_.method == HTTP_GET || req_parser_.method == HTTP_HEAD ||
                    req_parser_.method == HTTP_OPTIONS;
  if (!req_has_body_ && !req_upgrade_ && idempotent) {
    retry_head_ = head;
  } else {
    retry_head_.clear();
  }
  to_upstream_.append(head);
}

int HttpSession::req_body(const char* at, size_t len) {
  bytes_in_ += len;
  if (req_chunked_) {
    to_upstream_.append(chunk_header(len));
    to_upstream_.append(at, len);
    to_upstream_.append("\r\n", 2);
  } else {
    to_upstream_.append(at, len);
  }
  return 0;
}

int HttpSession::req_message_complete() {
  if (req_chunked_) to_upstream_.append("0\r\n\r\n", 5);
  req_complete_ = true;
  http_parser_pause(&req_parser_, 1);  // the next request waits for this response
  if (upstream_ && !upstream_connecting_ && !resp_started_) {
    restart_upstream_timer(listener_->worker()->config->response_timeout);
  }
  return 0;
}

bool HttpSession::on_client_writable() {
  ssize_t n = to_client_.write_to(client_.get());
  if (n < 0 && !would_block(errno)) {
    LOG_DEBUG("tenant %s: write: %s", listener_->tenant_name().c_str(), std::strerror(errno));
    return false;
  }
  if (n > 0 && phase_ == Phase::kExchange && resp_started_) {
    restart_upstream_timer(listener_->worker()->config->body_timeout);
  }
  return pump();
}

bool HttpSession::on_client_timer() {
  if (phase_ == Phase::kIdle || phase_ == Phase::kClosing) return false;  // close quietly
  if (phase_ == Phase::kTunnel) {
    LOG_INFO("tenant %s: tunnel idle for %g s; closing", listener_->tenant_name().c_str(),
             listener_->worker()->config->idle_timeout);
    return false;
  }
  // kHead: the request head did not arrive in time (slowloris).
  return respond_error(408, "Request Timeout", "request head not received in time");
}

// ---- upstream side -----------------------------------------------------------------

bool HttpSession::connect_upstream(bool fresh) {
  const Address& up = listener_->upstream();
  UpstreamPool* pool = listener_->worker()->upstreams;
  upstream_reused_ = false;
  if (pool != nullptr && !fresh) {
    upstream_ = pool->take(up.text);
    upstream_reused_ = static_cast<bool>(upstream_);
  }
  if (!upstream_) {
    upstream_.reset(::socket(up.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!upstream_) return upstream_failed("upstream socket for", errno);  // 502
    if (up.family() != AF_UNIX) set_nodelay(upstream_.get());
  }
  ev_io_set(&upstream_r_, upstream_.get(), EV_READ);
  ev_io_set(&upstream_w_, upstream_.get(), EV_WRITE);
  if (upstream_reused_) return upstream_connected();
  int rc;
  do {
    rc = ::connect(upstream_.get(), up.sa(), up.length);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return upstream_connected();
  if (errno != EINPROGRESS) return upstream_failed("connect to upstream", errno);
  upstream_connecting_ = true;
  ev_io_start(loop_, &upstream_w_);
  restart_upstream_timer(listener_->worker()->config->connect_timeout);
  return true;
}

bool HttpSession::upstream_connected() {
  upstream_connecting_ = false;
  const ProxyConfig& cfg = *listener_->worker()->config;
  restart_upstream_timer(req_complete_ ? cfg.response_timeout : cfg.body_timeout);
  return pump();
}

bool HttpSession::on_upstream_writable() {
  if (upstream_connecting_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(upstream_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) return upstream_failed("connect to upstream", err);
    return upstream_connected();
  }
  ssize_t n = to_upstream_.write_to(upstream_.get());
  if (n < 0 && !would_block(errno)) return upstream_failed("write to upstream", errno);
  if (n > 0 && phase_ == Phase::kExchange && !req_complete_) {
    restart_upstream_timer(listener_->worker()->config->body_timeout);
  }
  // Room again towards the upstream: parse buffered tenant bytes.
  if (phase_ == Phase::kExchange && !req_complete_ && !client_in_.empty()) {
    return process_client_input();
  }
  return pump();
}

bool HttpSession::on_upstream_readable() {
  char buf[kReadSize];
  ssize_t n;
  do {
    n = ::read(upstream_.get(), buf, sizeof buf);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (would_block(errno)) return true;
    if (errno != ECONNRESET || phase_ == Phase::kTunnel) {
      return upstream_failed("read from upstream", errno);
    }
    n = 0;  // a reset pooled connection: handled like a close below (may retry)
  }
  if (phase_ == Phase::kTunnel) {
    if (n == 0) {
      upstream_eof_ = true;
    } else {
      to_client_.append(buf, static_cast<size_t>(n));
      touch_tunnel();
    }
    return pump();
  }
  if (n == 0) {
    upstream_eof_ = true;
    if (!resp_started_ && status_ == 0 && upstream_reused_ && !retry_head_.empty()) {
      // The pooled connection was closed by the upstream before it saw our request:
      // replay the (bodiless) request once on a fresh connection.
      LOG_DEBUG("tenant %s: pooled upstream connection was closed; retrying",
                listener_->tenant_name().c_str());
      ev_io_stop(loop_, &upstream_r_);
      ev_io_stop(loop_, &upstream_w_);
      upstream_.reset();
      upstream_eof_ = false;
      to_upstream_.clear();
      to_upstream_.append(retry_head_);
      retry_head_.clear();
      http_parser_init(&resp_parser_, HTTP_RESPONSE);
      resp_parser_.data = this;
      if (!connect_upstream(/*fresh=*/true)) return false;
      return true;
    }
    // End of stream: completes a body delimited by close, or breaks the response.
    http_parser_execute(&resp_parser_, &kResponseSettings, nullptr, 0);
    if (resp_complete_) return finish_exchange();
    return upstream_failed("upstream closed the connection", ECONNRESET);
  }
  size_t done = http_parser_execute(&resp_parser_, &kResponseSettings, buf, static_cast<size_t>(n));
  http_errno err = HTTP_PARSER_ERRNO(&resp_parser_);
  if (err != HPE_OK && err != HPE_PAUSED) {
    LOG_WARN("tenant %s: malformed response from upstream %s: %s",
             listener_->tenant_name().c_str(), listener_->upstream().text.c_str(),
             http_errno_description(err));
    if (!resp_started_) return respond_error(502, "Bad Gateway", "malformed upstream response");
    return false;
  }
  if (tunnel_next_) {
    // 101: what follows the head belongs to the new protocol, both ways.
    tunnel_next_ = false;
    access_log(101);
    phase_ = Phase::kTunnel;
    ev_timer_stop(loop_, &upstream_t_);
    touch_tunnel();
    to_client_.append(buf + done, static_cast<size_t>(n) - done);
    to_upstream_.append(client_in_.view());
    client_in_.clear();
    return pump();
  }
  if (resp_complete_) {
    if (done < static_cast<size_t>(n)) {
      // Bytes after a complete response: the upstream connection is not reusable.
      upstream_eof_ = true;
    }
    return finish_exchange();
  }
  if (resp_started_) restart_upstream_timer(listener_->worker()->config->body_timeout);
  return pump();
}

int HttpSession::resp_message_begin() {
  resp_headers_.clear();
  resp_last_was_value_ = false;
  resp_reason_.clear();
  resp_interim_ = false;
  return 0;
}

int HttpSession::resp_status(const char* at, size_t len) {
  if (resp_reason_.size() + len > 1024) return 1;
  resp_reason_.append(at, len);
  return 0;
}

int HttpSession::resp_header_field(const char* at, size_t len) {
  if (resp_headers_.size() > 1000) return 1;
  if (resp_headers_.empty() || resp_last_was_value_) {
    resp_headers_.emplace_back(std::string(at, len), std::string());
  } else {
    resp_headers_.back().first.append(at, len);
  }
  resp_last_was_value_ = false;
  return 0;
}

int HttpSession::resp_header_value(const char* at, size_t len) {
  if (resp_headers_.empty()) return 1;
  resp_headers_.back().second.append(at, len);
  resp_last_was_value_ = true;
  return 0;
}

int HttpSession::resp_headers_complete() {
  status_ = resp_parser_.status_code;
  if (status_ >= 100 && status_ < 200 && status_ != 101) {
    // Interim (100 Continue, 103 Early Hints): pass on to HTTP/1.1 tenants, keep going.
    resp_interim_ = true;
    if (!req_http10_) {
      to_client_.append("HTTP/1.1 " + std::to_string(status_) + " " + resp_reason_ + "\r\n\r\n");
    }
    return 0;
  }
  ev_timer_stop(loop_, &upstream_t_);
  if (status_ == 101) {
    if (!req_upgrade_) return -1;  // unsolicited protocol switch: a broken upstream
    tunnel_next_ = true;
  }
  build_response_head();
  resp_started_ = true;
  // HEAD, 204 and 304 responses may carry a Content-Length but never a body: tell the
  // parser, or it would wait for bytes that never come.
  return (req_parser_.method == HTTP_HEAD || status_ == 204 || status_ == 304) ? 1 : 0;
}

void HttpSession::build_response_head() {
  std::vector<std::string> conn_tokens = connection_tokens(resp_headers_);
  bool chunked = (resp_parser_.flags & F_CHUNKED) != 0;
  bool has_length = resp_parser_.content_length != ULLONG_MAX;
  bool no_body = req_parser_.method == HTTP_HEAD || status_ == 204 || status_ == 304 ||
                 status_ == 101;
  bool until_close = !no_body && !chunked && !has_length;
  if (until_close) client_keep_alive_ = false;  // the body ends with the connection
  if (req_upgrade_ && status_ != 101) client_keep_alive_ = false;
  // HTTP/1.0 tenants cannot read chunked framing: send the body raw and close.
  resp_chunked_out_ = chunked && !req_http10_;
  if (chunked && req_http10_) client_keep_alive_ = false;

  std::string head;
  head.reserve(256);
  head += req_http10_ ? "HTTP/1.0 " : "HTTP/1.1 ";
  head += std::to_string(status_);
  head += ' ';
  head += resp_reason_;
  head += "\r\n";
  for (const auto& [name, value] : resp_headers_) {
    if (iequals(name, "content-length")) {
      if (no_body && status_ != 101 && status_ != 204) {
        head += name + ": " + value + "\r\n";  // HEAD/304 report the entity's length
      }
      continue;
    }
    if (hop_by_hop(name) || listed(conn_tokens, name)) continue;
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  if (!no_body) {
    if (resp_chunked_out_) {
      head += "Transfer-Encoding: chunked\r\n";
    } else if (has_length) {
      head += "Content-Length: " + std::to_string(resp_parser_.content_length) + "\r\n";
    }
  }
  if (status_ == 101) {
    for (const auto& [name, value] : resp_headers_) {
      if (iequals(name, "upgrade")) head += "Upgrade: " + value + "\r\n";
    }
    head += "Connection: upgrade\r\n";
  } else if (!client_keep_alive_) {
    head += "Connection: close\r\n";
  } else if (req_http10_) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  to_client_.append(head);
}

int HttpSession::resp_body(const char* at, size_t len) {
  bytes_out_ += len;
  if (resp_chunked_out_) {
    to_client_.append(chunk_header(len));
    to_client_.append(at, len);
    to_client_.append("\r\n", 2);
  } else {
    to_client_.append(at, len);
  }
  return 0;
}

int HttpSession::resp_message_complete() {
  if (resp_interim_) {
    resp_interim_ = false;
    return 0;  // the final response follows on the same connection
  }
  if (resp_chunked_out_) to_client_.append("0\r\n\r\n", 5);
  resp_complete_ = true;
  http_parser_pause(&resp_parser_, 1);
  return 0;
}

bool HttpSession::on_upstream_timer() {
  if (upstream_connecting_) return upstream_failed("connect to upstream", ETIMEDOUT);
  if (!resp_started_) {
    if (!req_complete_) {
      return respond_error(408, "Request Timeout", "request body stalled");
    }
    LOG_INFO("tenant %s: upstream %s did not answer within %g s", listener_->tenant_name().c_str(),
             listener_->upstream().text.c_str(), listener_->worker()->config->response_timeout);
    return respond_error(504, "Gateway Timeout", "upstream did not answer in time");
  }
  LOG_INFO("tenant %s: response body from %s stalled; closing", listener_->tenant_name().c_str(),
           listener_->upstream().text.c_str());
  return false;
}

bool HttpSession::upstream_failed(const char* what, int err) {
  LOG_INFO("tenant %s: %s %s: %s", listener_->tenant_name().c_str(), what,
           listener_->upstream().text.c_str(), std::strerror(err));
  if (resp_started_ || phase_ == Phase::kTunnel) return false;  // too late for a status
  if (err == ETIMEDOUT) return respond_error(504, "Gateway Timeout", "upstream connect timed out");
  return respond_error(502, "Bad Gateway", "upstream unavailable");
}

void HttpSession::release_upstream(bool reusable) {
  ev_timer_stop(loop_, &upstream_t_);
  if (phase_ == Phase::kTunnel) return;  // the tunnel keeps the connection
  ev_io_stop(loop_, &upstream_r_);
  ev_io_stop(loop_, &upstream_w_);
  // Bytes of this request that were never sent die with this upstream connection: they
  // must never be sent in front of the next request.
  to_upstream_.clear();
  UpstreamPool* pool = listener_->worker()->upstreams;
  if (reusable && pool != nullptr && upstream_ && status_ != 101) {
    pool->put(listener_->upstream().text, std::move(upstream_));
  }
  upstream_.reset();
  upstream_connecting_ = false;
  upstream_eof_ = false;
}

bool HttpSession::finish_exchange() {
  access_log(status_);
  bool fully_sent = to_upstream_.empty();
  bool reusable = req_complete_ && !upstream_eof_ && http_should_keep_alive(&resp_parser_) &&
                  fully_sent;
  release_upstream(reusable);
  retry_head_.clear();
  // Answered before the whole request was parsed or sent: the rest of this request is
  // still in flight from the tenant, so the connection cannot carry another request.
  if (!req_complete_ || !fully_sent) client_keep_alive_ = false;
  if (!client_keep_alive_) {
    set_phase(Phase::kClosing);
    return pump();
  }
  // Next request: the parser was paused after the previous one.
  http_parser_init(&req_parser_, HTTP_REQUEST);
  req_parser_.data = this;
  req_complete_ = false;
  resp_complete_ = false;
  resp_started_ = false;
  set_phase(Phase::kIdle);
  if (!client_in_.empty()) return process_client_input();  // pipelined
  return pump();
}

bool HttpSession::respond_error(int status, const char* reason, const std::string& why) {
  LOG_INFO("tenant %s: %d %s: %s%s%s", listener_->tenant_name().c_str(), status, reason,
           why.c_str(), method_.empty() ? "" : " (", method_.empty() ? "" : (method_ + " " + url_.substr(0, 200) + ")").c_str());
  status_ = status;
  access_log(status);
  release_upstream(false);
  to_upstream_.clear();
  client_in_.clear();
  if (!resp_started_) {
    std::string body = std::to_string(status) + " " + reason + ": " + why + "\n";
    to_client_.append(std::string(req_http10_ ? "HTTP/1.0 " : "HTTP/1.1 ") +
                      std::to_string(status) + " " + reason +
                      "\r\nContent-Type: text/plain\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    resp_started_ = true;
  }
  client_keep_alive_ = false;
  set_phase(Phase::kClosing);
  return pump();
}

void HttpSession::access_log(int status) {
  FILE* out = listener_->worker()->config->access_log;
  if (out == nullptr) return;
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started_);
  nlohmann::json j = {{"tenant", listener_->tenant().id},
                      {"listen", listener_->spec().listen},
                      {"method", method_.empty() ? "-" : method_},
                      {"path", url_},
                      {"status", status},
                      {"bytes_in", bytes_in_},
                      {"bytes_out", bytes_out_},
                      {"duration_ms", static_cast<int64_t>(ms.count() * 1000) / 1000.0}};
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fprintf(out, "%s\n", line.c_str());
}

// ---- interest, tunnel and closing ---------------------------------------------------

bool HttpSession::pump() {
  if (phase_ == Phase::kTunnel) {
    if (client_eof_ && to_upstream_.empty() && !upstream_shut_) {
      ::shutdown(upstream_.get(), SHUT_WR);
      upstream_shut_ = true;
    }
    if (upstream_eof_ && to_client_.empty() && !client_shut_) {
      ::shutdown(client_.get(), SHUT_WR);
      client_shut_ = true;
    }
    if (client_shut_ && upstream_shut_) return false;
    set_active(loop_, &client_r_, !client_eof_ && to_upstream_.size() < kHighWater);
    set_active(loop_, &client_w_, !to_client_.empty());
    set_active(loop_, &upstream_r_, !upstream_eof_ && to_client_.size() < kHighWater);
    set_active(loop_, &upstream_w_, !to_upstream_.empty());
    return true;
  }
  if (phase_ == Phase::kClosing) {
    set_active(loop_, &client_w_, !to_client_.empty());
    if (to_client_.empty()) {
      if (client_shut_) return true;  // lingering already
      // All sent: end our side, then read and discard briefly so that unread tenant
      // bytes do not turn the close into a reset that destroys the response in flight.
      ::shutdown(client_.get(), SHUT_WR);
      client_shut_ = true;
      if (client_eof_) return false;
      ev_timer_set(&linger_t_, kLingerSeconds, 0.);
      ev_timer_start(loop_, &linger_t_);
      set_active(loop_, &client_r_, true);
    } else {
      set_active(loop_, &client_r_, false);
    }
    return true;
  }
  bool reading_request = phase_ == Phase::kHead || phase_ == Phase::kIdle ||
                         (phase_ == Phase::kExchange && !req_complete_);
  set_active(loop_, &client_r_, reading_request && !client_eof_ &&
                                    to_upstream_.size() < kHighWater &&
                                    client_in_.size() < kHighWater);
  set_active(loop_, &client_w_, !to_client_.empty());
  if (upstream_ && !upstream_connecting_) {
    set_active(loop_, &upstream_r_, phase_ == Phase::kExchange && !resp_complete_ &&
                                        to_client_.size() < kHighWater);
    set_active(loop_, &upstream_w_, !to_upstream_.empty());
  }
  return true;
}

}  // namespace nsproxy
