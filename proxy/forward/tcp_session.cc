#include "forward/tcp_session.h"

#include <sys/socket.h>

#include <cerrno>

#include "forward/listener.h"
#include "forward/proxy_protocol.h"
#include "log.h"

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

}  // namespace

std::unique_ptr<Session> make_tcp_session(Listener* listener, Worker* worker, UniqueFd client,
                                          const sockaddr_storage& peer, bool) {
  return std::make_unique<TcpSession>(listener, worker, std::move(client), peer);
}

TcpSession::TcpSession(Listener* listener, Worker* worker, UniqueFd client,
                       const sockaddr_storage& peer)
    : Session(listener, worker),
      peer_(peer),
      loop_(worker->loop),
      client_(loop_, this, client_r_cb, client_w_cb),
      upstream_(loop_, this, upstream_r_cb, upstream_w_cb),
      to_upstream_(&worker->pool),
      to_client_(&worker->pool),
      // Read a side while less than one chunk waits for the other side.
      pump_(&client_, &upstream_, &to_upstream_, &to_client_, ByteQueue::kChunkData) {
  client_.attach(std::move(client));
  ev_timer_init(&connect_t_, connect_t_cb, worker->config->connect_timeout, 0.);
  connect_t_.data = this;
}

TcpSession::~TcpSession() {
  ev_timer_stop(loop_, &connect_t_);
}

bool TcpSession::upstream_failed(const char* what, int err) {
  report_upstream_failure(what, err);
  return false;
}

bool TcpSession::fail(const char* what, int err) {
  listener_->log_upstream_problem(what, err);
  return false;
}

bool TcpSession::queue_proxy_header() {
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  if (::getsockname(client_.fd(), reinterpret_cast<sockaddr*>(&local), &llen) < 0) {
    return fail("addresses of tenant connection, upstream", errno);
  }
  const Tenant& t = listener_->tenant();
  auto header = encode_proxy_v2(reinterpret_cast<const sockaddr*>(&peer_),
                                reinterpret_cast<const sockaddr*>(&local), t.id, *t.labels);
  if (!header) {
    LOG_WARN("tenant %s: not forwarding to %s: %s", t.display.c_str(),
             listener_->upstream().text.c_str(), header.error().message.c_str());
    return false;
  }
  to_upstream_.append(header->data(), header->size());
  return true;
}

bool TcpSession::start() {
  // The header goes first: it must be the first bytes the upstream sees.
  if (listener_->spec().proxy_protocol == ProxyProtocol::V2 && !queue_proxy_header()) {
    return false;
  }
  int err = 0;
  switch (upstream_.connect(worker_, listener_->upstream(), &err)) {
    case Connection::Connect::kConnected:
      return on_connected();
    case Connection::Connect::kFailed:
      return upstream_failed(upstream_ ? "connect to upstream" : "upstream socket for", err);
    case Connection::Connect::kInProgress:
      break;
  }
  ev_timer_start(loop_, &connect_t_);
  // Read the tenant's first bytes while connecting (up to one chunk).
  return pump();
}

bool TcpSession::pump() {
  size_t sent = 0;
  BytePump::State state = pump_.update(connected_, &sent);
  shard_->stats.sent_bytes += sent;
  switch (state) {
    case BytePump::State::kOpen:
      return true;
    case BytePump::State::kDone:
      return false;
    case BytePump::State::kClientWriteFailed:
      return fail("write to tenant, upstream", errno);
    case BytePump::State::kUpstreamWriteFailed:
      return upstream_failed("write to upstream", errno);
  }
  return false;
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
    int err = upstream_.finish_connect();
    if (err != 0) return upstream_failed("connect to upstream", err);
    return on_connected();
  }
  if (pump_.upstream_writable() == Connection::kError) {
    return upstream_failed("write to upstream", errno);
  }
  return pump();
}

bool TcpSession::on_client_readable() {
  ssize_t n = pump_.client_readable();
  if (n == Connection::kError) return fail("read from tenant, upstream", errno);
  if (n > 0) shard_->stats.received_bytes += static_cast<uint64_t>(n);
  return pump();
}

bool TcpSession::on_upstream_readable() {
  if (pump_.upstream_readable() == Connection::kError) {
    return upstream_failed("read from upstream", errno);
  }
  return pump();
}

bool TcpSession::on_client_writable() {
  ssize_t n = pump_.client_writable();
  if (n == Connection::kError) return fail("write to tenant, upstream", errno);
  if (n > 0) shard_->stats.sent_bytes += static_cast<uint64_t>(n);
  return pump();
}

}  // namespace nsproxy
