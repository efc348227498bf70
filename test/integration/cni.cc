#include "cni.h"

#include "programs.h"
#include "text.h"

namespace nspit {

using detail::tail;

std::string PluginResult::describe() const {
  std::string s = "exit code " + std::to_string(exit_code);
  if (timed_out) s += " (timed out, killed)";
  return s + ", " + std::to_string(elapsed.count()) + " ms\n--- stdout ---\n" + tail(out) +
         "\n--- stderr ---\n" + tail(err);
}

int PluginResult::cni_code() const {
  if (json.is_object() && json.contains("code") && json["code"].is_number_integer()) {
    return json["code"].get<int>();
  }
  return -1;
}

std::string PluginResult::msg() const {
  std::string s;
  if (json.is_object()) {
    if (json.contains("msg") && json["msg"].is_string()) s += json["msg"].get<std::string>();
    if (json.contains("details") && json["details"].is_string()) {
      s += " " + json["details"].get<std::string>();
    }
  }
  return s;
}

Env cni_env(const std::string& command, const std::string& container_id,
            const std::string& netns_path, const Env& extra) {
  Env env = {{"CNI_COMMAND", command},     {"CNI_CONTAINERID", container_id},
             {"CNI_NETNS", netns_path},    {"CNI_IFNAME", "eth0"},
             {"CNI_PATH", "/usr/lib/cni"}, {"CNI_ARGS", std::nullopt}};
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

PluginResult run_plugin(const Env& env, const std::string& stdin_config, Millis timeout) {
  auto r = run({binary("nsproxy")}, timeout, env, stdin_config);
  PluginResult p;
  p.exit_code = r.exit_code;
  p.out = r.out;
  p.err = r.err;
  p.elapsed = r.elapsed;
  p.timed_out = r.timed_out;
  p.json = nlohmann::json::parse(r.out, nullptr, false);
  if (p.json.is_discarded()) p.json = nullptr;
  return p;
}

nlohmann::json listener(const std::string& listen, const std::string& upstream,
                        const std::string& mode) {
  return {{"listen", listen}, {"upstream", upstream}, {"mode", mode}};
}

nlohmann::json plugin_config(const std::string& network, const std::string& socket,
                             const nlohmann::json& listeners, int timeout_ms,
                             const std::string& cni_version) {
  return {{"cniVersion", cni_version}, {"name", network},         {"type", "nsproxy"},
          {"socket", socket},          {"timeoutMs", timeout_ms}, {"listeners", listeners}};
}

}  // namespace nspit
