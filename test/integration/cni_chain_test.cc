// The plugin chained after Debian's reference plugins (bridge + host-local), driven by
// libcni through cnitool, the way a container runtime drives it. Everything happens in
// namespaces the test creates: a "host" namespace H runs nsproxyd, the upstream and the
// bridge; a tenant namespace T gets the veth and the nsproxy listener.
#include <filesystem>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kRefPlugins = "/usr/lib/cni";

class CniChainTest : public IntegrationTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxy-echo", "cnitool"}));
    for (const char* p : {"bridge", "host-local"}) {
      ASSERT_TRUE(std::filesystem::exists(std::string(kRefPlugins) + "/" + p))
          << "reference CNI plugin missing: " << kRefPlugins << "/" << p
          << " (Debian package containernetworking-plugins)";
    }
    // CNI_PATH holds exactly the plugins of the chain.
    plugin_dir_ = tmp_.file("cni-bin");
    std::filesystem::create_directories(plugin_dir_);
    std::filesystem::create_symlink(std::string(kRefPlugins) + "/bridge", plugin_dir_ + "/bridge");
    std::filesystem::create_symlink(std::string(kRefPlugins) + "/host-local",
                                    plugin_dir_ + "/host-local");
    std::filesystem::create_symlink(binary("nsproxy"), plugin_dir_ + "/nsproxy");

    host_ = std::make_unique<Netns>();
    ASSERT_TRUE(host_->ok()) << host_->error();
    tenant_ = std::make_unique<Netns>();
    ASSERT_TRUE(tenant_->ok()) << tenant_->error();
    daemon_ = std::make_unique<Daemon>(tmp_.path(), host_->exec_prefix());
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("echo", host_->exec_prefix());
    ASSERT_TRUE(echo_->start());
  }

  std::string write_conflist(const std::string& version) {
    bridge_ = "nspbr" + short_token();
    network_ = "nspit-chain-" + std::to_string(::getpid()) + "-" + short_token();
    json conflist = {
        {"cniVersion", version},
        {"name", network_},
        {"plugins",
         json::array({{{"type", "bridge"},
                       {"bridge", bridge_},
                       {"isGateway", true},
                       {"ipMasq", false},
                       {"ipam",
                        {{"type", "host-local"},
                         {"ranges", json::array({json::array({{{"subnet", "10.213.7.0/24"}}})})},
                         {"dataDir", tmp_.file("ipam")}}}},
                      {{"type", "nsproxy"},
                       {"socket", daemon_->socket_path()},
                       {"timeoutMs", 3000},
                       {"listeners", json::array({listener(kListen, echo_->address())})},
                       {"labels", {{"suite", "chain"}}}}})}};
    return tmp_.write("chain.conflist", conflist.dump(2));
  }

  ProcessResult cnitool(const std::string& command, const std::string& conflist) {
    std::vector<std::string> argv = host_->exec_prefix();
    argv.insert(argv.end(),
                {binary("cnitool"), "--cni-path", plugin_dir_, "--cache-dir", tmp_.file("cache"),
                 "--container-id", container_, "--ifname", "eth0", "--args",
                 "IgnoreUnknown=1;K8S_POD_NAMESPACE=nspit-pods;K8S_POD_NAME=pod-1", command,
                 conflist, tenant_->path()});
    return run(argv, 30000ms);
  }

  TempDir tmp_;
  std::string plugin_dir_;
  std::unique_ptr<Netns> host_;
  std::unique_ptr<Netns> tenant_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::string bridge_;
  std::string network_;
  std::string container_ = unique_name();
};

TEST_P(CniChainTest, BridgeThenNsproxyAddCheckDel) {
  const std::string version = GetParam();
  std::string conflist = write_conflist(version);

  // ADD: the bridge's result comes out unchanged through nsproxy.
  auto add = cnitool("add", conflist);
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto result = json::parse(add.out, nullptr, false);
  ASSERT_FALSE(result.is_discarded()) << "cnitool add printed no JSON: " << add.describe();
  EXPECT_EQ(result.value("cniVersion", ""), version) << add.out;
  std::string dumped = result.dump();
  EXPECT_NE(dumped.find(bridge_), std::string::npos) << "bridge interface missing: " << add.out;
  EXPECT_NE(dumped.find("\"eth0\""), std::string::npos) << "eth0 missing: " << add.out;
  EXPECT_NE(dumped.find("10.213.7."), std::string::npos) << "IP missing: " << add.out;
  ASSERT_TRUE(result.contains("ips") && result["ips"].is_array() && !result["ips"].empty())
      << add.out;

  // The tenant really got its interface, and the nsproxy listener serves it.
  auto addr = tenant_->exec("ip -o addr show dev eth0");
  EXPECT_EQ(addr.exit_code, 0) << addr.describe();
  EXPECT_NE(addr.out.find("10.213.7."), std::string::npos) << addr.describe();
  auto got = roundtrip_in_netns(tenant_->path(), kListen, "tenant to host " + version);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "tenant to host " + version);

  auto regs = daemon_->registrations_with_id(container_);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  EXPECT_EQ(regs[0]["attachment"].value("network", ""), network_);
  EXPECT_EQ(regs[0]["attachment"].value("ifname", ""), "eth0");
  std::string labels = regs[0].value("labels", json::object()).dump();
  EXPECT_NE(labels.find("chain"), std::string::npos) << labels;
  EXPECT_NE(labels.find("nspit-pods"), std::string::npos) << labels;
  EXPECT_NE(labels.find("pod-1"), std::string::npos) << labels;

  auto check = cnitool("check", conflist);
  EXPECT_EQ(check.exit_code, 0) << check.describe();

  auto del = cnitool("del", conflist);
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  auto c = connect_in_netns(tenant_->path(), kListen);
  EXPECT_FALSE(c.ok()) << "listener still accepting after DEL";
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);

  // CHECK after DEL fails (nothing registered any more) and DEL stays idempotent.
  auto check_after = cnitool("check", conflist);
  EXPECT_NE(check_after.exit_code, 0) << check_after.describe();
  auto del_again = cnitool("del", conflist);
  EXPECT_EQ(del_again.exit_code, 0) << del_again.describe();
}

TEST_P(CniChainTest, AddFailsCleanlyWhenDaemonIsDown) {
  const std::string version = GetParam();
  std::string conflist = write_conflist(version);
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();

  auto add = cnitool("add", conflist);
  EXPECT_NE(add.exit_code, 0) << add.describe();
  EXPECT_NE(add.err.find("CNI error 11"), std::string::npos) << add.describe();
  EXPECT_NE(add.err.find(daemon_->socket_path()), std::string::npos) << add.describe();
  // The plugin's connect failed at once ("not reachable"); it did not wait out its
  // timeoutMs ("did not answer within").
  EXPECT_NE(add.err.find("nsproxyd not reachable on " + daemon_->socket_path()), std::string::npos)
      << add.describe();
  EXPECT_EQ(add.err.find("did not answer"), std::string::npos) << add.describe();

  // The runtime cleans up with DEL: it must succeed with the daemon still down.
  auto del = cnitool("del", conflist);
  EXPECT_EQ(del.exit_code, 0) << del.describe();
}

INSTANTIATE_TEST_SUITE_P(CniVersions, CniChainTest, ::testing::Values("1.0.0", "0.4.0"),
                         [](const ::testing::TestParamInfo<const char*>& param_info) {
                           std::string name = std::string("v") + param_info.param;
                           for (auto& ch : name) {
                             if (ch == '.') ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace nspit
