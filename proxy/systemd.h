// The daemon and its supervisor, through libsystemd: readiness and status
// (sd_notify, NOTIFY_SOCKET), socket activation of the control socket (sd_listen_fds,
// LISTEN_FDS/LISTEN_PID), and --detach (the ExecReload path of a takeover). Without
// NOTIFY_SOCKET or LISTEN_FDS every call here is a no-op, so nsproxyd runs the same by
// hand, under another supervisor, or under systemd.
#pragma once

#include <string>

#include "error.h"
#include "unique_fd.h"

namespace nsproxy::systemd {

// "MAINPID=<this pid>" and "READY=1". MAINPID matters after a takeover or --detach: the
// new process tells systemd that it is the service's main process now (needs
// NotifyAccess=all in the unit); for the process systemd started it changes nothing.
void notify_ready();
void notify_status(const std::string& text);  // "STATUS=<text>"
void notify_stopping();                       // "STOPPING=1"
bool notify_enabled();                        // NOTIFY_SOCKET is set

// The control socket passed by socket activation: an invalid fd when nothing was passed,
// an error (code "socket") when what was passed is not exactly one listening AF_UNIX
// SOCK_SEQPACKET socket bound to `path`. The fd is made non-blocking and close-on-exec;
// LISTEN_* are removed from the environment.
Result<UniqueFd> passed_control_socket(const std::string& path);

// --detach: forks. In the parent this waits until the child calls ready() on the
// returned handle (exit code 0) or exits first (its exit code, at least 1), and returns
// that code; in the child it returns -1 and a handle to signal readiness through.
class Detach {
 public:
  Detach() = default;
  // Returns the parent's exit code, or -1 in the child.
  int fork_and_wait();
  // In the child: the daemon serves; lets the parent exit 0. Idempotent.
  void ready();

 private:
  UniqueFd ready_w_;
};

}  // namespace nsproxy::systemd
