#include "forward/http/http_session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cctype>
#include <charconv>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "forward/listener.h"
#include "log.h"
#include "forward/upstream_pool.h"

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

// Calls f(token) on each comma-separated token of a header value, trimmed of spaces and
// tabs (empty tokens skipped), until f returns true; returns whether one did.
template <class F>
bool any_token(std::string_view value, F f) {
  size_t i = 0;
  while (i < value.size()) {
    size_t j = value.find(',', i);
    if (j == std::string_view::npos) j = value.size();
    std::string_view tok = value.substr(i, j - i);
    size_t a = tok.find_first_not_of(" \t");
    if (a != std::string_view::npos) {
      size_t b = tok.find_last_not_of(" \t");
      if (f(tok.substr(a, b - a + 1))) return true;
    }
    i = j + 1;
  }
  return false;
}

bool has_header(const HeadFields& h, std::string_view name) {
  for (auto [n, v] : h) {
    if (iequals(n, name)) return true;
  }
  return false;
}

// Whether a Connection header of h lists `name` (such headers are hop-by-hop).
bool listed_in_connection(const HeadFields& h, std::string_view name) {
  for (auto [n, value] : h) {
    if (!iequals(n, "connection")) continue;
    if (any_token(value, [name](std::string_view tok) { return iequals(tok, name); })) {
      return true;
    }
  }
  return false;
}

void append_chunk_header(ByteQueue* q, size_t n) {
  q->append_hex(n);
  q->append("\r\n", 2);
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

// ---- access log line -------------------------------------------------------------------

void append_json_string(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD, for invalid UTF-8
  out->push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      // JSON's short escapes as (character, letter) pairs: '\n' becomes "\\n". Other
      // control characters become \u00XX.
      static constexpr std::string_view kShort = "\bb\tt\nn\ff\rr\"\"\\\\";
      size_t e = kShort.find(static_cast<char>(b));
      if (e != std::string_view::npos && e % 2 == 0) {
        out->push_back('\\');
        out->push_back(kShort[e + 1]);
      } else if (b < 0x20) {
        out->append("\\u00");
        out->push_back(kHex[b >> 4]);
        out->push_back(kHex[b & 0xF]);
      } else {
        out->push_back(static_cast<char>(b));
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: its length and the range its second byte must fall in
    // (no overlong forms, no surrogates, nothing above U+10FFFF).
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    }
    if (len == 0) {  // not a lead byte: replaced, and consumed
      out->append(kReplacement);
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k < len && i + k < s.size(); ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) break;
    }
    if (k == len) {
      out->append(s.substr(i, len));
      i += len;
    } else {
      // Broken or cut short: one replacement; the byte that broke it starts afresh.
      out->append(kReplacement);
      i += k;
    }
  }
  out->push_back('"');
}

void append_json_number(std::string* out, double v) {
  if (v == 0) {
    out->append(std::signbit(v) ? "-0.0" : "0.0");
    return;
  }
  char buf[400];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
  std::string_view digits(buf, static_cast<size_t>(r.ptr - buf));
  out->append(digits);
  if (digits.find('.') == std::string_view::npos) out->append(".0");
}

namespace {

void append_json_uint(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, static_cast<size_t>(r.ptr - buf));
}

}  // namespace

void append_access_log_line(std::string* out, const AccessLogRecord& r) {
  // Keys in the order nlohmann::json (a sorted map) wrote them.
  out->append("{\"bytes_in\":");
  append_json_uint(out, r.bytes_in);
  out->append(",\"bytes_out\":");
  append_json_uint(out, r.bytes_out);
  out->append(",\"duration_ms\":");
  append_json_number(out, r.duration_ms);
  out->append(",\"listen\":");
  append_json_string(out, r.listen);
  out->append(",\"method\":");
  append_json_string(out, r.method);
  out->append(",\"path\":");
  append_json_string(out, r.path);
  out->append(",\"status\":");
  if (r.status < 0) out->push_back('-');
  append_json_uint(
      out, static_cast<uint64_t>(r.status < 0 ? -static_cast<int64_t>(r.status) : r.status));
  out->append(",\"tenant\":");
  append_json_string(out, r.tenant);
  out->push_back('}');
}

