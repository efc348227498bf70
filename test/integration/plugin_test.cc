// The CNI plugin against a real daemon, real namespaces and a real upstream.
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "fixture.h"
#include "plugin_fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

// A daemon, an echo upstream and one tenant namespace per test.
class PluginTest : public PluginFixture {};

TEST_F(PluginTest, AddThenTrafficFromInsideNamespaceReachesUpstreamAndReturns) {
  auto r = add(echo_config(), ns_->path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json.is_object()) << "stdout must be a CNI result: " << r.describe();

  auto reply = roundtrip_in_netns(ns_->path(), kListen, "hello from the tenant\n");
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(*reply, "hello from the tenant\n");

  auto regs = daemon_->registrations_with_id(container_);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  EXPECT_EQ(regs[0]["attachment"].value("network", ""), network_);
  EXPECT_EQ(regs[0]["attachment"].value("ifname", ""), "eth0");
  EXPECT_EQ(regs[0].value("netns", ""), ns_->path());
  EXPECT_EQ(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(ns_->identity().ino));
}

TEST_F(PluginTest, AddPrintsPrevResultUnchanged) {
  json prev = {{"cniVersion", "1.0.0"},
               {"interfaces", json::array({{{"name", "eth0"}, {"sandbox", ns_->path()}}})},
               {"ips", json::array({{{"address", "10.1.2.3/24"}, {"interface", 0}}})},
               {"dns", json::object()}};
  auto cfg = echo_config();
  cfg["prevResult"] = prev;
  auto r = add(cfg, ns_->path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(r.json, prev) << r.describe();
}

TEST_F(PluginTest, DelThenConnectionRefusedInsideNamespace) {
  auto r = add(echo_config(), ns_->path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(roundtrip_in_netns(ns_->path(), kListen, "x").ok());

  auto d = del(echo_config(), ns_->path());
  ASSERT_EQ(d.exit_code, 0) << d.describe();
  auto c = connect_in_netns(ns_->path(), kListen);
  EXPECT_FALSE(c.ok()) << "listener still accepting after DEL returned";
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);
}

TEST_F(PluginTest, TwoTenantsWithTheSameAddressesAreServedAtOnce) {
  Netns other;
  ASSERT_TRUE(other.ok()) << other.error();
  ASSERT_TRUE(ns_->add_interface("d0", "10.0.0.2/24"));
  ASSERT_TRUE(other.add_interface("d0", "10.0.0.2/24"));
  // A second upstream, so we can tell which tenant reached which upstream: stop one and
  // the other tenant must still be served.
  EchoServer echo_b("echo");
  ASSERT_TRUE(echo_b.start());

  auto cfg_a = config(json::array(
      {listener(kListen, echo_->address()), listener("10.0.0.2:8081", echo_->address())}));
  auto cfg_b = config(json::array(
      {listener(kListen, echo_b.address()), listener("10.0.0.2:8081", echo_b.address())}));
  std::string container_b = unique_name();
  auto ra = add(cfg_a, ns_->path());
  ASSERT_EQ(ra.exit_code, 0) << ra.describe();
  auto rb = add(cfg_b, other.path(), container_b);
  ASSERT_EQ(rb.exit_code, 0) << rb.describe();

  for (const char* addr : {kListen, "10.0.0.2:8081"}) {
    auto a = roundtrip_in_netns(ns_->path(), addr, std::string("tenant A via ") + addr);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ(*a, std::string("tenant A via ") + addr);
    auto b = roundtrip_in_netns(other.path(), addr, std::string("tenant B via ") + addr);
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ(*b, std::string("tenant B via ") + addr);
  }

  // Each tenant goes to its own upstream: with B's upstream gone, A still works and B
  // does not get A's upstream.
  echo_b.process()->stop();
  auto a = roundtrip_in_netns(ns_->path(), kListen, "A again");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(*a, "A again");
  auto b = roundtrip_in_netns(other.path(), kListen, "B again");
  EXPECT_FALSE(b.ok() && *b == "B again") << "tenant B was served by tenant A's upstream";

  EXPECT_EQ(del(cfg_b, other.path(), container_b).exit_code, 0);
}

TEST_F(PluginTest, RepeatedAddIsIdempotent) {
  auto r1 = add(echo_config(), ns_->path());
  ASSERT_EQ(r1.exit_code, 0) << r1.describe();
  auto r2 = add(echo_config(), ns_->path());
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();
  EXPECT_EQ(daemon_->registrations_with_id(container_).size(), 1u) << daemon_->list().dump(2);

  // The daemon says so itself: the same key and the same namespace is not a new one.
  std::optional<nsproxy::Reply> reply;
  ASSERT_TRUE(register_tenant(*daemon_, ns_->path(), container_,
                              {.listen = kListen,
                               .upstream = echo_->address(),
                               .mode = nsproxy::Mode::Tcp,
                               .network = network_},
                              &reply));
  EXPECT_EQ(reply->data.value("created", true), false) << reply->data.dump();
  EXPECT_EQ(daemon_->registrations_with_id(container_).size(), 1u) << daemon_->list().dump(2);

  auto echo = roundtrip_in_netns(ns_->path(), kListen, "still served");
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(*echo, "still served");
}

TEST_F(PluginTest, AddWithNewNamespaceForSameContainerReplacesOldRegistration) {
  auto r1 = add(echo_config(), ns_->path());
  ASSERT_EQ(r1.exit_code, 0) << r1.describe();
  auto old_id = ns_->identity();

  Netns fresh;  // the sandbox was re-created: same container id, new namespace
  ASSERT_TRUE(fresh.ok()) << fresh.error();
  auto r2 = add(echo_config(), fresh.path());
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();

  auto regs = daemon_->registrations_with_id(container_);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  EXPECT_EQ(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(fresh.identity().ino));
  EXPECT_NE(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(old_id.ino));

  auto c = connect_in_netns(ns_->path(), kListen);
  EXPECT_FALSE(c.ok()) << "the old namespace's listener is still open";
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
  auto echo = roundtrip_in_netns(fresh.path(), kListen, "new sandbox");
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(*echo, "new sandbox");

  EXPECT_EQ(del(echo_config(), fresh.path()).exit_code, 0);
}

TEST_F(PluginTest, AddAfterNamespaceRecreatedUnderSameNameReplacesOldRegistration) {
  // Recreate a namespace under the same path: a different inode behind the same name.
  auto r1 = add(echo_config(), ns_->path());
  ASSERT_EQ(r1.exit_code, 0) << r1.describe();
  auto old_id = ns_->identity();
  std::string name = ns_->name();
  ASSERT_TRUE(ns_->remove());
  auto re = run({"ip", "netns", "add", name});
  ASSERT_EQ(re.exit_code, 0) << re.describe();
  struct Cleanup {
    std::string n;
    ~Cleanup() { run({"ip", "netns", "del", n}); }
  } cleanup{name};
  ASSERT_EQ(run({"ip", "-n", name, "link", "set", "lo", "up"}).exit_code, 0);
  std::string path = "/run/netns/" + name;

  auto r2 = add(echo_config(), path);
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();
  auto regs = daemon_->registrations_with_id(container_);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  EXPECT_NE(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(old_id.ino));
  auto echo = roundtrip_in_netns(path, kListen, "recreated");
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(*echo, "recreated");
  EXPECT_EQ(del(echo_config(), path).exit_code, 0);
}

TEST_F(PluginTest, DelTwiceBothSucceed) {
  ASSERT_EQ(add(echo_config(), ns_->path()).exit_code, 0);
  auto d1 = del(echo_config(), ns_->path());
  EXPECT_EQ(d1.exit_code, 0) << d1.describe();
  auto d2 = del(echo_config(), ns_->path());
  EXPECT_EQ(d2.exit_code, 0) << d2.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty());
}

