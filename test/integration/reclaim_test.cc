// Registrations whose tenant went away without a DEL: the periodic reconcile reclaims
// those of deleted namespaces, and a CNI GC drops the ones its network no longer lists,
// never manual registrations or another network's.
#include <cerrno>
#include <set>
#include <string>

#include "fixture.h"

namespace nspit {
namespace {

TEST_F(DaemonTest, NamespaceDeletedWithoutDelIsReclaimedWithinInterval) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns kept;
  ASSERT_TRUE(kept.ok()) << kept.error();
  Netns gone;
  ASSERT_TRUE(gone.ok()) << gone.error();
  Daemon d(tmp_.path());
  d.set_extra_args({"--reconcile-interval", "0.5"});
  ASSERT_TRUE(d.start());
  std::string kept_id = unique_name();
  std::string gone_id = unique_name();
  ASSERT_TRUE(register_tenant(d, kept.path(), kept_id,
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  ASSERT_TRUE(register_tenant(d, gone.path(), gone_id,
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  ASSERT_TRUE(gone.remove());  // no DEL: the runtime forgot it
  // A bound, not a measurement: the periodic reconcile (every 0.5 s) must run and find
  // it. 15 s is thirty intervals, enough under ASan on a loaded machine.
  bool reclaimed =
      wait_until([&] { return d.registrations_with_id(gone_id).empty(); }, 15000ms, 100ms);
  EXPECT_TRUE(reclaimed) << "not reclaimed within 15 s at a 0.5 s reconcile interval: "
                         << d.list().dump(2);
  EXPECT_EQ(d.registrations_with_id(kept_id).size(), 1u) << "the live one was dropped too";
  auto status = d.call(status_request());
  ASSERT_TRUE(status.ok() && status->ok);
  EXPECT_EQ(status->data.value("reclaimed", 0), 1) << status->data.dump();
  EXPECT_NE(d.log().find("is gone"), std::string::npos) << d.log();
  EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(LifecycleTest, GcNeverTouchesManualRegistrationsOrOtherNetworks) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(register_tenant(
      d, ns.path(), "manual",
      {.listen = "127.0.0.1:8080", .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  auto add_cni = [&](const std::string& network, const std::string& id, const std::string& listen) {
    return register_tenant(d, ns.path(), id,
                           {.listen = listen,
                            .upstream = echo.address(),
                            .mode = nsproxy::Mode::Tcp,
                            .network = network});
  };
  ASSERT_TRUE(add_cni("net-a", "keep", "127.0.0.1:8081"));
  ASSERT_TRUE(add_cni("net-a", "stale", "127.0.0.1:8082"));
  ASSERT_TRUE(add_cni("net-b", "stale", "127.0.0.1:8083"));
  nsproxy::Request gc;
  gc.op = nsproxy::Op::Gc;
  gc.attachment.network = "net-a";
  gc.valid_attachments = {{"net-a", "keep", "eth0"}};
  auto r = d.call(gc);
  ASSERT_TRUE(r.ok() && r->ok) << (r.ok() ? r->error.message : r.error().message);
  ASSERT_EQ(r->data["removed"].size(), 1u) << r->data.dump();
  EXPECT_EQ(r->data["removed"][0].value("id", ""), "stale");
  EXPECT_EQ(r->data["removed"][0].value("network", ""), "net-a");
  std::set<std::string> left;
  for (const auto& reg : d.list()) {
    left.insert(reg["attachment"].value("network", "") + "/" + reg["attachment"].value("id", ""));
  }
  EXPECT_EQ(left, (std::set<std::string>{"/manual", "net-a/keep", "net-b/stale"}));
  auto gone = connect_in_netns(ns.path(), "127.0.0.1:8082");
  EXPECT_EQ(gone.err, ECONNREFUSED) << gone.message;
}

}  // namespace
}  // namespace nspit
