// --takeover under load: a new nsproxyd takes the listeners over from the running one
// without a tenant connection failing, and the old one drains its open connections and
// exits 0.
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "fixture.h"

namespace nspit {
namespace {

TEST_F(LifecycleTest, TakeoverUnderLoadLosesNoConnectionAndOldDaemonDrains) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon old_daemon(tmp_.path());
  ASSERT_TRUE(old_daemon.start());
  ASSERT_TRUE(register_tenant(
      old_daemon, ns.path(), "t1",
      {.listen = "127.0.0.1:8080", .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));

  // A connection opened before the switch must still be served by the old daemon.
  Connection early = connect_in_netns(ns.path(), "127.0.0.1:8080");
  ASSERT_TRUE(early.ok()) << early.message;
  ASSERT_TRUE(send_all(early.fd.get(), "before ").ok());

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    while (!stop) {
      auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "ping", 5000ms);
      if (got.ok() && *got == "ping") {
        ++ok;
      } else {
        if (failed++ == 0) first_failure = got.ok() ? "got \"" + *got + "\"" : got.error().message;
      }
    }
  });
  // The load is on before the switch (the old daemon served some of it).
  EXPECT_TRUE(wait_until([&] { return ok >= 20 || failed > 0; })) << "no load before the switch";
  int ok_before_switch = ok;
  Daemon new_daemon(tmp_.path());
  new_daemon.set_extra_args({"--takeover"});
  ASSERT_TRUE(new_daemon.start());
  // The switch is done once the control socket answers from the new daemon (start() may
  // have been answered by the old one, which serves the same socket until the handover).
  ASSERT_TRUE(wait_until([&] {
    return daemon_status(new_daemon).value("pid", 0) == static_cast<int>(new_daemon.pid());
  })) << new_daemon.log();
  int ok_at_switch = ok;
  // Served after the switch by the new daemon: its own counter (not handed over) grows.
  auto new_daemon_served = [&] {
    auto regs = new_daemon.registrations_with_id("t1");
    return regs.empty() ? 0L : regs[0]["stats"].value("connections_total", 0L);
  };
  EXPECT_TRUE(wait_until([&] { return new_daemon_served() >= 20 || failed > 0; }))
      << "the new daemon served " << new_daemon_served() << " connections";
  stop = true;
  load.join();

  EXPECT_EQ(failed, 0) << "tenant connections failed across the takeover; first: " << first_failure;
  EXPECT_GT(ok_before_switch, 0) << "no connection served before the switch";
  EXPECT_GT(ok, ok_at_switch) << "no connection served after the switch";
  EXPECT_GE(new_daemon_served(), 20) << "the new daemon did not take the load over";
  EXPECT_EQ(new_daemon.registrations_with_id("t1").size(), 1u) << new_daemon.list().dump(2);
  // Its stderr is read by the fixture's own thread: wait for the line rather than race it.
  EXPECT_TRUE(wait_until([&] {
    return new_daemon.log().find("took over 1 registration") != std::string::npos;
  })) << new_daemon.log();

  // The old daemon is still draining the early connection; finishing it lets it exit 0.
  EXPECT_TRUE(old_daemon.process()->running()) << "the old daemon exited before draining";
  auto rest = exchange(early.fd.get(), "after");
  ASSERT_TRUE(rest.ok()) << rest.error().message;
  EXPECT_EQ(*rest, "before after");
  early.fd.reset();
  auto code = old_daemon.process()->wait(5000ms);
  ASSERT_TRUE(code.has_value()) << "the old daemon did not exit after draining\n"
                                << old_daemon.log();
  EXPECT_EQ(*code, 0) << old_daemon.log();
  old_daemon.stop();
  std::printf("[ FIGURES  ] takeover under load: %d tenant connections, %d failed\n", ok.load(),
              failed.load());
}

}  // namespace
}  // namespace nspit
