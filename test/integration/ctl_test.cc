// nsproxyctl against a real daemon: what an operator types and sees.
#include <cerrno>

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

}  // namespace
}  // namespace nspit
