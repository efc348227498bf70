// Blocking client for the control socket, used by the CNI plugin and nsproxyctl.
// Every call is bounded by a deadline: it never hangs its caller.
#pragma once

#include <chrono>
#include <string>

#include "control_protocol.h"
#include "error.h"

namespace nsproxy {

// Besides the daemon's own reply codes, call_daemon() fails with Code::kUnreachable (no
// daemon on the socket), kTimeout (no answer in time) or kProtocol (reply undecodable).

// Connects to socket_path, sends req (with netns_fd when >= 0), waits for the reply.
// Returns the decoded reply (which itself may be !ok), or a transport error.
Result<Reply> call_daemon(const std::string& socket_path, const Request& req, int netns_fd,
                          std::chrono::milliseconds timeout);

}  // namespace nsproxy
