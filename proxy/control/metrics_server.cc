#include "control/metrics_server.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "log.h"

namespace nsproxy {

struct MetricsServer::Client {
  MetricsServer* server;
  UniqueFd fd;
  ev_io read_w;
  ev_io write_w;
  ev_timer timeout_t;
  http_parser parser;
  std::string url;
  size_t received = 0;
  bool complete = false;
  bool answered = false;
  std::string out;  // the response (or its next piece), sent from `sent` on
  size_t sent = 0;
  MetricsServer::Producer body;  // the rest of a /metrics body, rendered as it goes
  bool lingering = false;        // response sent, write side shut: discarding until EOF

  // Each returns false when the client is finished (the caller drops it).
  bool on_readable();
  bool on_writable();
  bool answer(std::string response);
  void restart_timer(double seconds) {
    ev_timer_stop(server->loop_, &timeout_t);
    ev_timer_set(&timeout_t, seconds, 0.);
    ev_timer_start(server->loop_, &timeout_t);
  }
};

namespace {

constexpr double kPauseSeconds = 0.1;
constexpr double kLingerSeconds = 1.0;
constexpr int kPiecesPerWakeup = 4;
constexpr int kAcceptsPerWakeup = 16;

int on_url(http_parser* p, const char* at, size_t len) {
  auto* c = static_cast<MetricsServer::Client*>(p->data);
  if (c->url.size() + len > 1024) return 1;
  c->url.append(at, len);
  return 0;
}

int on_complete(http_parser* p) {
  static_cast<MetricsServer::Client*>(p->data)->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

const http_parser_settings kSettings = [] {
  http_parser_settings s{};
  s.on_url = on_url;
  s.on_message_complete = on_complete;
  return s;
}();

std::string response(int status, const char* reason, const std::string& content_type,
                     const std::string& body, bool head) {
  std::string r =
      "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + content_type +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  if (!head) r += body;
  return r;
}

std::string text(int status, const char* reason, const std::string& body, bool head = false) {
  return response(status, reason, "text/plain; charset=utf-8", body, head);
}

void read_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<MetricsServer::Client*>(w->data);
  if (!c->on_readable()) c->server->drop(c);
}

void write_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<MetricsServer::Client*>(w->data);
  if (!c->on_writable()) c->server->drop(c);
}

void timeout_cb(struct ev_loop*, ev_timer* w, int) {
  auto* c = static_cast<MetricsServer::Client*>(w->data);
  if (c->answered || !c->answer(text(408, "Request Timeout", "request not received in time\n"))) {
    c->server->drop(c);
  }
}

void accept_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<MetricsServer*>(w->data)->on_acceptable();
}

void pause_cb(struct ev_loop*, ev_timer* w, int) {
  static_cast<MetricsServer*>(w->data)->on_pause_over();
}

}  // namespace

bool MetricsServer::Client::on_readable() {
  char buf[4096];
  ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  if (n == 0) return false;  // gone (before asking anything complete, or after the answer)
  if (lingering) return true;
  received += static_cast<size_t>(n);
  if (received > kMaxRequest) {
    return answer(text(431, "Request Header Fields Too Large",
                       "request larger than " + std::to_string(kMaxRequest) + " bytes\n"));
  }
  http_parser_execute(&parser, &kSettings, buf, static_cast<size_t>(n));
  http_errno err = HTTP_PARSER_ERRNO(&parser);
  if (complete) return answer(server->respond(parser.method, url, &body));
  if (err != HPE_OK) {
    return answer(text(400, "Bad Request",
                       std::string("malformed request: ") + http_errno_description(err) + "\n"));
  }
  return true;
}

bool MetricsServer::Client::answer(std::string r) {
  answered = true;
  out = std::move(r);
  sent = 0;
  ev_io_stop(server->loop_, &read_w);
  ev_timer_stop(server->loop_, &timeout_t);
  // The response must make progress within the timeout too (a scraper that stops reading).
  restart_timer(kTimeoutSeconds);
  return on_writable();
}

bool MetricsServer::Client::on_writable() {
  // A few pieces per call: other clients and the tenants get the loop in between.
  int pieces = 0;
  for (;;) {
    if (sent == out.size()) {
      out.clear();
      sent = 0;
      if (!body || pieces++ == kPiecesPerWakeup) break;
      if (!body(&out)) {
        body = nullptr;
        break;
      }
      continue;
    }
    ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        ev_io_start(server->loop_, &write_w);
        return true;
      }
      return false;
    }
    sent += static_cast<size_t>(n);
    restart_timer(kTimeoutSeconds);  // progress
  }
  if (body) {  // more to render: come back on the next loop iteration
    ev_io_start(server->loop_, &write_w);
    return true;
  }
  // All sent. Closing now with unread request bytes (an oversized or refused request)
  // would reset the connection and destroy the answer in flight: shut the write side and
  // read until the client closes, for at most kLingerSeconds.
  ev_io_stop(server->loop_, &write_w);
  ::shutdown(fd.get(), SHUT_WR);
  lingering = true;
  restart_timer(kLingerSeconds);
  ev_io_start(server->loop_, &read_w);
  return true;
}

