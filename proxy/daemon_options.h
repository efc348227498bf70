// nsproxyd's command line: every flag, its default and its parsing.
#pragma once

#include <string>

#include "control_protocol.h"
#include "forward/proxy_config.h"
#include "log.h"

namespace nsproxy {

inline constexpr int kMaxWorkers = 256;

struct Options {
  std::string socket_path = kDefaultSocketPath;
  // Registrations name kernel objects that a reboot destroys: tmpfs, kept across daemon
  // restarts (RuntimeDirectoryPreserve=yes in the unit).
  std::string state_dir = "/run/nsproxy";
  bool fsync = false;  // fdatasync every journal change (for a state dir on disk)
  std::string access_log_path;
  std::string metrics_listen;  // "ip:port" in the host namespace; empty: off
  bool detach = false;         // fork; the parent exits once the child serves
  double reconcile_interval = 10;
  bool allow_host_netns = false;
  // Read an https listener's certificates again when their files change (inotify), not
  // only on SIGHUP.
  bool watch_certificates = true;
  bool takeover = false;
  double drain_timeout = 30;
  long allow_gid = -1;
  // Worker threads serving tenant connections; -1: one per online CPU. 0: none, the main
  // loop serves them itself (one thread in all).
  long workers = -1;
  LogLevel log_level = LogLevel::Info;
  LogFormat log_format = LogFormat::Text;
  ProxyConfig proxy;
};

// Returns 0 to go on, -1 to exit 0 (help, version), or an exit code (2: bad usage; the
// message is on stderr).
int parse_options(int argc, char** argv, Options* o);

}  // namespace nsproxy
