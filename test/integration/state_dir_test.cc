// --state-dir: "created, mode 0700; one daemon per directory" (README's flag table).
#include <sys/stat.h>

#include "fixture.h"

namespace nspit {
namespace {

class StateDirTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  }
  TempDir tmp_;
};

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return static_cast<mode_t>(-1);
  return st.st_mode & 07777;
}

TEST_F(StateDirTest, ASecondDaemonOnTheSameStateDirIsRefusedAndTheFirstServesOn) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon first(tmp_.path());
  ASSERT_TRUE(first.start());
  nsproxy::ListenerSpec spec{"127.0.0.1:8080", echo.address(), nsproxy::Mode::Tcp};
  const std::string id = "state-" + short_token();
  ASSERT_TRUE(register_tenant(first, ns.path(), id, {.listeners = {spec}}));

  // Another control socket, the same state directory.
  TempDir other;
  const std::string other_socket = other.file("second.sock");
  auto second = run(
      {binary("nsproxyd"), "--socket", other_socket, "--state-dir", first.state_dir()}, 10000ms);
  EXPECT_FALSE(second.timed_out) << "the second daemon kept running: " << second.describe();
  EXPECT_EQ(second.exit_code, 1) << second.describe();
  EXPECT_NE(second.err.find("another nsproxyd uses the state directory " + first.state_dir()),
            std::string::npos)
      << second.describe();
  struct stat st {};
  EXPECT_NE(::stat(other_socket.c_str(), &st), 0)
      << "the refused daemon left its control socket behind: " << other_socket;

  // The first daemon's registration and journal are untouched.
  EXPECT_EQ(first.registrations_with_id(id).size(), 1u);
  auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "still here");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "still here");
  EXPECT_EQ(first.stop(), 0) << first.log();
  Daemon again(tmp_.path());
  ASSERT_TRUE(again.start());
  EXPECT_EQ(again.registrations_with_id(id).size(), 1u) << again.log();
}

TEST_F(StateDirTest, TheStateDirIsCreatedWithMode0700AndAnExistingOneIsTightened) {
  for (bool exists : {false, true}) {
    SCOPED_TRACE(exists ? "existing directory with mode 0755" : "missing directory");
    TempDir dir;
    const std::string state = dir.file("nested/state");
    if (exists) {
      ASSERT_EQ(::mkdir(dir.file("nested").c_str(), 0755), 0);
      ASSERT_EQ(::mkdir(state.c_str(), 0755), 0);
      ASSERT_EQ(::chmod(state.c_str(), 0755), 0);  // whatever the umask did
    }
    const std::string socket = dir.file("nsproxyd.sock");
    Process p({binary("nsproxyd"), "--socket", socket, "--state-dir", state});
    ASSERT_TRUE(p.started()) << p.start_error();
    // Serving means the state directory was set up.
    bool serving = false;
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         !serving && std::chrono::steady_clock::now() < deadline && p.running();) {
      nsproxy::Request req;
      req.op = nsproxy::Op::Status;
      auto r = nsproxy::call_daemon(socket, req, -1, 500ms);
      serving = r.ok() && r->ok;
      if (!serving) std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(serving) << p.err();
    EXPECT_EQ(mode_of(state), 0700u) << state;
    EXPECT_EQ(p.stop(), 0) << p.err();
  }
}

}  // namespace
}  // namespace nspit
