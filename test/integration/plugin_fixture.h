// PluginFixture: what tests of the CNI plugin against a real daemon share: nsproxyd, an
// echo upstream (tcp "echo" mode), one tenant namespace, a network name and container id
// of their own, and the plugin run with a real CNI environment.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "bases.h"
#include "cni.h"
#include "daemon.h"
#include "namespaces.h"
#include "programs.h"
#include "scratch.h"

namespace nspit {

class PluginFixture : public IntegrationTest {
 protected:
  void SetUp() override;

  // A plugin config for this test's network and daemon with `listeners`; echo_config:
  // one tcp listener on `listen` forwarding to the echo upstream.
  nlohmann::json config(const nlohmann::json& listeners) const;
  nlohmann::json echo_config(const std::string& listen = "127.0.0.1:8080") const;

  // The plugin run for `command` (ADD, DEL, CHECK) with stdin `cfg`, for `container`
  // (default: this test's container id) in the namespace at `netns_path`.
  PluginResult cni(const std::string& command, const nlohmann::json& cfg,
                   const std::string& netns_path, const std::string& container = "") const;
  PluginResult add(const nlohmann::json& cfg, const std::string& netns_path,
                   const std::string& container = "") const {
    return cni("ADD", cfg, netns_path, container);
  }
  PluginResult del(const nlohmann::json& cfg, const std::string& netns_path,
                   const std::string& container = "") const {
    return cni("DEL", cfg, netns_path, container);
  }

  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::unique_ptr<Netns> ns_;
  std::string network_;
  std::string container_;
};

}  // namespace nspit
