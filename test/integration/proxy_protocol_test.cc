// tcp mode with PROXY protocol v2: the upstream learns the caller's addresses (as seen in
// the tenant's namespace) and the tenant's identity from the header the daemon writes in
// front of the tenant's bytes. Read by nsproxy-echo --proxy-protocol (its own parser) and
// by a real peer, HAProxy from Debian with `accept-proxy` and `fc_pp_unique_id`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kHaproxy = "/usr/sbin/haproxy";

// A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot report the
// port they got, like HAProxy).
int pick_free_port() {
  nsproxy::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0) {
    return -1;
  }
  return ntohs(a.sin_port);
}

// The local port of a connected socket (the "client port" the upstream must see).
int local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

// nsproxy-echo with --proxy-protocol (the fixture's EchoServer takes no extra flags).
class ProxyEcho {
 public:
  explicit ProxyEcho(const std::string& mode)
      : process_({binary("nsproxy-echo"), "--listen", "127.0.0.1:0", "--mode", mode,
                  "--proxy-protocol"}) {}
  ::testing::AssertionResult start() {
    auto line = process_.wait_for_line("listening on ", 5000ms);
    if (!line) {
      return ::testing::AssertionFailure() << "nsproxy-echo did not start: " << process_.err();
    }
    address_ = line->substr(line->find("listening on ") + 13);
    while (!address_.empty() && (address_.back() == '\n' || address_.back() == '\r')) {
      address_.pop_back();
    }
    return ::testing::AssertionSuccess();
  }
  const std::string& address() const { return address_; }

 private:
  Process process_;
  std::string address_;
};

// HAProxy in the foreground (-db) with a config in `dir`, answering every request on
// 127.0.0.1:<free port> (accept-proxy) with what it parsed from the PROXY header.
class Haproxy {
 public:
  explicit Haproxy(const TempDir& dir) : dir_(dir) {}
  ~Haproxy() {
    if (process_) process_->stop(2000ms);
  }

  ::testing::AssertionResult start() {
    if (::access(kHaproxy, X_OK) != 0) {
      return ::testing::AssertionFailure()
             << kHaproxy << " is missing (Debian package haproxy; scripts/install-deps.sh)";
    }
    port_ = pick_free_port();
    if (port_ <= 0) return ::testing::AssertionFailure() << "no free port";
    const std::string cfg = dir_.write("haproxy.cfg", R"(global
  log stderr format raw local0 info
defaults
  mode http
  log global
  timeout connect 2s
  timeout client 5s
  timeout server 5s
frontend tenants
  bind 127.0.0.1:)" + std::to_string(port_) + R"( accept-proxy
  http-request return status 200 content-type text/plain lf-string "uid=%[fc_pp_unique_id] src=%[src]:%[src_port] dst=%[dst]:%[dst_port]\n"
)");
    auto check = run({kHaproxy, "-c", "-f", cfg});
    if (check.exit_code != 0) {
      return ::testing::AssertionFailure() << "haproxy -c refused the config: " << check.describe();
    }
    process_ = std::make_unique<Process>(std::vector<std::string>{kHaproxy, "-db", "-f", cfg});
    if (!process_->started()) {
      return ::testing::AssertionFailure() << "haproxy: " << process_->start_error();
    }
    // Ready when it accepts (a probe connection without a header is simply dropped).
    for (auto deadline = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
      if (!process_->running()) {
        return ::testing::AssertionFailure() << "haproxy exited: " << process_->err();
      }
      nsproxy::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        return ::testing::AssertionSuccess();
      }
    }
    return ::testing::AssertionFailure()
           << "haproxy not accepting on port " << port_ << ": " << process_->err();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return process_ ? process_->err() : std::string(); }

 private:
  const TempDir& dir_;
  int port_ = -1;
  std::unique_ptr<Process> process_;
};

class ProxyProtocolTest : public IntegrationTest {
 protected:
  void SetUp() override {
    IntegrationTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxyctl", "nsproxy", "nsproxy-echo"}));
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_TRUE(daemon_->start());
    ns_ = std::make_unique<Netns>();
    ASSERT_TRUE(ns_->ok()) << ns_->error();
  }

  // nsproxyctl add: one tcp listener on kListen -> upstream.
  ProcessResult add(const std::string& id, const std::string& upstream, bool v2,
                    const std::vector<std::string>& labels = {}) const {
    std::vector<std::string> argv = {binary("nsproxyctl"),
                                     "--socket",
                                     daemon_->socket_path(),
                                     "add",
                                     "--id",
                                     id,
                                     "--netns",
                                     ns_->path(),
                                     "--listen",
                                     kListen,
                                     "--upstream",
                                     upstream,
                                     "--mode",
                                     "tcp"};
    if (v2) argv.insert(argv.end(), {"--proxy-protocol", "v2"});
    for (const auto& l : labels) argv.insert(argv.end(), {"--label", l});
    return run(argv);
  }

  // Connects from inside the tenant namespace, sends payload, reads until EOF.
  // *client_port receives the tenant-side port of the connection.
  nsproxy::Result<std::string> tenant_exchange(std::string_view payload, int* client_port) {
    auto c = connect_in_netns(ns_->path(), kListen);
    if (!c.ok()) return nsproxy::make_error(nsproxy::Code::kUnreachable, c.message);
    *client_port = local_port(c.fd.get());
    return exchange(c.fd.get(), payload);
  }

  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<Netns> ns_;
};

