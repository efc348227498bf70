// The CNI environment: which command, the variables each command requires, and the
// CNI_ARGS key/value list. Every failure here is CNI error 4 (invalid environment
// variables) naming the variable.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "cni_error.h"

namespace nsproxy::cni {

using EnvMap = std::map<std::string, std::string>;

enum class Command { Add, Del, Check, Status, Gc, Version };
const char* command_name(Command command);  // "ADD", ...

// CNI_COMMAND: missing, empty or unknown -> code 4.
CniResult<Command> parse_command(const EnvMap& env);

struct CniEnv {
  Command command = Command::Version;
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string path;          // CNI_PATH (required by the spec; we exec nothing)
  std::string args;          // CNI_ARGS, unparsed
};

// Reads the variables `command` needs, as libcni's skel does (an empty value counts as
// missing; all missing ones are named in one message):
//   ADD, CHECK: CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH
//   DEL:        CNI_CONTAINERID, CNI_IFNAME, CNI_PATH (CNI_NETNS optional)
//   GC:         CNI_PATH
//   STATUS, VERSION: nothing beyond CNI_COMMAND
// For ADD, CHECK and DEL it validates the container id and the interface name.
CniResult<CniEnv> read_env(Command command, const EnvMap& env);

// "a1b2", "k8s_pod-1.x": an alphanumeric first, then [a-zA-Z0-9_.-]; at most kMaxIdLength.
bool valid_container_id(std::string_view id);
// Linux interface name rules: 1-15 bytes, not "." or "..", no '/', ':' or whitespace.
// Returns an empty string when valid, else the reason.
std::string interface_name_problem(std::string_view ifname);

struct CniArgs {
  bool ignore_unknown = false;
  std::string infra_container_id;             // K8S_POD_INFRA_CONTAINER_ID
  std::map<std::string, std::string> labels;  // pod-namespace, pod-name, pod-uid
};

// Parses CNI_ARGS "K=V;K2=V2". Empty segments (a trailing ';') are skipped. A segment
// without '=' or with an empty key is an error; the value is everything after the first
// '='. Known keys: IgnoreUnknown, K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID,
// K8S_POD_INFRA_CONTAINER_ID. Any other key is an error unless IgnoreUnknown is
// "1" or "true" (any case). Label values must satisfy the control protocol's bounds.
CniResult<CniArgs> parse_cni_args(std::string_view text);

}  // namespace nsproxy::cni
