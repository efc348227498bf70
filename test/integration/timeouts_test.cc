// --connect-timeout and --drain-timeout, as README's flag table states them:
//   --connect-timeout S   upstream connect; then 504 (http) or close (tcp)
//   --drain-timeout S     after a takeover, the old daemon serves its open connections at
//                         most this long
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr const char* kListen = "127.0.0.1:8080";

Millis since(Clock::time_point t0) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t0);
}

// The daemon's stderr reaches the test a little after the daemon wrote it.
bool log_shows(const Daemon& d, const std::string& needle) {
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline;
       std::this_thread::sleep_for(20ms)) {
    if (d.log().find(needle) != std::string::npos) return true;
  }
  return d.log().find(needle) != std::string::npos;
}

// An upstream address on the host loopback where a TCP connect never completes: a
// listening socket whose accept queue is full (nobody accepts), so the kernel drops
// every further SYN and the connecting side keeps retransmitting. Nothing leaves the
// machine.
class BlackHoleUpstream {
 public:
  BlackHoleUpstream() {
    listen_fd_ = nsproxy::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (!listen_fd_ || ::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_.get(), 0) != 0 ||
        ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      error_ = std::string("listening socket: ") + std::strerror(errno);
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    // Fill the accept queue until a connect stays pending (backlog 0 still queues one).
    for (int i = 0; i < 8; ++i) {
      auto c = connect_in_netns("/proc/self/ns/net", address_, 300ms);
      if (!c.ok()) {
        if (c.err == ETIMEDOUT) return;  // the queue is full: connects hang
        error_ = "filling the accept queue: " + c.message;
        return;
      }
      fillers_.push_back(std::move(c.fd));
    }
    error_ = "the accept queue of " + address_ + " did not fill up after 8 connections";
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& address() const { return address_; }

 private:
  nsproxy::UniqueFd listen_fd_;
  std::vector<nsproxy::UniqueFd> fillers_;
  std::string address_;
  std::string error_;
};

class ConnectTimeoutTest : public HttpTest {
 protected:
  // The daemon with --connect-timeout 1 and the default (60 s) response timeout: a 504
  // within seconds can only come from the connect timeout.
  void start() {
    ASSERT_TRUE(hole_.ok()) << hole_.error();
    ASSERT_TRUE(ns_.ok()) << ns_.error();
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    daemon_->set_extra_args({"--connect-timeout", "1"});
    ASSERT_TRUE(daemon_->start());
  }
  // upstream_errors of `nsproxyctl status --json`-equivalent status reply.
  json upstream_errors() const {
    nsproxy::Request req;
    req.op = nsproxy::Op::Status;
    auto r = daemon_->call(req);
    if (!r.ok() || !r->ok) return json();
    return r->data.value("upstream_errors", json::object());
  }

  BlackHoleUpstream hole_;
  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(ConnectTimeoutTest, HttpTenantGets504WhenTheUpstreamDoesNotAcceptInTime) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string id = "ct-http-" + short_token();
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), id, {.upstream = hole_.address()}));

  auto c = HttpConn::open(ns_.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  auto t0 = Clock::now();
  // Bound: 1 s of connect timeout plus a wide margin for ASan on a loaded machine; far
  // below the 60 s response timeout.
  auto r = c.request(http_request("GET", "/slow-connect"), 15000ms);
  Millis waited = since(t0);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 504) << r->describe();
  EXPECT_GE(waited.count(), 800) << "the 504 came before the 1 s connect timeout: "
                                 << r->describe();
  EXPECT_LT(waited.count(), 15000);
  EXPECT_EQ(upstream_errors().value("timeout", 0), 1) << upstream_errors().dump();
  EXPECT_TRUE(log_shows(*daemon_, "connect to upstream " + hole_.address())) << daemon_->log();
}

TEST_F(ConnectTimeoutTest, TcpTenantConnectionIsClosedWhenTheUpstreamDoesNotAcceptInTime) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string id = "ct-tcp-" + short_token();
  nsproxy::ListenerSpec spec;
  spec.listen = kListen;
  spec.upstream = hole_.address();
  spec.mode = nsproxy::Mode::Tcp;
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), id, {.listeners = {spec}}));

  auto t0 = Clock::now();
  auto c = connect_in_netns(ns_.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.message;
  ASSERT_TRUE(send_all(c.fd.get(), "hello?").ok());
  auto got = recv_until_eof(c.fd.get(), 15000ms);
  Millis waited = since(t0);
  if (got.ok()) {
    EXPECT_EQ(*got, "") << "bytes arrived from an upstream that never accepted";
  } else {
    // A reset is a close too; a timeout is not.
    EXPECT_NE(got.error().code, nsproxy::Code::kTimeout) << got.error().message;
  }
  EXPECT_GE(waited.count(), 800) << "closed before the 1 s connect timeout";
  EXPECT_EQ(upstream_errors().value("timeout", 0), 1) << upstream_errors().dump();
  EXPECT_TRUE(log_shows(*daemon_, "connect to upstream " + hole_.address())) << daemon_->log();
}

