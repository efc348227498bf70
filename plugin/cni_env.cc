#include "cni_env.h"

#include <cctype>
#include <utility>
#include <vector>

#include "ascii.h"
#include "control_protocol.h"

namespace nsproxy::cni {
namespace {

std::string lookup(const EnvMap& env, const char* name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
      ++i;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      n = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 2;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

// Label values travel to the daemon, which refuses control characters and long values.
// They travel as JSON strings: a value that is not UTF-8 would reach the daemon changed
// (each bad byte replaced by U+FFFD, 3 bytes, so even past the length limit).
std::string label_value_problem(std::string_view value) {
  if (value.size() > kMaxLabelValueLength) {
    return "longer than " + std::to_string(kMaxLabelValueLength) + " bytes";
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  }
  if (!valid_utf8(value)) return "is not valid UTF-8";
  return {};
}

}  // namespace

const char* command_name(Command command) {
  switch (command) {
    case Command::Add:
      return "ADD";
    case Command::Del:
      return "DEL";
    case Command::Check:
      return "CHECK";
    case Command::Status:
      return "STATUS";
    case Command::Gc:
      return "GC";
    case Command::Version:
      return "VERSION";
  }
  return "?";
}

CniResult<Command> parse_command(const EnvMap& env) {
  std::string text = lookup(env, "CNI_COMMAND");
  if (text.empty()) {
    return cni_error(code::kInvalidEnvironment, "required env variables [CNI_COMMAND] missing");
  }
  for (Command c : {Command::Add, Command::Del, Command::Check, Command::Status, Command::Gc,
                    Command::Version}) {
    if (text == command_name(c)) return c;
  }
  return cni_error(code::kInvalidEnvironment, "unknown CNI_COMMAND: " + text);
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength || !is_alnum(id[0])) return false;
  for (char c : id) {
    if (!(is_alnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

std::string interface_name_problem(std::string_view ifname) {
  if (ifname.empty()) return "interface name is empty";
  if (ifname.size() > 15) return "interface name is longer than 15 characters";
  if (ifname == "." || ifname == "..") return "interface name is . or ..";
  for (char c : ifname) {
    if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c))) {
      return "interface name contains / or : or whitespace characters";
    }
  }
  return {};
}

CniResult<CniEnv> read_env(Command command, const EnvMap& env) {
  CniEnv e;
  e.command = command;
  e.container_id = lookup(env, "CNI_CONTAINERID");
  e.netns = lookup(env, "CNI_NETNS");
  e.ifname = lookup(env, "CNI_IFNAME");
  e.path = lookup(env, "CNI_PATH");
  e.args = lookup(env, "CNI_ARGS");

  const bool keyed =
      command == Command::Add || command == Command::Check || command == Command::Del;
  const bool needs_netns = command == Command::Add || command == Command::Check;
  const bool needs_path = keyed || command == Command::Gc;

  std::vector<std::string> missing;
  if (keyed && e.container_id.empty()) missing.emplace_back("CNI_CONTAINERID");
  if (needs_netns && e.netns.empty()) missing.emplace_back("CNI_NETNS");
  if (keyed && e.ifname.empty()) missing.emplace_back("CNI_IFNAME");
  if (needs_path && e.path.empty()) missing.emplace_back("CNI_PATH");
  if (!missing.empty()) {
    std::string joined;
    for (const auto& m : missing) joined += (joined.empty() ? "" : ",") + m;
    return cni_error(code::kInvalidEnvironment, "required env variables [" + joined + "] missing");
  }

  if (keyed) {
    if (!valid_container_id(e.container_id)) {
      return cni_error(code::kInvalidEnvironment,
                       "CNI_CONTAINERID: invalid container id (an alphanumeric, then "
                       "[a-zA-Z0-9_.-], at most " +
                           std::to_string(kMaxIdLength) + " characters)",
                       e.container_id.substr(0, 300));
    }
    if (auto problem = interface_name_problem(e.ifname); !problem.empty()) {
      return cni_error(code::kInvalidEnvironment, "CNI_IFNAME: " + problem, e.ifname.substr(0, 64));
    }
  }
  if (!e.netns.empty() && e.netns.size() > kMaxPathLength) {
    return cni_error(code::kInvalidEnvironment,
                     "CNI_NETNS: path longer than " + std::to_string(kMaxPathLength) + " bytes");
  }
  return e;
}

CniResult<CniArgs> parse_cni_args(std::string_view text) {
  CniArgs out;
  std::vector<std::pair<std::string, std::string>> unknown;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(';', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view pair = text.substr(pos, end - pos);
    pos = end + 1;
    if (pair.empty()) continue;

    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return cni_error(
          code::kInvalidEnvironment,
          "CNI_ARGS: invalid pair \"" + std::string(pair.substr(0, 200)) + "\" (want KEY=VALUE)");
    }
    std::string key(pair.substr(0, eq));
    std::string value(pair.substr(eq + 1));

    const char* label = nullptr;
    if (key == "IgnoreUnknown") {
      std::string v = to_lower(value);
      if (v == "1" || v == "true") {
        out.ignore_unknown = true;
      } else if (v == "0" || v == "false") {
        out.ignore_unknown = false;
      } else {
        return cni_error(
            code::kInvalidEnvironment,
            "CNI_ARGS: IgnoreUnknown must be 1, 0, true or false, got \"" + value + "\"");
      }
    } else if (key == "K8S_POD_NAMESPACE") {
      label = "pod-namespace";
    } else if (key == "K8S_POD_NAME") {
      label = "pod-name";
    } else if (key == "K8S_POD_UID") {
      label = "pod-uid";
    } else if (key == "K8S_POD_INFRA_CONTAINER_ID") {
      out.infra_container_id = value;
    } else {
      unknown.emplace_back(std::move(key), std::move(value));
    }
    if (label != nullptr) {
      if (auto problem = label_value_problem(value); !problem.empty()) {
        return cni_error(code::kInvalidEnvironment, "CNI_ARGS: " + key + " " + problem);
      }
      out.labels[label] = value;
    }
  }
  // Checked after the loop: IgnoreUnknown may come after the unknown key.
  if (!unknown.empty() && !out.ignore_unknown) {
    return cni_error(code::kInvalidEnvironment, "CNI_ARGS: unknown key \"" +
                                                    unknown.front().first.substr(0, 200) +
                                                    "\" (set IgnoreUnknown=1 to allow it)");
  }
  return out;
}

}  // namespace nsproxy::cni
