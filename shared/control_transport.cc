#include "control_transport.h"

#include <sys/socket.h>

#include <cstring>
#include <vector>

namespace nsproxy {

void ensure_send_buffer(int sock, size_t message_size) {
  constexpr size_t kDefaultRoom = 192 * 1024;
  if (message_size <= kDefaultRoom) return;
  int want = static_cast<int>(message_size + 64 * 1024);
  // Root may exceed net.core.wmem_max; others get what the limit allows.
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) < 0) {
    ::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
  }
}

Status send_message(int sock, std::string_view payload, int pass_fd) {
  if (pass_fd < 0) return send_message_fds(sock, payload, {});
  return send_message_fds(sock, payload, {pass_fd});
}

Status send_message_fds(int sock, std::string_view payload, const std::vector<int>& fds) {
  if (fds.size() > kMaxPassedFds) return make_error(Code::kIo, "too many fds for one message");
  ensure_send_buffer(sock, payload.size());
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n >= 0) return {};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return make_error(Code::kAgain, "send would block");
    return errno_error(Code::kIo, "send");
  }
}

Result<Message> recv_message(int sock, size_t max_size, size_t max_fds) {
  Message m;
  // Learn the datagram's size first (MSG_TRUNC reports the real length on unix
  // sockets; no control buffer, so no fd is installed by the peek), then allocate just
  // that much: limits can be generous without costing memory per small message.
  size_t want = max_size + 1;  // one spare byte detects oversize datagrams
  {
    char probe;
    iovec piov{&probe, 1};
    msghdr pmsg{};
    pmsg.msg_iov = &piov;
    pmsg.msg_iovlen = 1;
    ssize_t len;
    do {
      len = ::recvmsg(sock, &pmsg, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    } while (len < 0 && errno == EINTR);
    if (len >= 0 && static_cast<size_t>(len) < want) want = static_cast<size_t>(len) + 1;
  }
  std::vector<char> buf(want);
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for several fds so that extra ones are received (and closed), never leaked.
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * (kMaxPassedFds + 8))] = {};
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return make_error(Code::kAgain, "would block");
    return errno_error(Code::kIo, "recv");
  }
  size_t received = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      received += count;
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (!m.fd && max_fds > 0) {
          m.fd.reset(fd);
        } else if (1 + m.more_fds.size() < max_fds) {
          m.more_fds.emplace_back(fd);
        } else {
          ::close(fd);
          m.extra_fds = true;
        }
      }
    } else {
      m.extra_fds = true;
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    // The kernel truncates the control data either because it did not fit cbuf (a sender
    // passing too many fds) or because it could not install an fd in this process (out
    // of descriptors): fewer fds than cbuf holds means the latter.
    if (received < kMaxPassedFds + 8) {
      m.fds_lost = true;
    } else {
      m.extra_fds = true;
    }
  }
  if (n == 0 && m.fd.get() < 0) {
    // A zero-length datagram on SEQPACKET is indistinguishable from EOF; treat as EOF.
    return make_error(Code::kEof, "peer closed");
  }
  if ((msg.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > max_size) {
    // Also covers a datagram that grew between peek and read (cannot happen) or a peek
    // that failed: whatever did not fit is reported as truncated.
    m.truncated = true;
    n = static_cast<ssize_t>(max_size);
  }
  m.payload.assign(buf.data(), static_cast<size_t>(n));
  return m;
}

}  // namespace nsproxy
