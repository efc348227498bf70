#include "error.h"

#include <ostream>

namespace nsproxy {
namespace {

struct Name {
  Code code;
  std::string_view name;
};

// The one table of code names: the control protocol's strings.
constexpr Name kNames[] = {
    {Code::kBadRequest, "bad_request"},
    {Code::kUnsupportedVersion, "unsupported_version"},
    {Code::kTooLarge, "too_large"},
    {Code::kNotFound, "not_found"},
    {Code::kNetnsMismatch, "netns_mismatch"},
    {Code::kNotNetns, "not_netns"},
    {Code::kHostNetns, "host_netns"},
    {Code::kListenerFailed, "listener_failed"},
    {Code::kNotServing, "not_serving"},
    {Code::kLimit, "limit"},
    {Code::kBusy, "busy"},
    {Code::kForbidden, "forbidden"},
    {Code::kInternal, "internal"},
    {Code::kUnreachable, "unreachable"},
    {Code::kTimeout, "timeout"},
    {Code::kProtocol, "protocol"},
    {Code::kNoDaemon, "no_daemon"},
    {Code::kAgain, "again"},
    {Code::kEof, "eof"},
    {Code::kIo, "io"},
    {Code::kSocket, "socket"},
    {Code::kBadAddress, "bad_address"},
    {Code::kLoopback, "loopback"},
    {Code::kState, "state"},
    {Code::kHandover, "handover"},
    {Code::kTakeover, "takeover"},
    {Code::kProxyHeader, "proxy_header"},
    {Code::kMetrics, "metrics"},
    {Code::kAccessLog, "access_log"},
    {Code::kNetnsNotFound, "netns_not_found"},
    {Code::kNetnsOpenFailed, "netns_open_failed"},
    {Code::kUnknown, "unknown"},
};

}  // namespace

std::string_view code_name(Code code) {
  for (const Name& n : kNames) {
    if (n.code == code) return n.name;
  }
  return "unknown";
}

Code code_from_name(std::string_view name) {
  for (const Name& n : kNames) {
    if (n.name == name) return n.code;
  }
  return Code::kUnknown;
}

std::ostream& operator<<(std::ostream& out, Code code) {
  return out << code_name(code);
}

}  // namespace nsproxy
