// Passing fds over the control socket: what the receiver learns when fds do not arrive.
// Each test runs in its own process (gtest_discover_tests), so lowering this process's
// RLIMIT_NOFILE for a moment touches nobody else.
#include "control_transport.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace nsproxy {
namespace {

struct Pair {
  UniqueFd a, b;
};

Pair seqpacket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

TEST(ControlTransport, PassedFdArrives) {
  Pair p = seqpacket_pair();
  UniqueFd passed(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(send_message(p.a.get(), "{}", passed.get()));
  auto m = recv_message(p.b.get(), 1024);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(static_cast<bool>(m->fd));
  EXPECT_FALSE(m->fds_lost);
  EXPECT_FALSE(m->extra_fds);
  EXPECT_EQ(::fcntl(m->fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(ControlTransport, ExtraFdsAreClosedAndReported) {
  Pair p = seqpacket_pair();
  UniqueFd f1(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd f2(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(send_message_fds(p.a.get(), "{}", {f1.get(), f2.get()}));
  auto m = recv_message(p.b.get(), 1024, 1);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(m->extra_fds);
  EXPECT_FALSE(m->fds_lost);
}

// A receiver out of descriptors: the kernel drops the fd and sets MSG_CTRUNC. That must
// read as "out of fds" (a resource limit), not as a malformed request.
TEST(ControlTransport, ReceiverOutOfFdsIsReportedAsLostNotAsExtra) {
  Pair p = seqpacket_pair();
  UniqueFd passed(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(send_message(p.a.get(), "{}", passed.get()));

  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Fill every descriptor slot below a low limit.
  std::vector<UniqueFd> fillers;
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  for (;;) {
    UniqueFd f(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!f) break;
    fillers.push_back(std::move(f));
  }
  auto m = recv_message(p.b.get(), 1024);
  fillers.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);

  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->payload, "{}");
  EXPECT_FALSE(static_cast<bool>(m->fd));
  EXPECT_TRUE(m->fds_lost);
  EXPECT_FALSE(m->extra_fds);
}

}  // namespace
}  // namespace nsproxy
