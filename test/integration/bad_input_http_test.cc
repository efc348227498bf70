// docs/bad-input.md: the tenant-HTTP classes and the control-socket classes that need a
// running daemon, which no other test covers. Exact status and <why> for each.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <mutex>

#include "control_transport.h"
#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
constexpr const char* kListen = "127.0.0.1:8080";

class BadInputHttpTest : public HttpTest {
 protected:
  void start(std::vector<std::string> flags = {}) {
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    daemon_->set_extra_args(std::move(flags));
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http");
    ASSERT_TRUE(echo_->start());
    ASSERT_TRUE(ns_.ok()) << ns_.error();
    id_ = "bad-" + short_token();
    ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), id_,
                                {.upstream = echo_->address(), .labels = {{"team", "blue"}}}));
  }
  HttpConn conn() {
    auto c = HttpConn::open(ns_.path(), kListen);
    EXPECT_TRUE(c.ok()) << c.error();
    return c;
  }
  // Sends bytes on a fresh connection; expects exactly `status` with body
  // "<status> <reason>: <why>\n", then a close with nothing more.
  void expect_error_answer(const std::string& bytes, int status, const std::string& why) {
    auto c = conn();
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.send(bytes).ok());
    auto r = c.read_response(5000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, status) << r->describe();
    EXPECT_EQ(r->body, std::to_string(status) + " " + r->reason + ": " + why + "\n")
        << r->describe();
    EXPECT_EQ(r->header("Connection").value_or(""), "close") << r->describe();
    auto rest = c.wait_closed(3000ms);
    ASSERT_TRUE(rest.ok()) << "not closed after the error: " << rest.error().message;
    EXPECT_EQ(*rest, "") << "bytes after the error answer";
  }
  void expect_still_serving() {
    auto c = conn();
    auto r = c.request(http_request("GET", "/after"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
  }
  // The echo's view of one request with `extra_headers`.
  json echo_for(const std::string& extra_headers) {
    auto c = conn();
    auto r = c.request(http_request("GET", "/echo", extra_headers));
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r.ok()) return json::object();
    EXPECT_EQ(r->status, 200) << r->describe();
    json j = r->json();
    EXPECT_TRUE(j.is_object()) << r->describe();
    return j.is_object() ? j : json::object();
  }

  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::string id_;
};

const std::string kSmuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

TEST_F(BadInputHttpTest, InvalidUrlIs400) {
  ASSERT_NO_FATAL_FAILURE(start());
  expect_error_answer("GET /a\x01" "b HTTP/1.1\r\nHost: x\r\n\r\n" + kSmuggled, 400,
                      "malformed request: invalid URL");
  expect_error_answer("GET /a\x7f" "b HTTP/1.1\r\nHost: x\r\n\r\n" + kSmuggled, 400,
                      "malformed request: invalid URL");
  expect_still_serving();
}

TEST_F(BadInputHttpTest, ControlCharacterOrNulInAHeaderValueIs400) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (std::string value : {std::string("a\x01" "b"), std::string("a\0b", 3),
                            std::string("a\x7f" "b")}) {
    SCOPED_TRACE(json(value).dump());
    expect_error_answer("GET / HTTP/1.1\r\nHost: x\r\nX-Bad: " + value + "\r\n\r\n" + kSmuggled,
                        400, "malformed request: invalid character in header");
  }
  // A bare CR in a value is reported by http-parser as a framing error.
  expect_error_answer("GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n" + kSmuggled, 400,
                      "malformed request: LF character expected");
  expect_still_serving();
}

TEST_F(BadInputHttpTest, EqualDuplicateContentLengthIs400) {
  ASSERT_NO_FATAL_FAILURE(start());
  expect_error_answer(
      "POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" +
          kSmuggled,
      400, "malformed request: unexpected content-length header");
  expect_still_serving();
}

