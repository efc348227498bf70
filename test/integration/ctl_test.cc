// nsproxyctl against a real daemon: what an operator types and sees.
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

class CtlTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxyctl", "nsproxy-echo"}));
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_TRUE(daemon_->start());
  }

  ProcessResult ctl(std::vector<std::string> args) const {
    std::vector<std::string> argv = {binary("nsproxyctl"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }

  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(CtlTest, AddListCheckDelRoundTrip) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  std::string id = unique_name();

  auto add = ctl({"add", "--id", id, "--netns", ns.path(), "--listen", "127.0.0.1:8080",
                  "--upstream", echo.address(), "--mode", "tcp", "--label", "team=a"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "via ctl");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "via ctl");

  auto list = ctl({"list"});
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  EXPECT_NE(list.out.find(id), std::string::npos) << list.describe();
  EXPECT_NE(list.out.find(ns.path()), std::string::npos) << list.describe();

  auto list_json = ctl({"list", "--json"});
  ASSERT_EQ(list_json.exit_code, 0) << list_json.describe();
  auto j = json::parse(list_json.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << "list --json is not JSON: " << list_json.describe();
  EXPECT_NE(j.dump().find(id), std::string::npos) << list_json.out;
  EXPECT_NE(j.dump().find("\"team\":\"a\""), std::string::npos) << list_json.out;

  auto check = ctl({"check", "--id", id});
  EXPECT_EQ(check.exit_code, 0) << check.describe();

  auto status = ctl({"status"});
  EXPECT_EQ(status.exit_code, 0) << status.describe();

  auto del = ctl({"del", "--id", id});
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  auto c = connect_in_netns(ns.path(), "127.0.0.1:8080");
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;

  auto check_after = ctl({"check", "--id", id});
  EXPECT_NE(check_after.exit_code, 0) << check_after.describe();
  EXPECT_FALSE(check_after.err.empty()) << "no message on stderr: " << check_after.describe();

  auto list_after = ctl({"list"});
  ASSERT_EQ(list_after.exit_code, 0) << list_after.describe();
  EXPECT_EQ(list_after.out.find(id), std::string::npos) << list_after.describe();

  auto del_again = ctl({"del", "--id", id});
  EXPECT_EQ(del_again.exit_code, 0) << "del of a missing id must succeed: " << del_again.describe();
}

TEST_F(CtlTest, AddWithPortTakenShowsDaemonMessage) {
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  auto taken = listen_in_netns(ns.path(), "127.0.0.1:8080");
  ASSERT_TRUE(taken.ok()) << taken.error().message;
  auto add = ctl({"add", "--id", unique_name(), "--netns", ns.path(), "--listen", "127.0.0.1:8080",
                  "--upstream", "127.0.0.1:9"});
  EXPECT_NE(add.exit_code, 0) << add.describe();
  EXPECT_NE(add.err.find("Address already in use"), std::string::npos) << add.describe();
  EXPECT_NE(add.err.find(ns.path()), std::string::npos) << add.describe();
}

TEST_F(CtlTest, UnreachableDaemonIsAnErrorNamingTheSocket) {
  std::string socket = tmp_.file("nobody.sock");
  auto r = run({binary("nsproxyctl"), "--socket", socket, "status"}, 10000ms);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find(socket), std::string::npos) << r.describe();
}

// README: "On error it prints the daemon's message and exits 1 (2 for usage errors)";
// nsproxyctl(1): 0 success (also del of something not registered), 1 unreachable, the
// namespace cannot be opened or the daemon refused (its code in parentheses), 2 usage.
TEST_F(CtlTest, ExitCodesFollowTheDocumentedTable) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns, other;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(other.ok()) << other.error();
  const std::string id = unique_name();
  auto expect = [](const ProcessResult& r, int code, const std::string& on_stderr) {
    EXPECT_EQ(r.exit_code, code) << r.describe();
    if (!on_stderr.empty()) {
      EXPECT_NE(r.err.find(on_stderr), std::string::npos)
          << "stderr lacks \"" << on_stderr << "\": " << r.describe();
    }
  };

  // 0
  expect(ctl({"add", "--id", id, "--netns", ns.path(), "--listen", "127.0.0.1:8080", "--upstream",
              echo.address(), "--mode", "tcp"}),
         0, "");
  expect(ctl({"check", "--id", id, "--netns", ns.path()}), 0, "");
  expect(ctl({"del", "--id", "never-" + id}), 0, "");
  // 1: the daemon refused, with its code.
  expect(ctl({"check", "--id", id, "--netns", other.path()}), 1, "(netns_mismatch)");
  expect(ctl({"check", "--id", "never-" + id}), 1, "(not_found)");
  expect(ctl({"add", "--id", id + "-2", "--netns", ns.path(), "--listen", "127.0.0.1:8080",
              "--upstream", echo.address()}),
         1, "(listener_failed)");
  // 1: the namespace cannot be opened.
  const std::string missing = tmp_.file("no-such-netns");
  expect(ctl({"add", "--id", id + "-3", "--netns", missing, "--listen", "127.0.0.1:8081",
              "--upstream", echo.address()}),
         1, missing);
  expect(ctl({"check", "--id", id, "--netns", missing}), 1, missing);
  // 1: unreachable.
  const std::string nobody = tmp_.file("nobody.sock");
  auto unreachable = run({binary("nsproxyctl"), "--socket", nobody, "list"});
  expect(unreachable, 1, nobody);
  // 2: usage errors, each naming what is wrong.
  expect(ctl({}), 2, "missing command");
  expect(ctl({"launch"}), 2, "unknown command \"launch\"");
  expect(ctl({"add", "--netns", ns.path(), "--listen", "127.0.0.1:8082", "--upstream",
              echo.address()}),
         2, "--id is required");
  expect(ctl({"add", "--id", id, "--netns", ns.path(), "--listen", "127.0.0.1:8082"}), 2,
         "has no --upstream");
  expect(ctl({"add", "--id", id, "--netns", ns.path(), "--listen", "127.0.0.1:8082", "--upstream",
              echo.address(), "--rate", "10x"}),
         2, "--rate");
  expect(ctl({"list", "--bogus"}), 2, "--bogus");
  expect(run({binary("nsproxyctl"), "--timeout", "0", "list"}), 2, "--timeout");
  // None of the refused commands changed anything.
  auto regs = daemon_->list();
  ASSERT_EQ(regs.size(), 1u) << regs.dump(2);
  EXPECT_EQ(regs[0]["attachment"].value("id", ""), id);
}

