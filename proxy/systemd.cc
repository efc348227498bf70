#include "systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "log.h"

namespace nsproxy::systemd {

bool notify_enabled() {
  const char* s = std::getenv("NOTIFY_SOCKET");
  return s != nullptr && *s != '\0';
}

void notify_ready() {
  if (!notify_enabled()) return;
  if (int r = sd_pid_notifyf(0, 0, "MAINPID=%d\nREADY=1", static_cast<int>(::getpid())); r < 0) {
    LOG_WARN("sd_notify READY=1: %s", std::strerror(-r));
  }
}

void notify_status(const std::string& text) {
  if (!notify_enabled()) return;
  sd_notifyf(0, "STATUS=%s", text.c_str());
}

void notify_stopping() {
  if (!notify_enabled()) return;
  sd_notify(0, "STOPPING=1");
}

Result<UniqueFd> passed_control_socket(const std::string& path) {
  int n = sd_listen_fds(/*unset_environment=*/1);
  if (n < 0) {
    return make_error(Code::kSocket,
                      std::string("socket activation (LISTEN_FDS): ") + std::strerror(-n));
  }
  if (n == 0) return UniqueFd();
  if (n != 1) {
    for (int i = 0; i < n; ++i) ::close(SD_LISTEN_FDS_START + i);
    return make_error(Code::kSocket,
                      "socket activation passed " + std::to_string(n) +
                          " sockets; nsproxyd takes exactly one, the control socket");
  }
  UniqueFd fd(SD_LISTEN_FDS_START);
  if (sd_is_socket_unix(fd.get(), SOCK_SEQPACKET, /*listening=*/1, path.c_str(), 0) <= 0) {
    return make_error(Code::kSocket,
                      "the socket passed by socket activation (LISTEN_FDS) is not a "
                      "listening AF_UNIX SOCK_SEQPACKET socket bound to " +
                          path +
                          " (ListenSequentialPacket= in the .socket unit must name --socket)");
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0 ||
      ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) < 0) {
    return errno_error(Code::kSocket, "passed control socket");
  }
  return fd;
}

int Detach::fork_and_wait() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) {
    std::fprintf(stderr, "nsproxyd: --detach: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  UniqueFd r(p[0]), w(p[1]);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    std::fprintf(stderr, "nsproxyd: --detach: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    r.reset();
    ::setsid();
    ready_w_ = std::move(w);
    return -1;
  }
  w.reset();
  char c;
  ssize_t n;
  do {
    n = ::read(r.get(), &c, 1);
  } while (n < 0 && errno == EINTR);
  if (n == 1) return 0;  // the child serves; it runs on
  // The child closed the pipe without saying ready: it exited (or crashed).
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? 1 : WEXITSTATUS(status);
  return 1;
}

void Detach::ready() {
  if (!ready_w_) return;
  char c = 'r';
  (void)!::write(ready_w_.get(), &c, 1);
  ready_w_.reset();
}

}  // namespace nsproxy::systemd
