#include "forward/connection.h"

#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "forward/acceptor.h"
#include "forward/worker.h"

namespace nsproxy {
namespace {

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

void set_watcher(struct ev_loop* loop, ev_io* w, bool on) {
  if (on && !ev_is_active(w)) {
    ev_io_start(loop, w);
  } else if (!on && ev_is_active(w)) {
    ev_io_stop(loop, w);
  }
}

}  // namespace

Connection::Connection(struct ev_loop* loop, void* owner, Callback on_readable,
                       Callback on_writable)
    : loop_(loop) {
  ev_io_init(&read_w_, on_readable, -1, EV_READ);
  ev_io_init(&write_w_, on_writable, -1, EV_WRITE);
  read_w_.data = write_w_.data = owner;
}

Connection::~Connection() {
  close();
}

void Connection::rebind(void* owner, Callback on_readable, Callback on_writable) {
  ev_set_cb(&read_w_, on_readable);
  ev_set_cb(&write_w_, on_writable);
  read_w_.data = write_w_.data = owner;
}

void Connection::attach(UniqueFd fd) {
  close();
  fd_ = std::move(fd);
  ev_io_set(&read_w_, fd_.get(), EV_READ);
  ev_io_set(&write_w_, fd_.get(), EV_WRITE);
}

UniqueFd Connection::detach() {
  ev_io_stop(loop_, &read_w_);
  ev_io_stop(loop_, &write_w_);
  connecting_ = false;
  free_tls();
  return std::move(fd_);
}

void Connection::close() {
  detach().reset();
}

void Connection::want_read(bool on) {
  set_watcher(loop_, &read_w_, on);
  // Bytes OpenSSL holds already (plaintext, or records read ahead): the socket will not
  // say so.
  if (on && ssl_ != nullptr && SSL_has_pending(ssl_) == 1) ev_feed_event(loop_, &read_w_, EV_READ);
}
void Connection::want_write(bool on) {
  set_watcher(loop_, &write_w_, on);
}

ssize_t Connection::read(char* buf, size_t len) {
  if (ssl_ != nullptr) return tls_read(buf, len);
  ssize_t n;
  do {
    n = ::read(fd_.get(), buf, len);
  } while (n < 0 && errno == EINTR);
  if (n > 0) return n;
  if (n == 0) return kEof;
  return would_block(errno) ? 0 : kError;
}

ssize_t Connection::read_into(ByteQueue* q) {
  auto [buf, room] = q->tail_room();
  ssize_t n = read(buf, room);
  if (n > 0) {
    q->commit(static_cast<size_t>(n));
  } else {
    int saved = errno;
    q->trim();  // an empty queue holds no chunk
    errno = saved;
  }
  return n;
}

ssize_t Connection::write_from(ByteQueue* q) {
  if (q->empty()) return 0;
  if (ssl_ != nullptr) return tls_write_from(q);
  ssize_t n = q->write_to(fd_.get());
  if (n >= 0) return n;
  return would_block(errno) ? 0 : kError;
}

ssize_t Connection::flush(ByteQueue* q) {
  ssize_t n = 0;
  if (!q->empty() && !write_armed()) {
    n = write_from(q);
    if (n == kError) return n;
  }
  want_write(!q->empty());
  return n;
}

void Connection::shutdown_write() {
  if (ssl_ != nullptr && tls_handshake_done()) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // close_notify; its answer is not waited for
  }
  ::shutdown(fd_.get(), SHUT_WR);
}

Connection::Connect Connection::connect(Worker* worker, const Address& to, int* err) {
  UniqueFd fd(worker->stream_socket(to.family()));
  if (!fd) {
    *err = errno;
    if (*err == EMFILE || *err == ENFILE) worker->acceptor->out_of_fds.store(true);
    return Connect::kFailed;
  }
  set_socket_buffer(fd.get(), worker->config->socket_buffer);
  if (to.family() != AF_UNIX) set_nodelay(fd.get());
  attach(std::move(fd));
  int rc;
  do {
    rc = ::connect(fd_.get(), to.sa(), to.length);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) return Connect::kConnected;
  // EAGAIN on a unix socket means its backlog is full, not "in progress".
  if (errno != EINPROGRESS) {
    *err = errno;
    return Connect::kFailed;
  }
  connecting_ = true;
  want_write(true);
  return Connect::kInProgress;
}

int Connection::finish_connect() {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0) connecting_ = false;
  return err;
}