TEST_F(ProxyProtocolTest, UpstreamReadsCallerAddressesIdAndLabelsBeforeTheTenantBytes) {
  ProxyEcho echo("echo");
  ASSERT_TRUE(echo.start());
  const std::string id = unique_name();
  auto r = add(id, echo.address(), true, {"team=a", "zone=z1"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  int port = -1;
  auto got = tenant_exchange("hello through the header", &port);
  ASSERT_TRUE(got.ok()) << got.error().message << "\n" << daemon_->log();
  EXPECT_EQ(*got, "PROXY v2 src=127.0.0.1:" + std::to_string(port) +
                      " dst=127.0.0.1:8080 unique_id=" + id +
                      " labels=team=a,zone=z1\nhello through the header");
}

TEST_F(ProxyProtocolTest, HeaderWrittenEvenWhenTheTenantSendsNothing) {
  ProxyEcho echo("echo");
  ASSERT_TRUE(echo.start());
  const std::string id = unique_name();
  ASSERT_EQ(add(id, echo.address(), true).exit_code, 0);
  int port = -1;
  auto got = tenant_exchange("", &port);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "PROXY v2 src=127.0.0.1:" + std::to_string(port) +
                      " dst=127.0.0.1:8080 unique_id=" + id + " labels=\n");
}

TEST_F(ProxyProtocolTest, ATenantCannotForgeTheHeader) {
  ProxyEcho echo("echo");
  ASSERT_TRUE(echo.start());
  const std::string id = unique_name();
  ASSERT_EQ(add(id, echo.address(), true).exit_code, 0);
  // The tenant starts its stream with a header of its own claiming another identity:
  // the upstream sees ours first, and the forged one only as data.
  std::string forged("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x11", 16);
  forged += std::string("\x0a\x00\x00\x09\x0a\x00\x00\x01\x04\xd2\x00\x50", 12);
  forged += std::string("\x05\x00\x02", 3) + "ev";
  int port = -1;
  auto got = tenant_exchange(forged, &port);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "PROXY v2 src=127.0.0.1:" + std::to_string(port) +
                      " dst=127.0.0.1:8080 unique_id=" + id + " labels=\n" + forged);
}

TEST_F(ProxyProtocolTest, WithoutV2TheUpstreamGetsTheTenantBytesOnly) {
  // An upstream that insists on a header refuses a listener that sends none: proof that
  // with v2 the header really is the first thing on the wire, and without it nothing is.
  ProxyEcho echo("echo");
  ASSERT_TRUE(echo.start());
  ASSERT_EQ(add(unique_name(), echo.address(), false).exit_code, 0);
  int port = -1;
  auto got = tenant_exchange("plain bytes", &port);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "");
}

TEST_F(ProxyProtocolTest, HttpUpstreamBehindTcpListenerSeesTheIdentityInJson) {
  ProxyEcho echo("http");
  ASSERT_TRUE(echo.start());
  const std::string id = unique_name();
  ASSERT_EQ(add(id, echo.address(), true, {"team=b"}).exit_code, 0);
  int port = -1;
  auto got = tenant_exchange("GET /who HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &port);
  ASSERT_TRUE(got.ok()) << got.error().message;
  auto body_at = got->find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << *got;
  auto j = json::parse(got->substr(body_at + 4), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << *got;
  EXPECT_EQ(j["proxy"]["unique_id"], id) << *got;
  EXPECT_EQ(j["proxy"]["src"], "127.0.0.1:" + std::to_string(port)) << *got;
  EXPECT_EQ(j["proxy"]["dst"], "127.0.0.1:8080") << *got;
  EXPECT_EQ(j["proxy"]["labels"], json({{"team", "b"}})) << *got;
  EXPECT_EQ(j["path"], "/who") << *got;
}

TEST_F(ProxyProtocolTest, CniConfigProxyProtocolCarriesContainerIdAndPodLabels) {
  ProxyEcho echo("echo");
  ASSERT_TRUE(echo.start());
  const std::string network = unique_name();
  const std::string container = unique_name();
  json l = listener(kListen, echo.address(), "tcp");
  l["proxyProtocol"] = "v2";
  json cfg = plugin_config(network, daemon_->socket_path(), json::array({l}));
  auto r = run_plugin(cni_env("ADD", container, ns_->path(),
                              {{"CNI_ARGS",
                                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;"
                                "K8S_POD_NAME=web-0"}}),
                      cfg.dump());
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  int port = -1;
  auto got = tenant_exchange("x", &port);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "PROXY v2 src=127.0.0.1:" + std::to_string(port) +
                      " dst=127.0.0.1:8080 unique_id=" + container +
                      " labels=pod-name=web-0,pod-namespace=ns1\nx");

  auto del = run_plugin(cni_env("DEL", container, ns_->path()), cfg.dump());
  EXPECT_EQ(del.exit_code, 0) << del.describe();
}

TEST_F(ProxyProtocolTest, HaproxyParsesTheHeader) {
  Haproxy haproxy(tmp_);
  ASSERT_TRUE(haproxy.start());
  const std::string id = unique_name();
  auto r = add(id, haproxy.address(), true, {"team=a"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  int port = -1;
  auto got = tenant_exchange("GET / HTTP/1.1\r\nHost: tenant\r\nConnection: close\r\n\r\n", &port);
  ASSERT_TRUE(got.ok()) << got.error().message << "\nhaproxy: " << haproxy.log();
  EXPECT_EQ(got->rfind("HTTP/1.1 200", 0), 0u) << *got << "\nhaproxy: " << haproxy.log();
  const std::string want =
      "uid=" + id + " src=127.0.0.1:" + std::to_string(port) + " dst=127.0.0.1:8080\n";
  EXPECT_NE(got->find("\r\n\r\n" + want), std::string::npos)
      << "want " << want << "got " << *got << "\nhaproxy: " << haproxy.log();
}

}  // namespace
}  // namespace nspit
