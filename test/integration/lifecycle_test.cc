// Lifecycle and limits of nsproxyd: concurrent registration storms, who may talk to the
// control socket, the host namespace, fd exhaustion, and the daemon-wide limits.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

class LifecycleTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxyctl", "nsproxy-echo"}));
  }

  TempDir tmp_;
};

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

TEST_F(LifecycleTest, StormOf200ConcurrentPluginAddsAndDelsLosesNothing) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  const std::string network = unique_name();
  auto config_for = [&](int i) {
    json listeners = json::array({listener("127.0.0.1:" + std::to_string(20000 + i),
                                           echo.address(), "tcp")});
    return plugin_config(network, d.socket_path(), listeners, 20000).dump();
  };
  auto cid = [](int i) { return "storm" + std::to_string(i); };
  // Runs every (command, i) at once and waits for all of them.
  auto storm = [&](const std::vector<std::pair<std::string, int>>& jobs) {
    std::vector<std::unique_ptr<Process>> procs;
    for (const auto& [command, i] : jobs) {
      procs.push_back(std::make_unique<Process>(std::vector<std::string>{binary("nsproxy")},
                                                cni_env(command, cid(i), ns.path()),
                                                config_for(i)));
      ASSERT_TRUE(procs.back()->started()) << procs.back()->start_error();
    }
    for (size_t k = 0; k < procs.size(); ++k) {
      auto code = procs[k]->wait(60000ms);
      ASSERT_TRUE(code.has_value()) << jobs[k].first << " " << jobs[k].second << " hung";
      EXPECT_EQ(*code, 0) << jobs[k].first << " " << cid(jobs[k].second) << ": "
                          << procs[k]->out() << procs[k]->err();
    }
  };
  auto registered_ids = [&]() {
    std::multiset<std::string> ids;
    for (const auto& r : d.list()) ids.insert(r["attachment"].value("id", ""));
    return ids;
  };

  std::vector<std::pair<std::string, int>> adds;
  for (int i = 0; i < 200; ++i) adds.emplace_back("ADD", i);
  storm(adds);
  auto ids = registered_ids();
  EXPECT_EQ(ids.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(ids.count(cid(i)), 1u) << cid(i);

  // 100 DELs of existing ones and 100 new ADDs, all at once.
  std::vector<std::pair<std::string, int>> mixed;
  for (int i = 0; i < 100; ++i) {
    mixed.emplace_back("DEL", i);
    mixed.emplace_back("ADD", 200 + i);
  }
  storm(mixed);
  ids = registered_ids();
  EXPECT_EQ(ids.size(), 200u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ids.count(cid(i)), 0u) << cid(i) << " survived DEL";
  for (int i = 100; i < 300; ++i) EXPECT_EQ(ids.count(cid(i)), 1u) << cid(i);

  for (int i : {100, 199, 250, 299}) {
    auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:" + std::to_string(20000 + i), "x");
    ASSERT_TRUE(got.ok()) << i << ": " << got.error().message;
    EXPECT_EQ(*got, "x");
  }
  auto gone = connect_in_netns(ns.path(), "127.0.0.1:20000");
  EXPECT_EQ(gone.err, ECONNREFUSED) << gone.message;
}

TEST_F(LifecycleTest, DaemonsOwnNetnsIsRefusedUnlessAllowed) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    std::optional<nsproxy::Reply> r;
    auto added = register_tenant(
        d, "/proc/self/ns/net", unique_name(),
        {.listen = listen, .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}, &r);
    ASSERT_TRUE(r.has_value()) << added.message();
    EXPECT_FALSE(r->ok);
    EXPECT_EQ(r->error.code, nsproxy::Code::kHostNetns) << r->error.message;
    EXPECT_NE(r->error.message.find("--allow-host-netns"), std::string::npos) << r->error.message;
    EXPECT_EQ(d.list().size(), 0u);
    EXPECT_EQ(d.stop(), 0) << d.log();
  }
  Daemon d(tmp_.path());
  d.set_extra_args({"--allow-host-netns"});
  ASSERT_TRUE(d.start());
  std::string id = unique_name();
  ASSERT_TRUE(
      register_tenant(d, "/proc/self/ns/net", id,
                      {.listen = listen, .upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  nsproxy::Request del;
  del.op = nsproxy::Op::Del;
  del.attachment.id = id;
  auto deleted = d.call(del);
  ASSERT_TRUE(deleted.ok() && deleted->ok);
}

TEST_F(LifecycleTest, ControlSocketServesRootAndTheAllowedGroupOnly) {
  constexpr const char* kGroup = "4242";
  // The socket's directory must be reachable by the unprivileged clients.
  ASSERT_EQ(::chmod(tmp_.path().c_str(), 0711), 0);
  std::string ctl = tmp_.file("nsproxyctl");
  ASSERT_EQ(run({"cp", binary("nsproxyctl"), ctl}).exit_code, 0);
  Daemon d(tmp_.path());
  d.set_extra_args({"--allow-gid", kGroup});
  ASSERT_TRUE(d.start());
  struct stat st;
  ASSERT_EQ(::stat(d.socket_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, 4242u);

  auto as = [&](std::vector<std::string> creds) {
    std::vector<std::string> argv = {"setpriv"};
    argv.insert(argv.end(), creds.begin(), creds.end());
    argv.insert(argv.end(), {ctl, "--socket", d.socket_path(), "status"});
    return run(argv);
  };
  // Primary group is the allowed one: served.
  auto allowed = as({"--reuid=65534", "--regid=4242", "--clear-groups"});
  EXPECT_EQ(allowed.exit_code, 0) << allowed.describe();
  // Reaches the socket through a supplementary group, but its primary group is not the
  // allowed one: the peer credential check refuses it.
  auto refused = as({"--reuid=65534", "--regid=65534", "--groups=4242"});
  EXPECT_NE(refused.exit_code, 0) << refused.describe();
  EXPECT_NE(refused.err.find("only root"), std::string::npos) << refused.describe();
  // Neither: the socket's mode keeps it out.
  auto outsider = as({"--reuid=65534", "--regid=65534", "--clear-groups"});
  EXPECT_NE(outsider.exit_code, 0) << outsider.describe();
  // Root still is served, and the daemon kept serving through all of it.
  EXPECT_EQ(d.call([] {
              nsproxy::Request r;
              r.op = nsproxy::Op::Status;
              return r;
            }())->ok,
            true);
  EXPECT_NE(d.log().find("refused a request from uid 65534"), std::string::npos) << d.log();
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
  a.fd.reset();
  conn.close();
  ASSERT_TRUE(wait_until([&] { return daemon_status(d).value("connections", -1) == 1; }))
      << "a closed connection still counted: " << daemon_status(d).dump();
  auto again = HttpConn::open(ns.path(), "127.0.0.1:8081");
  ASSERT_TRUE(again.ok()) << again.error();
  auto ok = again.request(http_request("GET", "/"));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->status, 200) << ok->describe();
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
  std::printf("[ FIGURES  ] kill -9 mid-storm: %zu of %d ADDs acknowledged, %zu registrations after restart\n",
              acked.size(), kAdds, present.size());
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
