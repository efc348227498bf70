// Upgrading nsproxyd without refusing tenants: the new daemon takes the running one's
// listening sockets (the same kernel sockets: connections waiting in their backlogs are
// accepted by the new daemon, none is refused), and the old one drains and exits.
//
//   new nsproxyd --takeover            old nsproxyd
//   connect to the control socket ---> {"version":1,"op":"handover"}
//                                 <--- per registration: {"registration":<add request>,
//                                      "dev":N,"ino":N}, fds [netns, listener...]
//                                 <--- {"done":true}, fd [control listening socket]
//                                      (the old daemon closed its journal first)
//   take everything over, lock the     stop accepting, serve open connections until
//   state directory, serve             they end (or --drain-timeout), exit 0
#pragma once

#include <chrono>
#include <string>

#include "control/registry.h"
#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

// Old daemon: streams the registrations and the control socket to the client on fd.
Status send_handover(int client_fd, const Registry& registry, int control_fd);

// New daemon: asks the daemon on socket_path for everything and takes it over into
// registry (Registry::take_over). Returns the control listening socket. Code::kNoDaemon when
// nothing answers on socket_path (start normally then).
Result<UniqueFd> receive_handover(const std::string& socket_path, Registry* registry,
                                  std::chrono::milliseconds timeout);

}  // namespace nsproxy
