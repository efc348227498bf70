// The CNI plugin's dispatcher. It takes the environment, stdin and stdout as
// parameters so that tests can drive it with a fake environment.
//
// Stdout receives exactly one thing: the command's result (ADD: the prevResult,
// VERSION: the version object; DEL, CHECK, STATUS, GC: nothing), or on failure the CNI
// error JSON. Logs go to stderr.
//
// Error codes chosen where the spec leaves room (see cni_error.h for the numbers):
//   - CNI_NETNS missing on disk or not a network namespace: 4; other open failures: 5.
//   - nsproxyd unreachable, timed out, or undecodable reply: 11 for ADD, CHECK and GC,
//     50 for STATUS; msg names the socket path, details carry the cause.
//     DEL treats these as success (warning on stderr): the daemon reconciles at start.
//   - nsproxyd answered with an error: 100, msg is the daemon's message, details its
//     error code. DEL treats "not_found" as success.
//   - CHECK needs cniVersion >= 0.4.0, STATUS and GC need 1.1.0: otherwise 1.
#pragma once

#include <map>
#include <ostream>
#include <string>
#include <string_view>

namespace nsproxy::cni {

// Runs one CNI command. Returns the process exit code (0 or 1).
int run_plugin(const std::map<std::string, std::string>& env, std::string_view stdin_text,
               std::ostream& out);

}  // namespace nsproxy::cni
