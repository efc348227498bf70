#include "cni_command.h"

#include <getopt.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cni_conflist.h"
#include "cni_install.h"
#include "file_io.h"
#include "log.h"
#include "unique_fd.h"

namespace nsproxy {
namespace {

using cni_install::InstallOptions;
using cni_install::InstallOutcome;

constexpr int kExitUsage = 2;
constexpr long kMaxWaitSeconds = 86400;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: nsproxyctl cni install --plugin-binary PATH --plugin-config FILE\n"
               "                              [--cni-conf-dir DIR] [--cni-bin-dir DIR]\n"
               "                              [--wait SECONDS] [--watch]\n"
               "       nsproxyctl cni uninstall [--cni-conf-dir DIR] [--cni-bin-dir DIR]\n"
               "\n"
               "install    append the nsproxy entry (--plugin-config: a JSON object, the entry\n"
               "           alone) to the node's network: the first valid .conf, .conflist or\n"
               "           .json in the conf dir in lexical order (a .conf becomes a .conflist),\n"
               "           and copy the plugin binary to the bin dir as `nsproxy`; a second\n"
               "           install changes nothing, an older nsproxy entry is replaced\n"
               "  --wait SECONDS  wait that long for a first configuration (default 0)\n"
               "  --watch         keep running: put the entry or the binary back whenever they\n"
               "                  go (the primary CNI rewrote its file); exits 0 on SIGTERM\n"
               "uninstall  remove every nsproxy entry (a converted .conf comes back as it was),\n"
               "           then the binary\n"
               "  --cni-conf-dir DIR  default /etc/cni/net.d\n"
               "  --cni-bin-dir DIR   default /opt/cni/bin\n");
}

[[noreturn]] void die_usage(const std::string& msg) {
  std::fprintf(stderr, "nsproxyctl: cni: %s\n", msg.c_str());
  std::fprintf(stderr, "run 'nsproxyctl cni --help' for usage\n");
  std::exit(kExitUsage);
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "nsproxyctl: %s\n", msg.c_str());
  return 1;
}

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}

void print_installed(const InstallOptions& o, const InstallOutcome& r) {
  for (const auto& s : r.skipped) std::fprintf(stderr, "nsproxyctl: skipped %s\n", s.c_str());
  if (!r.converted_from.empty()) {
    std::printf("converted %s/%s to %s\n", o.conf_dir.c_str(), r.converted_from.c_str(),
                r.file.c_str());
  }
  std::printf("%s %s (network \"%s\": %s)\n",
              r.conf_written ? "installed nsproxy in" : "already installed in", r.file.c_str(),
              r.network.c_str(), join(r.plugins).c_str());
  std::printf("%s/%s: %s\n", o.bin_dir.c_str(), cni_install::kBinaryName,
              r.binary_written ? "plugin binary copied" : "same plugin binary already there");
}

// Blocks SIGTERM and SIGINT and returns a signalfd that becomes readable on them.
UniqueFd stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

int cmd_install(const InstallOptions& base, const std::string& config_path, bool watch) {
  InstallOptions o = base;
  auto text = read_file(config_path, nullptr, size_t{1} << 20);
  if (!text) return fail("--plugin-config: " + text.error().message);
  auto entry = cni_install::entry_from_text(*text);
  if (!entry) return fail("--plugin-config " + config_path + ": " + entry.error().message);
  o.entry = std::move(*entry);
  // Before waiting: SIGTERM during --wait or --watch is a clean exit, not a kill.
  UniqueFd stop = watch ? stop_signals() : UniqueFd();
  if (watch && !stop) return fail(std::string("signalfd: ") + std::strerror(errno));
  auto r = cni_install::install(o);
  if (!r) return fail(r.error().message);
  print_installed(o, *r);
  if (!watch) return 0;
  std::fflush(stdout);
  LOG_INFO("watching %s and %s/%s", o.conf_dir.c_str(), o.bin_dir.c_str(),
           cni_install::kBinaryName);
  Status s = cni_install::watch(o, stop.get(), [&o](const Result<InstallOutcome>& again) {
    if (!again) {
      LOG_WARN("cannot install: %s (still watching)", again.error().message.c_str());
      return;
    }
    if (again->conf_written) {
      LOG_WARN("the nsproxy entry was missing or changed in %s: put back (network \"%s\": %s)",
               again->file.c_str(), again->network.c_str(), join(again->plugins).c_str());
    }
    if (again->binary_written) {
      LOG_WARN("%s/%s was missing or changed: copied again", o.bin_dir.c_str(),
               cni_install::kBinaryName);
    }
  });
  if (!s) return fail(s.error().message);
  LOG_INFO("stopped watching (signal); the nsproxy entry stays installed");
  return 0;
}

