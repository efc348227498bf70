// nsproxyd: one daemon per host that serves listeners inside tenants' network
// namespaces and forwards their connections to upstreams in the host namespace.
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "control_protocol.h"
#include "control_server.h"
#include "log.h"
#include "netns_listen.h"
#include "handover.h"
#include "registry.h"
#include "state_journal.h"
#include "upstream_pool.h"
#include "version.h"
#include "worker.h"

namespace nsproxy {
namespace {

struct Options {
  std::string socket_path = kDefaultSocketPath;
  std::string state_dir = "/var/lib/nsproxy";
  std::string access_log_path;
  double reconcile_interval = 10;
  bool allow_host_netns = false;
  bool takeover = false;
  double drain_timeout = 30;
  long allow_gid = -1;
  LogLevel log_level = LogLevel::Info;
  ProxyConfig proxy;
};

void usage(FILE* out) {
  ProxyConfig d;
  std::fprintf(
      out,
      "usage: nsproxyd [OPTIONS]\n"
      "\n"
      "  --socket PATH                   control socket (default %s)\n"
      "  --state-dir DIR                 state directory (default /var/lib/nsproxy)\n"
      "  --log-level LEVEL               debug, info, warn or error (default info)\n"
      "  --access-log PATH               one JSON line per HTTP request (\"-\": stdout)\n"
      "  --reconcile-interval SECONDS    drop registrations whose namespace vanished (default 10)\n"
      "  --allow-gid GID                 also serve control clients of this primary group\n"
      "  --max-registrations N           refuse add beyond N registrations (default 65536)\n"
      "  --max-connections N             tenant connections over all tenants (default: from\n"
      "                                  RLIMIT_NOFILE, (limit - 256) / 2)\n"
      "  --allow-host-netns              allow registering nsproxyd's own network namespace\n"
      "  --takeover                      take the listening sockets over from the nsproxyd\n"
      "                                  running on --socket (upgrade without refusing\n"
      "                                  tenants); starts normally when none runs\n"
      "  --drain-timeout SECONDS         after a takeover, the old daemon serves its open\n"
      "                                  connections at most this long (default 30)\n"
      "  --tenant-header NAME            identity header (default %s)\n"
      "  --label-header-prefix PREFIX    label header prefix (default %s)\n"
      "  --connect-timeout SECONDS       upstream connect (default %g)\n"
      "  --head-timeout SECONDS          request head must arrive within (default %g)\n"
      "  --idle-timeout SECONDS          keep-alive idle between requests (default %g)\n"
      "  --response-timeout SECONDS      upstream response head (default %g)\n"
      "  --body-timeout SECONDS          body inactivity (default %g)\n"
      "  --max-head-size BYTES           request head limit, 431 beyond (default %zu)\n"
      "  --max-connections-per-tenant N  per registration; 503 beyond (default %zu)\n"
      "  --upstream-idle-max N           idle pooled connections per upstream (default %zu)\n"
      "  --upstream-idle-timeout SECONDS close pooled connections idle that long (default %g)\n"
      "  --help, --version\n",
      kDefaultSocketPath, d.tenant_header.c_str(), d.label_header_prefix.c_str(),
      d.connect_timeout, d.head_timeout, d.idle_timeout, d.response_timeout, d.body_timeout,
      d.max_head_size, d.max_connections_per_tenant, d.upstream_idle_max,
      d.upstream_idle_timeout);
}

bool parse_seconds(const char* flag, const char* text, double* out) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (*text == '\0' || *end != '\0' || !(v > 0) || v > 86400) {
    std::fprintf(stderr, "nsproxyd: %s: expected seconds (0 < s <= 86400), got \"%s\"\n", flag, text);
    return false;
  }
  *out = v;
  return true;
}

bool parse_count(const char* flag, const char* text, size_t min, size_t max, size_t* out) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (*text == '\0' || *text == '-' || *end != '\0' || v < min || v > max) {
    std::fprintf(stderr, "nsproxyd: %s: expected an integer %zu..%zu, got \"%s\"\n", flag, min,
                 max, text);
    return false;
  }
  *out = static_cast<size_t>(v);
  return true;
}

bool parse_header_flag(const char* flag, const char* text, std::string* out) {
  if (!valid_header_name(text)) {
    std::fprintf(stderr, "nsproxyd: %s: \"%s\" is not a valid header name\n", flag, text);
    return false;
  }
  *out = text;
  return true;
}