// ---- HeadFields ----------------------------------------------------------------------

void HeadFields::clear() {
  text_len_ = start_len_ = count_ = 0;
  last_was_value_ = false;
}

void HeadFields::release() {
  clear();
  if (block_ == nullptr) return;
  if (pooled_) {
    pool_->release(block_);
  } else {
    delete[] block_;
  }
  block_ = nullptr;
  cap_ = 0;
}

// Appends len bytes of text, making room for `new_fields` more records first.
void HeadFields::append_text(const char* at, size_t len, size_t new_fields) {
  size_t need = text_len_ + len + (count_ + new_fields) * sizeof(Field);
  if (need > cap_) {
    size_t cap = cap_ == 0 ? ChunkPool::kChunkSize : cap_;
    while (cap < need) cap *= 2;
    char* block;
    bool pooled = cap == ChunkPool::kChunkSize;
    block = pooled ? pool_->acquire() : new char[cap];
    if (block_ != nullptr) {
      std::memcpy(block, block_, text_len_);
      std::memcpy(block + cap - count_ * sizeof(Field), block_ + cap_ - count_ * sizeof(Field),
                  count_ * sizeof(Field));
      if (pooled_) {
        pool_->release(block_);
      } else {
        delete[] block_;
      }
    }
    block_ = block;
    cap_ = cap;
    pooled_ = pooled;
  }
  if (len > 0) std::memcpy(block_ + text_len_, at, len);
  text_len_ += len;
}

void HeadFields::add_start(const char* at, size_t len) {
  append_text(at, len, 0);
  start_len_ += len;
}

void HeadFields::add_name(const char* at, size_t len) {
  if (count_ == 0 || last_was_value_) {
    append_text(at, len, 1);
    *field(count_) = Field{static_cast<uint32_t>(text_len_ - len), static_cast<uint32_t>(len), 0};
    ++count_;
  } else {
    append_text(at, len, 0);
    field(count_ - 1)->name_len += static_cast<uint32_t>(len);
  }
  last_was_value_ = false;
}

bool HeadFields::add_value(const char* at, size_t len) {
  if (count_ == 0) return false;
  append_text(at, len, 0);
  field(count_ - 1)->value_len += static_cast<uint32_t>(len);
  last_was_value_ = true;
  return true;
}

std::string_view HeadFields::name(size_t i) const {
  const Field* f = field(i);
  return {block_ + f->off, f->name_len};
}

std::string_view HeadFields::value(size_t i) const {
  const Field* f = field(i);
  return {block_ + f->off + f->name_len, f->value_len};
}

// ---- HttpSession -----------------------------------------------------------------------

std::unique_ptr<Session> make_http_session(Listener* listener, UniqueFd client,
                                           bool over_limit) {
  return std::make_unique<HttpSession>(listener, std::move(client), over_limit);
}

HttpSession::HttpSession(Listener* listener, UniqueFd client, bool over_limit)
    : Session(listener),
      loop_(listener->worker()->loop),
      client_(std::move(client)),
      client_in_(&listener->worker()->pool),
      to_upstream_(&listener->worker()->pool),
      to_client_(&listener->worker()->pool),
      req_fields_(&listener->worker()->pool),
      resp_fields_(&listener->worker()->pool),
      over_limit_(over_limit),
      started_(std::chrono::steady_clock::now()) {
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
  release_slot();
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
  if (over_limit_) {
    // The daemon's budget is spent and nothing could be reclaimed for this tenant:
    // answered at once, without holding a slot while a head arrives.
    return refuse(Refusal::ConnectionLimit, 503, "Service Unavailable", "connection limit reached",
                  1);
  }
  set_phase(Phase::kHead);
  return pump();
}

