// The daemon-wide limits: --max-connections (a tcp tenant's connection is closed, an
// http tenant gets 503) and --max-registrations, and running out of file descriptors
// (accepting pauses without spinning, then recovers).
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

// CPU time (user + system, clock ticks) a process used so far, or -1.
long cpu_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  long utime = -1, stime = -1;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stol(f);
    if (i == 15) {
      stime = std::stol(f);
      break;
    }
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

TEST_F(LifecycleTest, OutOfFdsPausesAcceptingWithoutSpinningThenRecovers) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  // prlimit execs nsproxyd in place: the pid is the daemon's.
  Daemon d(tmp_.path(), {"prlimit", "--nofile=48:48"});
  ASSERT_TRUE(d.start());
  std::string id = unique_name();
  ASSERT_TRUE(register_tenant(
      d, ns.path(), id,
      {.listen = "127.0.0.1:8080", .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));

  // Each forwarded connection costs the daemon two fds: 40 exhaust 48.
  std::vector<Connection> held;
  for (int i = 0; i < 40; ++i) held.push_back(connect_in_netns(ns.path(), "127.0.0.1:8080"));
  // Out of fds once the daemon says so; from then on it must sit still.
  EXPECT_TRUE(wait_until([&] { return d.log().find("pausing accepts") != std::string::npos; }))
      << d.log();
  long before = cpu_ticks(d.pid());
  std::this_thread::sleep_for(1000ms);
  long after = cpu_ticks(d.pid());
  ASSERT_GE(before, 0);
  EXPECT_LT(after - before, 30) << "the daemon used " << (after - before)
                                << " ticks in 1 s while out of fds: spinning";
  EXPECT_NE(d.log().find("pausing accepts"), std::string::npos) << d.log();

  held.clear();
  bool recovered = false;
  for (int i = 0; i < 30 && !recovered; ++i) {
    std::this_thread::sleep_for(100ms);
    auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "again", 2000ms);
    recovered = got.ok() && *got == "again";
  }
  EXPECT_TRUE(recovered) << "no connection served after fds were released\n" << d.log();
}

TEST_F(LifecycleTest, DaemonWideConnectionAndRegistrationLimits) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  EchoServer http("http");
  ASSERT_TRUE(http.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  d.set_extra_args({"--max-connections", "2", "--max-registrations", "2"});
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(register_tenant(
      d, ns.path(), "tcp-tenant",
      {.listen = "127.0.0.1:8080", .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  ASSERT_TRUE(register_tenant(d, ns.path(), "http-tenant",
                              {.listen = "127.0.0.1:8081", .upstream = http.address()}));
  std::optional<nsproxy::Reply> third;
  auto added = register_tenant(
      d, ns.path(), "one-too-many",
      {.listen = "127.0.0.1:8082", .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}, &third);
  ASSERT_TRUE(third.has_value()) << added.message();
  EXPECT_FALSE(third->ok);
  EXPECT_EQ(third->error.code, nsproxy::Code::kLimit) << third->error.message;

  Connection a = connect_in_netns(ns.path(), "127.0.0.1:8080");
  Connection b = connect_in_netns(ns.path(), "127.0.0.1:8080");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(send_all(a.fd.get(), "a").ok());
  ASSERT_TRUE(send_all(b.fd.get(), "b").ok());
  // Both are sessions now: the daemon-wide budget of 2 is spent.
  ASSERT_TRUE(wait_until([&] { return daemon_status(d).value("connections", 0) == 2; }))
      << daemon_status(d).dump();
  // tcp: the third connection is closed at once.
  auto refused = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "c", 2000ms);
  EXPECT_TRUE(!refused.ok() || refused->empty()) << "served beyond --max-connections";
  // http: 503 with a body that says why.
  auto conn = HttpConn::open(ns.path(), "127.0.0.1:8081");
  ASSERT_TRUE(conn.ok()) << conn.error();
  auto resp = conn.request(http_request("GET", "/"));
  ASSERT_TRUE(resp.ok()) << resp.error().message;
  EXPECT_EQ(resp->status, 503) << resp->describe();
  EXPECT_NE(resp->body.find("connection limit"), std::string::npos) << resp->describe();

  // Once connections close (the refused one included), connections are served again.
  // The tcp connection "c" waited in the tcp tenant's backlog (held at its share of the
  // spent budget) and is accepted, then found closed, once there is room: wait until it
  // was (the fourth connection accepted) and only b is left.
  a.fd.reset();
  conn.close();
  ASSERT_TRUE(wait_until([&] {
    json st = daemon_status(d);
    return st.value("connections", -1) == 1 && st.value("connections_total", 0) == 4;
  })) << "a closed connection still counted: "
      << daemon_status(d).dump();
  auto again = HttpConn::open(ns.path(), "127.0.0.1:8081");
  ASSERT_TRUE(again.ok()) << again.error();
  auto ok = again.request(http_request("GET", "/"));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->status, 200) << ok->describe();
}

}  // namespace
}  // namespace nspit
