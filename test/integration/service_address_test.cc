// A listener on a link-local service address (169.254.169.254:80, the metadata-service
// shape) that the tenant namespace does not have: with "addAddress" nsproxy adds the IP
// to the namespace's lo, and removes it again when the registration goes, but only if
// nsproxy added it (DESIGN, rule 5).
#include "fixture.h"
#include "plugin_fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kService = "169.254.169.254:80";

class ServiceAddressTest : public PluginFixture {
 protected:
  void SetUp() override {
    PluginFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyctl"}));
  }

  ProcessResult ctl(std::vector<std::string> args) const {
    std::vector<std::string> argv = {binary("nsproxyctl"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }

  // The addresses on lo inside the namespace, as `ip -o addr show dev lo` prints them.
  std::string lo_addresses() const {
    auto r = run({"ip", "-n", ns_->name(), "-o", "addr", "show", "dev", "lo"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return r.out;
  }
  bool lo_has(const std::string& cidr) const {
    return lo_addresses().find(" " + cidr + " ") != std::string::npos;
  }

  json service_listener(const std::string& listen = kService) const {
    json l = listener(listen, echo_->address(), "tcp");
    l["addAddress"] = true;
    return l;
  }
};

TEST_F(ServiceAddressTest, PluginAddAddsTheAddressToLoAndDelRemovesIt) {
  ASSERT_FALSE(lo_has("169.254.169.254/32")) << lo_addresses();
  const std::string network = unique_name(), container = unique_name();
  json cfg = plugin_config(network, daemon_->socket_path(), json::array({service_listener()}));

  auto add = run_plugin(cni_env("ADD", container, ns_->path()), cfg.dump());
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  EXPECT_TRUE(lo_has("169.254.169.254/32")) << lo_addresses();
  auto got = roundtrip_in_netns(ns_->path(), kService, "metadata?");
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << daemon_->log();
  EXPECT_EQ(*got, "metadata?");

  auto list = ctl({"list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  json regs = json::parse(list.out, nullptr, false).value("registrations", json::array());
  ASSERT_EQ(regs.size(), 1u) << list.out;
  EXPECT_EQ(regs[0]["added_addresses"], json::array({"169.254.169.254"})) << list.out;
  EXPECT_EQ(regs[0]["listeners"][0].value("add_address", false), true) << list.out;

  auto del = run_plugin(cni_env("DEL", container, ns_->path()), cfg.dump());
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_FALSE(lo_has("169.254.169.254/32")) << lo_addresses();
  EXPECT_NE(daemon_->log().find("removed 1 address(es) nsproxy had added to lo"), std::string::npos)
      << daemon_->log();
  auto after = connect_in_netns(ns_->path(), kService, 1000ms);
  EXPECT_FALSE(after.ok()) << "the service address still answers after DEL";
}

TEST_F(ServiceAddressTest, AnAddressTheTenantAlreadyHadStaysAfterDel) {
  auto pre = ns_->exec("ip addr add 169.254.169.254/32 dev lo");
  ASSERT_EQ(pre.exit_code, 0) << pre.describe();
  std::string id = unique_name();
  auto add = ctl({"add", "--id", id, "--netns", ns_->path(), "--listen", kService, "--upstream",
                  echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto got = roundtrip_in_netns(ns_->path(), kService, "x");
  ASSERT_TRUE(got.ok()) << got.error().message;

  auto del = ctl({"del", "--id", id});
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_TRUE(lo_has("169.254.169.254/32")) << "nsproxy removed an address it had not added:\n"
                                            << lo_addresses();
}

TEST_F(ServiceAddressTest, OwnershipSurvivesADaemonRestart) {
  std::string id = unique_name();
  auto add = ctl({"add", "--id", id, "--netns", ns_->path(), "--listen", kService, "--upstream",
                  echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  // Registrations persist across a restart, and so does the address they need.
  EXPECT_TRUE(lo_has("169.254.169.254/32")) << lo_addresses();
  ASSERT_TRUE(daemon_->start());
  auto got = roundtrip_in_netns(ns_->path(), kService, "after restart");
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << daemon_->log();
  EXPECT_EQ(*got, "after restart");

  auto del = ctl({"del", "--id", id});
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_FALSE(lo_has("169.254.169.254/32"))
      << "the restarted daemon forgot that it had added the address:\n"
      << lo_addresses();
}

TEST_F(ServiceAddressTest, OwnershipPassesToTheDaemonThatTakesOver) {
  std::string id = unique_name();
  auto add = ctl({"add", "--id", id, "--netns", ns_->path(), "--listen", kService, "--upstream",
                  echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  Daemon successor(tmp_.path());
  successor.set_extra_args({"--takeover"});
  ASSERT_TRUE(successor.start());
  auto old_exit = daemon_->process()->wait(5000ms);
  ASSERT_TRUE(old_exit.has_value()) << "the old daemon did not exit after the takeover";
  EXPECT_EQ(*old_exit, 0) << daemon_->log();
  EXPECT_TRUE(lo_has("169.254.169.254/32")) << "the old daemon removed the address on exit:\n"
                                            << lo_addresses();
  auto got = roundtrip_in_netns(ns_->path(), kService, "new daemon");
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << successor.log();

  auto del = ctl({"del", "--id", id});
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_FALSE(lo_has("169.254.169.254/32"))
      << "the new daemon did not learn that the address was nsproxy's:\n"
      << lo_addresses();
  EXPECT_EQ(successor.stop(), 0) << successor.log();
  daemon_->stop();
}

TEST_F(ServiceAddressTest, ASharedAddressStaysUntilTheLastRegistrationThatWantsItGoes) {
  std::string a = unique_name(), b = unique_name();
  auto add_a = ctl({"add", "--id", a, "--netns", ns_->path(), "--listen", "169.254.169.254:80",
                    "--upstream", echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add_a.exit_code, 0) << add_a.describe();
  auto add_b = ctl({"add", "--id", b, "--netns", ns_->path(), "--listen", "169.254.169.254:81",
                    "--upstream", echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add_b.exit_code, 0) << add_b.describe();

  ASSERT_EQ(ctl({"del", "--id", a}).exit_code, 0);
  EXPECT_TRUE(lo_has("169.254.169.254/32")) << lo_addresses();
  auto got = roundtrip_in_netns(ns_->path(), "169.254.169.254:81", "still here");
  ASSERT_TRUE(got.ok()) << "the second registration lost its address: " << got.error().message;

  ASSERT_EQ(ctl({"del", "--id", b}).exit_code, 0);
  EXPECT_FALSE(lo_has("169.254.169.254/32")) << lo_addresses();
}

TEST_F(ServiceAddressTest, UniqueLocalIpv6AddressIsAddedAndRemoved) {
  std::string id = unique_name();
  auto add = ctl({"add", "--id", id, "--netns", ns_->path(), "--listen", "[fd00:ec2::254]:80",
                  "--upstream", echo_->address(), "--mode", "tcp", "--add-address"});
  ASSERT_EQ(add.exit_code, 0) << add.describe() << daemon_->log();
  EXPECT_TRUE(lo_has("fd00:ec2::254/128")) << lo_addresses();
  auto got = roundtrip_in_netns(ns_->path(), "[fd00:ec2::254]:80", "v6");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "v6");
  ASSERT_EQ(ctl({"del", "--id", id}).exit_code, 0);
  EXPECT_FALSE(lo_has("fd00:ec2::254/128")) << lo_addresses();
}

TEST_F(ServiceAddressTest, OtherAddressesAreRefusedWithTheFieldNamed) {
  json l = service_listener("10.0.0.5:80");
  json cfg = plugin_config(unique_name(), daemon_->socket_path(), json::array({l}));
  auto add = run_plugin(cni_env("ADD", unique_name(), ns_->path()), cfg.dump());
  EXPECT_EQ(add.exit_code, 1) << add.describe();
  EXPECT_EQ(add.cni_code(), 7) << add.describe();
  EXPECT_NE(add.msg().find("listeners[0].addAddress"), std::string::npos) << add.describe();
  EXPECT_NE(add.msg().find("169.254.0.0/16"), std::string::npos) << add.describe();

  l["addAddress"] = "yes";
  cfg = plugin_config(unique_name(), daemon_->socket_path(), json::array({l}));
  add = run_plugin(cni_env("ADD", unique_name(), ns_->path()), cfg.dump());
  EXPECT_EQ(add.cni_code(), 7) << add.describe();
  EXPECT_NE(add.msg().find("must be true or false"), std::string::npos) << add.describe();

  auto ctl_add = ctl({"add", "--id", unique_name(), "--netns", ns_->path(), "--listen",
                      "127.0.0.2:80", "--upstream", echo_->address(), "--add-address"});
  EXPECT_NE(ctl_add.exit_code, 0) << ctl_add.describe();
  EXPECT_NE(ctl_add.err.find("add_address"), std::string::npos) << ctl_add.describe();
  EXPECT_EQ(lo_addresses().find("127.0.0.2"), std::string::npos) << lo_addresses();
}

TEST_F(ServiceAddressTest, WithoutAddAddressAMissingAddressIsAClearPerListenerError) {
  std::string id = unique_name();
  auto add =
      ctl({"add", "--id", id, "--netns", ns_->path(), "--listen", "127.0.0.1:8080", "--upstream",
           echo_->address(), "--listen", kService, "--upstream", echo_->address()});
  EXPECT_NE(add.exit_code, 0) << add.describe();
  EXPECT_NE(add.err.find("listen 169.254.169.254:80 in " + ns_->path() +
                         ": Cannot assign requested address"),
            std::string::npos)
      << add.describe();
  // All or nothing: the first listener was undone and nothing is registered.
  auto list = ctl({"list", "--json"});
  EXPECT_EQ(json::parse(list.out, nullptr, false).value("registrations", json::array()).size(), 0u)
      << list.out;
  EXPECT_FALSE(connect_in_netns(ns_->path(), "127.0.0.1:8080", 1000ms).ok());
}

}  // namespace
}  // namespace nspit