void HttpSession::join(IntrusiveList<Session>& list) {
  listed_at = ev_now(loop_);
  list.push_back(this);
}

void HttpSession::set_phase(Phase p) {
  phase_ = p;
  Tenant& t = listener_->tenant();
  if (p == Phase::kHead) {
    join(t.heads);
  } else if (p == Phase::kIdle) {
    join(t.idle);
  } else if (p == Phase::kClosing || hook.list != &t.waiting) {
    unlink(this);
  }
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
  listener_->tenant().stats.received_bytes += static_cast<uint64_t>(n);
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
    std::string_view in = client_in_.front();
    size_t done = http_parser_execute(&req_parser_, &kRequestSettings, in.data(), in.size());
    client_in_.consume(done);
    http_errno err = HTTP_PARSER_ERRNO(&req_parser_);
    if (err == HPE_PAUSED) {
      // A complete request; following bytes wait (pipelining) until its response is done.
      break;
    }
    if (err != HPE_OK) {
      if (head_too_large_ || err == HPE_HEADER_OVERFLOW) {
        return refuse(Refusal::HeadTooLarge, 431, "Request Header Fields Too Large",
                             "request head larger than " +
                                 std::to_string(listener_->worker()->config->max_head_size) +
                                 " bytes");
      }
      if (bad_transfer_encoding_) {
        return refuse(Refusal::BadRequest, 400, "Bad Request", "Transfer-Encoding other than \"chunked\"");
      }
      if (bad_header_name_) {
        return refuse(Refusal::BadRequest, 400, "Bad Request", "invalid character (or whitespace) in a header name");
      }
      return refuse(Refusal::BadRequest, 400, "Bad Request",
                    std::string("malformed request: ") + http_errno_description(err));
    }
    if (exchange_ready_) break;
    if (done == 0) break;
  }
  if (exchange_ready_) {
    exchange_ready_ = false;
    if (req_parser_.method == HTTP_CONNECT) {
      return refuse(Refusal::MethodNotAllowed, 405, "Method Not Allowed", "CONNECT is not proxied");
    }
    Tenant& t = listener_->tenant();
    if (!t.rate.take(ev_now(loop_))) {
      char why[96];
      std::snprintf(why, sizeof why, "request rate limit (%g/s, burst %g) exceeded", t.rate.rate(),
                    t.rate.burst());
      long retry = t.rate.retry_after(ev_now(loop_));
      if (req_complete_ && !req_has_body_ && !req_upgrade_ && !req_http10_ &&
          client_in_.empty()) {
        // Nothing of this request left to read, nothing pipelined behind it (answered
        // here, pipelined requests would recurse without bound): the connection stays
        // for the next one, a rate-limited client need not reconnect.
        t.stats.refuse(Refusal::RateLimit);
        return answer_and_continue(429, "Too Many Requests", why, retry,
                                   t.refusal_log.allow(ev_now(loop_)));
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
  method_ = nullptr;
  req_fields_.clear();
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
  req_fields_.add_start(at, len);
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
  req_fields_.add_name(at, len);
  return 0;
}

int HttpSession::req_header_value(const char* at, size_t len) {
  head_bytes_ += len;
  if (head_bytes_ > listener_->worker()->config->max_head_size) {
    head_too_large_ = true;
    return 1;
  }
  if (!req_fields_.add_value(at, len)) return 1;
  return 0;
}

int HttpSession::req_headers_complete() {
  ev_timer_stop(loop_, &client_t_);  // the head is in: no more head timeout
  phase_ = Phase::kExchange;
  unlink(this);  // out of its tenant's incomplete heads
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
    size_t codings = 0;
    bool chunked_only = true;
    for (auto [name, value] : req_fields_) {
      if (!iequals(name, "transfer-encoding")) continue;
      any_token(value, [&](std::string_view tok) {
        ++codings;
        if (!iequals(tok, "chunked")) chunked_only = false;
        return false;
      });
    }
    if (codings != 1 || !chunked_only) {
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
  write_request_head();
  // A request without a body can be replayed on a fresh connection if a pooled one
  // turns out to have been closed by the upstream.
  bool idempotent = req_parser_.method == HTTP_GET || req_parser_.method == HTTP_HEAD ||
                    req_parser_.method == HTTP_OPTIONS;
  retry_ok_ = !req_has_body_ && !req_upgrade_ && idempotent;
}

void HttpSession::write_request_head() {
  const Tenant& t = listener_->tenant();
  const ProxyConfig& cfg = *listener_->worker()->config;
  const bool has_connection = has_header(req_fields_, "connection");
  ByteQueue& q = to_upstream_;
  q.append(method_);
  q.push_back(' ');
  q.append(req_fields_.start());
  q.append(" HTTP/1.1\r\n");
  for (auto [name, value] : req_fields_) {
    if (hop_by_hop(name) || (has_connection && listed_in_connection(req_fields_, name))) continue;
    // Identity is the daemon's to state: drop every version the tenant sent.
    if (cgi_equals(name, t.tenant_header) || cgi_equals(name, cfg.tenant_header) ||
        cgi_starts_with(name, t.label_header_prefix) ||
        cgi_starts_with(name, cfg.label_header_prefix) || cgi_equals(name, "x-forwarded-for") ||
        cgi_equals(name, "forwarded")) {
      continue;
    }
    q.append(name);
    q.append(": ");
    q.append(value);
    q.append("\r\n");
  }
  q.append(t.tenant_header);
  q.append(": ");
  q.append(t.id);
  q.append("\r\n");
  for (const auto& [k, v] : t.labels) {
    q.append(t.label_header_prefix);
    q.append(k);
    q.append(": ");
    q.append(v);
    q.append("\r\n");
  }
  q.append("X-Forwarded-For: ");
  q.append(peer_ip_);
  q.append("\r\n");
  bool v6 = peer_ip_.find(':') != std::string::npos;
  q.append(v6 ? "Forwarded: for=\"[" : "Forwarded: for=");
  q.append(peer_ip_);
  q.append(v6 ? "]\"\r\n" : "\r\n");
  if (req_chunked_) {
    q.append("Transfer-Encoding: chunked\r\n");
  } else if (req_parser_.content_length != ULLONG_MAX &&
             (req_parser_.content_length > 0 || req_parser_.flags & F_CONTENTLENGTH)) {
    q.append("Content-Length: ");
    q.append_decimal(req_parser_.content_length);
    q.append("\r\n");
  }
  if (req_upgrade_) {
    for (auto [name, value] : req_fields_) {
      if (!iequals(name, "upgrade")) continue;
      q.append("Upgrade: ");
      q.append(value);
      q.append("\r\n");
    }
    q.append("Connection: upgrade\r\n");
  }
  q.append("\r\n");
}

int HttpSession::req_body(const char* at, size_t len) {
  bytes_in_ += len;
  if (req_chunked_) {
    append_chunk_header(&to_upstream_, len);
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
  if (n > 0) listener_->tenant().stats.sent_bytes += static_cast<uint64_t>(n);
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
  return refuse(Refusal::HeadTimeout, 408, "Request Timeout", "request head not received in time");
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
    upstream_.reset(listener_->worker()->budget.stream_socket(up.family()));
    if (!upstream_) return upstream_failed("upstream socket for", errno);  // 502
    set_socket_buffer(upstream_.get(), listener_->worker()->config->socket_buffer);
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
    if (!resp_started_ && status_ == 0 && upstream_reused_ && retry_ok_) {
      // The pooled connection was closed by the upstream before it saw our request:
      // replay the (bodiless) request once on a fresh connection.
      LOG_DEBUG("tenant %s: pooled upstream connection was closed; retrying",
                listener_->tenant_name().c_str());
      ev_io_stop(loop_, &upstream_r_);
      ev_io_stop(loop_, &upstream_w_);
      upstream_.reset();
      upstream_eof_ = false;
      to_upstream_.clear();
      write_request_head();
      retry_ok_ = false;
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
    listener_->tenant().stats.upstream_failed(UpstreamError::Malformed);
    LOG_WARN_F(({{"tenant", listener_->tenant().id}, {"listen", listener_->spec().listen},
                 {"upstream", listener_->upstream().text}, {"error", http_errno_description(err)}}),
               "tenant %s: malformed response from upstream %s: %s",
             listener_->tenant_name().c_str(), listener_->upstream().text.c_str(),
             http_errno_description(err));
    if (!resp_started_) return respond_error(502, "Bad Gateway", "malformed upstream response");
    return false;
  }
  if (tunnel_next_) {
    // 101: what follows the head belongs to the new protocol, both ways.
    tunnel_next_ = false;
    complete_response(101);
    phase_ = Phase::kTunnel;
    release_slot();  // a tunnel is bounded by the connection limit, not the in-flight cap
    ev_timer_stop(loop_, &upstream_t_);
    touch_tunnel();
    to_client_.append(buf + done, static_cast<size_t>(n) - done);
    to_upstream_.splice(client_in_);
    end_request();
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
  resp_fields_.clear();
  resp_interim_ = false;
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
  status_ = resp_parser_.status_code;
  if (status_ >= 100 && status_ < 200 && status_ != 101) {
    // Interim (100 Continue, 103 Early Hints): pass on to HTTP/1.1 tenants, keep going.
    resp_interim_ = true;
    if (!req_http10_) {
      to_client_.append("HTTP/1.1 ");
      to_client_.append_decimal(static_cast<uint64_t>(status_));
      to_client_.push_back(' ');
      to_client_.append(resp_fields_.start());
      to_client_.append("\r\n\r\n");
    }
    return 0;
  }
  ev_timer_stop(loop_, &upstream_t_);
  if (status_ == 101) {
    if (!req_upgrade_) return -1;  // unsolicited protocol switch: a broken upstream
    tunnel_next_ = true;
  }
  build_response_head();
  resp_fields_.release();  // the head is rewritten; its fields are no longer needed
  resp_started_ = true;
  // HEAD, 204 and 304 responses may carry a Content-Length but never a body: tell the
  // parser, or it would wait for bytes that never come.
  return (req_parser_.method == HTTP_HEAD || status_ == 204 || status_ == 304) ? 1 : 0;
}

void HttpSession::build_response_head() {
  const bool has_connection = has_header(resp_fields_, "connection");
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

  ByteQueue& q = to_client_;
  q.append(req_http10_ ? "HTTP/1.0 " : "HTTP/1.1 ");
  q.append_decimal(static_cast<uint64_t>(status_));
  q.push_back(' ');
  q.append(resp_fields_.start());
  q.append("\r\n");
  for (auto [name, value] : resp_fields_) {
    if (iequals(name, "content-length")) {
      if (no_body && status_ != 101 && status_ != 204) {
        q.append(name);  // HEAD/304 report the entity's length
        q.append(": ");
        q.append(value);
        q.append("\r\n");
      }
      continue;
    }
    if (hop_by_hop(name) || (has_connection && listed_in_connection(resp_fields_, name))) {
      continue;
    }
    q.append(name);
    q.append(": ");
    q.append(value);
    q.append("\r\n");
  }
  if (!no_body) {
    if (resp_chunked_out_) {
      q.append("Transfer-Encoding: chunked\r\n");
    } else if (has_length) {
      q.append("Content-Length: ");
      q.append_decimal(resp_parser_.content_length);
      q.append("\r\n");
    }
  }
  if (status_ == 101) {
    for (auto [name, value] : resp_fields_) {
      if (!iequals(name, "upgrade")) continue;
      q.append("Upgrade: ");
      q.append(value);
      q.append("\r\n");
    }
    q.append("Connection: upgrade\r\n");
  } else if (!client_keep_alive_) {
    q.append("Connection: close\r\n");
  } else if (req_http10_) {
    q.append("Connection: keep-alive\r\n");
  }
  q.append("\r\n");
}

int HttpSession::resp_body(const char* at, size_t len) {
  bytes_out_ += len;
  if (resp_chunked_out_) {
    append_chunk_header(&to_client_, len);
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

bool HttpSession::acquire_slot() {
  Tenant& t = listener_->tenant();
  if (t.in_flight < t.max_in_flight && t.waiting.empty()) {
    ++t.in_flight;
    holds_slot_ = true;
    return true;
  }
  // In line behind the tenant's other requests, for at most --connect-timeout.
  join(t.waiting);
  restart_upstream_timer(listener_->worker()->config->connect_timeout);
  return false;
}

void HttpSession::release_slot() {
  if (!holds_slot_) return;
  holds_slot_ = false;
  Tenant& t = listener_->tenant();
  Session* next = t.waiting.pop_front();
  if (next == nullptr) {
    --t.in_flight;
    return;
  }
  static_cast<HttpSession*>(next)->grant_slot();  // the slot passes on
}

void HttpSession::grant_slot() {
  holds_slot_ = true;
  slot_granted_ = true;
  restart_upstream_timer(0);  // connects from its own callback, not from inside another's
}

bool HttpSession::on_upstream_timer() {
  if (slot_granted_) {
    slot_granted_ = false;
    if (!connect_upstream()) return false;
    return process_client_input();
  }
  if (hook.list == &listener_->tenant().waiting) {
    unlink(this);
    return refuse(Refusal::InFlightLimit, 503, "Service Unavailable",
                  "too many requests of this tenant in flight to upstreams", 1);
  }
  if (upstream_connecting_) return upstream_failed("connect to upstream", ETIMEDOUT);
  if (!resp_started_) {
    if (!req_complete_) {
      return refuse(Refusal::BodyTimeout, 408, "Request Timeout", "request body stalled");
    }
    listener_->tenant().stats.upstream_failed(UpstreamError::Timeout);
    LOG_INFO("tenant %s: upstream %s did not answer within %g s", listener_->tenant_name().c_str(),
             listener_->upstream().text.c_str(), listener_->worker()->config->response_timeout);
    return respond_error(504, "Gateway Timeout", "upstream did not answer in time");
  }
  listener_->tenant().stats.upstream_failed(UpstreamError::Timeout);
  LOG_INFO("tenant %s: response body from %s stalled; closing", listener_->tenant_name().c_str(),
           listener_->upstream().text.c_str());
  return false;
}

bool HttpSession::upstream_failed(const char* what, int err) {
  listener_->tenant().stats.upstream_failed(upstream_error_of(err));
  LOG_INFO_F(({{"tenant", listener_->tenant().id}, {"listen", listener_->spec().listen},
               {"upstream", listener_->upstream().text}, {"error", std::strerror(err)}}),
             "tenant %s: %s %s: %s", listener_->tenant_name().c_str(), what,
           listener_->upstream().text.c_str(), std::strerror(err));
  if (resp_started_ || phase_ == Phase::kTunnel) return false;  // too late for a status
  if (err == ETIMEDOUT) return respond_error(504, "Gateway Timeout", "upstream connect timed out");
  return respond_error(502, "Bad Gateway", "upstream unavailable");
}

void HttpSession::release_upstream(bool reusable) {
  ev_timer_stop(loop_, &upstream_t_);
  slot_granted_ = false;
  release_slot();
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
  complete_response(status_);
  bool fully_sent = to_upstream_.empty();
  bool reusable = req_complete_ && !upstream_eof_ && http_should_keep_alive(&resp_parser_) &&
                  fully_sent;
  release_upstream(reusable);
  end_request();
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

bool HttpSession::respond_error(int status, const char* reason, const std::string& why,
                                long retry_after, bool log) {
  const bool m = method_ != nullptr;
  std::string_view url = req_fields_.start().substr(0, 200);
  if (log) {
    size_t quiet = listener_->tenant().refusal_log.suppressed;
    LOG_INFO_F(({{"tenant", listener_->tenant().id}, {"listen", listener_->spec().listen},
                 {"error", why}}),
               "tenant %s: %d %s: %s%s%s%s%.*s%s%s", listener_->tenant_name().c_str(), status,
               reason, why.c_str(), m ? " (" : "", m ? method_ : "", m ? " " : "",
               m ? static_cast<int>(url.size()) : 0, url.data(), m ? ")" : "",
               quiet == 0 ? ""
                          : (" (" + std::to_string(quiet) +
                             " more refusals of this tenant in the last second not logged)")
                                .c_str());
    listener_->tenant().refusal_log.suppressed = 0;
  }
  status_ = status;
  complete_response(status);
  release_upstream(false);
  end_request();
  to_upstream_.clear();
  client_in_.clear();
  if (!resp_started_) {
    queue_own_response(status, reason, why, retry_after, /*close=*/true);
  }
  client_keep_alive_ = false;
  set_phase(Phase::kClosing);
  return pump();
}

bool HttpSession::answer_and_continue(int status, const char* reason, const std::string& why,
                                      long retry_after, bool log) {
  if (log) {
    LOG_INFO_F(({{"tenant", listener_->tenant().id}, {"listen", listener_->spec().listen},
                 {"error", why}}),
               "tenant %s: %d %s: %s", listener_->tenant_name().c_str(), status, reason,
               why.c_str());
  }
  to_upstream_.clear();  // the rewritten head never goes anywhere
  queue_own_response(status, reason, why, retry_after, /*close=*/!client_keep_alive_);
  status_ = status;
  return finish_exchange();  // as after an upstream's response: the next request, or close
}

void HttpSession::queue_own_response(int status, const char* reason, const std::string& why,
                                     long retry_after, bool close) {
  std::string body = std::to_string(status) + " " + reason + ": " + why + "\n";
  to_client_.append(std::string(req_http10_ ? "HTTP/1.0 " : "HTTP/1.1 ") +
                    std::to_string(status) + " " + reason +
                    "\r\nContent-Type: text/plain\r\nContent-Length: " +
                    std::to_string(body.size()) +
                    (retry_after > 0 ? "\r\nRetry-After: " + std::to_string(retry_after) : "") +
                    (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body);
  resp_started_ = true;
}

void HttpSession::end_request() {
  method_ = nullptr;
  retry_ok_ = false;
  req_fields_.release();
  resp_fields_.release();
}

bool HttpSession::refuse(Refusal why, int status, const char* reason, const std::string& detail,
                         long retry_after) {
  Tenant& t = listener_->tenant();
  t.stats.refuse(why);
  // One line per tenant per second: a flood of refusals must not flood the log too.
  return respond_error(status, reason, detail, retry_after, t.refusal_log.allow(ev_now(loop_)));
}

void HttpSession::complete_response(int status) {
  auto elapsed = std::chrono::steady_clock::now() - started_;
  listener_->tenant().stats.record_response(status, std::chrono::duration<double>(elapsed).count());
  access_log(status, elapsed);
}

void HttpSession::access_log(int status, std::chrono::steady_clock::duration elapsed) {
  FILE* out = listener_->worker()->config->access_log;
  if (out == nullptr) return;
  auto ms = std::chrono::duration<double, std::milli>(elapsed);
  AccessLogRecord r;
  r.tenant = listener_->tenant().id;
  r.listen = listener_->spec().listen;
  r.method = method_ == nullptr ? "-" : method_;
  r.path = req_fields_.start();
  r.status = status;
  r.bytes_in = bytes_in_;
  r.bytes_out = bytes_out_;
  r.duration_ms = static_cast<int64_t>(ms.count() * 1000) / 1000.0;
  // One line buffer per worker thread: its capacity is reused, bounded after a huge line.
  thread_local std::string line;
  line.clear();
  append_access_log_line(&line, r);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), out);
  if (line.capacity() > 16 * 1024) std::string().swap(line);
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
