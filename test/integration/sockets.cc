#include "sockets.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "address.h"
#include "netns.h"
#include "text.h"

namespace nspit {
namespace {

using detail::Clock;
using detail::remaining_ms;
using detail::tail;
using nsproxy::make_error;
using nsproxy::Result;
using nsproxy::Status;
using nsproxy::UniqueFd;

// Writes to a peer that went away must return EPIPE, not kill the test binary.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

Result<UniqueFd> socket_in_netns(const std::string& netns_path, int domain, int type) {
  Result<UniqueFd> result = make_error(nsproxy::Code::kInternal, "not run");
  std::thread t([&] {
    auto ns = nsproxy::open_netns(netns_path);
    if (!ns) {
      result = ns.error();
      return;
    }
    if (::setns(ns->get(), CLONE_NEWNET) != 0) {
      result = nsproxy::errno_error(nsproxy::Code::kNotNetns, "setns " + netns_path);
      return;
    }
    int fd = ::socket(domain, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      result = nsproxy::errno_error(nsproxy::Code::kSocket, "socket in " + netns_path);
      return;
    }
    result = UniqueFd(fd);
    // The thread ends here, in the tenant namespace; nothing else ever runs on it.
  });
  t.join();
  return result;
}

Connection connect_in_netns(const std::string& netns_path, const std::string& address,
                            Millis timeout) {
  Connection c;
  auto addr = nsproxy::parse_address(address, false);
  if (!addr) {
    c.err = EINVAL;
    c.message = addr.error().message;
    return c;
  }
  auto sock = socket_in_netns(netns_path, addr->family(), SOCK_STREAM | SOCK_NONBLOCK);
  if (!sock) {
    c.err = EINVAL;
    c.message = sock.error().message;
    return c;
  }
  int fd = sock->get();
  if (::connect(fd, addr->sa(), addr->length) != 0) {
    if (errno != EINPROGRESS) {
      c.err = errno;
      c.message = "connect " + address + " in " + netns_path + ": " + errno_text(c.err);
      return c;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r <= 0) {
      c.err = ETIMEDOUT;
      c.message = "connect " + address + " in " + netns_path + ": timed out";
      return c;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      c.err = err;
      c.message = "connect " + address + " in " + netns_path + ": " + errno_text(err);
      return c;
    }
  }
  c.fd = std::move(*sock);
  return c;
}

Result<UniqueFd> listen_in_netns(const std::string& netns_path, const std::string& address) {
  auto addr = nsproxy::parse_address(address, false);
  if (!addr) return addr.error();
  auto sock = socket_in_netns(netns_path, addr->family(), SOCK_STREAM);
  if (!sock) return sock.error();
  if (::bind(sock->get(), addr->sa(), addr->length) != 0) {
    return nsproxy::errno_error(nsproxy::Code::kSocket, "bind " + address + " in " + netns_path);
  }
  if (::listen(sock->get(), 16) != 0) {
    return nsproxy::errno_error(nsproxy::Code::kSocket, "listen " + address + " in " + netns_path);
  }
  return std::move(*sock);
}

Status send_all(int fd, std::string_view data, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return nsproxy::errno_error(nsproxy::Code::kIo, "send");
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout, "send timed out after " + std::to_string(sent) +
                                                     " of " + std::to_string(data.size()) +
                                                     " bytes");
    }
  }
  return {};
}

Result<std::string> recv_until_eof(int fd, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return got;
    if (errno != EAGAIN && errno != EINTR) {
      return nsproxy::errno_error(nsproxy::Code::kIo,
                                  "recv after " + std::to_string(got.size()) + " bytes");
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout,
                        "no EOF within " + std::to_string(timeout.count()) + " ms; received " +
                            std::to_string(got.size()) + " bytes: " + tail(got, 200));
    }
  }
}

Result<std::string> exchange(int fd, std::string_view payload, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  bool shut = false;
  std::string got;
  char buf[65536];
  for (;;) {
    if (!shut && sent == payload.size()) {
      if (::shutdown(fd, SHUT_WR) != 0) return nsproxy::errno_error(nsproxy::Code::kIo, "shutdown");
      shut = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (shut ? 0 : POLLOUT)), 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) {
      return make_error(nsproxy::Code::kTimeout, "exchange timed out after " +
                                                     std::to_string(timeout.count()) +
                                                     " ms: sent " + std::to_string(sent) + " of " +
                                                     std::to_string(payload.size()) +
                                                     ", received " + std::to_string(got.size()));
    }
    if (!shut && (p.revents & POLLOUT)) {
      ssize_t n =
          ::send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return nsproxy::errno_error(nsproxy::Code::kIo,
                                    "send after " + std::to_string(sent) + " bytes");
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        if (!shut) {
          return make_error(nsproxy::Code::kIo,
                            "peer closed after we sent " + std::to_string(sent) + " of " +
                                std::to_string(payload.size()) + " bytes; received " +
                                std::to_string(got.size()));
        }
        return got;
      } else if (errno != EAGAIN && errno != EINTR) {
        return nsproxy::errno_error(nsproxy::Code::kIo, "recv after " + std::to_string(got.size()) +
                                                            " bytes (sent " + std::to_string(sent) +
                                                            ")");
      }
    }
  }
}

Result<std::string> roundtrip_in_netns(const std::string& netns_path, const std::string& address,
                                       std::string_view payload, Millis timeout) {
  auto c = connect_in_netns(netns_path, address);
  if (!c.ok()) return make_error(nsproxy::Code::kUnreachable, c.message);
  return exchange(c.fd.get(), payload, timeout);
}

RawUpstream::RawUpstream(Handler handler) : handler_(std::move(handler)) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 64) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return;
  }
  listen_fd_ = fd;
  address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  accept_thread_ = std::thread([this] {
    for (;;) {
      pollfd p{listen_fd_, POLLIN, 0};
      ::poll(&p, 1, 50);
      if (stopping_) return;
      if (!(p.revents & POLLIN)) continue;
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++accepted_;
      std::lock_guard<std::mutex> lock(mu_);
      conn_fds_.push_back(c);
      threads_.emplace_back([this, c] { handler_(c); });
    }
  });
}

RawUpstream::~RawUpstream() {
  stopping_ = true;
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int c : conn_fds_) ::shutdown(c, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  for (int c : conn_fds_) ::close(c);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

std::optional<std::string> read_head_blocking(int fd, std::string* rest, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  char buf[16384];
  for (;;) {
    size_t end = got.find("\r\n\r\n");
    if (end != std::string::npos) {
      if (rest) *rest = got.substr(end + 4);
      return got.substr(0, end + 4);
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    got.append(buf, static_cast<size_t>(n));
  }
}

bool write_all_blocking(int fd, std::string_view data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

}  // namespace nspit
