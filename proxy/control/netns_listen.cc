#include "control/netns_listen.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "control/loopback.h"
#include "control_protocol.h"

namespace nsproxy {
namespace {

Result<UniqueFd> make_listener(const Address& addr, int backlog, int socket_buffer) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error(Code::kListenerFailed, "socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    return errno_error(Code::kListenerFailed, "setsockopt SO_REUSEADDR");
  }
  if (addr.family() == AF_INET6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  // Before listen(): accepted connections inherit the sizes (and the window scale the
  // receive buffer implies is chosen at the handshake).
  if (socket_buffer > 0) {
    for (int opt : {SO_SNDBUF, SO_RCVBUF}) {
      if (::setsockopt(fd.get(), SOL_SOCKET, opt, &socket_buffer, sizeof socket_buffer) < 0) {
        return errno_error(Code::kListenerFailed, "setsockopt SO_SNDBUF/SO_RCVBUF");
      }
    }
  }
  if (::bind(fd.get(), addr.sa(), addr.length) < 0)
    return errno_error(Code::kListenerFailed, "bind");
  if (::listen(fd.get(), backlog) < 0) return errno_error(Code::kListenerFailed, "listen");
  return fd;
}

// Returning home must never fail silently: this thread would serve in a tenant's netns.
void return_home(int home_fd) {
  if (::setns(home_fd, CLONE_NEWNET) < 0) {
    std::fprintf(stderr, "nsproxyd: FATAL: cannot return to the host network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
}

// A listener that could not be made. Out of file descriptors is the daemon's limit, not
// the tenant's fault: code "limit", with what to do about it.
Error listen_error(std::string message, int err) {
  if (err == EMFILE || err == ENFILE) {
    return make_error(Code::kLimit, "nsproxyd is out of file descriptors (" + message +
                                        "); raise its RLIMIT_NOFILE (LimitNOFILE= in its "
                                        "unit) or lower --max-registrations");
  }
  return make_error(Code::kListenerFailed, std::move(message));
}

}  // namespace

Result<NetnsListenerFactory> NetnsListenerFactory::open_home() {
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home) return errno_error(Code::kInternal, "open /proc/thread-self/ns/net");
  return NetnsListenerFactory(std::move(home));
}

Result<NetnsListeners> NetnsListenerFactory::listen_all(
    int netns_fd, const std::string& netns_path,
    const std::vector<ListenTarget>& targets) const noexcept {
  if (::setns(netns_fd, CLONE_NEWNET) < 0) {
    return errno_error(Code::kListenerFailed, "enter network namespace " + netns_path);
  }
  NetnsListeners out;
  std::optional<Error> failure;
  if (Status lo = ensure_loopback_up(); !lo) {
    failure = listen_error(lo.error().message + " in " + netns_path, errno);
  } else {
    for (const ListenTarget& t : targets) {
      if (t.add_address) {
        auto added = add_loopback_address(t.addr);
        if (!added) {
          failure =
              make_error(Code::kListenerFailed, "listen " + t.addr.text + " in " + netns_path +
                                                    ": " + added.error().message);
          break;
        }
        if (*added) out.added.push_back(t.addr);
      }
      auto fd = make_listener(t.addr, backlog_, socket_buffer_);
      if (!fd) {
        const int err = errno;  // of the failed step (closing the socket keeps errno)
        // make_listener's message is "<step>: <errno text>"; keep only the errno text.
        const std::string& m = fd.error().message;
        auto colon = m.find(": ");
        std::string reason = colon == std::string::npos ? m : m.substr(colon + 2);
        failure = listen_error("listen " + t.addr.text + " in " + netns_path + ": " + reason, err);
        break;
      }
      out.fds.push_back(std::move(*fd));
    }
    if (failure) {
      out.fds.clear();
      for (const Address& a : out.added) (void)remove_loopback_address(a);
    }
  }
  return_home(home_.get());
  if (failure) return *failure;
  return out;
}

Status NetnsListenerFactory::remove_addresses(int netns_fd, const std::string& netns_path,
                                              const std::vector<Address>& addrs) const noexcept {
  if (addrs.empty()) return {};
  if (::setns(netns_fd, CLONE_NEWNET) < 0) {
    return errno_error(Code::kLoopback, "enter network namespace " + netns_path);
  }
  Status result;
  for (const Address& a : addrs) {
    if (Status s = remove_loopback_address(a); !s && result) {
      result = make_error(Code::kLoopback, s.error().message + " in " + netns_path);
    }
  }
  return_home(home_.get());
  return result;
}

}  // namespace nsproxy
