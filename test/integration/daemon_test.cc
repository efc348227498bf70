// nsproxyd on its own: control socket robustness, lifecycle, TCP forwarding details.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "control_transport.h"
#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

nsproxy::UniqueFd connect_control(const std::string& path) {
  nsproxy::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    fd.reset();
  }
  return fd;
}

// Waits for one reply datagram. Returns nullopt on EOF; fails the test on timeout.
std::optional<std::string> recv_reply(int fd, Millis timeout = 3000ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
    ADD_FAILURE() << "no reply from the daemon within " << timeout.count() << " ms";
    return std::nullopt;
  }
  auto msg = nsproxy::recv_message(fd, nsproxy::kMaxMessageSize * 16);
  if (!msg) return std::nullopt;
  return msg->payload;
}

nsproxy::Request status_request() {
  nsproxy::Request req;
  req.op = nsproxy::Op::Status;
  return req;
}

class DaemonTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd"}));
  }

  TempDir tmp_;
};

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

TEST_F(DaemonTest, GarbageOnControlSocketGetsBadRequestAndDaemonKeepsServing) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());

  {
    auto fd = connect_control(d.socket_path());
    ASSERT_TRUE(fd);
    ASSERT_TRUE(nsproxy::send_message(fd.get(), "not json {").ok());
    auto text = recv_reply(fd.get());
    ASSERT_TRUE(text) << "the daemon closed the connection without an error reply";
    auto reply = nsproxy::decode_reply(*text);
    ASSERT_TRUE(reply.ok()) << "undecodable reply: " << *text;
    EXPECT_FALSE(reply->ok);
    EXPECT_EQ(reply->error.code, nsproxy::Code::kBadRequest) << *text;
  }
  {
    // Valid JSON, wrong shape.
    auto fd = connect_control(d.socket_path());
    ASSERT_TRUE(fd);
    ASSERT_TRUE(nsproxy::send_message(fd.get(), R"({"version":1,"op":"launch"})").ok());
    auto text = recv_reply(fd.get());
    ASSERT_TRUE(text);
    auto reply = nsproxy::decode_reply(*text);
    ASSERT_TRUE(reply.ok()) << *text;
    EXPECT_FALSE(reply->ok);
    EXPECT_EQ(reply->error.code, nsproxy::Code::kBadRequest) << *text;
  }
  {
    // Oversized datagram: refused with too_large, naming the limit (send_message makes
    // the send buffer big enough; as root it may exceed net.core.wmem_max).
    auto fd = connect_control(d.socket_path());
    ASSERT_TRUE(fd);
    std::string big(nsproxy::kMaxMessageSize + 4096, 'x');
    auto sent = nsproxy::send_message(fd.get(), big);
    ASSERT_TRUE(sent.ok()) << "could not send the oversized request: " << sent.error().message;
    auto text = recv_reply(fd.get());
    ASSERT_TRUE(text) << "the daemon closed the connection without an error reply";
    auto reply = nsproxy::decode_reply(*text);
    ASSERT_TRUE(reply.ok()) << *text;
    EXPECT_FALSE(reply->ok) << *text;
    EXPECT_EQ(reply->error.code, nsproxy::Code::kTooLarge) << *text;
    EXPECT_EQ(reply->error.message,
              "request larger than " + std::to_string(nsproxy::kMaxMessageSize) + " bytes")
        << *text;
  }
  {
    // A client that connects and sends nothing, then goes away.
    auto fd = connect_control(d.socket_path());
    ASSERT_TRUE(fd);
  }
  auto reply = d.call(status_request());
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok) << reply->error.message;
}

TEST_F(DaemonTest, SilentClientDoesNotBlockOthers) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  auto idle = connect_control(d.socket_path());
  ASSERT_TRUE(idle);
  auto reply = d.call(status_request(), -1, 2000ms);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok);
}

TEST_F(DaemonTest, AddWithFdThatIsNotANetnsIsRefused) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  nsproxy::UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.attachment.id = unique_name();
  req.netns_path = "/dev/null";
  req.listeners = {{kListen, "127.0.0.1:9", nsproxy::Mode::Tcp}};
  auto reply = d.call(req, devnull.get());
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_FALSE(reply->ok);
  EXPECT_EQ(reply->error.code, nsproxy::Code::kNotNetns) << reply->error.message;

  req.netns_path = "/run/netns/none";
  auto no_fd = d.call(req, -1);
  ASSERT_TRUE(no_fd.ok()) << no_fd.error().message;
  EXPECT_FALSE(no_fd->ok) << "add without a netns fd must be refused";
  EXPECT_TRUE(d.list().empty());
}

TEST_F(DaemonTest, HalfCloseDeliversEchoOfEverythingSent) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(d, ns.path(), unique_name(),
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));

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

TEST_F(DaemonTest, ManyConcurrentConnectionsAreServed) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(d, ns.path(), unique_name(),
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));

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