TEST_F(PluginTest, DelOfUnknownContainerSucceeds) {
  auto d = del(echo_config(), ns_->path(), unique_name());
  EXPECT_EQ(d.exit_code, 0) << d.describe();
  EXPECT_TRUE(d.out.empty() || d.json.is_object())
      << "stdout must be empty or JSON: " << d.describe();
}

TEST_F(PluginTest, DelAfterNamespaceDeletedSucceedsAndDropsRegistration) {
  ASSERT_EQ(add(echo_config(), ns_->path()).exit_code, 0);
  std::string path = ns_->path();
  ASSERT_TRUE(ns_->remove());
  auto d = del(echo_config(), path);
  EXPECT_EQ(d.exit_code, 0) << d.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);
}

TEST_F(PluginTest, DelWithEmptyNetnsSucceedsAndDropsRegistration) {
  ASSERT_EQ(add(echo_config(), ns_->path()).exit_code, 0);
  auto d = run_plugin(cni_env("DEL", container_, "", {{"CNI_NETNS", std::nullopt}}),
                      echo_config().dump());
  EXPECT_EQ(d.exit_code, 0) << d.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);
  auto c = connect_in_netns(ns_->path(), kListen);
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
}

TEST_F(PluginTest, CheckSucceedsWhileServingAndFailsAfterDel) {
  ASSERT_EQ(add(echo_config(), ns_->path()).exit_code, 0);
  auto c1 = run_plugin(cni_env("CHECK", container_, ns_->path()), echo_config().dump());
  EXPECT_EQ(c1.exit_code, 0) << c1.describe();
  ASSERT_EQ(del(echo_config(), ns_->path()).exit_code, 0);
  auto c2 = run_plugin(cni_env("CHECK", container_, ns_->path()), echo_config().dump());
  EXPECT_EQ(c2.exit_code, 1) << c2.describe();
  EXPECT_GT(c2.cni_code(), 0) << c2.describe();
}

