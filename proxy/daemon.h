// nsproxyd as a whole: owns the main loop's parts (acceptor, registry, control socket,
// journal, metrics endpoint, timers and signal watchers) and the workers (a thread, loop
// and upstream pool each) as members, and runs the start-up sequence in the order
// DESIGN.md asks for:
//
//   1. (--detach) fork; the parent waits for the child's readiness
//   2. the control socket: taken over from a running daemon (--takeover), passed by
//      socket activation (LISTEN_FDS), or bound here; a second daemon is refused
//   3. the state journal; registrations restored (or taken over from the old daemon)
//   4. the metrics endpoint, if asked for
//   5. ready: READY=1 (sd_notify), /readyz 200, the --detach parent exits 0
//   6. the loop, until SIGTERM/SIGINT or the end of a drain after a handover
//
// Signals: SIGTERM/SIGINT stop (STOPPING=1), SIGHUP reads https certificates again and
// reopens --access-log. A change of a certificate file reads its set again by itself
// (file_watch_, kCertSettleSeconds after the first change seen).
#pragma once

#include <ev.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include "control/control_server.h"
#include "control/file_watch.h"
#include "control/metrics_server.h"
#include "control/netns_listen.h"
#include "control/registry.h"
#include "control/state_journal.h"
#include "daemon_options.h"
#include "forward/acceptor.h"
#include "forward/upstream_pool.h"
#include "forward/worker.h"
#include "systemd.h"

namespace nsproxy {

class Daemon {
 public:
  explicit Daemon(Options opts);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs the daemon; returns the process exit code.
  int run();

  // For the libev callbacks.
  void on_stop_signal(int signum);
  void on_hangup();
  void on_reconcile() { registry_->reconcile(); }
  void on_status_timer();
  void on_after_handover();
  void on_drain_check();

 private:
  bool ready() const { return ready_ && !draining_; }
  Status open_access_log();
  Status open_control_socket();
  Status open_state();
  void start_handover(int client_fd);
  void announce_ready();
  std::string status_line() const;
  // The workers (threads started) and the acceptor that hands them connections.
  void start_workers(size_t threads);
  void stop_workers();

  Options opts_;
  systemd::Detach detach_;
  FILE* access_log_ = nullptr;      // opts_.proxy.access_log points here (or at stdout)
  struct ev_loop* loop_ = nullptr;  // the main loop
  std::unique_ptr<Acceptor> acceptor_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<UpstreamPool>> upstreams_;  // one per worker
  std::optional<NetnsListenerFactory> factory_;
  std::unique_ptr<FileWatch> file_watch_;  // before registry_, which points at it
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<ControlServer> control_;
  std::optional<StateJournal> journal_;
  std::unique_ptr<MetricsServer> metrics_;
  bool took_over_ = false;  // registrations and control socket came from a daemon
  bool ready_ = false;
  bool draining_ = false;  // handed over to a newer daemon
  double drain_deadline_ = 0;
  std::string last_status_;
  ev_timer reconcile_t_, status_t_, after_handover_t_, drain_t_;
  ev_signal sigterm_, sigint_, sighup_;
};

}  // namespace nsproxy
