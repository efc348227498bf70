// tcp mode: the tenant's bytes both ways, half-close, many connections at once, an
// upstream that is down, and a tenant at its connection limit waiting in the backlog.
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

constexpr const char* kListen = kTenantListen;

// One tcp tenant whose upstream echoes bytes back.
class TcpModeTest : public OneTenantTest {
 protected:
  TcpModeTest() : OneTenantTest("tcp-", {}, nsproxy::Mode::Tcp) {}
  void SetUp() override {
    OneTenantTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(start({}, "echo"));
  }
};

TEST_F(TcpModeTest, HalfCloseDeliversEchoOfEverythingSent) {
  const Netns& ns = ns_;

  // Bigger than every socket buffer on the way, so data is in flight in both directions
  // when the client shuts down its write side.
  std::string payload;
  for (int i = 0; payload.size() < 4 * 1024 * 1024; ++i) payload += std::to_string(i) + ",";
  auto c = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.message;
  auto got = exchange(c.fd.get(), payload, 30000ms);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->size(), payload.size());
  EXPECT_TRUE(*got == payload) << "echoed bytes differ from the bytes sent";

  // Small payload, write side shut first, then read: the reply still comes.
  auto c2 = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(c2.ok()) << c2.message;
  ASSERT_TRUE(send_all(c2.fd.get(), "ping").ok());
  ASSERT_EQ(::shutdown(c2.fd.get(), SHUT_WR), 0);
  auto rest = recv_until_eof(c2.fd.get());
  ASSERT_TRUE(rest.ok()) << rest.error().message;
  EXPECT_EQ(*rest, "ping");
}

TEST_F(TcpModeTest, ManyConcurrentConnectionsAreServed) {
  const Netns& ns = ns_;

  std::vector<Connection> conns;
  for (int i = 0; i < 50; ++i) {
    conns.push_back(connect_in_netns(ns.path(), kListen));
    ASSERT_TRUE(conns.back().ok()) << conns.back().message;
  }
  for (size_t i = 0; i < conns.size(); ++i) {
    ASSERT_TRUE(send_all(conns[i].fd.get(), "conn " + std::to_string(i)).ok());
  }
  for (size_t i = 0; i < conns.size(); ++i) {
    ASSERT_EQ(::shutdown(conns[i].fd.get(), SHUT_WR), 0);
    auto got = recv_until_eof(conns[i].fd.get());
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(*got, "conn " + std::to_string(i));
  }
}

// tcp mode, tenant at --max-connections-per-tenant: the next connection is not accepted
// (and not closed either); it waits in the backlog and its bytes are echoed once the
// tenant's first connection ends.
TEST_F(DaemonTest, TcpTenantAtItsLimitWaitsInTheBacklog) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  d.set_extra_args({"--max-connections-per-tenant", "1"});
  ASSERT_TRUE(d.start());
  ASSERT_TRUE(
      register_tenant(d, ns.path(), "t", {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  Connection first = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(first.ok()) << first.message;
  ASSERT_TRUE(send_all(first.fd.get(), "one").ok());
  // The first connection is the tenant's one session before the second arrives.
  EXPECT_TRUE(wait_until([&] { return daemon_status(d).value("connections", 0) == 1; }))
      << daemon_status(d).dump();
  Connection second = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(second.ok()) << second.message;
  ASSERT_TRUE(send_all(second.fd.get(), "two").ok());
  ::shutdown(second.fd.get(), SHUT_WR);
  pollfd p{second.fd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 700), 0) << "the second connection was served or closed beyond the limit";
  auto one = exchange(first.fd.get(), "");
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(*one, "one");
  first.fd.reset();
  auto two = recv_until_eof(second.fd.get(), 3000ms);
  ASSERT_TRUE(two.ok()) << two.error().message;
  EXPECT_EQ(*two, "two");
}

TEST_F(DaemonTest, UpstreamDownClosesTenantConnection) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  // Port 1 on the host loopback: nothing listens there.
  ASSERT_TRUE(register_tenant(d, ns.path(), unique_name(),
                              {.upstream = "127.0.0.1:1", .mode = nsproxy::Mode::Tcp}));
  auto c = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.message;
  auto got = recv_until_eof(c.fd.get(), 5000ms);
  // EOF or reset, promptly; never a hang.
  if (got.ok())
    EXPECT_EQ(*got, "");
  else
    EXPECT_NE(got.error().code, nsproxy::Code::kTimeout) << got.error().message;
}

}  // namespace
}  // namespace nspit
