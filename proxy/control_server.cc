#include "control_server.h"

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
  ev_timer idle_t;
  uid_t uid = static_cast<uid_t>(-1);
  pid_t pid = 0;

  // Handles one readable event; false when the client is finished.
  bool on_readable();
};

namespace {

void accept_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<ControlServer*>(w->data)->on_acceptable();
}

void reply(int fd, const Reply& r) {
  std::string text = encode_reply(r);
  if (Status s = send_message(fd, text); !s) {
    LOG_DEBUG("control: reply not delivered: %s", s.error().message.c_str());
  }
}

Status fill_unix_addr(const std::string& path, sockaddr_un* addr) {
  if (path.empty() || path.size() >= sizeof addr->sun_path) {
    return make_error("socket", "socket path \"" + path + "\" is empty or longer than " +
                                    std::to_string(sizeof addr->sun_path - 1) + " bytes");
  }
  *addr = {};
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return {};
}

}  // namespace

bool ControlServer::Client::on_readable() {
  auto msg = recv_message(fd.get(), kMaxMessageSize);
  if (!msg) {
    if (msg.error().code == "again") return true;
    if (msg.error().code != "eof") LOG_DEBUG("control: %s", msg.error().message.c_str());
    return false;
  }
  ev_timer_again(server->loop_, &idle_t);
  if (uid != 0) {
    LOG_WARN("control: refused a request from uid %u (pid %d): only root may use nsproxyd",
             static_cast<unsigned>(uid), static_cast<int>(pid));
    reply(fd.get(), error_reply(make_error("forbidden", "only root may use the control socket")));
    return false;
  }
  if (msg->truncated) {
    reply(fd.get(), error_reply(make_error(codes::kTooLarge,
                                           "request larger than " +
                                               std::to_string(kMaxMessageSize) + " bytes")));
    return true;
  }
  if (msg->extra_fds) {
    reply(fd.get(), error_reply(make_error(codes::kBadRequest,
                                           "a request may carry at most one file descriptor")));
    return true;
  }
  auto req = decode_request(msg->payload);
  if (!req) {
    LOG_INFO("control: bad request from pid %d: %s", static_cast<int>(pid),
             req.error().message.c_str());
    reply(fd.get(), error_reply(req.error()));
    return true;
  }
  Reply r;
  try {
    r = server->handler_(*req, std::move(msg->fd));
  } catch (const std::exception& e) {
    LOG_ERROR("control: %s failed: %s", op_name(req->op), e.what());
    r = error_reply(make_error(codes::kInternal, std::string("internal error: ") + e.what()));
  }
  reply(fd.get(), r);
  return true;
}

namespace {

void client_read_cb(struct ev_loop*, ev_io* w, int);
void client_idle_cb(struct ev_loop*, ev_timer* w, int);

}  // namespace

ControlServer::ControlServer(struct ev_loop* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {
  accept_w_.data = this;
}

ControlServer::~ControlServer() { close(); }

Status ControlServer::listen(const std::string& path) {
  sockaddr_un addr;
  if (Status s = fill_unix_addr(path, &addr); !s) return s;
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return make_error("socket", "create socket directory " + dir.string() + ": " + ec.message());
  }

  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error("socket", path + " exists and is not a socket; refusing to replace it");
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!probe) return errno_error("socket", "socket");
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return make_error("socket", "another nsproxyd is already serving on " + path);
    }
    if (errno != ECONNREFUSED && errno != ENOENT) {
      return errno_error("socket", "probe existing socket " + path);
    }
    LOG_INFO("replacing stale socket %s", path.c_str());
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
      return errno_error("socket", "remove stale socket " + path);
    }
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket", "socket");
  // Root-only from the first instant: no window in which the socket is group/world usable.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int bind_errno = errno;
  ::umask(old_umask);
  if (rc < 0) return errno_error("socket", "bind " + path, bind_errno);
  if (::chmod(path.c_str(), 0600) < 0) return errno_error("socket", "chmod " + path);
  if (::listen(fd.get(), 128) < 0) return errno_error("socket", "listen " + path);
  path_ = path;
  fd_ = std::move(fd);
  ev_io_init(&accept_w_, accept_cb, fd_.get(), EV_READ);
  accept_w_.data = this;
  ev_io_start(loop_, &accept_w_);
  return {};
}

void ControlServer::close() {
  if (!fd_) return;
  ev_io_stop(loop_, &accept_w_);
  fd_.reset();
  std::vector<Client*> open(clients_.begin(), clients_.end());
  for (Client* c : open) drop(c);
  ::unlink(path_.c_str());
}

void ControlServer::on_acceptable() {
  for (int i = 0; i < 32; ++i) {
    int cfd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        LOG_WARN("control: accept: %s", std::strerror(errno));
      }
      return;
    }
    UniqueFd fd(cfd);
    if (clients_.size() >= kMaxClients) {
      LOG_WARN("control: %zu clients connected; refusing another", clients_.size());
      reply(fd.get(), error_reply(make_error("busy", "too many control clients; retry")));
      continue;
    }
    auto* c = new Client{this, std::move(fd), {}, {}};
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c->fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      c->uid = cred.uid;
      c->pid = cred.pid;
    }
    ev_io_init(&c->read_w, client_read_cb, c->fd.get(), EV_READ);
    c->read_w.data = c;
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
  ev_timer_stop(loop_, &c->idle_t);
  clients_.erase(c);
  delete c;
}

namespace {

void client_read_cb(struct ev_loop*, ev_io* w, int) {
  auto* c = static_cast<ControlServer::Client*>(w->data);
  if (!c->on_readable()) c->server->drop(c);
}

void client_idle_cb(struct ev_loop*, ev_timer* w, int) {
  auto* c = static_cast<ControlServer::Client*>(w->data);
  LOG_DEBUG("control: dropping idle client pid %d", static_cast<int>(c->pid));
  c->server->drop(c);
}

}  // namespace

}  // namespace nsproxy