// --timeout MS bounds the wait for a daemon that accepts the connection but never
// answers (here: a listening control socket that nobody serves).
TEST_F(CtlTest, TimeoutBoundsTheWaitForADaemonThatDoesNotAnswer) {
  const std::string path = tmp_.file("silent.sock");
  nsproxy::UniqueFd silent(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(silent.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(silent.get(), 16), 0);

  // Default 5000 ms: --timeout 300 must end it well before that. Bounds with a margin
  // for a loaded machine, far from each other.
  auto t0 = std::chrono::steady_clock::now();
  auto r = run({binary("nsproxyctl"), "--socket", path, "--timeout", "300", "status"}, 20000ms);
  auto waited = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("after 300 ms"), std::string::npos) << r.describe();
  EXPECT_NE(r.err.find(path), std::string::npos) << r.describe();
  EXPECT_GE(waited.count(), 300) << r.describe();
  EXPECT_LT(waited.count(), 4000) << "--timeout 300 did not bound the wait: " << r.describe();
}

// Options that do not belong to the command are refused with a usage error naming the
// option and the command, before anything is sent to the daemon.
TEST_F(CtlTest, OptionsThatDoNotApplyToTheCommandAreUsageErrors) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string id = unique_name();
  ASSERT_EQ(ctl({"add", "--id", id, "--netns", ns.path(), "--listen", "127.0.0.1:8080",
                 "--upstream", echo.address(), "--mode", "tcp"})
                .exit_code,
            0);

  struct Case {
    std::vector<std::string> args;
    std::string option;
  };
  const std::vector<Case> cases = {
      {{"del", "--id", id, "--netns", ns.path()}, "--netns"},
      {{"del", "--id", id, "--listen", "127.0.0.1:8080"}, "--listen"},
      {{"del", "--id", id, "--label", "a=b"}, "--label"},
      {{"check", "--id", id, "--upstream", echo.address()}, "--upstream"},
      {{"check", "--id", id, "--rate", "5"}, "--rate"},
      {{"list", "--rate", "5"}, "--rate"},
      {{"list", "--id", id}, "--id"},
      {{"status", "--netns", ns.path()}, "--netns"},
      {{"status", "--max-connections", "3"}, "--max-connections"},
      {{"list", "--add-address"}, "--add-address"},
      {{"help", "--json"}, "--json"},
  };
  for (const auto& c : cases) {
    auto r = ctl(c.args);
    const std::string& cmd = c.args[0];
    SCOPED_TRACE(cmd + " " + c.option);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(c.option + " does not apply to " + cmd), std::string::npos)
        << r.describe();
    EXPECT_EQ(r.out, "") << r.describe();
  }
  // A del with a stray option did not unregister anything.
  EXPECT_EQ(daemon_->registrations_with_id(id).size(), 1u);
  auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "still");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "still");

  // The options that do apply still work, --json on every command included.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"check", "--id", id, "--netns", ns.path(), "--json"},
        {"list", "--json"},
        {"status", "--json"},
        {"del", "--id", id, "--json"}}) {
    auto r = ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_FALSE(nlohmann::json::parse(r.out, nullptr, false).is_discarded()) << r.describe();
  }
  EXPECT_TRUE(daemon_->registrations_with_id(id).empty());
}

}  // namespace
}  // namespace nspit
