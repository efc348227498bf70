#include "daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "address.h"
#include "control/handover.h"
#include "control/metrics.h"
#include "log.h"
#include "version.h"

namespace nsproxy {
namespace {

constexpr double kStatusSeconds = 1.0;
// From the first change seen in a certificate's directory to reading the files: a
// certificate and its key copied one after the other are then usually read together.
constexpr double kCertSettleSeconds = 1.0;

// The kernel's ceiling for RLIMIT_NOFILE (fs.nr_open); 0 when unreadable.
rlim_t nr_open() {
  FILE* f = std::fopen("/proc/sys/fs/nr_open", "re");
  if (f == nullptr) return 0;
  unsigned long long v = 0;
  if (std::fscanf(f, "%llu", &v) != 1) v = 0;
  std::fclose(f);
  return static_cast<rlim_t>(v);
}

// Tenants' connections and listeners need fds (rule 4 of DESIGN.md): take as many as the
// process may. With CAP_SYS_RESOURCE that is fs.nr_open, above the inherited hard limit;
// without it, the hard limit. Returns the limit in effect.
size_t raise_fd_limit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  const rlim_t inherited_soft = rl.rlim_cur;
  const rlim_t inherited_hard = rl.rlim_max;
  rlim_t ceiling = nr_open();
  if (rl.rlim_max != RLIM_INFINITY && ceiling > rl.rlim_max) {
    rlimit up{ceiling, ceiling};
    if (::setrlimit(RLIMIT_NOFILE, &up) == 0) rl = up;  // EPERM without CAP_SYS_RESOURCE
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit up{rl.rlim_max, rl.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &up) == 0) {
      rl = up;
    } else {
      LOG_WARN("cannot raise RLIMIT_NOFILE from %ju to its hard limit %ju: %s",
               static_cast<uintmax_t>(rl.rlim_cur), static_cast<uintmax_t>(rl.rlim_max),
               std::strerror(errno));
    }
  }
  if (rl.rlim_cur != inherited_soft) {
    LOG_INFO("file descriptor limit %ju (inherited %ju, hard %ju, fs.nr_open %ju)",
             static_cast<uintmax_t>(rl.rlim_cur), static_cast<uintmax_t>(inherited_soft),
             static_cast<uintmax_t>(inherited_hard), static_cast<uintmax_t>(ceiling));
  }
  return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : static_cast<size_t>(rl.rlim_cur);
}

Daemon* owner(void* data) {
  return static_cast<Daemon*>(data);
}

void stop_cb(struct ev_loop*, ev_signal* w, int) {
  owner(w->data)->on_stop_signal(w->signum);
}
void hangup_cb(struct ev_loop*, ev_signal* w, int) {
  owner(w->data)->on_hangup();
}
void reconcile_cb(struct ev_loop*, ev_timer* w, int) {
  owner(w->data)->on_reconcile();
}
void status_cb(struct ev_loop*, ev_timer* w, int) {
  owner(w->data)->on_status_timer();
}
void after_handover_cb(struct ev_loop*, ev_timer* w, int) {
  owner(w->data)->on_after_handover();
}
void drain_cb(struct ev_loop*, ev_timer* w, int) {
  owner(w->data)->on_drain_check();
}

}  // namespace

Daemon::Daemon(Options opts) : opts_(std::move(opts)) {
  ev_init(&reconcile_t_, reconcile_cb);
  ev_init(&status_t_, status_cb);
  ev_init(&after_handover_t_, after_handover_cb);
  ev_init(&drain_t_, drain_cb);
  ev_signal_init(&sigterm_, stop_cb, SIGTERM);
  ev_signal_init(&sigint_, stop_cb, SIGINT);
  ev_signal_init(&sighup_, hangup_cb, SIGHUP);
  reconcile_t_.data = status_t_.data = after_handover_t_.data = drain_t_.data = this;
  sigterm_.data = sigint_.data = sighup_.data = this;
}

