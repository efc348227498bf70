// The control socket with a running daemon (docs/bad-input.md, control socket): garbage,
// wrong shapes and oversized datagrams, silent and too many clients, who may connect,
// and what an add may carry (at most one fd, a network namespace, not the daemon's own
// unless allowed, a PROXY v2 identity that fits a header). The decoder's own checks are
// unit tests (test/unit/control_protocol_test.cc, bad_input_control_test.cc).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control_transport.h"
#include "fixture.h"

namespace nspit {
namespace {

constexpr const char* kListen = "127.0.0.1:8080";

// Waits for one reply datagram and returns it undecoded. Returns nullopt on EOF; fails
// the test on timeout.
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

// Waits for one reply and decodes it; nullopt, with a non-fatal failure, when none
// arrives or it is undecodable.
std::optional<nsproxy::Reply> read_reply(int fd, Millis timeout = 3000ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
    ADD_FAILURE() << "no reply within " << timeout.count() << " ms";
    return std::nullopt;
  }
  auto msg = nsproxy::recv_message(fd, nsproxy::kMaxReplySize);
  if (!msg) {
    ADD_FAILURE() << "recv: " << msg.error().message;
    return std::nullopt;
  }
  auto r = nsproxy::decode_reply(msg->payload);
  if (!r) {
    ADD_FAILURE() << "undecodable reply: " << msg->payload;
    return std::nullopt;
  }
  return *r;
}

class BadInputControlSocketTest : public HttpTest {};

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

TEST_F(BadInputControlSocketTest, TooManyControlClientsGetBusy) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  std::vector<nsproxy::UniqueFd> idle;
  for (int i = 0; i < 256; ++i) {
    idle.push_back(connect_control(d.socket_path()));
    ASSERT_TRUE(idle.back());
  }
  auto extra = connect_control(d.socket_path());
  ASSERT_TRUE(extra);
  auto reply = read_reply(extra.get(), 5000ms);
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->ok);
  EXPECT_EQ(reply->error.code, nsproxy::Code::kBusy);
  EXPECT_EQ(reply->error.message, "too many control clients; retry");
  // Once the idle ones are gone, requests are served again.
  idle.clear();
  extra.reset();
  nsproxy::Request status;
  status.op = nsproxy::Op::Status;
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    auto r = d.call(status);
    served = r.ok() && r->ok;
    if (!served) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(served);
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
             }())
                ->ok,
            true);
  EXPECT_NE(d.log().find("refused a request from uid 65534"), std::string::npos) << d.log();
}

TEST_F(BadInputControlSocketTest, MoreThanOneFdIsBadRequest) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  auto fd1 = nsproxy::open_netns(ns.path());
  ASSERT_TRUE(fd1.ok()) << fd1.error().message;
  nsproxy::UniqueFd fd2(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd2);

  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.attachment.id = "two-fds-" + short_token();
  req.netns_path = ns.path();
  req.listeners = {{kListen, "127.0.0.1:9", nsproxy::Mode::Tcp}};
  std::string payload = nsproxy::encode_request(req);

  for (int nfds : {2, 3}) {
    SCOPED_TRACE(nfds);
    auto sock = connect_control(d.socket_path());
    ASSERT_TRUE(sock);
    int fds[3] = {fd1->get(), fd2.get(), fd2.get()};
    iovec iov{payload.data(), payload.size()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 3)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    ASSERT_EQ(::sendmsg(sock.get(), &msg, 0), static_cast<ssize_t>(payload.size()))
        << std::strerror(errno);
    auto reply = read_reply(sock.get());
    ASSERT_TRUE(reply);
    EXPECT_FALSE(reply->ok);
    EXPECT_EQ(reply->error.code, nsproxy::Code::kBadRequest);
    EXPECT_EQ(reply->error.message, "a request may carry at most one file descriptor");
    // The connection stays usable.
    nsproxy::Request status;
    status.op = nsproxy::Op::Status;
    ASSERT_TRUE(nsproxy::send_message(sock.get(), nsproxy::encode_request(status)).ok());
    auto again = read_reply(sock.get());
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->ok) << again->error.message;
  }
  EXPECT_TRUE(d.list().empty()) << "nothing may be registered";
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

TEST_F(BadInputControlSocketTest, ProxyV2IdentityTooLargeIsRefusedAtRegistration) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  auto netns = nsproxy::open_netns(ns.path());
  ASSERT_TRUE(netns.ok()) << netns.error().message;

  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.netns_path = ns.path();
  req.listeners = {{kListen, "127.0.0.1:9", nsproxy::Mode::Tcp, nsproxy::ProxyProtocol::V2}};

  // Tenant id over PP2_TYPE_UNIQUE_ID's 128 bytes (the protocol allows 256).
  req.attachment.id = std::string(129, 't');
  auto r = d.call(req, netns->get());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->error.code, nsproxy::Code::kBadRequest);
  EXPECT_EQ(r->error.message,
            "listeners[0].proxy_protocol: PROXY v2: tenant id is 129 bytes, PP2_TYPE_UNIQUE_ID "
            "allows at most 128");

  // Labels that make the header larger than 8192 bytes.
  req.attachment.id = "pp-" + short_token();
  for (int i = 0; i < 16; ++i) req.labels["l" + std::to_string(i)] = std::string(1000, 'v');
  auto big = d.call(req, netns->get());
  ASSERT_TRUE(big.ok()) << big.error().message;
  EXPECT_FALSE(big->ok);
  EXPECT_EQ(big->error.code, nsproxy::Code::kBadRequest);
  const std::string prefix =
      "listeners[0].proxy_protocol: PROXY v2: header with these labels would be ";
  EXPECT_EQ(big->error.message.substr(0, prefix.size()), prefix) << big->error.message;
  EXPECT_NE(big->error.message.find("more than 8192"), std::string::npos) << big->error.message;

  // The second listener is named when it is the v2 one.
  req.labels.clear();
  req.attachment.id = std::string(200, 'u');
  req.listeners = {{"127.0.0.1:8081", "127.0.0.1:9", nsproxy::Mode::Tcp},
                   {kListen, "127.0.0.1:9", nsproxy::Mode::Tcp, nsproxy::ProxyProtocol::V2}};
  auto second = d.call(req, netns->get());
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->ok);
  EXPECT_EQ(
      second->error.message.rfind("listeners[1].proxy_protocol: PROXY v2: tenant id is 200", 0), 0u)
      << second->error.message;
  EXPECT_TRUE(d.list().empty()) << "nothing may be registered";
}

}  // namespace
}  // namespace nspit
