// nsproxyd starting and stopping: the status it reports, SIGTERM, one daemon per control
// socket, and the stale socket file a crashed daemon leaves behind.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "fixture.h"

namespace nspit {
namespace {

TEST_F(DaemonTest, StatusReportsVersionAndPid) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  auto reply = d.call(status_request());
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  ASSERT_TRUE(reply->ok) << reply->error.message;
  EXPECT_EQ(reply->data.value("pid", 0), d.process()->pid()) << reply->data.dump();
  EXPECT_TRUE(reply->data.contains("version")) << reply->data.dump();
  EXPECT_EQ(reply->data.value("registrations", -1), 0) << reply->data.dump();
}

TEST_F(DaemonTest, SigtermExitsZero) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EXPECT_EQ(d.stop(), 0) << d.log();
}

TEST_F(DaemonTest, SecondDaemonOnSameSocketRefusesToStart) {
  Daemon first(tmp_.path());
  ASSERT_TRUE(first.start());
  TempDir other_state;
  auto second =
      run({binary("nsproxyd"), "--socket", first.socket_path(), "--state-dir", other_state.path()},
          5000ms);
  EXPECT_FALSE(second.timed_out) << "the second daemon kept running: " << second.describe();
  EXPECT_NE(second.exit_code, 0) << second.describe();
  EXPECT_FALSE(second.err.empty()) << "no reason given on stderr";
  // The first one is untouched.
  auto reply = first.call(status_request());
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok);
  EXPECT_EQ(reply->data.value("pid", 0), first.process()->pid());
  EXPECT_EQ(first.stop(), 0) << first.log();
}

TEST_F(DaemonTest, StaleSocketFileIsReplaced) {
  Daemon d(tmp_.path());
  {
    // A socket file with nobody behind it, as a crashed daemon leaves it.
    nsproxy::UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, d.socket_path().c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  struct stat st {};
  ASSERT_EQ(::stat(d.socket_path().c_str(), &st), 0);
  ASSERT_TRUE(S_ISSOCK(st.st_mode));
  ASSERT_TRUE(d.start());
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace nspit
