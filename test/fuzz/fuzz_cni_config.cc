// libFuzzer target: the CNI plugin's input parsing on arbitrary bytes.
//
// The same bytes are fed to
//   - parse_config for every CNI command (the plugin config on stdin): decode_config
//     once, then parse_decoded_config per command (what parse_config(text) does),
//   - parse_cni_args(text) (the CNI_ARGS variable),
//   - run_plugin with CNI_COMMAND=VERSION and the bytes on stdin (no daemon contact:
//     VERSION never connects; no other command is run here).
//
// Properties checked (abort on violation), beyond "no crash, no ASan/UBSan report":
//   - config errors carry code 6 (not JSON / not an object: decoding), or 1 (version) or 7
//     (a field) after decoding;
//     CNI_ARGS errors carry code 4; every error message is non-empty;
//   - error_json() of every error never throws and starts with the cniVersion, that
//     numeric code and a "msg" string (the same error for several commands: once);
//   - what parse_config accepts for ADD, CHECK, DEL or GC, turned into the control
//     request the plugin would send, is accepted by the daemon's decode_request (a
//     config the plugin accepts must never be refused by the daemon as malformed);
//   - labels from an accepted CNI_ARGS are accepted by the daemon too;
//   - VERSION exits 0 and prints one object with "cniVersion" and "supportedVersions".
//
// No process, file or socket work per input (VERSION's run_plugin writes to a string
// stream); the JSON config is decoded once per input, not once per command.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cni_config.h"
#include "cni_env.h"
#include "cni_error.h"
#include "control_protocol.h"
#include "log.h"
#include "plugin.h"

namespace {

using namespace nsproxy;
using namespace nsproxy::cni;

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "fuzz_cni_config: %s\n  input:  %.*s\n  detail: %s\n", what,
               static_cast<int>(input.size()), input.data(), detail.c_str());
  std::abort();
}

// error_json(e, version) must start {"cniVersion":<version>,"code":<e.code>,"msg":"
// (ordered_json writes keys in insertion order). That it is well-formed JSON is the
// serializer's (nlohmann's dump, invalid UTF-8 replaced); re-parsing every error JSON
// here cost this target more than half of its speed and added coverage features of the
// harness's own parser, so the checks are on the text.
void check_error_json(const CniError& e, const std::string& version, std::string_view input) {
  if (e.msg.empty()) fail("CNI error without a message", input, std::to_string(e.code));
  std::string text = error_json(e, version);
  std::string prefix = "{\"cniVersion\":" + nlohmann::json(version).dump() +
                       ",\"code\":" + std::to_string(e.code) + ",\"msg\":\"";
  if (!std::string_view(text).starts_with(prefix)) {
    fail("error_json lost the version, the code or the msg", input, text);
  }
}

// The same error (code, msg, details, version) for several commands is checked once:
// error_json is a function of these alone.
struct CheckedErrors {
  std::vector<std::pair<CniError, std::string>> seen;
  void check(const CniError& e, const std::string& version, std::string_view input) {
    for (const auto& [s, v] : seen) {
      if (s.code == e.code && s.msg == e.msg && s.details == e.details && v == version) return;
    }
    check_error_json(e, version, input);
    seen.emplace_back(e, version);
  }
};

// The daemon must accept what the plugin would send it.
void check_daemon_accepts(const Request& req, std::string_view input, const char* what) {
  std::string encoded = encode_request(req);
  if (encoded.size() > kMaxMessageSize) return;  // the plugin refuses this itself (GC)
  auto decoded = decode_request(encoded);
  if (!decoded) {
    fail(what, input,
         std::string(code_name(decoded.error().code)) + ": " + decoded.error().message +
             "\n  request: " + encoded.substr(0, 4000));
  }
}