Daemon::~Daemon() {
  if (loop_ != nullptr) {
    for (ev_timer* t : {&reconcile_t_, &status_t_, &after_handover_t_, &drain_t_}) {
      ev_timer_stop(loop_, t);
    }
    for (ev_signal* s : {&sigterm_, &sigint_, &sighup_}) ev_signal_stop(loop_, s);
  }
  // No worker thread runs from here on: what they served is closed from this thread.
  stop_workers();
  metrics_.reset();
  // Removes the socket file only if this daemon bound it (an inherited one, from systemd
  // or a takeover, stays; after a handover it was released already).
  if (control_) control_->close();
  if (registry_) registry_->clear();
  upstreams_.clear();
  for (auto& w : workers_) {
    if (w->loop != loop_) ev_loop_destroy(w->loop);
  }
  workers_.clear();
  acceptor_.reset();
  if (access_log_ != nullptr) std::fclose(access_log_);
}

void Daemon::start_workers(size_t threads) {
  acceptor_ = std::make_unique<Acceptor>(loop_, &opts_.proxy);
  for (size_t i = 0; i < std::max<size_t>(threads, 1); ++i) {
    auto w = std::make_unique<Worker>();
    w->config = &opts_.proxy;
    // Each thread its own loop (EVFLAG_NOSIGMASK: signals stay the main loop's).
    w->loop = threads == 0 ? loop_ : ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    upstreams_.push_back(std::make_unique<UpstreamPool>(w->loop, opts_.proxy.upstream_idle_max,
                                                        opts_.proxy.upstream_idle_timeout));
    w->upstreams = upstreams_.back().get();
    acceptor_->add_worker(w.get());
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    if (threads > 0) w->start();
  }
}

void Daemon::stop_workers() {
  for (auto& w : workers_) w->request_stop();
  for (auto& w : workers_) w->join();
  for (auto& w : workers_) w->drain();
}

Status Daemon::open_access_log() {
  if (opts_.access_log_path.empty()) return {};
  if (opts_.access_log_path == "-") {
    opts_.proxy.access_log = stdout;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    return {};
  }
  int fd = ::open(opts_.access_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0)
    return errno_error(Code::kAccessLog, "cannot open access log " + opts_.access_log_path);
  if (access_log_ == nullptr) {
    access_log_ = ::fdopen(fd, "a");
    if (access_log_ == nullptr) {
      ::close(fd);
      return errno_error(Code::kAccessLog, "cannot open access log " + opts_.access_log_path);
    }
    std::setvbuf(access_log_, nullptr, _IOLBF, 0);
    opts_.proxy.access_log = access_log_;
    return {};
  }
  // Reopening (SIGHUP): the workers keep writing to the same FILE, whose fd now names the
  // new file. Under the FILE's lock no line is half in the old file and half in the new.
  ::flockfile(access_log_);
  std::fflush(access_log_);
  int moved = ::dup3(fd, ::fileno(access_log_), O_CLOEXEC);
  int err = errno;
  ::funlockfile(access_log_);
  ::close(fd);
  if (moved < 0) {
    errno = err;
    return errno_error(Code::kAccessLog, "cannot reopen access log " + opts_.access_log_path);
  }
  return {};
}

// The control socket and, with --takeover, everything the running daemon holds.
Status Daemon::open_control_socket() {
  auto passed = systemd::passed_control_socket(opts_.socket_path);
  if (!passed) return passed.error();
  if (opts_.takeover) {
    auto taken =
        receive_handover(opts_.socket_path, registry_.get(), std::chrono::milliseconds(10000));
    if (taken) {
      control_->serve_inherited(std::move(*taken));
      took_over_ = true;
      return {};
    }
    if (taken.error().code != Code::kNoDaemon) {
      return make_error(Code::kTakeover, "takeover: " + taken.error().message);
    }
    LOG_INFO("takeover: no nsproxyd runs on %s; starting normally", opts_.socket_path.c_str());
  }
  if (*passed) {
    LOG_INFO("control socket %s passed by socket activation", opts_.socket_path.c_str());
    control_->serve_inherited(std::move(*passed));
    return {};
  }
  // Bind first: it refuses when another daemon serves this socket. Requests are only
  // served once the loop runs, after the saved registrations are back.
  return control_->listen(opts_.socket_path);
}