// Returns 0 to go on, -1 to exit 0 (help, version), or an exit code.
int parse_options(int argc, char** argv, Options* o) {
  enum {
    kSocket = 256, kStateDir, kLogLevel, kAccessLog, kTenantHeader, kLabelPrefix,
    kConnectTimeout, kHeadTimeout, kIdleTimeout, kResponseTimeout, kBodyTimeout,
    kMaxHead, kMaxConns, kIdleMax, kIdlePoolTimeout, kReconcile, kAllowGid, kAllowHost, kMaxRegs, kMaxAllConns, kTakeover, kDrain, kHelp, kShowVersion
  };
  static const option long_opts[] = {
      {"socket", required_argument, nullptr, kSocket},
      {"state-dir", required_argument, nullptr, kStateDir},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"access-log", required_argument, nullptr, kAccessLog},
      {"tenant-header", required_argument, nullptr, kTenantHeader},
      {"label-header-prefix", required_argument, nullptr, kLabelPrefix},
      {"connect-timeout", required_argument, nullptr, kConnectTimeout},
      {"head-timeout", required_argument, nullptr, kHeadTimeout},
      {"idle-timeout", required_argument, nullptr, kIdleTimeout},
      {"response-timeout", required_argument, nullptr, kResponseTimeout},
      {"body-timeout", required_argument, nullptr, kBodyTimeout},
      {"max-head-size", required_argument, nullptr, kMaxHead},
      {"max-connections-per-tenant", required_argument, nullptr, kMaxConns},
      {"upstream-idle-max", required_argument, nullptr, kIdleMax},
      {"upstream-idle-timeout", required_argument, nullptr, kIdlePoolTimeout},
      {"reconcile-interval", required_argument, nullptr, kReconcile},
      {"allow-gid", required_argument, nullptr, kAllowGid},
      {"max-registrations", required_argument, nullptr, kMaxRegs},
      {"takeover", no_argument, nullptr, kTakeover},
      {"drain-timeout", required_argument, nullptr, kDrain},
      {"max-connections", required_argument, nullptr, kMaxAllConns},
      {"allow-host-netns", no_argument, nullptr, kAllowHost},
      {"help", no_argument, nullptr, kHelp},
      {"version", no_argument, nullptr, kShowVersion},
      {nullptr, 0, nullptr, 0}};
  ProxyConfig& p = o->proxy;
  int c;
  while ((c = getopt_long(argc, argv, "", long_opts, nullptr)) != -1) {
    bool ok = true;
    switch (c) {
      case kSocket: o->socket_path = optarg; break;
      case kStateDir: o->state_dir = optarg; break;
      case kAccessLog: o->access_log_path = optarg; break;
      case kLogLevel:
        ok = parse_log_level(optarg, &o->log_level);
        if (!ok) std::fprintf(stderr, "nsproxyd: --log-level: expected debug, info, warn or error, got \"%s\"\n", optarg);
        break;
      case kTenantHeader: ok = parse_header_flag("--tenant-header", optarg, &p.tenant_header); break;
      case kLabelPrefix: ok = parse_header_flag("--label-header-prefix", optarg, &p.label_header_prefix); break;
      case kConnectTimeout: ok = parse_seconds("--connect-timeout", optarg, &p.connect_timeout); break;
      case kHeadTimeout: ok = parse_seconds("--head-timeout", optarg, &p.head_timeout); break;
      case kIdleTimeout: ok = parse_seconds("--idle-timeout", optarg, &p.idle_timeout); break;
      case kResponseTimeout: ok = parse_seconds("--response-timeout", optarg, &p.response_timeout); break;
      case kBodyTimeout: ok = parse_seconds("--body-timeout", optarg, &p.body_timeout); break;
      case kMaxHead: ok = parse_count("--max-head-size", optarg, 1024, 1 << 20, &p.max_head_size); break;
      case kMaxConns: ok = parse_count("--max-connections-per-tenant", optarg, 1, 1000000, &p.max_connections_per_tenant); break;
      case kIdleMax: ok = parse_count("--upstream-idle-max", optarg, 0, 100000, &p.upstream_idle_max); break;
      case kIdlePoolTimeout: ok = parse_seconds("--upstream-idle-timeout", optarg, &p.upstream_idle_timeout); break;
      case kReconcile: ok = parse_seconds("--reconcile-interval", optarg, &o->reconcile_interval); break;
      case kAllowGid: {
        size_t gid = 0;
        ok = parse_count("--allow-gid", optarg, 0, 4294967294u, &gid);
        o->allow_gid = static_cast<long>(gid);
        break;
      }
      case kAllowHost: o->allow_host_netns = true; break;
      case kTakeover: o->takeover = true; break;
      case kDrain: ok = parse_seconds("--drain-timeout", optarg, &o->drain_timeout); break;
      case kMaxRegs: ok = parse_count("--max-registrations", optarg, 1, 10000000, &p.max_registrations); break;
      case kMaxAllConns: ok = parse_count("--max-connections", optarg, 1, 100000000, &p.max_connections); break;
      case kHelp:
        usage(stdout);
        return -1;
      case kShowVersion:
        std::printf("nsproxyd %s\n", kVersion);
        return -1;
      default:
        usage(stderr);
        return 2;
    }
    if (!ok) return 2;
  }
  if (optind < argc) {
    std::fprintf(stderr, "nsproxyd: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return 0;
}

// Tenants' connections need fds: take the hard limit (rule 4 of DESIGN.md). Returns
// the limit in effect.
size_t raise_fd_limit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) < 0) {
      LOG_WARN("cannot raise RLIMIT_NOFILE");
      rl.rlim_cur = old;
    }
  }
  return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : static_cast<size_t>(rl.rlim_cur);
}

