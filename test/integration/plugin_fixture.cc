#include "plugin_fixture.h"

namespace nspit {

using nlohmann::json;

void PluginFixture::SetUp() {
  IntegrationTest::SetUp();
  if (IsSkipped()) return;
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxy-echo"}));
  daemon_ = std::make_unique<Daemon>(tmp_.path());
  ASSERT_TRUE(daemon_->start());
  echo_ = std::make_unique<EchoServer>("echo");
  ASSERT_TRUE(echo_->start());
  ns_ = std::make_unique<Netns>();
  ASSERT_TRUE(ns_->ok()) << ns_->error();
  network_ = unique_name();
  container_ = unique_name();
}

json PluginFixture::config(const json& listeners) const {
  return plugin_config(network_, daemon_->socket_path(), listeners);
}

json PluginFixture::echo_config(const std::string& listen) const {
  return config(json::array({listener(listen, echo_->address())}));
}

PluginResult PluginFixture::cni(const std::string& command, const json& cfg,
                                const std::string& netns_path, const std::string& container) const {
  return run_plugin(cni_env(command, container.empty() ? container_ : container, netns_path),
                    cfg.dump());
}

}  // namespace nspit
