// Datagram transport for the control protocol over SOCK_SEQPACKET Unix sockets,
// with optional file descriptor passing (SCM_RIGHTS).
#pragma once

#include <string>
#include <string_view>

#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

struct Message {
  std::string payload;
  UniqueFd fd;            // the passed fd, if any (received with MSG_CMSG_CLOEXEC)
  bool truncated = false; // the datagram was larger than the receive limit
  bool extra_fds = false; // more than one fd (or other control data) was sent; extras closed
};

// A SOCK_SEQPACKET datagram must fit the sender's socket buffer: grows it for large
// messages (send_message calls this).
void ensure_send_buffer(int sock, size_t message_size);

// Sends one datagram. pass_fd < 0 sends no fd. Returns errno-based errors with code "io".
Status send_message(int sock, std::string_view payload, int pass_fd = -1);

// Receives one datagram of at most max_size bytes.
// Returns bytes-received semantics through Message; an orderly close yields an error
// with code "eof"; EAGAIN yields code "again".
Result<Message> recv_message(int sock, size_t max_size);

}  // namespace nsproxy