// The old daemon of a takeover keeps serving a connection that stays open, and ends it
// when --drain-timeout runs out: it exits 0 and the tenant sees its connection close.
class DrainTimeoutTest : public IntegrationTest {};  // root, or a loud skip

TEST_F(DrainTimeoutTest, OldDaemonEndsOpenConnectionsAfterTheDrainTimeout) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  TempDir tmp;
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon old_daemon(tmp.path());
  old_daemon.set_extra_args({"--drain-timeout", "2"});
  ASSERT_TRUE(old_daemon.start());
  nsproxy::ListenerSpec spec;
  spec.listen = kListen;
  spec.upstream = echo.address();
  spec.mode = nsproxy::Mode::Tcp;
  ASSERT_TRUE(
      register_tenant(old_daemon, ns.path(), "drain-" + short_token(), {.listeners = {spec}}));

  // A tenant connection that never ends by itself.
  Connection open = connect_in_netns(ns.path(), kListen);
  ASSERT_TRUE(open.ok()) << open.message;
  HttpConn tenant(std::move(open.fd));
  ASSERT_TRUE(tenant.send("before ").ok());
  auto echoed = tenant.read_exact(7, 5000ms);
  ASSERT_TRUE(echoed.ok()) << echoed.error().message;

  auto t0 = Clock::now();  // the handover starts after this
  Daemon new_daemon(tmp.path());
  new_daemon.set_extra_args({"--takeover"});
  ASSERT_TRUE(new_daemon.start());
  // start() may have been answered by the old daemon: wait for the new one to serve.
  for (auto deadline = Clock::now() + 10s;; std::this_thread::sleep_for(20ms)) {
    nsproxy::Request req;
    req.op = nsproxy::Op::Status;
    auto r = new_daemon.call(req);
    if (r.ok() && r->ok && r->data.value("pid", 0) == new_daemon.pid()) break;
    ASSERT_LT(Clock::now(), deadline) << "the new daemon did not take over\n" << new_daemon.log();
  }

  // Draining: the old daemon still serves the open connection...
  ASSERT_TRUE(old_daemon.process()->running()) << old_daemon.log();
  ASSERT_TRUE(tenant.send("during ").ok());
  echoed = tenant.read_exact(7, 5000ms);
  ASSERT_TRUE(echoed.ok()) << "the open connection was not served while draining: "
                           << echoed.error().message;
  EXPECT_EQ(*echoed, "during ");
  // ...and new connections go to the new daemon.
  auto fresh = roundtrip_in_netns(ns.path(), kListen, "new", 10000ms);
  ASSERT_TRUE(fresh.ok()) << fresh.error().message;
  EXPECT_EQ(*fresh, "new");

  // The connection never ends, so only the drain timeout (2 s) ends the old daemon.
  auto code = old_daemon.process()->wait(20000ms);
  Millis lived = since(t0);
  ASSERT_TRUE(code.has_value()) << "the old daemon still runs 20 s after the handover\n"
                                << old_daemon.log();
  EXPECT_EQ(*code, 0) << old_daemon.log();
  EXPECT_GE(lived.count(), 1900) << "the old daemon exited before its 2 s drain timeout with a "
                                    "connection still open\n"
                                 << old_daemon.log();
  EXPECT_TRUE(log_shows(old_daemon, "drained (1 connection(s) left)")) << old_daemon.log();
  // The tenant's connection ended with it.
  auto closed = tenant.wait_closed(5000ms);
  EXPECT_TRUE(closed.ok()) << "the tenant connection stayed open after the old daemon exited: "
                           << closed.error().message;
  old_daemon.stop();

  // The new daemon serves on.
  auto after = roundtrip_in_netns(ns.path(), kListen, "after", 10000ms);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(*after, "after");
}

}  // namespace
}  // namespace nspit
