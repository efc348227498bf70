// CNI errors: the spec's numeric codes, and the one place that turns an error into the
// JSON a runtime reads from our stdout: {"cniVersion","code","msg","details"}.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "error.h"

namespace nsproxy::cni {

// Error codes from the CNI spec (1.0.0 / 1.1.0), plus ours (100 and up).
namespace code {
inline constexpr int kIncompatibleVersion = 1;
inline constexpr int kUnsupportedField = 2;
inline constexpr int kUnknownContainer = 3;
inline constexpr int kInvalidEnvironment = 4;
inline constexpr int kIoFailure = 5;
inline constexpr int kDecodingFailure = 6;
inline constexpr int kInvalidConfig = 7;
inline constexpr int kTryAgainLater = 11;
inline constexpr int kPluginNotAvailable = 50;
// Plugin-specific: nsproxyd answered with an error; details carry its error code.
inline constexpr int kDaemonError = 100;
inline constexpr int kInternal = 999;
}  // namespace code

struct CniError {
  int code = code::kInternal;
  std::string msg;
  std::string details;  // omitted from the JSON when empty (as libcni does)
};

inline CniError cni_error(int c, std::string msg, std::string details = {}) {
  return CniError{c, std::move(msg), std::move(details)};
}

// The error JSON, one line, no trailing newline. Never throws: invalid UTF-8 in
// messages (they may quote environment values) is replaced.
std::string error_json(const CniError& error, std::string_view cni_version);

// Either a value or a CniError.
template <class T>
using CniResult = Result<T, CniError>;

}  // namespace nsproxy::cni
