// Datagram transport for the control protocol over SOCK_SEQPACKET Unix sockets,
// with optional file descriptor passing (SCM_RIGHTS).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

struct Message {
  std::string payload;
  UniqueFd fd;                     // the passed fd, if any (received with MSG_CMSG_CLOEXEC)
  std::vector<UniqueFd> more_fds;  // further fds, when the receiver allowed several
  bool truncated = false;          // the datagram was larger than the receive limit
  bool extra_fds = false;  // more than one fd (or other control data) was sent; extras closed
  bool fds_lost = false;   // fds were sent but the kernel could not install them all here:
                           // this process is out of file descriptors (EMFILE/ENFILE)
};

// A SOCK_SEQPACKET datagram must fit the sender's socket buffer: grows it for large
// messages (send_message calls this).
void ensure_send_buffer(int sock, size_t message_size);

// Sends one datagram. pass_fd < 0 sends no fd. Returns errno-based errors with code "io".
Status send_message(int sock, std::string_view payload, int pass_fd = -1);

// Receives one datagram of at most max_size bytes.
// Returns bytes-received semantics through Message; an orderly close yields an error
// with code "eof"; EAGAIN yields code "again".
// max_fds: how many fds to keep (fd, then more_fds); extras are closed and flagged.
Result<Message> recv_message(int sock, size_t max_size, size_t max_fds = 1);

// Up to kMaxPassedFds fds in one datagram (daemon handover: a namespace and its
// listening sockets).
constexpr size_t kMaxPassedFds = 64;
Status send_message_fds(int sock, std::string_view payload, const std::vector<int>& fds);

}  // namespace nsproxy
