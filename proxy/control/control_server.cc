#include "control/control_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "control_transport.h"
#include "log.h"

namespace nsproxy {

struct ControlServer::Client {
  ControlServer* server;
  UniqueFd fd;
  ev_io read_w;
  ev_io write_w;
  ev_timer idle_t;
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
  // A reply the socket could not take yet. While it is pending the client's next
  // request is not read: every request gets its reply, in order.
  std::string pending;
  bool close_after_reply = false;
  const char* op = "invalid";  // of the request being answered ("invalid": undecoded)

  // Handles one readable event; false when the client is finished.
  bool on_readable();
  // Sends the pending reply; false when the client is finished.
  bool on_writable();
  // Queues one reply; false when the client is finished.
  bool reply(const Reply& r);
};

namespace {

void accept_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<ControlServer*>(w->data)->on_acceptable();
}

Status fill_unix_addr(const std::string& path, sockaddr_un* addr) {
  if (path.empty() || path.size() >= sizeof addr->sun_path) {
    return make_error(Code::kSocket, "socket path \"" + path + "\" is empty or longer than " +
                                         std::to_string(sizeof addr->sun_path - 1) + " bytes");
  }
  *addr = {};
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return {};
}

}  // namespace

bool ControlServer::Client::reply(const Reply& r) {
  ++server->requests_[{op, r.ok ? std::string("ok") : std::string(code_name(r.error.code))}];
  std::string text = encode_reply(r);
  if (text.size() > kMaxReplySize) {
    text = encode_reply(error_reply(make_error(
        Code::kTooLarge, "the reply (" + std::to_string(text.size()) + " bytes) exceeds " +
                             std::to_string(kMaxReplySize) + " bytes")));
  }
  pending = std::move(text);
  return on_writable();
}

bool ControlServer::Client::on_writable() {
  Status s = send_message(fd.get(), pending);
  if (!s && s.error().code == Code::kAgain) {
    ev_io_stop(server->loop_, &read_w);
    ev_io_start(server->loop_, &write_w);
    return true;
  }
  if (!s) {
    LOG_DEBUG("control: reply not delivered: %s", s.error().message.c_str());
    return false;
  }
  pending.clear();
  ev_io_stop(server->loop_, &write_w);
  if (close_after_reply) return false;
  ev_io_start(server->loop_, &read_w);
  return true;
}

bool ControlServer::Client::on_readable() {
  auto msg = recv_message(fd.get(), kMaxMessageSize);
  if (!msg) {
    if (msg.error().code == Code::kAgain) return true;
    if (msg.error().code != Code::kEof) LOG_DEBUG("control: %s", msg.error().message.c_str());
    return false;
  }
  ev_timer_again(server->loop_, &idle_t);
  op = "invalid";
  if (uid != 0 && !(server->has_allowed_gid_ && gid == server->allowed_gid_)) {
    LOG_WARN("control: refused a request from uid %u gid %u (pid %d): only root%s may use nsproxyd",
             static_cast<unsigned>(uid), static_cast<unsigned>(gid), static_cast<int>(pid),
             server->has_allowed_gid_ ? " and the allowed group" : "");
    close_after_reply = true;
    return reply(error_reply(make_error(Code::kForbidden, "only root may use the control socket")));
  }
  if (msg->truncated) {
    return reply(error_reply(make_error(
        Code::kTooLarge, "request larger than " + std::to_string(kMaxMessageSize) + " bytes")));
  }
  if (msg->fds_lost) {
    LOG_ERROR(
        "control: a request's file descriptor could not be received: nsproxyd is out of "
        "file descriptors (each registration holds one per listener)");
    return reply(error_reply(
        make_error(Code::kLimit,
                   "nsproxyd is out of file descriptors and could not receive the namespace fd; "
                   "raise its RLIMIT_NOFILE (e.g. LimitNOFILE= in its unit) or lower "
                   "--max-registrations")));
  }
  if (msg->extra_fds) {
    return reply(error_reply(
        make_error(Code::kBadRequest, "a request may carry at most one file descriptor")));
  }
  auto req = decode_request(msg->payload);
  if (!req) {
    LOG_INFO("control: bad request from pid %d: %s", static_cast<int>(pid),
             req.error().message.c_str());
    return reply(error_reply(req.error()));
  }
  op = op_name(req->op);
  if (req->op == Op::Handover) {
    if (!server->handover_) {
      return reply(error_reply(make_error(Code::kBadRequest, "handover is not possible now")));
    }
    LOG_INFO("control: handover requested by pid %d", static_cast<int>(pid));
    server->handover_(fd.get());
    return false;
  }
  Reply r;
  try {
    r = server->handler_(*req, std::move(msg->fd));
  } catch (const std::exception& e) {
    LOG_ERROR("control: %s failed: %s", op_name(req->op), e.what());
    r = error_reply(make_error(Code::kInternal, std::string("internal error: ") + e.what()));
  }
  return reply(r);
}

namespace {

void client_read_cb(struct ev_loop*, ev_io* w, int);
void client_write_cb(struct ev_loop*, ev_io* w, int);
void client_idle_cb(struct ev_loop*, ev_timer* w, int);

}  // namespace

void pause_cb(struct ev_loop* loop, ev_timer* w, int) {
  auto* io = static_cast<ev_io*>(w->data);
  ev_io_start(loop, io);
}

