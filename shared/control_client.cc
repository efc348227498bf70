#include "control_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "control_transport.h"
#include "unique_fd.h"

namespace nsproxy {
namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits for events on fd until the deadline. Returns false on timeout.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return true;  // let the following syscall report the error
  }
}

}  // namespace

Result<Reply> call_daemon(const std::string& socket_path, const Request& req, int netns_fd,
                          std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  const std::string where = "nsproxyd at " + socket_path;

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    return make_error(Code::kUnreachable, "socket path too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());

  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) return errno_error(Code::kUnreachable, "socket");
  // A unix socket connects at once or fails; EAGAIN means the daemon's accept backlog
  // is full (a storm of plugin processes): it starts nothing, so retry until the deadline.
  for (;;) {
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_error(Code::kUnreachable, "cannot reach " + where);
    if (Clock::now() >= deadline) {
      return make_error(Code::kTimeout, "timed out connecting to " + where + " (backlog full)");
    }
    ::usleep(2000);
  }

  std::string payload = encode_request(req);
  for (;;) {
    auto sent = send_message(sock.get(), payload, netns_fd);
    if (sent) break;
    if (sent.error().code != Code::kAgain) {
      return make_error(Code::kUnreachable, where + ": " + sent.error().message);
    }
    if (!wait_for(sock.get(), POLLOUT, deadline)) {
      return make_error(Code::kTimeout, "timed out sending to " + where);
    }
  }
  for (;;) {
    if (!wait_for(sock.get(), POLLIN, deadline)) {
      return make_error(Code::kTimeout, "timed out waiting for a reply from " + where + " after " +
                                            std::to_string(timeout.count()) + " ms");
    }
    auto msg = recv_message(sock.get(), kMaxReplySize);
    if (!msg) {
      if (msg.error().code == Code::kAgain) continue;
      if (msg.error().code == Code::kEof) {
        return make_error(Code::kUnreachable, where + " closed the connection without replying");
      }
      return make_error(Code::kUnreachable, where + ": " + msg.error().message);
    }
    auto reply = decode_reply(msg->payload);
    if (!reply) return make_error(Code::kProtocol, where + ": " + reply.error().message);
    return reply;
  }
}

}  // namespace nsproxy