TEST_F(BadInputHttpTest, TransferEncodingWithAnotherCodingBeforeChunkedIs400) {
  ASSERT_NO_FATAL_FAILURE(start());
  expect_error_answer(
      "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" +
          kSmuggled,
      400, "Transfer-Encoding other than \"chunked\"");
  // The same list split over two header lines.
  expect_error_answer(
      "POST /te2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n" +
          kSmuggled,
      400, "Transfer-Encoding other than \"chunked\"");
  expect_still_serving();
}

// The CRLF of the fold is dropped and the continuation, with its leading whitespace,
// appended to the value: "a\r\n b" reaches the upstream as "a b", "a\r\n\t b" as
// "a\t b". The upstream sees a single-line header.
TEST_F(BadInputHttpTest, ObsoleteLineFoldingIsForwardedOnOneLine) {
  ASSERT_NO_FATAL_FAILURE(start());
  json e = echo_for("X-Folded: a\r\n b\r\nX-After: z\r\n");
  auto folded = echo_headers(e, "X-Folded");
  ASSERT_EQ(folded.size(), 1u) << e.dump();
  EXPECT_EQ(folded[0], "a b") << e.dump();
  EXPECT_EQ(echo_headers(e, "X-After"), std::vector<std::string>{"z"}) << e.dump();

  // The exact bytes on the upstream side: one line, no CRLF inside the value, the
  // continuation's whitespace kept as sent.
  std::mutex mu;
  std::string seen;
  RawUpstream raw([&](int fd) {
    std::string rest;
    auto head = read_head_blocking(fd, &rest);
    {
      std::lock_guard<std::mutex> lock(mu);
      seen = head.value_or("");
    }
    write_all_blocking(fd, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  });
  ASSERT_TRUE(raw.ok());
  const std::string id2 = "fold-" + short_token();
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), id2,
                              {.listen = "127.0.0.1:8081", .upstream = raw.address()}));
  auto c = HttpConn::open(ns_.path(), "127.0.0.1:8081");
  ASSERT_TRUE(c.ok()) << c.error();
  auto r = c.request(http_request("GET", "/raw", "X-Folded: a\r\n\t b\r\n"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 204) << r->describe();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_NE(seen.find("\r\nX-Folded: a\t b\r\n"), std::string::npos) << seen;
}

TEST_F(BadInputHttpTest, StalledRequestBodyGets408) {
  ASSERT_NO_FATAL_FAILURE(start({"--body-timeout", "1"}));
  auto c = conn();
  ASSERT_TRUE(c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
                  .ok());
  // The wait is a bound, not a measurement: the 1 s body timeout must fire; 15 s holds
  // under ASan on a loaded machine. The body's reason says which timeout it was.
  constexpr Millis kTimeoutFires = 15000ms;
  auto r = c.read_response(kTimeoutFires);
  ASSERT_TRUE(r.ok()) << "no answer to a stalled body (body timeout 1 s): " << r.error().message;
  EXPECT_EQ(r->status, 408) << r->describe();
  EXPECT_EQ(r->body, "408 Request Timeout: request body stalled\n") << r->describe();
  EXPECT_EQ(r->header("Connection").value_or(""), "close") << r->describe();
  auto rest = c.wait_closed(3000ms);
  ASSERT_TRUE(rest.ok()) << "not closed after the 408: " << rest.error().message;
  EXPECT_EQ(*rest, "");

  // Chunked upload that stops after the first chunk: the same answer.
  auto c2 = conn();
  ASSERT_TRUE(c2.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n")
                  .ok());
  auto r2 = c2.read_response(kTimeoutFires);
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->status, 408) << r2->describe();
  EXPECT_EQ(r2->body, "408 Request Timeout: request body stalled\n") << r2->describe();
  // Both counted as body timeouts (none as a head timeout: the heads were complete).
  auto st = daemon_status(*daemon_);
  ASSERT_TRUE(st.contains("refused")) << st.dump();
  EXPECT_EQ(st["refused"].value("body_timeout", 0), 2) << st.dump();
  EXPECT_EQ(st["refused"].value("head_timeout", 0), 0) << st.dump();
  expect_still_serving();
}