Status Daemon::open_state() {
  std::vector<SavedRegistration> saved;
  if (took_over_) {
    // The old daemon releases the state directory right after the handover.
    for (int i = 0;; ++i) {
      auto j = StateJournal::open(opts_.state_dir, &saved, opts_.fsync);
      if (j) {
        journal_.emplace(std::move(*j));
        break;
      }
      if (i == 99) return j.error();
      ::usleep(50 * 1000);
    }
    // The registrations taken over are the state; the journal only needs compacting to them.
    if (Status st = journal_->compact(registry_->saved()); !st) {
      LOG_ERROR("%s", st.error().message.c_str());
    }
    registry_->set_journal(&*journal_);
    return {};
  }
  auto opened = StateJournal::open(opts_.state_dir, &saved, opts_.fsync);
  if (!opened) return opened.error();
  journal_.emplace(std::move(*opened));
  // The journal first: restore re-creates without recording, then compacts the journal to
  // what it restored (so a registration dropped here does not come back next start).
  registry_->set_journal(&*journal_);
  auto restore_start = std::chrono::steady_clock::now();
  size_t restored = registry_->restore(std::move(saved));
  if (restored > 0) {
    LOG_INFO(
        "restored %zu registration(s) in %.1f ms", restored,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - restore_start)
            .count());
  }
  return {};
}

int Daemon::run() {
  if (opts_.detach) {
    int parent_exit = detach_.fork_and_wait();
    if (parent_exit >= 0) return parent_exit;
  }
  set_log_level(opts_.log_level);
  set_log_format(opts_.log_format);
  ::signal(SIGPIPE, SIG_IGN);
  size_t fd_limit = raise_fd_limit();
  if (opts_.proxy.max_connections == 0) {
    // Each tenant connection costs two fds (tenant and upstream); keep room for
    // listeners and control clients.
    opts_.proxy.max_connections = fd_limit > 512 ? (fd_limit - 256) / 2 : 128;
  }

  std::error_code ec;
  std::filesystem::create_directories(opts_.state_dir, ec);
  if (ec) {
    LOG_ERROR("cannot create state directory %s: %s", opts_.state_dir.c_str(),
              ec.message().c_str());
    return 1;
  }
  ::chmod(opts_.state_dir.c_str(), 0700);
  auto factory = NetnsListenerFactory::open_home();
  if (!factory) {
    LOG_ERROR("%s", factory.error().message.c_str());
    return 1;
  }
  factory_.emplace(std::move(*factory));
  factory_->set_backlog(opts_.proxy.listen_backlog);
  factory_->set_socket_buffer(opts_.proxy.socket_buffer);
  if (Status s = open_access_log(); !s) {
    LOG_ERROR("%s", s.error().message.c_str());
    return 1;
  }

  loop_ = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  size_t threads = opts_.workers >= 0 ? static_cast<size_t>(opts_.workers)
                                      : static_cast<size_t>(std::clamp(cpus, 1L, 256L));
  start_workers(threads);
  registry_ = std::make_unique<Registry>(acceptor_.get(), &*factory_);
  registry_->allow_host_netns(opts_.allow_host_netns);
  if (opts_.watch_certificates) {
    file_watch_ = std::make_unique<FileWatch>(
        loop_, kCertSettleSeconds, [this] { registry_->reload_tls(Registry::Reload::kChanged); });
    registry_->set_file_watch(file_watch_.get());
  }
  control_ = std::make_unique<ControlServer>(loop_, [this](const Request& req, UniqueFd fd) {
    return registry_->handle(req, std::move(fd));
  });
  if (opts_.allow_gid >= 0) control_->allow_gid(static_cast<gid_t>(opts_.allow_gid));

  if (Status s = open_control_socket(); !s) {
    LOG_ERROR("%s", s.error().message.c_str());
    return 1;
  }
  if (Status s = open_state(); !s) {
    LOG_ERROR("%s", s.error().message.c_str());
    return 1;
  }
  if (!opts_.metrics_listen.empty()) {
    auto addr = parse_address(opts_.metrics_listen, /*allow_unix=*/false);
    metrics_ = std::make_unique<MetricsServer>(
        loop_,
        [this]() -> MetricsServer::Producer {
          auto r = std::make_shared<MetricsRenderer>(
              snapshot_metrics(*registry_, *acceptor_, control_->request_counts()));
          return [r](std::string* out) { return r->next(out); };
        },
        [this] { return ready(); });
    if (Status s = addr ? metrics_->listen(*addr) : Status(addr.error()); !s) {
      LOG_ERROR("%s", s.error().message.c_str());
      return 1;
    }
  }
  control_->set_handover_handler([this](int client_fd) { start_handover(client_fd); });

  ev_timer_set(&reconcile_t_, opts_.reconcile_interval, opts_.reconcile_interval);
  ev_timer_start(loop_, &reconcile_t_);
  if (systemd::notify_enabled()) {
    ev_timer_set(&status_t_, kStatusSeconds, kStatusSeconds);
    ev_timer_start(loop_, &status_t_);
  }
  for (ev_signal* s : {&sigterm_, &sigint_, &sighup_}) ev_signal_start(loop_, s);

  LOG_INFO("nsproxyd %s serving on %s (state in %s%s, %zu worker thread%s)%s%s", kVersion,
           opts_.socket_path.c_str(), opts_.state_dir.c_str(), opts_.fsync ? ", fsync" : "",
           acceptor_->threads(), acceptor_->threads() == 1 ? "" : "s",
           metrics_ ? ", metrics on " : "", metrics_ ? opts_.metrics_listen.c_str() : "");
  announce_ready();
  // The loop ends with ev_break only: a stop signal, or the end of a drain.
  ev_run(loop_, 0);
  LOG_INFO("stopped");
  return 0;
}