TEST_F(PluginTest, PortTakenInsideNamespaceFailsWithClearErrorAndRegistersNothing) {
  auto taken = listen_in_netns(ns_->path(), kListen);
  ASSERT_TRUE(taken.ok()) << taken.error().message;

  auto r = add(echo_config(), ns_->path());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 100) << r.describe();
  EXPECT_NE(r.msg().find("Address already in use"), std::string::npos) << r.describe();
  EXPECT_NE(r.msg().find(ns_->path()), std::string::npos) << r.describe();
  EXPECT_NE(r.msg().find(kListen), std::string::npos) << r.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);

  // Once the port is free, the same ADD works: the failure left nothing half-done.
  taken->reset();
  auto r2 = add(echo_config(), ns_->path());
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();
  auto echo = roundtrip_in_netns(ns_->path(), kListen, "after retry");
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(*echo, "after retry");
}

TEST_F(PluginTest, FailedSecondListenerDoesNotLeaveFirstOpen) {
  auto taken = listen_in_netns(ns_->path(), kListen);
  ASSERT_TRUE(taken.ok()) << taken.error().message;
  auto cfg = config(json::array(
      {listener("127.0.0.1:8081", echo_->address()), listener(kListen, echo_->address())}));
  auto r = add(cfg, ns_->path());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 100) << r.describe();
  EXPECT_NE(r.msg().find("Address already in use"), std::string::npos) << r.describe();
  auto c = connect_in_netns(ns_->path(), "127.0.0.1:8081");
  EXPECT_FALSE(c.ok()) << "the first listener was left open after the second failed";
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty()) << daemon_->list().dump(2);
}

TEST_F(PluginTest, LoopbackDownInNamespaceIsBroughtUp) {
  Netns down(/*lo_up=*/false);
  ASSERT_TRUE(down.ok()) << down.error();
  auto r = add(echo_config(), down.path());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  auto echo = roundtrip_in_netns(down.path(), kListen, "lo was down");
  ASSERT_TRUE(echo.ok()) << echo.error().message;
  EXPECT_EQ(*echo, "lo was down");
  EXPECT_EQ(del(echo_config(), down.path()).exit_code, 0);
}

TEST_F(PluginTest, BadListenAddressIsCode7NamingTheField) {
  auto cfg = config(json::array({listener("nonsense", echo_->address())}));
  auto r = add(cfg, ns_->path());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 7) << r.describe();
  EXPECT_NE(r.msg().find("listeners[0].listen"), std::string::npos) << r.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(container_).empty());
}

TEST_F(PluginTest, UndecodableConfigIsCode6) {
  auto r = run_plugin(cni_env("ADD", container_, ns_->path()), "not json {");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 6) << r.describe();
}

TEST_F(PluginTest, UnsupportedCniVersionIsCode1) {
  auto cfg = echo_config();
  cfg["cniVersion"] = "9.9.9";
  auto r = add(cfg, ns_->path());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 1) << r.describe();
}

TEST_F(PluginTest, MissingContainerIdIsCode4) {
  auto r = run_plugin(cni_env("ADD", "", ns_->path(), {{"CNI_CONTAINERID", std::nullopt}}),
                      echo_config().dump());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 4) << r.describe();
  EXPECT_NE(r.msg().find("CNI_CONTAINERID"), std::string::npos) << r.describe();
}