// Status "connections" of the daemon, or -1.
long daemon_connections(const Daemon& d) {
  nsproxy::Request req;
  req.op = nsproxy::Op::Status;
  auto r = d.call(req);
  if (!r || !r->ok || !r->data.contains("connections")) return -1;
  return r->data["connections"].get<long>();
}

TEST_F(BadInputHttpTest, TenantClosingMidRequestIsDroppedAndOthersAreServed) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<std::string> partials = {
      "GET /half-head HTTP/1.1\r\nHost: x\r\nX-Some",
      "POST /half-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial",
      "POST /half-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
  };
  // A kept-alive neighbour connection stays usable throughout.
  auto neighbour = conn();
  ASSERT_TRUE(neighbour.ok());
  for (const auto& p : partials) {
    SCOPED_TRACE(p);
    for (bool half_close : {false, true}) {
      auto c = conn();
      ASSERT_TRUE(c.send(p).ok());
      if (half_close) {
        ::shutdown(c.fd(), SHUT_WR);
        auto rest = c.wait_closed(5000ms);  // answer or close, never a hang
        EXPECT_TRUE(rest.ok()) << rest.error().message;
      }
      c.close();
      auto r = neighbour.request(http_request("GET", "/neighbour"));
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(r->status, 200) << r->describe();
    }
  }
  expect_still_serving();
  neighbour.close();
  // Every session is freed: the daemon's connection count returns to 0.
  long n = -1;
  for (int i = 0; i < 50 && n != 0; ++i) {
    n = daemon_connections(*daemon_);
    if (n != 0) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(n, 0) << "connections still counted after every tenant went away";
  EXPECT_TRUE(daemon_->running());
}

TEST_F(BadInputHttpTest, ConnectIs405) {
  ASSERT_NO_FATAL_FAILURE(start());
  expect_error_answer("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405,
                      "CONNECT is not proxied");
  expect_still_serving();
}

TEST_F(BadInputHttpTest, UnderscoreFormsOfIdentityHeadersAreStripped) {
  ASSERT_NO_FATAL_FAILURE(start());
  json e = echo_for(
      "X_Tenant_Id: forged\r\n"
      "x_tenant_label_x: forged\r\n"
      "X_TENANT_LABEL_team: forged\r\n"
      "X_Forwarded_For: 6.6.6.6\r\n"
      "X-Tenant_Id: forged\r\n"
      "X-Innocent_Header: kept\r\n");
  for (const char* forged : {"X_Tenant_Id", "x_tenant_label_x", "X_TENANT_LABEL_team",
                             "X_Forwarded_For", "X-Tenant_Id"}) {
    EXPECT_TRUE(echo_headers(e, forged).empty()) << forged << " reached the upstream: " << e.dump();
  }
  EXPECT_EQ(echo_headers(e, "X-Tenant-Id"), std::vector<std::string>{id_}) << e.dump();
  EXPECT_EQ(echo_headers(e, "X-Tenant-Label-team"), std::vector<std::string>{"blue"}) << e.dump();
  EXPECT_EQ(echo_headers(e, "X-Forwarded-For").size(), 1u) << e.dump();
  for (const auto& v : echo_headers(e, "X-Forwarded-For")) EXPECT_NE(v, "6.6.6.6");
  EXPECT_EQ(echo_headers(e, "X-Innocent_Header"), std::vector<std::string>{"kept"}) << e.dump();
}

// ---------------------------------------------------------------------------------------
// Control socket

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
  const std::string prefix = "listeners[0].proxy_protocol: PROXY v2: header with these labels would be ";
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
  EXPECT_EQ(second->error.message.rfind("listeners[1].proxy_protocol: PROXY v2: tenant id is 200", 0),
            0u)
      << second->error.message;
  EXPECT_TRUE(d.list().empty()) << "nothing may be registered";
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

}  // namespace
}  // namespace nspit