MetricsServer::MetricsServer(struct ev_loop* loop, Render render, Ready ready)
    : loop_(loop), render_(std::move(render)), ready_(std::move(ready)) {
  ev_init(&accept_w_, accept_cb);
  accept_w_.data = this;
  ev_init(&pause_t_, pause_cb);
  pause_t_.data = this;
}

MetricsServer::~MetricsServer() {
  ev_io_stop(loop_, &accept_w_);
  ev_timer_stop(loop_, &pause_t_);
  std::unordered_set<Client*> open;
  open.swap(clients_);
  for (Client* c : open) drop(c);
}

Status MetricsServer::listen(const Address& addr) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error(Code::kMetrics, "socket for --metrics-listen " + addr.text);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // A daemon taking over binds the address after the old one closed its listener (it
  // waits for the state directory's lock, released after that); SO_REUSEPORT only so a
  // bind still succeeds should the old listener linger (same user only).
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (addr.family() == AF_INET6)
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd.get(), addr.sa(), addr.length) < 0) {
    return errno_error(Code::kMetrics, "--metrics-listen " + addr.text);
  }
  if (::listen(fd.get(), 64) < 0) return errno_error(Code::kMetrics, "listen on " + addr.text);
  fd_ = std::move(fd);
  ev_io_set(&accept_w_, fd_.get(), EV_READ);
  ev_io_start(loop_, &accept_w_);
  return {};
}

void MetricsServer::stop_listening() {
  if (!fd_) return;
  on_acceptable();  // up to kAcceptsPerWakeup queued connections are answered, not reset
  ev_io_stop(loop_, &accept_w_);
  ev_timer_stop(loop_, &pause_t_);
  fd_.reset();
}

void MetricsServer::on_pause_over() {
  ev_io_start(loop_, &accept_w_);
}

void MetricsServer::on_acceptable() {
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    int cfd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        LOG_WARN("metrics: accept: %s; pausing for %.0f ms", std::strerror(errno),
                 kPauseSeconds * 1000);
        ev_io_stop(loop_, &accept_w_);
        ev_timer_set(&pause_t_, kPauseSeconds, 0.);
        ev_timer_start(loop_, &pause_t_);
      }
      return;
    }
    UniqueFd fd(cfd);
    if (clients_.size() >= kMaxClients) {
      const std::string busy = text(503, "Service Unavailable", "too many metrics clients\n");
      (void)!::send(cfd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;  // closes it
    }
    auto* c = new Client{};
    c->server = this;
    c->fd = std::move(fd);
    ev_io_init(&c->read_w, read_cb, c->fd.get(), EV_READ);
    ev_io_init(&c->write_w, write_cb, c->fd.get(), EV_WRITE);
    ev_timer_init(&c->timeout_t, timeout_cb, kTimeoutSeconds, 0.);
    c->read_w.data = c->write_w.data = c->timeout_t.data = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    clients_.insert(c);
    ev_io_start(loop_, &c->read_w);
    ev_timer_start(loop_, &c->timeout_t);
  }
}

void MetricsServer::drop(Client* c) {
  ev_io_stop(loop_, &c->read_w);
  ev_io_stop(loop_, &c->write_w);
  ev_timer_stop(loop_, &c->timeout_t);
  clients_.erase(c);
  delete c;
}

std::string MetricsServer::respond(int method, const std::string& url, Producer* body) {
  std::string path = url.substr(0, url.find('?'));
  bool known = path == "/metrics" || path == "/healthz" || path == "/readyz";
  if (!known) return text(404, "Not Found", "not found; try /metrics, /healthz or /readyz\n");
  bool head = method == HTTP_HEAD;
  if (method != HTTP_GET && !head) {
    return text(405, "Method Not Allowed", "only GET and HEAD\n");
  }
  if (path == "/healthz") return text(200, "OK", "ok\n", head);
  if (path == "/readyz") {
    if (ready_()) return text(200, "OK", "ready\n", head);
    return text(503, "Service Unavailable", "not ready\n", head);
  }
  if (!head) *body = render_();
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
         "Connection: close\r\n\r\n";
}

}  // namespace nsproxy
