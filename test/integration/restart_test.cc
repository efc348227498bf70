// What survives a restart of nsproxyd (SIGTERM or kill -9, also in the middle of an add
// storm): every acknowledged registration comes back from the state dir and serves;
// deleted ones and those of namespaces that vanished meanwhile do not.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

TEST_F(DaemonTest, RestartRecreatesListenersFromState) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Netns gone;
  ASSERT_TRUE(gone.ok()) << gone.error();
  std::string id = unique_name();
  std::string gone_id = unique_name();
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    ASSERT_TRUE(register_tenant(d, ns.path(), id,
                                {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    ASSERT_TRUE(register_tenant(d, gone.path(), gone_id,
                                {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    ASSERT_EQ(d.stop(), 0) << d.log();
  }
  auto c = connect_in_netns(ns.path(), kListen);
  EXPECT_EQ(c.err, ECONNREFUSED) << "listener survived the daemon: " << c.message;
  ASSERT_TRUE(gone.remove());  // vanished while the daemon was down

  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  auto regs = d.registrations_with_id(id);
  ASSERT_EQ(regs.size(), 1u) << d.list().dump(2);
  EXPECT_EQ(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(ns.identity().ino));
  auto got = roundtrip_in_netns(ns.path(), kListen, "after restart");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "after restart");
  EXPECT_TRUE(d.registrations_with_id(gone_id).empty())
      << "registration of a namespace deleted while the daemon was down was restored: "
      << d.list().dump(2);
}

TEST_F(DaemonTest, KillNineThenRestartRestoresEveryAcknowledgedAdd) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  constexpr int kTenants = 5;
  std::vector<std::unique_ptr<Netns>> nss;
  std::vector<std::string> ids;
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    for (int i = 0; i < kTenants; ++i) {
      nss.push_back(std::make_unique<Netns>());
      ASSERT_TRUE(nss.back()->ok()) << nss.back()->error();
      ids.push_back(unique_name());
      ASSERT_TRUE(register_tenant(d, nss.back()->path(), ids.back(),
                                  {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    }
    // The last one is deleted again: it must not come back.
    nsproxy::Request del;
    del.op = nsproxy::Op::Del;
    del.attachment.id = ids.back();
    auto deleted = d.call(del);
    ASSERT_TRUE(deleted.ok() && deleted->ok);
    d.process()->signal(SIGKILL);
    auto code = d.process()->wait(5000ms);
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 128 + SIGKILL);
    d.stop();  // reaps; the exit code of a killed daemon is not checked here
  }
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start()) << "restart after kill -9 (stale socket must be replaced)";
  for (int i = 0; i < kTenants - 1; ++i) {
    EXPECT_EQ(d.registrations_with_id(ids[i]).size(), 1u) << ids[i] << "\n" << d.list().dump(2);
    auto got = roundtrip_in_netns(nss[i]->path(), kListen, "tenant " + std::to_string(i));
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(*got, "tenant " + std::to_string(i));
  }
  EXPECT_TRUE(d.registrations_with_id(ids.back()).empty())
      << "a deleted registration came back: " << d.list().dump(2);
  auto c = connect_in_netns(nss.back()->path(), kListen);
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
}

TEST_F(LifecycleTest, RestartRestoresAThousandRegistrationsAndReportsTheTime) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  constexpr int kTenants = 1000;
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    for (int i = 0; i < kTenants; ++i) {
      ASSERT_TRUE(register_tenant(d, ns.path(), "r" + std::to_string(i),
                                  {.listen = "127.0.0.1:" + std::to_string(30000 + i),
                                   .upstream = echo.address(),
                                   .mode = nsproxy::Mode::Tcp}))
          << i;
    }
    ASSERT_EQ(d.stop(), 0) << d.log();
  }
  Daemon d(tmp_.path());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(d.start(30000ms));
  double ready_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(d.list().size(), static_cast<size_t>(kTenants));
  for (int i : {0, 499, 999}) {
    auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:" + std::to_string(30000 + i), "r");
    ASSERT_TRUE(got.ok()) << i << ": " << got.error().message;
  }
  std::string log = d.log();
  auto pos = log.find("restored ");
  ASSERT_NE(pos, std::string::npos) << log;
  std::printf("[ FIGURES  ] %s; daemon answering %.0f ms after exec\n",
              log.substr(pos, log.find('\n', pos) - pos).c_str(), ready_ms);
}

TEST_F(LifecycleTest, KillNineDuringAnAddStormKeepsEveryAcknowledgedAdd) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string network = unique_name();
  constexpr int kAdds = 200;
  std::vector<std::unique_ptr<Process>> procs(kAdds);
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    // Plugins are started from another thread while this one kills the daemon as soon
    // as some of them have registered: the kill lands in the middle of the storm.
    std::thread spawner([&] {
      for (int i = 0; i < kAdds; ++i) {
        json listeners = json::array(
            {listener("127.0.0.1:" + std::to_string(21000 + i), echo.address(), "tcp")});
        procs[i] = std::make_unique<Process>(
            std::vector<std::string>{binary("nsproxy")},
            cni_env("ADD", "k" + std::to_string(i), ns.path()),
            plugin_config(network, d.socket_path(), listeners, 5000).dump());
      }
    });
    for (int i = 0; i < 2000 && d.list().size() < 30; ++i) std::this_thread::sleep_for(2ms);
    d.process()->signal(SIGKILL);
    spawner.join();
    ASSERT_TRUE(d.process()->wait(5000ms).has_value());
    d.stop();
  }
  std::vector<int> acked;
  for (int i = 0; i < kAdds; ++i) {
    auto code = procs[i]->wait(30000ms);
    ASSERT_TRUE(code.has_value()) << "plugin " << i << " hung";
    if (*code == 0) acked.push_back(i);
  }
  ASSERT_FALSE(acked.empty()) << "no ADD was acknowledged before the kill; first: "
                              << procs[0]->out() << procs[0]->err();
  ASSERT_LT(acked.size(), static_cast<size_t>(kAdds)) << "the kill came after the storm";

  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start(15000ms));
  std::set<std::string> present;
  for (const auto& r : d.list()) {
    present.insert(r["attachment"].value("id", ""));
    // Nothing half-made: every registration that came back is serving.
    for (const auto& l : r["listeners"]) EXPECT_TRUE(l.value("accepting", false)) << r.dump();
  }
  for (int i : acked) {
    EXPECT_EQ(present.count("k" + std::to_string(i)), 1u) << "acknowledged ADD k" << i << " lost";
    auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:" + std::to_string(21000 + i), "k");
    EXPECT_TRUE(got.ok() && *got == "k") << "k" << i << " not serving";
  }
  std::printf(
      "[ FIGURES  ] kill -9 mid-storm: %zu of %d ADDs acknowledged, %zu registrations after "
      "restart\n",
      acked.size(), kAdds, present.size());
}

}  // namespace
}  // namespace nspit
