// nsproxyd: one daemon per host that serves listeners inside tenants' network
// namespaces and forwards their connections to upstreams in the host namespace.
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "control_protocol.h"
#include "control_server.h"
#include "log.h"
#include "netns_listen.h"
#include "registry.h"
#include "worker.h"

namespace nsproxy {
namespace {

struct Options {
  std::string socket_path = kDefaultSocketPath;
  std::string state_dir = "/var/lib/nsproxy";
  LogLevel log_level = LogLevel::Info;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: nsproxyd [--socket PATH] [--state-dir DIR] [--log-level LEVEL]\n"
               "\n"
               "  --socket PATH      control socket (default %s)\n"
               "  --state-dir DIR    state directory (default /var/lib/nsproxy)\n"
               "  --log-level LEVEL  debug, info, warn or error (default info)\n"
               "  --help             show this help\n"
               "  --version          print the version\n",
               kDefaultSocketPath);
}

// Returns 0 to go on, or an exit code.
int parse_options(int argc, char** argv, Options* o) {
  static const option long_opts[] = {{"socket", required_argument, nullptr, 's'},
                                     {"state-dir", required_argument, nullptr, 'd'},
                                     {"log-level", required_argument, nullptr, 'l'},
                                     {"help", no_argument, nullptr, 'h'},
                                     {"version", no_argument, nullptr, 'V'},
                                     {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", long_opts, nullptr)) != -1) {
    switch (c) {
      case 's':
        o->socket_path = optarg;
        break;
      case 'd':
        o->state_dir = optarg;
        break;
      case 'l':
        if (!parse_log_level(optarg, &o->log_level)) {
          std::fprintf(stderr, "nsproxyd: --log-level: expected debug, info, warn or error, got \"%s\"\n", optarg);
          return 2;
        }
        break;
      case 'h':
        usage(stdout);
        return -1;
      case 'V':
        std::printf("nsproxyd 0.1.0\n");
        return -1;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc) {
    std::fprintf(stderr, "nsproxyd: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return 0;
}

// Tenants' connections need fds: take the hard limit (rule 4 of DESIGN.md).
void raise_fd_limit() {
  rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) < 0) LOG_WARN("cannot raise RLIMIT_NOFILE");
  }
}

void on_stop_signal(struct ev_loop* loop, ev_signal* w, int) {
  LOG_INFO("received %s; shutting down", strsignal(w->signum));
  ev_break(loop, EVBREAK_ALL);
}

int run(const Options& opts) {
  set_log_level(opts.log_level);
  ::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();

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

  Worker worker;
  worker.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
  Registry registry(&worker, &*factory);
  ControlServer control(worker.loop, [&registry](const Request& req, UniqueFd fd) {
    return registry.handle(req, std::move(fd));
  });
  if (Status s = control.listen(opts.socket_path); !s) {
    LOG_ERROR("%s", s.error().message.c_str());
    return 1;
  }

  ev_signal sigterm, sigint;
  ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
  ev_signal_init(&sigint, on_stop_signal, SIGINT);
  ev_signal_start(worker.loop, &sigterm);
  ev_signal_start(worker.loop, &sigint);
  ev_unref(worker.loop);  // signal watchers alone do not keep the loop alive
  ev_unref(worker.loop);

  LOG_INFO("nsproxyd 0.1.0 serving on %s (state in %s)", opts.socket_path.c_str(),
           opts.state_dir.c_str());
  ev_run(worker.loop, 0);

  // Stop accepting (tenants and control), then close everything.
  control.close();
  registry.clear();
  ev_ref(worker.loop);
  ev_ref(worker.loop);
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
