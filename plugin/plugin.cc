#include "plugin.h"

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cni_config.h"
#include "cni_env.h"
#include "cni_error.h"
#include "cni_version.h"
#include "control_client.h"
#include "control_protocol.h"
#include "log.h"
#include "netns.h"
#include "unique_fd.h"

namespace nsproxy::cni {
namespace {

using Json = nlohmann::ordered_json;

// What a command prints on success ("" for nothing).
using Output = CniResult<std::string>;

AttachmentKey attachment_of(const PluginConfig& conf, const CniEnv& env) {
  return AttachmentKey{conf.name, env.container_id, env.ifname};
}

// A failure to talk to nsproxyd at all (as opposed to an error answer from it).
CniError transport_error(const PluginConfig& conf, const Error& error, int cni_code) {
  std::string msg;
  if (error.code == Code::kTimeout) {
    msg = "nsproxyd on " + conf.socket + " did not answer within " +
          std::to_string(conf.timeout.count()) + " ms";
  } else if (error.code == Code::kProtocol) {
    msg = "nsproxyd on " + conf.socket + " sent a reply that cannot be decoded";
  } else {
    msg = "nsproxyd not reachable on " + conf.socket;
  }
  return cni_error(cni_code, std::move(msg), error.message);
}

CniError daemon_error(const Error& error) {
  return cni_error(code::kDaemonError, error.message, std::string(code_name(error.code)));
}

CniResult<UniqueFd> open_container_netns(const std::string& path) {
  auto fd = open_netns(path);
  if (fd) return std::move(fd.value());
  int c = fd.error().code == Code::kNetnsOpenFailed ? code::kIoFailure : code::kInvalidEnvironment;
  return cni_error(c, "CNI_NETNS: " + fd.error().message, std::string(code_name(fd.error().code)));
}

// Config labels first, then the pod labels from CNI_ARGS: the runtime knows the pod
// better than a static network config, so CNI_ARGS wins on the same key.
CniResult<std::map<std::string, std::string>> merged_labels(const PluginConfig& conf,
                                                            const CniEnv& env) {
  auto args = parse_cni_args(env.args);
  if (!args) return args.error();
  std::map<std::string, std::string> labels = conf.labels;
  for (auto& [k, v] : args->labels) labels[k] = v;
  if (labels.size() > kMaxLabels) {
    return cni_error(code::kInvalidConfig, "labels: more than " + std::to_string(kMaxLabels) +
                                               " labels together with the pod labels of CNI_ARGS");
  }
  return labels;
}

// The result ADD prints: prevResult unchanged, or an empty result when there is none.
std::string add_result(const PluginConfig& conf) {
  Json result;
  if (conf.prev_result) {
    result = *conf.prev_result;
    // libcni reads a result's version from the result itself; a prevResult without one
    // would be taken for 0.1.0. That key is the only one we ever add.
    if (!result.contains("cniVersion")) result["cniVersion"] = conf.cni_version;
  } else {
    result["cniVersion"] = conf.cni_version;
    result["interfaces"] = Json::array();
    result["ips"] = Json::array();
    result["dns"] = Json::object();
  }
  return result.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ADD and CHECK send the same registration: the attachment, its namespace and listeners,
// labels, identity headers and limits.
Request registration_request(Op op, const PluginConfig& conf, const CniEnv& env,
                             std::map<std::string, std::string> labels) {
  Request req;
  req.op = op;
  req.attachment = attachment_of(conf, env);
  req.netns_path = env.netns;
  req.listeners = conf.listeners;
  req.labels = std::move(labels);
  req.headers = conf.headers;
  req.limits = conf.limits;
  return req;
}

Output cmd_add(const PluginConfig& conf, const CniEnv& env) {
  auto labels = merged_labels(conf, env);
  if (!labels) return labels.error();
  auto netns = open_container_netns(env.netns);
  if (!netns) return netns.error();

  Request req = registration_request(Op::Add, conf, env, std::move(*labels));
  auto reply = call_daemon(conf.socket, req, netns->get(), conf.timeout);
  if (!reply) return transport_error(conf, reply.error(), code::kTryAgainLater);
  if (!reply->ok) return daemon_error(reply->error);
  LOG_DEBUG("ADD %s: registered", req.attachment.display().c_str());
  return add_result(conf);
}

Output cmd_del(const PluginConfig& conf, const CniEnv& env) {
  Request req;
  req.op = Op::Del;
  req.attachment = attachment_of(conf, env);
  auto reply = call_daemon(conf.socket, req, -1, conf.timeout);
  if (!reply) {
    // DEL must not fail because the daemon is down: it reconciles its state at start.
    LOG_WARN("DEL %s: %s (%s); treating as deleted", req.attachment.display().c_str(),
             transport_error(conf, reply.error(), 0).msg.c_str(), reply.error().message.c_str());
    return std::string();
  }
  if (!reply->ok) {
    if (reply->error.code == Code::kNotFound) return std::string();
    return daemon_error(reply->error);
  }
  return std::string();
}

// CHECK came with spec 0.4.0, STATUS and GC with 1.1.0: a config of an older version
// gets code 1 (incompatible version) for them.
std::optional<CniError> version_gate(const PluginConfig& conf, const char* command,
                                     const char* since) {
  if (version_at_least(conf.cni_version, since)) return std::nullopt;
  return cni_error(code::kIncompatibleVersion,
                   std::string("config version does not allow ") + command,
                   "cniVersion " + conf.cni_version + " < " + since);
}

Output cmd_check(const PluginConfig& conf, const CniEnv& env) {
  if (auto e = version_gate(conf, "CHECK", "0.4.0")) return *e;
  auto labels = merged_labels(conf, env);
  if (!labels) return labels.error();
  auto netns = open_container_netns(env.netns);
  if (!netns) return netns.error();

  Request req = registration_request(Op::Check, conf, env, std::move(*labels));
  auto reply = call_daemon(conf.socket, req, netns->get(), conf.timeout);
  if (!reply) return transport_error(conf, reply.error(), code::kTryAgainLater);
  if (!reply->ok) return daemon_error(reply->error);
  return std::string();
}

Output cmd_status(const PluginConfig& conf) {
  if (auto e = version_gate(conf, "STATUS", "1.1.0")) return *e;
  Request req;
  req.op = Op::Status;
  auto reply = call_daemon(conf.socket, req, -1, conf.timeout);
  if (!reply) return transport_error(conf, reply.error(), code::kPluginNotAvailable);
  if (!reply->ok) return daemon_error(reply->error);
  return std::string();
}

Output cmd_gc(const PluginConfig& conf) {
  if (auto e = version_gate(conf, "GC", "1.1.0")) return *e;
  Request req;
  req.op = Op::Gc;
  req.attachment.network = conf.name;
  req.valid_attachments.reserve(conf.valid_attachments.size());
  for (const auto& a : conf.valid_attachments) {
    req.valid_attachments.push_back(AttachmentKey{conf.name, a.container_id, a.ifname});
  }
  // One request is one datagram; refuse what the daemon would refuse, with a reason.
  if (encode_request(req).size() > kMaxMessageSize) {
    return cni_error(code::kInternal,
                     "GC: " + std::to_string(req.valid_attachments.size()) +
                         " valid attachments do not fit in one control message of " +
                         std::to_string(kMaxMessageSize) + " bytes");
  }
  auto reply = call_daemon(conf.socket, req, -1, conf.timeout);
  if (!reply) return transport_error(conf, reply.error(), code::kTryAgainLater);
  if (!reply->ok) return daemon_error(reply->error);
  return std::string();
}

// VERSION answers in the config's cniVersion when stdin names a supported one.
std::string cmd_version(std::string_view stdin_text) {
  std::string version = kLatestVersion;
  Json j = Json::parse(stdin_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto it = j.find("cniVersion");
    if (it != j.end() && it->is_string()) version = it->get<std::string>();
  }
  return version_json(version);
}

Output dispatch(const EnvMap& env_map, std::string_view stdin_text, std::string* error_version) {
  auto command = parse_command(env_map);
  if (!command) return command.error();
  if (*command == Command::Version) return cmd_version(stdin_text);

  auto env = read_env(*command, env_map);
  if (!env) return env.error();
  auto conf = parse_config(stdin_text, *command, error_version);
  if (!conf) return conf.error();

  switch (*command) {
    case Command::Add:
      return cmd_add(*conf, *env);
    case Command::Del:
      return cmd_del(*conf, *env);
    case Command::Check:
      return cmd_check(*conf, *env);
    case Command::Status:
      return cmd_status(*conf);
    case Command::Gc:
      return cmd_gc(*conf);
    case Command::Version:
      break;
  }
  return cni_error(code::kInternal, "unhandled command");
}

}  // namespace

int run_plugin(const std::map<std::string, std::string>& env, std::string_view stdin_text,
               std::ostream& out) {
  std::string error_version = kLatestVersion;
  Output result = [&]() -> Output {
    try {
      return dispatch(env, stdin_text, &error_version);
    } catch (const std::exception& e) {  // e.g. std::bad_alloc; never an uncaught throw
      return cni_error(code::kInternal, std::string("internal error: ") + e.what());
    }
  }();
  if (result) {
    if (!result->empty()) out << *result << '\n';
    out.flush();
    return 0;
  }
  LOG_DEBUG("error %d: %s", result.error().code, result.error().msg.c_str());
  out << error_json(result.error(), error_version) << '\n';
  out.flush();
  return 1;
}

}  // namespace nsproxy::cni
