#include "forward/connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

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
  return std::move(fd_);
}

void Connection::close() {
  detach().reset();
}

void Connection::want_read(bool on) {
  set_watcher(loop_, &read_w_, on);
}
void Connection::want_write(bool on) {
  set_watcher(loop_, &write_w_, on);
}

ssize_t Connection::read(char* buf, size_t len) {
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

}  // namespace nsproxy