void Daemon::announce_ready() {
  ready_ = true;
  systemd::notify_status(status_line());
  systemd::notify_ready();
  detach_.ready();
}

std::string Daemon::status_line() const {
  return std::to_string(registry_->size()) + " registrations, " +
         std::to_string(registry_->listener_count()) + " listeners, " +
         std::to_string(acceptor_->connections()) + " connections" +
         (draining_ ? " (handed over; draining)" : "");
}

void Daemon::on_status_timer() {
  std::string s = status_line();
  if (s == last_status_) return;
  last_status_ = s;
  systemd::notify_status(s);
}

void Daemon::on_stop_signal(int signum) {
  LOG_INFO("received %s; shutting down", strsignal(signum));
  // After a handover the service's main process is the new daemon: not a word to systemd.
  if (!draining_) systemd::notify_stopping();
  ev_break(loop_, EVBREAK_ALL);
}

void Daemon::on_hangup() {
  registry_->reload_tls(Registry::Reload::kAll);
  if (opts_.access_log_path.empty() || opts_.access_log_path == "-") {
    LOG_INFO("SIGHUP: no access log file to reopen");
    return;
  }
  if (Status s = open_access_log(); !s) {
    LOG_ERROR("SIGHUP: %s; still writing to the old file", s.error().message.c_str());
    return;
  }
  LOG_INFO("SIGHUP: reopened the access log %s", opts_.access_log_path.c_str());
}

// Handover to a newer daemon: send everything from the control client's callback, then
// (from a timer, outside that callback) stop accepting, release the state directory and
// drain.
void Daemon::start_handover(int client_fd) {
  if (draining_) return;
  if (Status s = send_handover(client_fd, *registry_, control_->listen_fd()); !s) {
    LOG_ERROR("handover failed: %s; still serving", s.error().message.c_str());
    return;
  }
  draining_ = true;
  ev_timer_set(&after_handover_t_, 0., 0.);
  ev_timer_start(loop_, &after_handover_t_);
}

void Daemon::on_after_handover() {
  control_->release();
  ev_timer_stop(loop_, &reconcile_t_);  // the new daemon reconciles now
  ev_timer_stop(loop_, &status_t_);
  if (metrics_) metrics_->stop_listening();  // the new daemon serves the metrics address
  registry_->stop_accepting_all();
  registry_->set_journal(nullptr);
  registry_->set_file_watch(nullptr);  // no new handshakes here: the new daemon reloads
  file_watch_.reset();
  journal_->close();
  LOG_INFO("handover done: serving %ju open connection(s) until they end (at most %g s)",
           static_cast<uintmax_t>(acceptor_->connections()), opts_.drain_timeout);
  drain_deadline_ = ev_now(loop_) + opts_.drain_timeout;
  ev_timer_set(&drain_t_, 0.05, 0.05);
  ev_timer_start(loop_, &drain_t_);
}

void Daemon::on_drain_check() {
  if (acceptor_->connections() == 0 || ev_now(loop_) >= drain_deadline_) {
    LOG_INFO("handover: drained (%ju connection(s) left); exiting",
             static_cast<uintmax_t>(acceptor_->connections()));
    ev_break(loop_, EVBREAK_ALL);
  }
}

}  // namespace nsproxy
