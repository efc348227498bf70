// The CNI plugin as a runtime runs it: BUILD/nsproxy with the CNI_* environment and a
// network config on stdin (run_plugin), and builders for those configs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "processes.h"

namespace nspit {

struct PluginResult {
  int exit_code = -1;
  nlohmann::json json;  // parsed stdout; null if stdout is not JSON
  std::string out;
  std::string err;
  Millis elapsed{0};
  bool timed_out = false;
  std::string describe() const;
  int cni_code() const;     // json["code"], or -1
  std::string msg() const;  // json["msg"] + " " + json["details"]
};

// CNI_* variables for a command; add or override with `extra`.
Env cni_env(const std::string& command, const std::string& container_id,
            const std::string& netns_path, const Env& extra = {});
// Runs BUILD/nsproxy with cni_env(...) and the config on stdin.
PluginResult run_plugin(const Env& env, const std::string& stdin_config, Millis timeout = 15000ms);

// {"listen":..,"upstream":..,"mode":..}
nlohmann::json listener(const std::string& listen, const std::string& upstream,
                        const std::string& mode = "tcp");
// A plugin config: {"cniVersion","name","type":"nsproxy","socket","timeoutMs","listeners"}.
nlohmann::json plugin_config(const std::string& network, const std::string& socket,
                             const nlohmann::json& listeners, int timeout_ms = 3000,
                             const std::string& cni_version = "1.0.0");

}  // namespace nspit