int cmd_uninstall(const InstallOptions& o) {
  auto r = cni_install::uninstall(o.conf_dir, o.bin_dir);
  if (!r) return fail(r.error().message);
  for (const auto& f : r->restored) {
    std::printf("%s/%s\n", o.conf_dir.c_str(), f.c_str());
  }
  if (r->restored.empty()) std::printf("no nsproxy entry in %s\n", o.conf_dir.c_str());
  if (r->binary_removed) {
    std::printf("removed %s/%s\n", o.bin_dir.c_str(), cni_install::kBinaryName);
  }
  return 0;
}

}  // namespace

int run_cni_command(int argc, char** argv) {
  if (argc < 2) die_usage("missing subcommand (install, uninstall)");
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    usage(stdout);
    return 0;
  }
  if (sub != "install" && sub != "uninstall") {
    die_usage("unknown subcommand \"" + sub + "\" (install, uninstall)");
  }
  static const option opts[] = {{"cni-conf-dir", required_argument, nullptr, 'c'},
                                {"cni-bin-dir", required_argument, nullptr, 'b'},
                                {"plugin-binary", required_argument, nullptr, 'p'},
                                {"plugin-config", required_argument, nullptr, 'f'},
                                {"wait", required_argument, nullptr, 'w'},
                                {"watch", no_argument, nullptr, 'W'},
                                {"help", no_argument, nullptr, 'h'},
                                {nullptr, 0, nullptr, 0}};
  InstallOptions o;
  o.conf_dir = "/etc/cni/net.d";
  o.bin_dir = "/opt/cni/bin";
  std::string config_path;
  bool watch = false;
  optind = 1;
  opterr = 0;
  int c;
  int index = -1;
  while ((c = getopt_long(argc - 1, argv + 1, "", opts, &index)) != -1) {
    // Options only install takes.
    if (sub == "uninstall" && (c == 'p' || c == 'f' || c == 'w' || c == 'W')) {
      die_usage("uninstall: --" + std::string(opts[index].name) +
                " does not apply to uninstall (uninstall takes --cni-conf-dir, --cni-bin-dir)");
    }
    index = -1;
    switch (c) {
      case 'c':
        o.conf_dir = optarg;
        break;
      case 'b':
        o.bin_dir = optarg;
        break;
      case 'p':
        o.plugin_binary = optarg;
        break;
      case 'f':
        config_path = optarg;
        break;
      case 'w': {
        char* end = nullptr;
        long v = std::strtol(optarg, &end, 10);
        if (*optarg == '\0' || *end != '\0' || v < 0 || v > kMaxWaitSeconds) {
          die_usage(std::string("--wait: expected seconds (0..") + std::to_string(kMaxWaitSeconds) +
                    "), got \"" + optarg + "\"");
        }
        o.wait = std::chrono::seconds(v);
        break;
      }
      case 'W':
        watch = true;
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        die_usage(sub + ": unknown or incomplete option \"" + argv[optind] + "\"");
    }
  }
  if (optind < argc - 1) die_usage(sub + ": unexpected argument \"" + argv[optind + 1] + "\"");
  for (std::string* dir : {&o.conf_dir, &o.bin_dir}) {
    while (dir->size() > 1 && dir->back() == '/') dir->pop_back();
    if (dir->empty()) die_usage("an empty directory name");
  }
  if (sub == "uninstall") return cmd_uninstall(o);
  if (o.plugin_binary.empty()) die_usage("install: --plugin-binary is required");
  if (config_path.empty()) die_usage("install: --plugin-config is required");
  return cmd_install(o, config_path, watch);
}

}  // namespace nsproxy