ControlServer::ControlServer(struct ev_loop* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {
  accept_w_.data = this;
  ev_timer_init(&pause_t_, pause_cb, 0.1, 0.);
  pause_t_.data = &accept_w_;
}

ControlServer::~ControlServer() {
  close();
}

Status ControlServer::listen(const std::string& path) {
  sockaddr_un addr;
  if (Status s = fill_unix_addr(path, &addr); !s) return s;
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return make_error(Code::kSocket,
                        "create socket directory " + dir.string() + ": " + ec.message());
  }

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(Code::kSocket,
                        path + " exists and is not a socket; refusing to replace it");
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return errno_error(Code::kSocket, "socket");
    // Non-blocking: a wedged daemon with a full backlog (EAGAIN) is still a daemon.
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ||
        errno == EAGAIN) {
      return make_error(Code::kSocket, "another nsproxyd is already serving on " + path);
    }
    if (errno != ECONNREFUSED && errno != ENOENT) {
      return errno_error(Code::kSocket, "probe existing socket " + path);
    }
    LOG_INFO("replacing stale socket %s", path.c_str());
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
      return errno_error(Code::kSocket, "remove stale socket " + path);
    }
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error(Code::kSocket, "socket");
  // Root-only from the first instant: no window in which the socket is group/world usable.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int bind_errno = errno;
  ::umask(old_umask);
  if (rc < 0) return errno_error(Code::kSocket, "bind " + path, bind_errno);
  if (has_allowed_gid_) {
    if (::chown(path.c_str(), 0, allowed_gid_) < 0)
      return errno_error(Code::kSocket, "chown " + path);
    if (::chmod(path.c_str(), 0660) < 0) return errno_error(Code::kSocket, "chmod " + path);
  } else if (::chmod(path.c_str(), 0600) < 0) {
    return errno_error(Code::kSocket, "chmod " + path);
  }
  if (::listen(fd.get(), SOMAXCONN) < 0) return errno_error(Code::kSocket, "listen " + path);
  path_ = path;
  fd_ = std::move(fd);
  ev_io_init(&accept_w_, accept_cb, fd_.get(), EV_READ);
  accept_w_.data = this;
  ev_io_start(loop_, &accept_w_);
  return {};
}

void ControlServer::serve_inherited(UniqueFd fd) {
  // Not ours to remove: systemd's (socket activation) or bound by the daemon this one
  // took over from, which may itself have had it from systemd. A stale file left behind
  // is replaced by the next daemon's listen().
  path_.clear();
  fd_ = std::move(fd);
  int flags = ::fcntl(fd_.get(), F_GETFL);
  ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
  ev_io_init(&accept_w_, accept_cb, fd_.get(), EV_READ);
  accept_w_.data = this;
  ev_io_start(loop_, &accept_w_);
}

void ControlServer::release() {
  path_.clear();
  close();
}

void ControlServer::close() {
  if (!fd_) return;
  ev_io_stop(loop_, &accept_w_);
  ev_timer_stop(loop_, &pause_t_);
  fd_.reset();
  std::vector<Client*> open(clients_.begin(), clients_.end());
  for (Client* c : open) drop(c);
  if (!path_.empty()) ::unlink(path_.c_str());
}

void ControlServer::on_acceptable() {
  for (int i = 0; i < 32; ++i) {
    int cfd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Out of fds (or memory): the connection stays queued, so a level-triggered
      // watcher would spin. Pause accepting for a moment instead.
      LOG_WARN("control: accept: %s; pausing the control socket for 100 ms", std::strerror(errno));
      ev_io_stop(loop_, &accept_w_);
      ev_timer_start(loop_, &pause_t_);
      return;
    }
    UniqueFd fd(cfd);
    if (clients_.size() >= kMaxClients) {
      LOG_WARN("control: %zu clients connected; refusing another", clients_.size());
      (void)send_message(
          fd.get(),
          encode_reply(error_reply(make_error(Code::kBusy, "too many control clients; retry"))));
      continue;
    }
    auto* c = new Client{
        this, std::move(fd), {}, {}, {}, static_cast<uid_t>(-1), static_cast<gid_t>(-1), 0,
        {},   false};
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c->fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->uid = cred.uid;
      c->gid = cred.gid;
      c->pid = cred.pid;
    }
    ev_io_init(&c->read_w, client_read_cb, c->fd.get(), EV_READ);
    c->read_w.data = c;
    ev_io_init(&c->write_w, client_write_cb, c->fd.get(), EV_WRITE);
    c->write_w.data = c;
    ev_init(&c->idle_t, client_idle_cb);
    c->idle_t.repeat = kIdleSeconds;
    c->idle_t.data = c;
    ev_io_start(loop_, &c->read_w);
    ev_timer_again(loop_, &c->idle_t);
    clients_.insert(c);
  }
}

void ControlServer::drop(Client* c) {
  ev_io_stop(loop_, &c->read_w);
  ev_io_stop(loop_, &c->write_w);
  ev_timer_stop(loop_, &c->idle_t);
  clients_.erase(c);
  delete c;
}

namespace {

void client_read_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<ControlServer::Client*>(w->data);
  if (!c->on_readable()) c->server->drop(c);
}

void client_write_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<ControlServer::Client*>(w->data);
  if (!c->on_writable()) c->server->drop(c);
}

void client_idle_cb(struct ev_loop*, ev_timer* w, int) {
  auto* c = static_cast<ControlServer::Client*>(w->data);
  LOG_DEBUG("control: dropping idle client pid %d", static_cast<int>(c->pid));
  c->server->drop(c);
}

}  // namespace

}  // namespace nsproxy