struct Drain {
  Worker* worker;
  ControlServer* control;
  Registry* registry;
  StateJournal* journal;
  double timeout;
  ev_timer after_handover;
  ev_timer check;
  bool started;
  double deadline;
  ev_timer* reconcile = nullptr;  // stopped: the new daemon reconciles now
};

void on_drain_check(struct ev_loop* loop, ev_timer* w, int) {
  auto* d = static_cast<Drain*>(w->data);
  if (d->worker->connections == 0 || ev_now(loop) >= d->deadline) {
    LOG_INFO("handover: drained (%ju connection(s) left); exiting",
             static_cast<uintmax_t>(d->worker->connections));
    ev_break(loop, EVBREAK_ALL);
  }
}

void on_after_handover(struct ev_loop* loop, ev_timer* w, int) {
  auto* d = static_cast<Drain*>(w->data);
  d->control->release();
  if (d->reconcile != nullptr && ev_is_active(d->reconcile)) {
    ev_ref(loop);  // it was unref'ed when started: keep the loop's count right
    ev_timer_stop(loop, d->reconcile);
  }
  d->registry->stop_accepting_all();
  d->registry->set_journal(nullptr);
  d->journal->close();
  LOG_INFO("handover done: serving %ju open connection(s) until they end (at most %g s)",
           static_cast<uintmax_t>(d->worker->connections), d->timeout);
  d->deadline = ev_now(loop) + d->timeout;
  ev_timer_set(&d->check, 0.05, 0.05);
  ev_timer_start(loop, &d->check);
}

void on_reconcile(struct ev_loop*, ev_timer* w, int) {
  static_cast<Registry*>(w->data)->reconcile();
}

void on_stop_signal(struct ev_loop* loop, ev_signal* w, int) {
  LOG_INFO("received %s; shutting down", strsignal(w->signum));
  ev_break(loop, EVBREAK_ALL);
}

