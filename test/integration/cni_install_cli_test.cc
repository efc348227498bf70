// `nsproxyctl cni install|uninstall` as an operator or the agent image runs it: the real
// binary, a conflist that libcni (cnitool) then loads from the directory as a runtime
// loads its default network, a read-only configuration directory (a read-only bind mount
// in a private mount namespace: root ignores permission bits), and --watch under SIGTERM.
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kRefPlugins = "/usr/lib/cni";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> plugin_types(const std::string& path) {
  std::vector<std::string> types;
  json list = json::parse(slurp(path), nullptr, false);
  if (!list.is_object() || !list.contains("plugins")) return types;
  for (const auto& p : list["plugins"]) types.push_back(p.value("type", ""));
  return types;
}

// A node's directories: conf_dir_ (net.d) and bin_dir_ (bridge and host-local from
// Debian's containernetworking-plugins, as a node has them).
class CniInstallCliTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyctl", "nsproxy"}));
    conf_dir_ = tmp_.file("net.d");
    bin_dir_ = tmp_.file("bin");
    fs::create_directories(conf_dir_);
    fs::create_directories(bin_dir_);
    for (const char* p : {"bridge", "host-local"}) {
      fs::create_symlink(std::string(kRefPlugins) + "/" + p, bin_dir_ + "/" + p);
    }
  }

  // The primary network: bridge + host-local, as `cniVersion`.
  std::string write_bridge_conflist(const std::string& name = "10-bridge.conflist") {
    bridge_ = "nspbr" + short_token();
    network_ = "nspit-install-" + short_token();
    json conflist = {
        {"cniVersion", "1.0.0"},
        {"name", network_},
        {"plugins",
         json::array({{{"type", "bridge"},
                       {"bridge", bridge_},
                       {"isGateway", true},
                       {"ipam",
                        {{"type", "host-local"},
                         {"ranges", json::array({json::array({{{"subnet", "10.213.9.0/24"}}})})},
                         {"dataDir", tmp_.file("ipam")}}}}})}};
    return tmp_.write("net.d/" + name, conflist.dump(2) + "\n");
  }

  std::string write_entry(const json& entry) { return tmp_.write("entry.json", entry.dump()); }

  std::vector<std::string> ctl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {binary("nsproxyctl"), "cni"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  std::vector<std::string> install_args(const std::string& entry_file) const {
    return ctl({"install", "--cni-conf-dir", conf_dir_, "--cni-bin-dir", bin_dir_,
                "--plugin-binary", binary("nsproxy"), "--plugin-config", entry_file});
  }
  std::vector<std::string> uninstall_args() const {
    return ctl({"uninstall", "--cni-conf-dir", conf_dir_, "--cni-bin-dir", bin_dir_});
  }

  // argv run with conf_dir_ mounted read-only, in a mount namespace of its own.
  ProcessResult run_with_read_only_conf_dir(const std::vector<std::string>& argv) {
    std::string command = "mount --bind -o ro '" + conf_dir_ + "' '" + conf_dir_ + "' && exec";
    for (const auto& a : argv) command += " '" + a + "'";
    return run({"unshare", "--mount", "--propagation", "private", "sh", "-c", command}, 20000ms);
  }

  TempDir tmp_;
  std::string conf_dir_;
  std::string bin_dir_;
  std::string bridge_;
  std::string network_;
};