TEST_F(PluginTest, StatusSucceedsWhileDaemonAnswers) {
  auto cfg = echo_config();
  cfg["cniVersion"] = "1.1.0";  // STATUS exists since CNI 1.1.0
  auto r = run_plugin(cni_env("STATUS", "", ""), cfg.dump());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

TEST_F(PluginTest, GcDropsRegistrationsNotInValidAttachments) {
  Netns other;
  ASSERT_TRUE(other.ok()) << other.error();
  std::string kept = container_;
  std::string dropped = unique_name();
  ASSERT_EQ(add(echo_config(), ns_->path(), kept).exit_code, 0);
  ASSERT_EQ(add(echo_config(), other.path(), dropped).exit_code, 0);
  // A registration of another network must survive a GC of this one.
  auto foreign_cfg = plugin_config(unique_name(), daemon_->socket_path(),
                                   json::array({listener("127.0.0.1:8081", echo_->address())}));
  ASSERT_EQ(run_plugin(cni_env("ADD", dropped, other.path()), foreign_cfg.dump()).exit_code, 0);

  auto cfg = echo_config();
  cfg["cniVersion"] = "1.1.0";  // GC exists since CNI 1.1.0
  cfg["cni.dev/valid-attachments"] = json::array({{{"containerID", kept}, {"ifname", "eth0"}}});
  auto r = run_plugin({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/usr/lib/cni"}}, cfg.dump());
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  EXPECT_EQ(daemon_->registrations_with_id(kept).size(), 1u) << daemon_->list().dump(2);
  auto left = daemon_->registrations_with_id(dropped);
  ASSERT_EQ(left.size(), 1u) << "expected only the other network's registration: "
                             << daemon_->list().dump(2);
  EXPECT_NE(left[0]["attachment"].value("network", ""), network_);
  auto gone = connect_in_netns(other.path(), kListen);
  EXPECT_EQ(gone.err, ECONNREFUSED) << "GC left the listener open: " << gone.message;
  auto foreign = roundtrip_in_netns(other.path(), "127.0.0.1:8081", "other network");
  ASSERT_TRUE(foreign.ok()) << foreign.error().message;
  auto still = roundtrip_in_netns(ns_->path(), kListen, "kept");
  ASSERT_TRUE(still.ok()) << still.error().message;
  EXPECT_EQ(*still, "kept");
}

// Plugin behaviour without a daemon: no fixture daemon.
class PluginWithoutDaemonTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxy"}));
    ns_ = std::make_unique<Netns>();
    ASSERT_TRUE(ns_->ok()) << ns_->error();
  }
  json config(int timeout_ms) const {
    return plugin_config(unique_name(), socket_, json::array({listener(kListen, "127.0.0.1:9")}),
                         timeout_ms);
  }
  TempDir tmp_;
  std::string socket_ = tmp_.file("nobody-here.sock");
  std::unique_ptr<Netns> ns_;
};

// Fast means: the connect fails at once ("not reachable", the cause in details) rather
// than the plugin waiting out its timeoutMs ("did not answer within").
TEST_F(PluginWithoutDaemonTest, AddFailsFastWithCode11NamingTheSocket) {
  auto r = run_plugin(cni_env("ADD", unique_name(), ns_->path()), config(1000).dump());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 11) << r.describe();
  EXPECT_NE(r.msg().find("nsproxyd not reachable on " + socket_), std::string::npos)
      << r.describe();
  EXPECT_NE(r.msg().find("No such file or directory"), std::string::npos) << r.describe();
  EXPECT_EQ(r.msg().find("did not answer"), std::string::npos) << r.describe();
}

TEST_F(PluginWithoutDaemonTest, AddWithHungDaemonFailsWithinTimeout) {
  // Something listens on the socket but never answers: accepted into the backlog,
  // request sent, no reply. The plugin must give up at its timeout.
  nsproxy::UniqueFd hung(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(hung);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(hung.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(hung.get(), 16), 0);

  auto r = run_plugin(cni_env("ADD", unique_name(), ns_->path()), config(1000).dump());
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 11) << r.describe();
  EXPECT_NE(r.msg().find("nsproxyd on " + socket_ + " did not answer within 1000 ms"),
            std::string::npos)
      << r.describe();
  // The behaviour is a bound: the 1 s timeoutMs ends the wait. 10 s (ten times the
  // timeout, plus an ASan-built plugin's start) holds on a loaded machine; run_plugin
  // itself kills the plugin at 15 s.
  EXPECT_LT(r.elapsed.count(), 10000) << r.describe();
}

TEST_F(PluginWithoutDaemonTest, DelSucceedsWhenDaemonIsDown) {
  auto r = run_plugin(cni_env("DEL", unique_name(), ns_->path()), config(1000).dump());
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

TEST_F(PluginWithoutDaemonTest, StatusIsCode50WhenDaemonIsDown) {
  auto cfg = config(1000);
  cfg["cniVersion"] = "1.1.0";
  auto r = run_plugin(cni_env("STATUS", "", ""), cfg.dump());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 50) << r.describe();
}

TEST_F(PluginWithoutDaemonTest, VersionListsSupportedVersions) {
  auto r = run_plugin({{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"1.0.0"})");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(r.json.is_object()) << r.describe();
  auto versions = r.json.value("supportedVersions", json::array());
  for (const char* v : {"0.4.0", "1.0.0"}) {
    EXPECT_NE(std::find(versions.begin(), versions.end(), v), versions.end())
        << v << " not in " << r.out;
  }
}

}  // namespace
}  // namespace nspit