void Connection::set_tls(SSL* ssl) {
  free_tls();
  ssl_ = ssl;
  SSL_set_app_data(ssl_, this);
  SSL_set_msg_callback(ssl_, &Connection::tls_message);
}

void Connection::free_tls() {
  if (ssl_ == nullptr) return;
  SSL_free(ssl_);
  ssl_ = nullptr;
  tls_read_wants_write_ = tls_write_wants_read_ = tls_renegotiation_ = false;
  tls_error_.clear();
}

bool Connection::tls_handshake_done() const {
  return ssl_ != nullptr && SSL_is_init_finished(ssl_);
}

bool Connection::tls_retry_read() {
  bool retry = tls_read_wants_write_;
  tls_read_wants_write_ = false;
  return retry;
}

bool Connection::tls_retry_write() {
  bool retry = tls_write_wants_read_;
  tls_write_wants_read_ = false;
  return retry;
}

// A renegotiation (a ClientHello on an established TLS 1.2 connection): OpenSSL refuses it
// with a no_renegotiation alert and would go on; noted here, when that alert leaves, so
// that the owner closes with a log line instead.
void Connection::tls_message(int write_p, int, int content_type, const void* buf, size_t len,
                             SSL* ssl, void*) {
  if (write_p != 1 || content_type != SSL3_RT_ALERT || len < 2) return;
  if (static_cast<const unsigned char*>(buf)[1] != SSL_AD_NO_RENEGOTIATION) return;
  if (auto* self = static_cast<Connection*>(SSL_get_app_data(ssl))) self->tls_renegotiation_ = true;
}

ssize_t Connection::tls_read(char* buf, size_t len) {
  if (tls_renegotiation_) {
    tls_error_ = "renegotiation refused";
    errno = EPROTO;
    return kError;
  }
  ERR_clear_error();
  size_t n = 0;
  int rc = SSL_read_ex(ssl_, buf, len, &n);
  if (rc == 1) {
    // More than fitted is buffered in OpenSSL (plaintext, or records read ahead with
    // this one): the socket will not wake us for it.
    if (SSL_has_pending(ssl_) == 1 && read_armed()) ev_feed_event(loop_, &read_w_, EV_READ);
    return static_cast<ssize_t>(n);
  }
  if (tls_renegotiation_) {
    tls_error_ = "renegotiation refused";
    errno = EPROTO;
    return kError;
  }
  return tls_failure(rc, true);
}

ssize_t Connection::tls_write_from(ByteQueue* q) {
  ssize_t total = 0;
  while (!q->empty()) {
    std::string_view piece = q->front();
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_write_ex(ssl_, piece.data(), piece.size(), &n);
    if (rc != 1) {
      ssize_t r = tls_failure(rc, false);
      if (r == 0) return total;  // would block: what was written counts
      if (r == kEof) errno = EPIPE;
      return kError;
    }
    q->consume(n);
    total += static_cast<ssize_t>(n);
  }
  return total;
}

ssize_t Connection::tls_failure(int rc, bool reading) {
  int err = SSL_get_error(ssl_, rc);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      if (!reading) {
        tls_write_wants_read_ = true;
        want_read(true);
      }
      return 0;
    case SSL_ERROR_WANT_WRITE:
      if (reading) {
        tls_read_wants_write_ = true;
        want_write(true);
      }
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      return kEof;  // close_notify: the peer ended its stream
    case SSL_ERROR_SYSCALL: {
      int saved = errno;
      // The peer closed the socket without close_notify (or reset it).
      if (ERR_peek_error() == 0 && saved == 0) {
        if (!tls_handshake_done()) tls_error_ = "connection closed during the handshake";
        return kEof;
      }
      tls_error_ = std::strerror(saved != 0 ? saved : EIO);
      errno = saved != 0 ? saved : EIO;
      return kError;
    }
    default: {
      char buf[256];
      unsigned long e = ERR_get_error();
      if (e != 0) {
        ERR_error_string_n(e, buf, sizeof buf);
        // "error:0A00010B:SSL routines::wrong version number": the reason is the last part.
        const char* reason = ERR_reason_error_string(e);
        tls_error_ = reason != nullptr ? reason : buf;
        if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
          if (!tls_handshake_done()) tls_error_ = "connection closed during the handshake";
          return kEof;
        }
      } else {
        tls_error_ = "TLS error " + std::to_string(err);
      }
      ERR_clear_error();
      errno = EPROTO;
      return kError;
    }
  }
}

}  // namespace nsproxy
