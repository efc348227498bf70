// --takeover under load: a new nsproxyd takes the listeners over from the running one
// without a tenant connection failing, and the old one drains its open connections and
// exits 0. With --metrics-listen (as the shipped /etc/default/nsproxyd has it) the
// endpoint passes to the new daemon, and the draining one answers /readyz with 503.
#include <atomic>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>

#include "fixture.h"

namespace nspit {
namespace {

constexpr const char* kOwnNetns = "/proc/self/ns/net";  // the host side, where the test runs

// GET path on a connection to the metrics endpoint (opened now, or earlier: `conn`).
nsproxy::Result<HttpResponse> metrics_get(HttpConn& conn, const std::string& path) {
  return conn.request("GET " + path + " HTTP/1.1\r\nHost: metrics\r\n\r\n", 5000ms);
}
nsproxy::Result<HttpResponse> metrics_get(const std::string& address, const std::string& path) {
  HttpConn conn = HttpConn::open(kOwnNetns, address);
  if (!conn.ok()) return nsproxy::make_error(nsproxy::Code::kUnreachable, conn.error());
  return metrics_get(conn, path);
}

// The value of the sample "series value" in an exposition; -1 when it is absent.
double sample(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

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
  const std::string old_instance = daemon_status(old_daemon).value("instance", "");
  Daemon new_daemon(tmp_.path());
  new_daemon.set_extra_args({"--takeover"});
  ASSERT_TRUE(new_daemon.start());
  // The switch is done once the control socket answers from the new daemon (start() may
  // have been answered by the old one, which serves the same socket until the handover).
  // A status call in flight while the old daemon hands the socket over may be closed
  // without a reply: that is a retry, not a failure.
  std::string new_instance;
  ASSERT_TRUE(wait_until([&] {
    auto reply = new_daemon.call(status_request());
    if (!reply.ok() || !reply->ok) return false;
    if (reply->data.value("pid", 0) != static_cast<int>(new_daemon.pid())) return false;
    // The instance tells the daemons apart where pids cannot (two containers' pid
    // namespaces): the agent image uses it to know it was taken over.
    new_instance = reply->data.value("instance", "");
    return true;
  })) << new_daemon.log();
  int ok_at_switch = ok;
  EXPECT_EQ(new_instance.size(), 32u) << new_instance;
  EXPECT_EQ(old_instance.size(), 32u) << old_instance;
  EXPECT_NE(new_instance, old_instance);
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

// README "Upgrading": the new daemon "binds the metrics address beside the old one
// (SO_REUSEPORT)"; the old one "answers /readyz with 503 on connections it still had, lets
// go of the metrics address, serves its open connections until they end". Which of two
// SO_REUSEPORT sockets gets a new connection is the kernel's choice, so the old daemon is
// reached on a connection it accepted before the takeover, and new connections are only
// made once it has let go of the address (its "handover done" line is logged after that).
TEST_F(LifecycleTest, TakeoverWithMetricsOnHandsTheEndpointToTheNewDaemon) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string metrics = "127.0.0.1:" + std::to_string(free_port());
  const std::string tenant = unique_name();
  const std::string requests_2xx =
      "nsproxy_tenant_requests_total{tenant=\"" + tenant + "\",code=\"2xx\"}";
  Daemon old_daemon(tmp_.path());
  old_daemon.set_extra_args({"--metrics-listen", metrics});
  ASSERT_TRUE(old_daemon.start());
  ASSERT_TRUE(register_tenant(old_daemon, ns.path(), tenant, {.upstream = upstream.address()}));

  // The old daemon serves the endpoint, and counts the tenant's requests.
  auto ready = metrics_get(metrics, "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.error().message;
  EXPECT_EQ(ready->status, 200) << ready->describe();
  // A keep-alive tenant connection, open across the takeover: the old daemon drains it.
  HttpConn held = HttpConn::open(ns.path(), "127.0.0.1:8080");
  ASSERT_TRUE(held.ok()) << held.error();
  for (int i = 0; i < 3; ++i) {
    auto r = held.request(http_request("GET", "/before"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->status, 200) << r->describe();
  }
  auto before = metrics_get(metrics, "/metrics");
  ASSERT_TRUE(before.ok()) << before.error().message;
  ASSERT_EQ(before->status, 200) << before->describe();
  EXPECT_EQ(sample(before->body, requests_2xx), 3) << before->body;
  // A metrics connection the old daemon holds (only it listens yet); its request follows
  // once the old daemon has handed over.
  HttpConn probe = HttpConn::open(kOwnNetns, metrics);
  ASSERT_TRUE(probe.ok()) << probe.error();

  Daemon new_daemon(tmp_.path());
  new_daemon.set_extra_args({"--takeover", "--metrics-listen", metrics});
  ASSERT_TRUE(new_daemon.start()) << old_daemon.log();
  ASSERT_TRUE(wait_until([&] {
    return daemon_status(new_daemon).value("pid", 0) == static_cast<int>(new_daemon.pid());
  })) << new_daemon.log();
  ASSERT_TRUE(wait_until([&] {
    return old_daemon.log().find("handover done") != std::string::npos;
  })) << old_daemon.log();
  ASSERT_TRUE(old_daemon.process()->running()) << "the old daemon did not wait for its connection";

  // Draining: the old daemon says it is not ready on the connection it still had...
  auto draining = metrics_get(probe, "/readyz");
  ASSERT_TRUE(draining.ok()) << draining.error().message << "\n" << old_daemon.log();
  EXPECT_EQ(draining->status, 503) << draining->describe();
  // ...and a new connection reaches the new daemon: ready, with the tenant's series, its
  // counters started from zero (the old daemon's 3 requests are not in them).
  auto ready_new = metrics_get(metrics, "/readyz");
  ASSERT_TRUE(ready_new.ok()) << ready_new.error().message << "\n" << new_daemon.log();
  EXPECT_EQ(ready_new->status, 200) << ready_new->describe();
  auto during = metrics_get(metrics, "/metrics");
  ASSERT_TRUE(during.ok()) << during.error().message;
  EXPECT_EQ(sample(during->body, requests_2xx), 0) << during->body;

  // The tenant's connection ends: the old daemon exits 0, and the new one serves the
  // endpoint alone, counting the tenant's new requests.
  held.close();
  auto code = old_daemon.process()->wait(10000ms);
  ASSERT_TRUE(code.has_value()) << "the old daemon did not exit after draining\n"
                                << old_daemon.log();
  EXPECT_EQ(*code, 0) << old_daemon.log();
  old_daemon.stop();
  for (int i = 0; i < 2; ++i) {
    auto c = HttpConn::open(ns.path(), "127.0.0.1:8080");
    ASSERT_TRUE(c.ok()) << c.error();
    auto r = c.request(http_request("GET", "/after"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
  }
  auto ready_after = metrics_get(metrics, "/readyz");
  ASSERT_TRUE(ready_after.ok()) << ready_after.error().message << "\n" << new_daemon.log();
  EXPECT_EQ(ready_after->status, 200) << ready_after->describe();
  auto after = metrics_get(metrics, "/metrics");
  ASSERT_TRUE(after.ok()) << after.error().message;
  ASSERT_EQ(after->status, 200) << after->describe();
  EXPECT_EQ(sample(after->body, requests_2xx), 2) << after->body;
  EXPECT_EQ(sample(after->body, "nsproxy_registrations"), 1) << after->body;
  EXPECT_EQ(new_daemon.stop(), 0) << new_daemon.log();
}

}  // namespace
}  // namespace nspit