int run(const Options& opts) {
  set_log_level(opts.log_level);
  ::signal(SIGPIPE, SIG_IGN);
  size_t fd_limit = raise_fd_limit();

  std::error_code ec;
  std::filesystem::create_directories(opts.state_dir, ec);
  if (ec) {
    LOG_ERROR("cannot create state directory %s: %s", opts.state_dir.c_str(), ec.message().c_str());
    return 1;
  }
  ::chmod(opts.state_dir.c_str(), 0700);

  auto factory = NetnsListenerFactory::open_home();
  if (!factory) {
    LOG_ERROR("%s", factory.error().message.c_str());
    return 1;
  }

  Options mutable_opts = opts;
  if (mutable_opts.proxy.max_connections == 0) {
    // Each tenant connection costs two fds (tenant and upstream); keep room for
    // listeners, control clients and namespace fds.
    mutable_opts.proxy.max_connections = fd_limit > 512 ? (fd_limit - 256) / 2 : 128;
  }
  if (!opts.access_log_path.empty()) {
    if (opts.access_log_path == "-") {
      mutable_opts.proxy.access_log = stdout;
    } else {
      mutable_opts.proxy.access_log = std::fopen(opts.access_log_path.c_str(), "ae");
      if (mutable_opts.proxy.access_log == nullptr) {
        LOG_ERROR("cannot open access log %s: %s", opts.access_log_path.c_str(), std::strerror(errno));
        return 1;
      }
    }
    std::setvbuf(mutable_opts.proxy.access_log, nullptr, _IOLBF, 0);
  }

  Worker worker;
  worker.config = &mutable_opts.proxy;
  worker.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  UpstreamPool upstreams(worker.loop, opts.proxy.upstream_idle_max, opts.proxy.upstream_idle_timeout);
  worker.upstreams = &upstreams;
  Registry registry(&worker, &*factory);
  ControlServer control(worker.loop, [&registry](const Request& req, UniqueFd fd) {
    return registry.handle(req, std::move(fd));
  });
  if (opts.allow_gid >= 0) control.allow_gid(static_cast<gid_t>(opts.allow_gid));
  registry.allow_host_netns(opts.allow_host_netns);
  UniqueFd taken_control;
  if (opts.takeover) {
    auto taken = receive_handover(opts.socket_path, &registry, std::chrono::milliseconds(10000));
    if (taken) {
      taken_control = std::move(*taken);
    } else if (taken.error().code != "no_daemon") {
      LOG_ERROR("takeover: %s", taken.error().message.c_str());
      return 1;
    } else {
      LOG_INFO("takeover: no nsproxyd runs on %s; starting normally", opts.socket_path.c_str());
    }
  }
  std::vector<SavedRegistration> saved;
  std::optional<StateJournal> journal;
  if (taken_control) {
    control.adopt(std::move(taken_control), opts.socket_path);
    // The old daemon releases the state directory right after the handover.
    for (int i = 0; i < 100 && !journal; ++i) {
      auto j = StateJournal::open(opts.state_dir, &saved);
      if (j) {
        journal.emplace(std::move(*j));
      } else if (i == 99) {
        LOG_ERROR("%s", j.error().message.c_str());
        return 1;
      } else {
        ::usleep(50 * 1000);
      }
    }
    // The adopted registrations are the state; the journal only needs compacting to them.
    if (Status st = journal->compact(registry.saved()); !st) {
      LOG_ERROR("%s", st.error().message.c_str());
    }
    registry.set_journal(&*journal);
  } else {
    // Bind first: it refuses when another daemon serves this socket. Requests are only
    // served once the loop runs, after the saved registrations are back.
    if (Status s = control.listen(opts.socket_path); !s) {
      LOG_ERROR("%s", s.error().message.c_str());
      return 1;
    }
    auto opened = StateJournal::open(opts.state_dir, &saved);
    if (!opened) {
      LOG_ERROR("%s", opened.error().message.c_str());
      return 1;
    }
    journal.emplace(std::move(*opened));
    auto restore_start = std::chrono::steady_clock::now();
    size_t restored = registry.restore(std::move(saved));
    registry.set_journal(&*journal);
    if (restored > 0) {
      LOG_INFO("restored %zu registration(s) in %.1f ms", restored,
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                         restore_start).count());
    }
  }

  // Handover to a newer daemon: send everything from the control client's callback,
  // then (from a timer, outside that callback) stop accepting, release the state
  // directory and drain.
  Drain drain{&worker, &control, &registry, &*journal, opts.drain_timeout, {}, {}, false, 0};
  ev_init(&drain.after_handover, on_after_handover);
  drain.after_handover.data = &drain;
  ev_init(&drain.check, on_drain_check);
  drain.check.data = &drain;
  control.set_handover_handler([&drain, &registry, &control](int client_fd) {
    if (drain.started) return;
    if (Status s = send_handover(client_fd, registry, control.listen_fd()); !s) {
      LOG_ERROR("handover failed: %s; still serving", s.error().message.c_str());
      return;
    }
    drain.started = true;
    ev_timer_set(&drain.after_handover, 0., 0.);
    ev_timer_start(drain.worker->loop, &drain.after_handover);
  });

  ev_timer reconcile_t;
  ev_timer_init(&reconcile_t, on_reconcile, opts.reconcile_interval, opts.reconcile_interval);
  reconcile_t.data = &registry;
  ev_timer_start(worker.loop, &reconcile_t);
  drain.reconcile = &reconcile_t;
  ev_unref(worker.loop);

  ev_signal sigterm, sigint;
  ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
  ev_signal_init(&sigint, on_stop_signal, SIGINT);
  ev_signal_start(worker.loop, &sigterm);
  ev_signal_start(worker.loop, &sigint);
  ev_unref(worker.loop);  // signal watchers alone do not keep the loop alive
  ev_unref(worker.loop);

  LOG_INFO("nsproxyd %s serving on %s (state in %s)", kVersion, opts.socket_path.c_str(),
           opts.state_dir.c_str());
  ev_run(worker.loop, 0);

  // Stop accepting (tenants and control), then close everything.
  ev_timer_stop(worker.loop, &drain.after_handover);
  ev_timer_stop(worker.loop, &drain.check);
  if (drain.started) {
    control.release();  // the socket file belongs to the new daemon
  } else {
    control.close();
  }
  registry.clear();
  ev_ref(worker.loop);
  ev_ref(worker.loop);
  ev_ref(worker.loop);
  ev_timer_stop(worker.loop, &reconcile_t);
  ev_signal_stop(worker.loop, &sigterm);
  ev_signal_stop(worker.loop, &sigint);
  LOG_INFO("stopped");
  return 0;
}

}  // namespace
}  // namespace nsproxy

int main(int argc, char** argv) {
  nsproxy::set_log_prefix("nsproxyd");
  nsproxy::Options opts;
  int rc = nsproxy::parse_options(argc, argv, &opts);
  if (rc != 0) return rc < 0 ? 0 : rc;
  return nsproxy::run(opts);
}