TEST_F(CniInstallCliTest, UsageErrorsExit2AndBadEntriesExit1) {
  write_bridge_conflist();
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    const char* says;
  };
  const std::string good_entry =
      write_entry({{"listeners", json::array({listener(kListen, "127.0.0.1:1")})}});
  const std::vector<Case> cases = {
      {{}, 2, "missing subcommand"},
      {{"frobnicate"}, 2, "unknown subcommand \"frobnicate\""},
      {{"install", "--plugin-config", good_entry}, 2, "--plugin-binary is required"},
      {{"install", "--plugin-binary", binary("nsproxy")}, 2, "--plugin-config is required"},
      {{"install", "--wait", "soon"}, 2, "--wait: expected seconds"},
      {{"uninstall", "--watch"}, 2, "--watch does not apply to uninstall"},
      {{"uninstall", "extra"}, 2, "unexpected argument \"extra\""},
      {{"install", "--cni-conf-dir", conf_dir_, "--cni-bin-dir", bin_dir_, "--plugin-binary",
        binary("nsproxy"), "--plugin-config", tmp_.write("bad.json", "{\"listeners\":")},
       1,
       "bad.json: not JSON"},
      {{"install", "--cni-conf-dir", conf_dir_, "--cni-bin-dir", bin_dir_, "--plugin-binary",
        binary("nsproxy"), "--plugin-config", tmp_.file("missing.json")},
       1,
       "missing.json: No such file"},
      {{"install", "--cni-conf-dir", tmp_.file("nowhere"), "--cni-bin-dir", bin_dir_,
        "--plugin-binary", binary("nsproxy"), "--plugin-config", good_entry},
       1,
       "cannot watch"},
  };
  const std::string before = slurp(conf_dir_ + "/10-bridge.conflist");
  for (const auto& c : cases) {
    auto r = run(ctl(c.args));
    EXPECT_EQ(r.exit_code, c.exit_code) << r.describe();
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.describe();
  }
  EXPECT_EQ(slurp(conf_dir_ + "/10-bridge.conflist"), before);
  EXPECT_FALSE(fs::exists(bin_dir_ + "/nsproxy"));
}

// A runtime loading the directory (libcni, through cnitool given the directory) runs the
// installed chain: the tenant is registered under the network's name and reaches the
// upstream; after uninstall the same ADD runs the bridge alone and registers nothing.
TEST_F(CniInstallCliTest, RuntimeRunsTheInstalledChainAndNotAfterUninstall) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo", "cnitool"}));
  Netns host;
  ASSERT_TRUE(host.ok()) << host.error();
  Netns tenant;
  ASSERT_TRUE(tenant.ok()) << tenant.error();
  Daemon daemon(tmp_.path(), host.exec_prefix());
  ASSERT_TRUE(daemon.start());
  EchoServer echo("echo", host.exec_prefix());
  ASSERT_TRUE(echo.start());

  const std::string primary = write_bridge_conflist();
  const std::string original = slurp(primary);
  tmp_.write("net.d/00-half-written.conflist", "{\"name\":\"x\",\"plugins\":[");
  const std::string entry =
      write_entry({{"socket", daemon.socket_path()},
                   {"listeners", json::array({listener(kListen, echo.address())})},
                   {"labels", {{"installed-by", "nsproxyctl"}}}});
  auto installed = run(install_args(entry));
  ASSERT_EQ(installed.exit_code, 0) << installed.describe();
  EXPECT_NE(installed.out.find("installed nsproxy in " + primary), std::string::npos)
      << installed.describe();
  EXPECT_NE(installed.err.find("skipped 00-half-written.conflist: not JSON"), std::string::npos)
      << installed.describe();
  EXPECT_EQ(plugin_types(primary), (std::vector<std::string>{"bridge", "nsproxy"}));

  const std::string container = unique_name();
  auto cnitool = [&](const std::string& command) {
    std::vector<std::string> argv = host.exec_prefix();
    argv.insert(argv.end(), {binary("cnitool"), "--cni-path", bin_dir_, "--cache-dir",
                             tmp_.file("cache"), "--container-id", container, "--ifname", "eth0",
                             command, conf_dir_, tenant.path()});
    return run(argv, 30000ms);
  };
  auto add = cnitool("add");
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto regs = daemon.registrations_with_id(container);
  ASSERT_EQ(regs.size(), 1u) << daemon.list().dump(2);
  EXPECT_EQ(regs[0]["attachment"].value("network", ""), network_);
  EXPECT_EQ(regs[0].value("labels", json::object()).value("installed-by", ""), "nsproxyctl");
  auto got = roundtrip_in_netns(tenant.path(), kListen, "through the installed conflist");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "through the installed conflist");
  auto del = cnitool("del");
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_TRUE(daemon.registrations_with_id(container).empty()) << daemon.list().dump(2);

  auto removed = run(uninstall_args());
  ASSERT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_NE(removed.out.find("10-bridge.conflist: nsproxy entry removed"), std::string::npos)
      << removed.describe();
  EXPECT_NE(removed.out.find("removed " + bin_dir_ + "/nsproxy"), std::string::npos)
      << removed.describe();
  EXPECT_FALSE(fs::exists(bin_dir_ + "/nsproxy"));
  EXPECT_EQ(json::parse(slurp(primary)), json::parse(original));

  auto add_again = cnitool("add");
  ASSERT_EQ(add_again.exit_code, 0) << add_again.describe();
  EXPECT_TRUE(daemon.registrations_with_id(container).empty()) << daemon.list().dump(2);
  EXPECT_EQ(cnitool("del").exit_code, 0);
}

