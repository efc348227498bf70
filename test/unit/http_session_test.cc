// HttpSession end to end without root: a Listener on 127.0.0.1 in the test's own
// namespace, a real upstream socket, and the session driven by the libev loop (the same
// set-up as the HTTP fuzz target). What a tenant sends, what the upstream gets, what
// comes back. Each test runs twice: with the worker in the main loop (--workers 0), and
// with the worker on a thread of its own, the main loop accepting and handing over.
#include "forward/http/http_session.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "address.h"
#include "forward/acceptor.h"
#include "forward/listener.h"
#include "forward/proxy_config.h"
#include "forward/tenant.h"
#include "forward/upstream_pool.h"
#include "forward/worker.h"
#include "log.h"
#include "unique_fd.h"

namespace nsproxy {
namespace {

UniqueFd listening_socket(sockaddr_in* addr) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd.get(), 64), 0);
  socklen_t len = sizeof *addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(addr), &len);
  return fd;
}

std::string text_of(const sockaddr_in& a) {
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

class HttpSessionTest : public ::testing::TestWithParam<bool> {
 protected:
  bool threaded() const { return GetParam(); }

  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    set_log_level(LogLevel::Error);
    loop_ = ev_loop_new(EVFLAG_AUTO);
    acceptor_ = std::make_unique<Acceptor>(loop_, &config_);
    worker_.loop = threaded() ? ev_loop_new(EVFLAG_AUTO) : loop_;
    worker_.config = &config_;
    acceptor_->add_worker(&worker_);
    pool_ = std::make_unique<UpstreamPool>(worker_.loop, config_.upstream_idle_max,
                                           config_.upstream_idle_timeout);
    worker_.upstreams = pool_.get();
    upstream_listener_ = listening_socket(&upstream_addr_);
    auto upstream = parse_address(text_of(upstream_addr_), true);
    ASSERT_TRUE(upstream.ok());
    tenant_ = std::make_shared<Tenant>();
    tenant_->id = "c0ffee";
    tenant_->display = "net/c0ffee/eth0";
    tenant_->labels = &labels_;
    tenant_->tenant_header = config_.tenant_header;
    tenant_->label_header_prefix = config_.label_header_prefix;
    tenant_->apply_limits(config_, {}, ev_now(loop_));
    UniqueFd lfd = listening_socket(&listen_addr_);
    spec_ = ListenerSpec{text_of(listen_addr_), upstream->text, Mode::Http};
    listener_ = std::make_unique<Listener>(acceptor_.get(), std::move(lfd), spec_,
                                           std::make_shared<const Address>(*upstream), tenant_,
                                           make_http_session);
    listener_->start();
    if (threaded()) worker_.start();
  }

  void TearDown() override {
    worker_.stop();  // what it served is closed from here on
    listener_.reset();
    pool_.reset();
    acceptor_.reset();
    if (worker_.loop != loop_) ev_loop_destroy(worker_.loop);
    ev_loop_destroy(loop_);
  }

  // Runs the loop until done() or about 5 s of iterations pass; false on the latter.
  bool run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      ev_run(loop_, EVRUN_NOWAIT);
      ::usleep(200);
    }
    return true;
  }

  UniqueFd connect_tenant() {
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ::connect(c.get(), reinterpret_cast<const sockaddr*>(&listen_addr_), sizeof listen_addr_);
    return c;
  }

  // Everything readable on fd until `until` appears in it (or end of stream: *eof).
  std::string read_until(int fd, std::string_view until, bool* eof = nullptr) {
    std::string got;
    bool closed = false;
    run_until([&] {
      char buf[4096];
      for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
          got.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
        break;
      }
      return closed || got.find(until) != std::string::npos;
    });
    if (eof != nullptr) *eof = closed;
    return got;
  }

  UniqueFd accept_upstream() {
    UniqueFd u;
    run_until([&] {
      u = UniqueFd(
          ::accept4(upstream_listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      return static_cast<bool>(u);
    });
    return u;
  }

  void send_all(int fd, std::string_view s) {
    ASSERT_EQ(::send(fd, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size()));
  }

  ProxyConfig config_;
  struct ev_loop* loop_ = nullptr;  // the main loop: accepts
  std::unique_ptr<Acceptor> acceptor_;
  Worker worker_;
  std::unique_ptr<UpstreamPool> pool_;
  std::map<std::string, std::string> labels_{{"team", "blue"}};  // outlives tenant_
  std::shared_ptr<Tenant> tenant_;
  ListenerSpec spec_;  // outlives listener_ (declared before it)
  std::unique_ptr<Listener> listener_;
  UniqueFd upstream_listener_;
  sockaddr_in upstream_addr_{}, listen_addr_{};
};

TEST_P(HttpSessionTest, TheUpstreamGetsTheTenantsIdentityAndNoForgedOneAndTheAnswerComesBack) {
  UniqueFd c = connect_tenant();
  send_all(c.get(),
           "GET /meta HTTP/1.1\r\nHost: md\r\nX-Tenant-Id: forged\r\nX_Tenant_Label_team: red\r\n"
           "X-Forwarded-For: 6.6.6.6\r\n\r\n");
  UniqueFd u = accept_upstream();
  ASSERT_TRUE(u) << "the session never connected to the upstream";
  std::string head = read_until(u.get(), "\r\n\r\n");
  EXPECT_EQ(head,
            "GET /meta HTTP/1.1\r\nHost: md\r\nX-Tenant-Id: c0ffee\r\nX-Tenant-Label-team: blue\r\n"
            "X-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1\r\n\r\n");
  send_all(u.get(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=9\r\n\r\nok");
  bool eof = false;
  std::string resp = read_until(c.get(), "\r\n\r\nok", &eof);
  EXPECT_EQ(resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_FALSE(eof) << "a keep-alive connection was closed";
  EXPECT_EQ(tenant_->total_stats().requests[1], 1u);  // one 2xx
}

TEST_P(HttpSessionTest, AChunkedBodyIsReframedAndAChunkedResponseReachesAnHttp10TenantRaw) {
  UniqueFd c = connect_tenant();
  send_all(c.get(),
           "POST /up HTTP/1.0\r\nTransfer-Encoding: "
           "chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
  UniqueFd u = accept_upstream();
  ASSERT_TRUE(u);
  std::string req = read_until(u.get(), "0\r\n\r\n");
  EXPECT_NE(req.find("POST /up HTTP/1.1\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            std::string::npos)
      << req;
  send_all(u.get(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n");
  bool eof = false;
  std::string resp = read_until(c.get(), "\x01", &eof);  // until the daemon closes
  EXPECT_TRUE(eof);
  EXPECT_EQ(resp, "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nbody");
}

TEST_P(HttpSessionTest, MalformedAndSmugglingShapedRequestsGet400AndAClose) {
  for (std::string_view bad :
       {std::string_view("GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
        std::string_view("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        std::string_view("NOT-HTTP\r\n\r\n")}) {
    UniqueFd c = connect_tenant();
    send_all(c.get(), bad);
    bool eof = false;
    std::string resp = read_until(c.get(), "\x01", &eof);
    EXPECT_TRUE(eof) << bad;
    EXPECT_EQ(resp.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << bad << "\n" << resp;
    EXPECT_NE(resp.find("Connection: close\r\n"), std::string::npos) << resp;
  }
  EXPECT_EQ(tenant_->total_stats().refused[static_cast<size_t>(Refusal::BadRequest)], 3u);
}

TEST_P(HttpSessionTest, PipelinedRequestsAreAnsweredInOrderOnOneUpstreamConnection) {
  UniqueFd c = connect_tenant();
  send_all(c.get(), "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
  UniqueFd u = accept_upstream();
  ASSERT_TRUE(u);
  std::string first = read_until(u.get(), "\r\n\r\n");
  EXPECT_EQ(first.rfind("GET /1 ", 0), 0u) << first;
  EXPECT_EQ(first.find("GET /2"), std::string::npos)
      << "the second request went before the first's answer";
  send_all(u.get(), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1");
  std::string second = read_until(u.get(), "\r\n\r\n");
  EXPECT_EQ(second.rfind("GET /2 ", 0), 0u) << second;
  send_all(u.get(), "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
  std::string resp = read_until(c.get(), "\r\n\r\n2");
  EXPECT_EQ(
      resp,
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2");
}

INSTANTIATE_TEST_SUITE_P(Workers, HttpSessionTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "WorkerThread" : "MainLoop";
                         });

}  // namespace
}  // namespace nsproxy
