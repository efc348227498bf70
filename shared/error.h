// Errors are values: a machine-readable code plus a human message. Result<T> holds
// either a value or an Error. No exceptions cross module boundaries.
#pragma once

#include <cerrno>
#include <cstring>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace nsproxy {

// What went wrong, for programs. A reply carries the code as its name (code_name(), the
// one table in error.cc), which is part of the control protocol: README lists them.
enum class Code {
  // Refusals of a request (the daemon's replies).
  kBadRequest,          // "bad_request": malformed, or a field out of bounds
  kUnsupportedVersion,  // "unsupported_version": protocol version not spoken
  kTooLarge,            // "too_large": request above the control protocol's size limit
  kNotFound,            // "not_found": no such registration
  kNetnsMismatch,       // "netns_mismatch": CHECK: registered for another namespace
  kNotNetns,            // "not_netns": the path is not a network namespace
  kHostNetns,           // "host_netns": the daemon's own namespace (--allow-host-netns)
  kListenerFailed,      // "listener_failed": a listener could not be made
  kNotServing,          // "not_serving": CHECK: registered but a listener is not accepting
  kLimit,               // "limit": --max-registrations reached
  kBusy,                // "busy": too many control clients at once
  kForbidden,           // "forbidden": the caller is not root
  kInternal,            // "internal": a bug or a failed journal write
  // A client's view (nsproxyctl, the plugin).
  kUnreachable,  // "unreachable": no daemon on the socket
  kTimeout,      // "timeout": the daemon did not answer in time
  kProtocol,     // "protocol": the reply could not be decoded
  kNoDaemon,     // "no_daemon": nothing to take over from
  // Inside a program (may reach a reply as the cause of kListenerFailed and the like).
  kAgain,            // "again": a non-blocking socket would block
  kEof,              // "eof": the peer closed the connection
  kIo,               // "io"
  kSocket,           // "socket": making, binding or listening on a socket
  kBadAddress,       // "bad_address"
  kLoopback,         // "loopback": bringing lo up or adding an address in a namespace
  kState,            // "state": the state directory or its journal
  kHandover,         // "handover": passing listeners to a new daemon
  kTakeover,         // "takeover"
  kProxyHeader,      // "proxy_header": a PROXY v2 header could not be made
  kMetrics,          // "metrics": the metrics endpoint
  kAccessLog,        // "access_log"
  kNetnsNotFound,    // "netns_not_found": no namespace at the path
  kNetnsOpenFailed,  // "netns_open_failed": the namespace could not be opened
  kUnknown,          // a name this program does not know (a newer daemon's)
};

// The code's name in the protocol, e.g. "bad_request".
std::string_view code_name(Code code);
// The code of a name; kUnknown for a name not in the table.
Code code_from_name(std::string_view name);
std::ostream& operator<<(std::ostream& out, Code code);  // its name (test output)

struct Error {
  Code code = Code::kInternal;
  std::string message;  // for people, e.g. "listen 127.0.0.1:8080 in /run/netns/x: ..."
};

inline Error make_error(Code code, std::string message) {
  return Error{code, std::move(message)};
}

// "<what>: <strerror(err)>"
inline Error errno_error(Code code, const std::string& what, int err = errno) {
  return Error{code, what + ": " + std::strerror(err)};
}

// E: the error type (Error here; the CNI plugin's CniError).
template <class T, class E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(E error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const E& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, E> v_;
};

// Result of an operation without a value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return !error_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

}  // namespace nsproxy