Request request_for(Command command, const PluginConfig& conf) {
  Request req;
  switch (command) {
    case Command::Add:
      req.op = Op::Add;
      break;
    case Command::Check:
      req.op = Op::Check;
      break;
    case Command::Del:
      req.op = Op::Del;
      break;
    case Command::Gc:
      req.op = Op::Gc;
      break;
    default:
      req.op = Op::Status;
      break;
  }
  if (command == Command::Gc) {
    req.attachment.network = conf.name;
    for (const auto& a : conf.valid_attachments) {
      req.valid_attachments.push_back(AttachmentKey{conf.name, a.container_id, a.ifname});
    }
    return req;
  }
  if (command == Command::Status) return req;
  req.attachment = AttachmentKey{conf.name, "fuzz-container", "eth0"};
  if (command == Command::Del) return req;
  req.netns_path = "/run/netns/fuzz";
  req.listeners = conf.listeners;
  req.labels = conf.labels;
  req.headers = conf.headers;
  req.limits = conf.limits;
  return req;
}

const std::map<std::string, std::string> kVersionEnv = {{"CNI_COMMAND", "VERSION"}};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_log_level(LogLevel::Error);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);

  // Decoded once: the JSON decoding does not depend on the command (parse_config(text) is
  // decode_config, then parse_decoded_config), and decoding it six times made this
  // target several times slower than the others.
  CheckedErrors errors;
  auto decoded = decode_config(input);
  if (!decoded) {
    if (decoded.error().code != code::kDecodingFailure) {
      fail("decode_config error with an unexpected code", input,
           std::to_string(decoded.error().code) + " " + decoded.error().msg);
    }
    errors.check(decoded.error(), "1.1.0", input);
  }
  for (Command command : {Command::Add, Command::Del, Command::Check, Command::Status, Command::Gc,
                          Command::Version}) {
    if (!decoded) break;  // one error for every command, checked above
    std::string version = "1.1.0";
    auto conf = parse_decoded_config(*decoded, command, &version);
    if (!conf) {
      int c = conf.error().code;
      if (c != code::kIncompatibleVersion && c != code::kInvalidConfig) {
        fail("parse_decoded_config error with an unexpected code", input,
             std::to_string(c) + " " + conf.error().msg);
      }
      errors.check(conf.error(), version, input);
      continue;
    }
    if (conf->cni_version.empty() || conf->name.empty() || conf->socket.empty() ||
        conf->socket[0] != '/' || conf->timeout.count() < 1 ||
        conf->timeout.count() > kMaxTimeoutMs) {
      fail("parse_config accepted an incomplete config", input, command_name(command));
    }
    if ((command == Command::Add || command == Command::Check) && conf->listeners.empty()) {
      fail("parse_config accepted ADD/CHECK without listeners", input, command_name(command));
    }
    if (command != Command::Status && command != Command::Version) {
      check_daemon_accepts(request_for(command, *conf), input,
                           "the daemon refuses a request built from an accepted config");
    }
  }

  auto args = parse_cni_args(input);
  if (!args) {
    if (args.error().code != code::kInvalidEnvironment) {
      fail("parse_cni_args error with an unexpected code", input,
           std::to_string(args.error().code) + " " + args.error().msg);
    }
    check_error_json(args.error(), "1.1.0", input);
  } else if (!args->labels.empty()) {
    Request req;
    req.op = Op::Add;
    req.attachment = AttachmentKey{"net", "fuzz-container", "eth0"};
    req.listeners.push_back(ListenerSpec{"127.0.0.1:8080", "127.0.0.1:18080"});
    req.labels = args->labels;
    check_daemon_accepts(req, input, "the daemon refuses labels from an accepted CNI_ARGS");
  }

  static std::ostringstream out;  // one stream for every input (no locale set-up each time)
  out.str("");
  out.clear();
  int rc = run_plugin(kVersionEnv, input, out);
  const std::string& printed = out.str();
  if (rc != 0) fail("VERSION failed", input, printed);
  // {"cniVersion":"...","supportedVersions":["..."...]} and a newline (ordered keys).
  std::string_view body(printed);
  if (!body.ends_with("]}\n") || !body.starts_with("{\"cniVersion\":\"") ||
      body.find(",\"supportedVersions\":[\"") == std::string_view::npos) {
    fail("VERSION printed no version object", input, printed);
  }
  return 0;
}
