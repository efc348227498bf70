#include "forward/tcp_session.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "forward/listener.h"
#include "log.h"
#include "forward/proxy_protocol.h"

namespace nsproxy {
namespace {

// Callbacks: cast, call one handler, delete the session right here when it is over.
void client_r_cb(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<TcpSession*>(w->data);
  if (!s->on_client_readable()) delete s;
}
void client_w_cb(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<TcpSession*>(w->data);
  if (!s->on_client_writable()) delete s;
}
void upstream_r_cb(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<TcpSession*>(w->data);
  if (!s->on_upstream_readable()) delete s;
}
void upstream_w_cb(struct ev_loop*, ev_io* w, int) {
  auto* s = static_cast<TcpSession*>(w->data);
  if (!s->on_upstream_writable()) delete s;
}
void connect_t_cb(struct ev_loop*, ev_timer* w, int) {
  auto* s = static_cast<TcpSession*>(w->data);
  if (!s->on_connect_timeout()) delete s;
}

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

}  // namespace

std::unique_ptr<Session> make_tcp_session(Listener* listener, UniqueFd client, bool) {
  return std::make_unique<TcpSession>(listener, std::move(client));
}

TcpSession::TcpSession(Listener* listener, UniqueFd client)
    : Session(listener),
      loop_(listener->worker()->loop),
      client_(std::move(client)),
      to_upstream_(&listener->worker()->pool),
      to_client_(&listener->worker()->pool) {
  ev_io_init(&client_r_, client_r_cb, client_.get(), EV_READ);
  ev_io_init(&client_w_, client_w_cb, client_.get(), EV_WRITE);
  client_r_.data = client_w_.data = this;
  ev_timer_init(&connect_t_, connect_t_cb, listener->worker()->config->connect_timeout, 0.);
  connect_t_.data = this;
}

TcpSession::~TcpSession() {
  ev_io_stop(loop_, &client_r_);
  ev_io_stop(loop_, &client_w_);
  if (upstream_) {
    ev_io_stop(loop_, &upstream_r_);
    ev_io_stop(loop_, &upstream_w_);
  }
  ev_timer_stop(loop_, &connect_t_);
}

bool TcpSession::upstream_failed(const char* what, int err) {
  listener_->tenant().stats.upstream_failed(upstream_error_of(err));
  return fail(what, err);
}

bool TcpSession::fail(const char* what, int err) {
  LOG_INFO_F(({{"tenant", listener_->tenant().id}, {"listen", listener_->spec().listen},
               {"upstream", listener_->upstream().text}, {"error", std::strerror(err)}}),
             "tenant %s: %s %s: %s", listener_->tenant_name().c_str(), what,
           listener_->upstream().text.c_str(), std::strerror(err));
  return false;
}

bool TcpSession::queue_proxy_header() {
  sockaddr_storage peer{}, local{};
  socklen_t plen = sizeof peer, llen = sizeof local;
  if (::getpeername(client_.get(), reinterpret_cast<sockaddr*>(&peer), &plen) < 0 ||
      ::getsockname(client_.get(), reinterpret_cast<sockaddr*>(&local), &llen) < 0) {
    return fail("addresses of tenant connection, upstream", errno);
  }
  const Tenant& t = listener_->tenant();
  auto header = encode_proxy_v2(reinterpret_cast<const sockaddr*>(&peer),
                                reinterpret_cast<const sockaddr*>(&local), t.id, t.labels);
  if (!header) {
    LOG_WARN("tenant %s: not forwarding to %s: %s", t.display.c_str(),
             listener_->upstream().text.c_str(), header.error().message.c_str());
    return false;
  }
  // The buffer is still empty and the header is bounded far below one chunk.
  return to_upstream_.append(header->data(), header->size()) == header->size();
}

bool TcpSession::start() {
  const Address& up = listener_->upstream();
  // The header goes first: it must be the first bytes the upstream sees.
  if (listener_->spec().proxy_protocol == ProxyProtocol::V2 && !queue_proxy_header()) {
    return false;
  }
  upstream_.reset(listener_->worker()->budget.stream_socket(up.family()));
  if (!upstream_) {
    if (errno == EMFILE || errno == ENFILE) listener_->worker()->out_of_fds = true;
    return upstream_failed("upstream socket for", errno);
  }
  set_socket_buffer(upstream_.get(), listener_->worker()->config->socket_buffer);
  if (up.family() != AF_UNIX) set_nodelay(upstream_.get());
  ev_io_init(&upstream_r_, upstream_r_cb, upstream_.get(), EV_READ);
  ev_io_init(&upstream_w_, upstream_w_cb, upstream_.get(), EV_WRITE);
  upstream_r_.data = upstream_w_.data = this;
  int rc;
  do {
    rc = ::connect(upstream_.get(), up.sa(), up.length);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return on_connected();
  // EAGAIN on a unix socket means its backlog is full, not "in progress".
  if (errno != EINPROGRESS) return upstream_failed("connect to upstream", errno);
  ev_io_start(loop_, &upstream_w_);
  ev_timer_start(loop_, &connect_t_);
  // Read the tenant's first bytes while connecting (up to one buffer).
  return pump();
}

bool TcpSession::on_connect_timeout() {
  return upstream_failed("connect to upstream", ETIMEDOUT);
}

bool TcpSession::on_connected() {
  connected_ = true;
  ev_timer_stop(loop_, &connect_t_);
  return pump();
}

bool TcpSession::on_upstream_writable() {
  if (!connected_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(upstream_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) return upstream_failed("connect to upstream", err);
    return on_connected();
  }
  ssize_t n = to_upstream_.write_to(upstream_.get());
  if (n < 0 && !would_block(errno)) return upstream_failed("write to upstream", errno);
  return pump();
}

bool TcpSession::on_client_readable() {
  ssize_t n = to_upstream_.read_from(client_.get());
  if (n > 0) listener_->tenant().stats.received_bytes += static_cast<uint64_t>(n);
  if (n == 0) {
    client_eof_ = true;
  } else if (n < 0 && !would_block(errno)) {
    return fail("read from tenant, upstream", errno);
  }
  return pump();
}

bool TcpSession::on_upstream_readable() {
  ssize_t n = to_client_.read_from(upstream_.get());
  if (n == 0) {
    upstream_eof_ = true;
  } else if (n < 0 && !would_block(errno)) {
    return upstream_failed("read from upstream", errno);
  }
  return pump();
}

bool TcpSession::on_client_writable() {
  ssize_t n = to_client_.write_to(client_.get());
  if (n > 0) listener_->tenant().stats.sent_bytes += static_cast<uint64_t>(n);
  if (n < 0 && !would_block(errno)) return fail("write to tenant, upstream", errno);
  return pump();
}

bool TcpSession::pump() {
  if (connected_ && client_eof_ && to_upstream_.empty() && !upstream_shut_) {
    ::shutdown(upstream_.get(), SHUT_WR);
    upstream_shut_ = true;
  }
  if (upstream_eof_ && to_client_.empty() && !client_shut_) {
    ::shutdown(client_.get(), SHUT_WR);
    client_shut_ = true;
  }
  if (upstream_shut_ && client_shut_) return false;  // both directions finished
  set_active(loop_, &client_r_, !client_eof_ && to_upstream_.has_room());
  set_active(loop_, &client_w_, !to_client_.empty());
  if (connected_) {
    set_active(loop_, &upstream_r_, !upstream_eof_ && to_client_.has_room());
    set_active(loop_, &upstream_w_, !to_upstream_.empty());
  }
  return true;
}

}  // namespace nsproxy
