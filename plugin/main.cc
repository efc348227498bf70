// nsproxy: the CNI plugin. Reads the CNI environment and the config on stdin, does one
// round trip to nsproxyd, prints the result (or the CNI error) on stdout.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "cni_error.h"
#include "cni_version.h"
#include "log.h"
#include "plugin.h"
#include "version.h"

extern char** environ;

namespace {

// Runtimes hand the config on a pipe; a person may type VERSION at a terminal.
constexpr size_t kMaxStdin = 64 * 1024 * 1024;

bool read_stdin(std::string* out, std::string* error) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADF) return true;  // stdin closed: no config
      *error = std::string("error reading from stdin: ") + std::strerror(errno);
      return false;
    }
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxStdin) {
      *error = "stdin is larger than " + std::to_string(kMaxStdin) + " bytes";
      return false;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  nsproxy::set_log_prefix("nsproxy");
  // Run by a person rather than a runtime (runtimes pass no arguments).
  if (argc == 2 &&
      (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "--help") == 0)) {
    std::string specs;
    for (const std::string& v : nsproxy::cni::supported_versions()) {
      specs += (specs.empty() ? "" : ", ") + v;
    }
    std::printf("nsproxy CNI plugin %s (CNI spec versions %s)\n", nsproxy::kVersion, specs.c_str());
    if (argv[1][2] == 'h') {
      std::printf(
          "run by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|VERSION|STATUS|GC "
          "and the network configuration on stdin; see nsproxy(8)\n");
    }
    return 0;
  }
  if (const char* level = std::getenv("NSPROXY_LOG_LEVEL")) {
    nsproxy::LogLevel parsed;
    if (nsproxy::parse_log_level(level, &parsed)) nsproxy::set_log_level(parsed);
  }

  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq == nullptr) continue;
    env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }

  std::string input;
  auto cmd = env.find("CNI_COMMAND");
  bool skip_stdin = cmd != env.end() && cmd->second == "VERSION" && ::isatty(STDIN_FILENO);
  if (std::string error; !skip_stdin && !read_stdin(&input, &error)) {
    nsproxy::cni::CniError e = nsproxy::cni::cni_error(nsproxy::cni::code::kIoFailure, error);
    std::cout << nsproxy::cni::error_json(e, "1.1.0") << '\n';
    return 1;
  }
  return nsproxy::cni::run_plugin(env, input, std::cout);
}
