// `unix:/path` upstreams end to end (README: listeners[].upstream "IPv4:port, [IPv6]:port or
// unix:/absolute/path", in both modes), registered through the CNI plugin and nsproxyctl.
#include <sys/socket.h>
#include <sys/stat.h>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

// nsproxy-echo on a unix socket (EchoServer reports only IP addresses).
class UnixEcho {
 public:
  UnixEcho(std::string path, std::string mode, bool proxy_protocol = false)
      : path_(std::move(path)) {
    std::vector<std::string> argv = {binary("nsproxy-echo"), "--listen", "unix:" + path_, "--mode",
                                     std::move(mode)};
    if (proxy_protocol) argv.push_back("--proxy-protocol");
    process_ = std::make_unique<Process>(argv);
  }
  ::testing::AssertionResult start() {
    if (!process_->started()) return ::testing::AssertionFailure() << process_->start_error();
    if (!process_->wait_for_line("listening on ", 5000ms)) {
      return ::testing::AssertionFailure()
             << "nsproxy-echo on unix:" << path_ << " did not start: " << process_->err();
    }
    return ::testing::AssertionSuccess();
  }
  std::string upstream() const { return "unix:" + path_; }

 private:
  std::string path_;
  std::unique_ptr<Process> process_;
};

class UnixUpstreamTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(ns_.ok()) << ns_.error();
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_TRUE(daemon_->start());
  }
  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(UnixUpstreamTest, HttpListenerRegisteredByThePluginReachesAUnixUpstreamWithIdentity) {
  ASSERT_TRUE(binaries_exist({"nsproxy"}));
  UnixEcho up(tmp_.file("http.sock"), "http");
  ASSERT_TRUE(up.start());
  const std::string container = unique_name();
  json cfg = plugin_config(unique_name(), daemon_->socket_path(),
                           json::array({listener("127.0.0.1:8080", up.upstream(), "http")}));
  cfg["labels"] = {{"team", "blue"}};
  auto add = run_plugin(cni_env("ADD", container, ns_.path()), cfg.dump());
  ASSERT_EQ(add.exit_code, 0) << add.describe();

  auto c = HttpConn::open(ns_.path(), "127.0.0.1:8080");
  ASSERT_TRUE(c.ok()) << c.error();
  // Two requests on one keep-alive connection, one with a body.
  auto r1 = c.request(http_request("GET", "/via-unix"));
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->status, 200) << r1->describe();
  EXPECT_EQ(r1->json().value("path", ""), "/via-unix") << r1->describe();
  EXPECT_EQ(echo_headers(r1->json(), "X-Tenant-Id"), std::vector<std::string>{container})
      << r1->describe();
  EXPECT_EQ(echo_headers(r1->json(), "X-Tenant-Label-team"), std::vector<std::string>{"blue"})
      << r1->describe();
  EXPECT_EQ(echo_headers(r1->json(), "X-Forwarded-For"), std::vector<std::string>{"127.0.0.1"})
      << r1->describe();
  auto r2 = c.request(http_request("POST", "/upload", "Content-Length: 11\r\n", "hello world"));
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->status, 200) << r2->describe();
  EXPECT_EQ(r2->json().value("body_bytes", -1), 11) << r2->describe();

  auto check = run_plugin(cni_env("CHECK", container, ns_.path()), cfg.dump());
  EXPECT_EQ(check.exit_code, 0) << check.describe();
  auto del = run_plugin(cni_env("DEL", container, ns_.path()), cfg.dump());
  EXPECT_EQ(del.exit_code, 0) << del.describe();
}

TEST_F(UnixUpstreamTest, TcpListenerRegisteredByNsproxyctlStreamsBothWaysOverAUnixUpstream) {
  ASSERT_TRUE(binaries_exist({"nsproxyctl"}));
  UnixEcho up(tmp_.file("echo.sock"), "echo");
  ASSERT_TRUE(up.start());
  auto add = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "add", "--id",
                  "unix-tcp", "--netns", ns_.path(), "--listen", "127.0.0.1:8443", "--upstream",
                  up.upstream(), "--mode", "tcp"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  EXPECT_NE(add.out.find("127.0.0.1:8443 -> " + up.upstream() + " (tcp)"), std::string::npos)
      << add.describe();

  // 1 MB each way with a half-close at the end.
  std::string payload(1 << 20, 'u');
  for (size_t i = 0; i < payload.size(); i += 4093) payload[i] = static_cast<char>('a' + i % 26);
  auto got = roundtrip_in_netns(ns_.path(), "127.0.0.1:8443", payload, 30000ms);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->size(), payload.size());
  EXPECT_TRUE(*got == payload) << "bytes differ after the unix upstream";
}

TEST_F(UnixUpstreamTest, TcpListenerWithProxyProtocolV2OverAUnixUpstream) {
  UnixEcho up(tmp_.file("pp.sock"), "echo", /*proxy_protocol=*/true);
  ASSERT_TRUE(up.start());
  nsproxy::ListenerSpec spec{"127.0.0.1:8444", up.upstream(), nsproxy::Mode::Tcp,
                             nsproxy::ProxyProtocol::V2};
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), "unix-pp",
                              {.listeners = {spec}, .labels = {{"team", "red"}}}));
  auto got = roundtrip_in_netns(ns_.path(), "127.0.0.1:8444", "payload");
  ASSERT_TRUE(got.ok()) << got.error().message;
  // nsproxy-echo parsed the header itself and prints what it said, then echoes.
  EXPECT_NE(got->find("unique_id=unix-pp"), std::string::npos) << *got;
  EXPECT_NE(got->find("labels=team=red"), std::string::npos) << *got;
  EXPECT_NE(got->find("dst=127.0.0.1:8444"), std::string::npos) << *got;
  EXPECT_EQ(got->substr(got->size() - 7), "payload") << *got;
}

TEST_F(UnixUpstreamTest, AMissingUnixUpstreamIs502InHttpModeAndACloseInTcpMode) {
  const std::string missing = "unix:" + tmp_.file("nobody-listens.sock");
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), "unix-missing-http", {.upstream = missing}));
  nsproxy::ListenerSpec tcp{"127.0.0.1:8081", missing, nsproxy::Mode::Tcp};
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), "unix-missing-tcp", {.listeners = {tcp}}));

  auto c = HttpConn::open(ns_.path(), "127.0.0.1:8080");
  ASSERT_TRUE(c.ok()) << c.error();
  auto r = c.request(http_request("GET", "/"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 502) << r->describe();

  auto t = connect_in_netns(ns_.path(), "127.0.0.1:8081");
  ASSERT_TRUE(t.ok()) << t.message;
  auto got = recv_until_eof(t.fd.get(), 5000ms);
  if (got.ok()) {
    EXPECT_EQ(*got, "");
  } else {
    EXPECT_NE(got.error().code, nsproxy::Code::kTimeout) << got.error().message;
  }
}

}  // namespace
}  // namespace nspit