TEST_F(DaemonTest, RestartRecreatesListenersFromState) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Netns gone;
  ASSERT_TRUE(gone.ok()) << gone.error();
  std::string id = unique_name();
  std::string gone_id = unique_name();
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    ASSERT_TRUE(register_tenant(d, ns.path(), id,
                                {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    ASSERT_TRUE(register_tenant(d, gone.path(), gone_id,
                                {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    ASSERT_EQ(d.stop(), 0) << d.log();
  }
  auto c = connect_in_netns(ns.path(), kListen);
  EXPECT_EQ(c.err, ECONNREFUSED) << "listener survived the daemon: " << c.message;
  ASSERT_TRUE(gone.remove());  // vanished while the daemon was down

  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  auto regs = d.registrations_with_id(id);
  ASSERT_EQ(regs.size(), 1u) << d.list().dump(2);
  EXPECT_EQ(regs[0].value("netns_inode", 0ull), static_cast<uint64_t>(ns.identity().ino));
  auto got = roundtrip_in_netns(ns.path(), kListen, "after restart");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "after restart");
  EXPECT_TRUE(d.registrations_with_id(gone_id).empty())
      << "registration of a namespace deleted while the daemon was down was restored: "
      << d.list().dump(2);
}

TEST_F(DaemonTest, KillNineThenRestartRestoresEveryAcknowledgedAdd) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  constexpr int kTenants = 5;
  std::vector<std::unique_ptr<Netns>> nss;
  std::vector<std::string> ids;
  {
    Daemon d(tmp_.path());
    ASSERT_TRUE(d.start());
    for (int i = 0; i < kTenants; ++i) {
      nss.push_back(std::make_unique<Netns>());
      ASSERT_TRUE(nss.back()->ok()) << nss.back()->error();
      ids.push_back(unique_name());
      ASSERT_TRUE(register_tenant(d, nss.back()->path(), ids.back(),
                                  {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
    }
    // The last one is deleted again: it must not come back.
    nsproxy::Request del;
    del.op = nsproxy::Op::Del;
    del.attachment.id = ids.back();
    auto deleted = d.call(del);
    ASSERT_TRUE(deleted.ok() && deleted->ok);
    d.process()->signal(SIGKILL);
    auto code = d.process()->wait(5000ms);
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 128 + SIGKILL);
    d.stop();  // reaps; the exit code of a killed daemon is not checked here
  }
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start()) << "restart after kill -9 (stale socket must be replaced)";
  for (int i = 0; i < kTenants - 1; ++i) {
    EXPECT_EQ(d.registrations_with_id(ids[i]).size(), 1u) << ids[i] << "\n" << d.list().dump(2);
    auto got = roundtrip_in_netns(nss[i]->path(), kListen, "tenant " + std::to_string(i));
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(*got, "tenant " + std::to_string(i));
  }
  EXPECT_TRUE(d.registrations_with_id(ids.back()).empty())
      << "a deleted registration came back: " << d.list().dump(2);
  auto c = connect_in_netns(nss.back()->path(), kListen);
  EXPECT_EQ(c.err, ECONNREFUSED) << c.message;
}

TEST_F(DaemonTest, NamespaceDeletedWithoutDelIsReclaimedWithinInterval) {
  ASSERT_TRUE(binaries_exist({"nsproxy-echo"}));
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns kept;
  ASSERT_TRUE(kept.ok()) << kept.error();
  Netns gone;
  ASSERT_TRUE(gone.ok()) << gone.error();
  Daemon d(tmp_.path());
  d.set_extra_args({"--reconcile-interval", "0.5"});
  ASSERT_TRUE(d.start());
  std::string kept_id = unique_name();
  std::string gone_id = unique_name();
  ASSERT_TRUE(register_tenant(d, kept.path(), kept_id,
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  ASSERT_TRUE(register_tenant(d, gone.path(), gone_id,
                              {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}));
  ASSERT_TRUE(gone.remove());  // no DEL: the runtime forgot it
  // A bound, not a measurement: the periodic reconcile (every 0.5 s) must run and find
  // it. 15 s is thirty intervals, enough under ASan on a loaded machine.
  bool reclaimed =
      wait_until([&] { return d.registrations_with_id(gone_id).empty(); }, 15000ms, 100ms);
  EXPECT_TRUE(reclaimed) << "not reclaimed within 15 s at a 0.5 s reconcile interval: "
                         << d.list().dump(2);
  EXPECT_EQ(d.registrations_with_id(kept_id).size(), 1u) << "the live one was dropped too";
  auto status = d.call(status_request());
  ASSERT_TRUE(status.ok() && status->ok);
  EXPECT_EQ(status->data.value("reclaimed", 0), 1) << status->data.dump();
  EXPECT_NE(d.log().find("is gone"), std::string::npos) << d.log();
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace nspit