// A read-only configuration directory: install fails naming it and changes nothing there;
// uninstall fails too and leaves the binary, since the conflist still names it.
TEST_F(CniInstallCliTest, ReadOnlyConfDirNothingHalfDone) {
  const std::string primary = write_bridge_conflist();
  const std::string original = slurp(primary);
  const std::string entry =
      write_entry({{"listeners", json::array({listener(kListen, "127.0.0.1:1")})}});

  auto ro_install = run_with_read_only_conf_dir(install_args(entry));
  EXPECT_EQ(ro_install.exit_code, 1) << ro_install.describe();
  EXPECT_NE(ro_install.err.find("cannot write in " + conf_dir_), std::string::npos)
      << ro_install.describe();
  EXPECT_NE(ro_install.err.find("Read-only file system"), std::string::npos)
      << ro_install.describe();
  EXPECT_EQ(slurp(primary), original);

  auto installed = run(install_args(entry));
  ASSERT_EQ(installed.exit_code, 0) << installed.describe();
  const std::string with_entry = slurp(primary);

  auto ro_uninstall = run_with_read_only_conf_dir(uninstall_args());
  EXPECT_EQ(ro_uninstall.exit_code, 1) << ro_uninstall.describe();
  EXPECT_NE(ro_uninstall.err.find("the plugin binary stays in " + bin_dir_), std::string::npos)
      << ro_uninstall.describe();
  EXPECT_TRUE(fs::exists(bin_dir_ + "/nsproxy")) << "a conflist still names the plugin";
  EXPECT_EQ(slurp(primary), with_entry);

  auto removed = run(uninstall_args());
  EXPECT_EQ(removed.exit_code, 0) << removed.describe();
  EXPECT_EQ(json::parse(slurp(primary)), json::parse(original));
  EXPECT_FALSE(fs::exists(bin_dir_ + "/nsproxy"));
}

// --watch: waits for the primary CNI's first file, puts the entry back when the primary
// CNI rewrites its file without it, and on SIGTERM exits 0 leaving the entry installed
// (uninstalling is the agent's decision, not the watcher's).
TEST_F(CniInstallCliTest, WatchWaitsRepairsAndStopsOnSigterm) {
  const std::string entry =
      write_entry({{"listeners", json::array({listener(kListen, "127.0.0.1:1")})}});
  std::vector<std::string> argv = install_args(entry);
  argv.insert(argv.end(), {"--wait", "60", "--watch"});
  Process watcher(argv);
  ASSERT_TRUE(watcher.started()) << watcher.start_error();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(watcher.running()) << "waits for a configuration: " << watcher.err();

  const std::string primary = write_bridge_conflist();
  const std::string original = slurp(primary);
  ASSERT_TRUE(watcher.wait_for_line("installed nsproxy in " + primary, 10000ms)) << watcher.err();
  EXPECT_EQ(plugin_types(primary), (std::vector<std::string>{"bridge", "nsproxy"}));

  tmp_.write("net.d/.rewrite.tmp", original);
  ASSERT_EQ(::rename(tmp_.file("net.d/.rewrite.tmp").c_str(), primary.c_str()), 0);
  EXPECT_TRUE(wait_until([&] { return plugin_types(primary).size() == 2; }, 10000ms))
      << watcher.err();
  EXPECT_EQ(plugin_types(primary), (std::vector<std::string>{"bridge", "nsproxy"}));

  watcher.signal(SIGTERM);
  auto code = watcher.wait(10000ms);
  ASSERT_TRUE(code.has_value()) << "did not exit on SIGTERM";
  EXPECT_EQ(*code, 0) << watcher.err();
  EXPECT_NE(watcher.err().find("put back"), std::string::npos) << watcher.err();
  EXPECT_EQ(plugin_types(primary), (std::vector<std::string>{"bridge", "nsproxy"}));
  EXPECT_TRUE(fs::exists(bin_dir_ + "/nsproxy"));
}

}  // namespace
}  // namespace nspit
