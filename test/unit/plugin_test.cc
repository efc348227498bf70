// Drives the CNI dispatcher with fake environments, against no daemon or a fake one
// (a SOCK_SEQPACKET server in a temp dir that answers with a scripted reply).
#include "plugin.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "control_protocol.h"
#include "control_transport.h"
#include "netns.h"
#include "unique_fd.h"

namespace nsproxy::cni {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/nsproxy-plugin-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    EXPECT_NE(p, nullptr);
    path_ = p != nullptr ? p : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A stand-in for nsproxyd. `answer` returns the reply to send, or nullopt to keep
// the connection open without ever answering.
class FakeDaemon {
 public:
  struct Received {
    Request request;
    bool had_fd = false;
    bool fd_is_our_netns = false;
  };
  using Answer = std::function<std::optional<Reply>(const Request&)>;

  FakeDaemon(const std::string& path, Answer answer) : answer_(std::move(answer)) {
    listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
        << std::strerror(errno);
    EXPECT_EQ(::listen(listen_.get(), 8), 0);
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    stop_read_.reset(p[0]);
    stop_write_.reset(p[1]);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDaemon() {
    (void)!::write(stop_write_.get(), "x", 1);
    thread_.join();
  }

  std::vector<Received> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  // Waits for fd to become readable; false when asked to stop.
  bool wait_readable(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    for (;;) {
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && (p[1].revents & POLLIN) == 0;
    }
  }

  void serve() {
    while (wait_readable(listen_.get())) {
      UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn || !wait_readable(conn.get())) return;
      auto msg = recv_message(conn.get(), kMaxMessageSize);
      if (!msg) continue;
      auto req = decode_request(msg->payload);
      if (!req) {
        (void)send_message(conn.get(), encode_reply(error_reply(req.error())));
        continue;
      }
      Received rec{*req, static_cast<bool>(msg->fd), false};
      if (msg->fd) {
        auto theirs = netns_identity(msg->fd.get());
        UniqueFd ours(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
        auto mine = netns_identity(ours.get());
        rec.fd_is_our_netns = theirs.ok() && mine.ok() && theirs.value() == mine.value();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(rec);
      }
      auto reply = answer_(*req);
      if (!reply) {
        wait_readable(stop_read_.get());  // hold the connection, silent, until the end
        return;
      }
      (void)send_message(conn.get(), encode_reply(*reply));
    }
  }

  Answer answer_;
  UniqueFd listen_, stop_read_, stop_write_;
  std::mutex mu_;
  std::vector<Received> received_;
  std::thread thread_;
};

struct PluginRun {
  int exit_code = -1;
  std::string out;
  double seconds = 0;
  json out_json() const { return json::parse(out); }
};

PluginRun run(const std::map<std::string, std::string>& env, const std::string& stdin_text) {
  std::ostringstream out;
  auto start = Clock::now();
  PluginRun r;
  r.exit_code = run_plugin(env, stdin_text, out);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.out = out.str();
  return r;
}

class PluginTest : public ::testing::Test {
 protected:
  std::string socket_path() const { return dir_.path() + "/nsproxyd.sock"; }

  ordered_json config(const std::string& version = "1.1.0") const {
    ordered_json c;
    c["cniVersion"] = version;
    c["name"] = "tenants";
    c["type"] = "nsproxy";
    c["socket"] = socket_path();
    c["timeoutMs"] = 2000;
    c["listeners"] = ordered_json::array(
        {{{"listen", "127.0.0.1:8080"}, {"upstream", "127.0.0.1:18080"}, {"mode", "http"}}});
    return c;
  }

  std::map<std::string, std::string> env(const std::string& command) const {
    return {{"CNI_COMMAND", command},
            {"CNI_CONTAINERID", "ctr1"},
            {"CNI_NETNS", "/proc/self/ns/net"},  // a network namespace any user may open
            {"CNI_IFNAME", "eth0"},
            {"CNI_PATH", "/opt/cni/bin"}};
  }

  static void expect_error(const PluginRun& r, int code, const std::string& in_msg = "") {
    EXPECT_EQ(r.exit_code, 1) << r.out;
    json j = r.out_json();
    EXPECT_EQ(j["code"], code) << r.out;
    if (!in_msg.empty()) {
      EXPECT_NE(j["msg"].get<std::string>().find(in_msg), std::string::npos) << r.out;
    }
  }

  TempDir dir_;
};

Reply ok_with(json data = json::object()) {
  return ok_reply(std::move(data));
}

TEST_F(PluginTest, VersionNeedsOnlyTheCommand) {
  auto r = run({{"CNI_COMMAND", "VERSION"}}, "");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out,
            "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\","
            "\"1.0.0\",\"1.1.0\"]}\n");
}

TEST_F(PluginTest, VersionAnswersInTheConfigVersion) {
  auto r = run({{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"0.4.0"})");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out_json()["cniVersion"], "0.4.0");
  EXPECT_EQ(r.out_json()["supportedVersions"].size(), 5u);
  EXPECT_EQ(run({{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"9.9.9"})").out_json()["cniVersion"],
            "1.1.0");
  EXPECT_EQ(run({{"CNI_COMMAND", "VERSION"}}, "garbage").out_json()["cniVersion"], "1.1.0");
}

TEST_F(PluginTest, ErrorJsonShape) {
  auto r = run({{"CNI_COMMAND", "FROB"}}, "");
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(r.out.back(), '\n');
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "exactly one line on stdout";
  json j = r.out_json();
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["cniVersion"], "1.1.0");
  EXPECT_EQ(j["code"], 4);
  EXPECT_TRUE(j["msg"].is_string());
  EXPECT_NE(j["msg"].get<std::string>().find("FROB"), std::string::npos);
  for (const auto& [k, v] : j.items()) {
    (void)v;
    EXPECT_TRUE(k == "cniVersion" || k == "code" || k == "msg" || k == "details") << k;
  }
}

TEST_F(PluginTest, ErrorUsesTheConfigVersion) {
  auto c = config("0.4.0");
  c["timeoutMs"] = 0;
  auto r = run(env("ADD"), c.dump());
  expect_error(r, 7, "timeoutMs");
  EXPECT_EQ(r.out_json()["cniVersion"], "0.4.0");
}

TEST_F(PluginTest, ProxyProtocolOnAnHttpListenerIsCode7AndContactsNoDaemon) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
  auto c = config();
  c["listeners"][0]["proxyProtocol"] = "v2";  // the listener is http
  expect_error(run(env("ADD"), c.dump()), 7, "listeners[0].proxyProtocol");
  c = config();
  c["headers"] = {{"tenantId", "X Tenant"}};
  expect_error(run(env("ADD"), c.dump()), 7, "headers.tenantId");
  EXPECT_TRUE(daemon.received().empty());
}

TEST_F(PluginTest, BadLimitsAreCode7AndContactNoDaemon) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
  auto c = config();
  c["limits"] = {{"burst", 0}};
  expect_error(run(env("ADD"), c.dump()), 7, "limits.burst: must be an integer from 1 to");
  expect_error(run(env("CHECK"), c.dump()), 7, "limits.burst: must be an integer from 1 to");
  c["limits"] = {{"connection", 10}};
  expect_error(run(env("ADD"), c.dump()), 7, "limits.connection: unknown key");
  EXPECT_TRUE(daemon.received().empty());
  // DEL does not look at limits.
  EXPECT_EQ(run(env("DEL"), c.dump()).exit_code, 0);
}

TEST_F(PluginTest, MissingEnvironmentIsCode4) {
  auto e = env("ADD");
  e.erase("CNI_NETNS");
  expect_error(run(e, config().dump()), 4, "CNI_NETNS");
}

TEST_F(PluginTest, InvalidConfigJsonIsCode6) {
  expect_error(run(env("ADD"), "{not json"), 6);
  expect_error(run(env("DEL"), ""), 6);
}

// No socket file: the connect fails at once and the plugin says the daemon is not
// reachable; it does not wait out timeoutMs (that answer would be "did not answer").
TEST_F(PluginTest, AddWithDaemonDownIsCode11NamingTheSocketQuickly) {
  auto r = run(env("ADD"), config().dump());
  expect_error(r, 11, "nsproxyd not reachable on " + socket_path());
  json j = r.out_json();
  EXPECT_NE(j["details"].get<std::string>().find("No such file or directory"), std::string::npos)
      << r.out;
  EXPECT_EQ(j["msg"].get<std::string>().find("did not answer"), std::string::npos) << r.out;
}

// A daemon that takes the request and never answers: the plugin's timeoutMs fires.
TEST_F(PluginTest, AddWithSilentDaemonTimesOutWithCode11) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return std::optional<Reply>(); });
  auto c = config();
  c["timeoutMs"] = 200;
  auto r = run(env("ADD"), c.dump());
  expect_error(r, 11, "nsproxyd on " + socket_path() + " did not answer within 200 ms");
  EXPECT_NE(r.out_json()["details"].get<std::string>().find("timed out waiting for a reply"),
            std::string::npos)
      << r.out;
  ASSERT_EQ(daemon.received().size(), 1u) << "the request never reached the daemon";
  EXPECT_EQ(daemon.received()[0].request.op, Op::Add);
  // The behaviour is a bound: the 200 ms timeout fires instead of waiting forever. 10 s
  // (50 times the timeout) holds under ASan on a loaded machine.
  EXPECT_LT(r.seconds, 10.0) << "the 200 ms timeoutMs did not end the wait";
}

TEST_F(PluginTest, AddSendsTheRegistrationAndPrintsPrevResultUnchanged) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with({{"created", true}}); });
  auto c = config("1.0.0");
  c["labels"] = {{"team", "a"}, {"pod-name", "from-config"}};
  c["headers"] = {{"tenantId", "X-Caller"}, {"labelPrefix", "X-Caller-Label-"}};
  c["limits"] = {{"rate", 2.5}, {"burst", 5}, {"connections", 64}};
  c["listeners"].push_back({{"listen", "127.0.0.1:8443"},
                            {"upstream", "127.0.0.1:18443"},
                            {"mode", "tcp"},
                            {"proxyProtocol", "v2"}});
  ordered_json prev = ordered_json::parse(R"({
    "cniVersion": "1.0.0",
    "zeta": {"keep": [1, 2.5, "x", null, true]},
    "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
    "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["10.0.0.53"]},
    "alpha": 1
  })");
  c["prevResult"] = prev;
  auto e = env("ADD");
  e["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;Other=1";

  auto r = run(e, c.dump());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, prev.dump() + "\n");  // same keys, same order, same values

  auto got = daemon.received();
  ASSERT_EQ(got.size(), 1u);
  const Request& req = got[0].request;
  EXPECT_EQ(req.op, Op::Add);
  EXPECT_EQ(req.attachment.network, "tenants");
  EXPECT_EQ(req.attachment.id, "ctr1");
  EXPECT_EQ(req.attachment.ifname, "eth0");
  EXPECT_EQ(req.netns_path, "/proc/self/ns/net");
  ASSERT_EQ(req.listeners.size(), 2u);
  EXPECT_EQ(req.listeners[0].listen, "127.0.0.1:8080");
  EXPECT_EQ(req.listeners[0].upstream, "127.0.0.1:18080");
  EXPECT_EQ(req.listeners[0].mode, Mode::Http);
  EXPECT_EQ(req.listeners[0].proxy_protocol, ProxyProtocol::None);
  EXPECT_EQ(req.listeners[1].mode, Mode::Tcp);
  EXPECT_EQ(req.listeners[1].proxy_protocol, ProxyProtocol::V2);
  EXPECT_EQ(req.headers.tenant_id, "X-Caller");
  EXPECT_EQ(req.headers.label_prefix, "X-Caller-Label-");
  EXPECT_EQ(req.limits, (TenantLimits{2.5, 5, 64}));
  std::map<std::string, std::string> want_labels = {
      {"team", "a"}, {"pod-name", "web-0"}, {"pod-namespace", "ns1"}};
  EXPECT_EQ(req.labels, want_labels);  // CNI_ARGS wins over the config on the same key
  EXPECT_TRUE(got[0].had_fd);
  EXPECT_TRUE(got[0].fd_is_our_netns);
}

TEST_F(PluginTest, AddWithoutPrevResultPrintsAnEmptyResult) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
  auto r = run(env("ADD"), config("1.0.0").dump());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out_json(),
            json::parse(R"({"cniVersion":"1.0.0","interfaces":[],"ips":[],"dns":{}})"));
}

TEST_F(PluginTest, AddDaemonErrorIsCode100WithTheDaemonMessage) {
  FakeDaemon daemon(socket_path(), [](const Request&) {
    return error_reply(
        make_error(nsproxy::Code::kListenerFailed, "listen 127.0.0.1:8080: Address in use"));
  });
  auto r = run(env("ADD"), config().dump());
  expect_error(r, 100, "listen 127.0.0.1:8080: Address in use");
  EXPECT_EQ(r.out_json()["details"], "listener_failed");
}

TEST_F(PluginTest, AddWithMissingNetnsIsCode4AndContactsNoDaemon) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
  auto e = env("ADD");
  e["CNI_NETNS"] = dir_.path() + "/no-such-netns";
  expect_error(run(e, config().dump()), 4, "CNI_NETNS");

  std::string plain = dir_.path() + "/plain-file";
  UniqueFd f(::open(plain.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  e["CNI_NETNS"] = plain;
  expect_error(run(e, config().dump()), 4, "CNI_NETNS");
  EXPECT_TRUE(daemon.received().empty());
}

TEST_F(PluginTest, AddWithUnknownCniArgIsCode4) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
  auto e = env("ADD");
  e["CNI_ARGS"] = "K8S_POD_NAME=a;SURPRISE=1";
  expect_error(run(e, config().dump()), 4, "SURPRISE");
  EXPECT_TRUE(daemon.received().empty());
}

TEST_F(PluginTest, DelWithDaemonDownSucceedsSilently) {
  auto e = env("DEL");
  e.erase("CNI_NETNS");
  auto r = run(e, config().dump());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
}

TEST_F(PluginTest, DelSendsTheAttachmentOnly) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with({{"deleted", true}}); });
  auto r = run(env("DEL"), config().dump());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");
  auto got = daemon.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].request.op, Op::Del);
  EXPECT_EQ(got[0].request.attachment.display(), "tenants/ctr1/eth0");
  EXPECT_FALSE(got[0].had_fd);
  EXPECT_TRUE(got[0].request.listeners.empty());
}

TEST_F(PluginTest, DelOfUnknownRegistrationSucceeds) {
  FakeDaemon daemon(socket_path(), [](const Request&) {
    return error_reply(make_error(nsproxy::Code::kNotFound, "no such registration"));
  });
  auto r = run(env("DEL"), config().dump());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");
}

TEST_F(PluginTest, DelWithRealDaemonErrorIsCode100) {
  FakeDaemon daemon(socket_path(), [](const Request&) {
    return error_reply(make_error(nsproxy::Code::kInternal, "state file: No space left on device"));
  });
  auto r = run(env("DEL"), config().dump());
  expect_error(r, 100, "No space left on device");
}

TEST_F(PluginTest, DelWithBrokenListenersStillWorks) {
  auto c = config();
  c["listeners"] = "not an array";
  auto r = run(env("DEL"), c.dump());
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

TEST_F(PluginTest, CheckResults) {
  expect_error(run(env("CHECK"), config().dump()), 11, socket_path());
  {
    FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with(); });
    auto c = config();
    c["headers"] = {{"tenantId", "X-Caller"}};
    c["limits"] = {{"connections", 10}};
    auto r = run(env("CHECK"), c.dump());
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out, "");
    auto got = daemon.received();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].request.op, Op::Check);
    EXPECT_EQ(got[0].request.headers.tenant_id, "X-Caller");  // CHECK compares the same request
    EXPECT_EQ(got[0].request.limits, (TenantLimits{std::nullopt, std::nullopt, 10}));
    EXPECT_TRUE(got[0].fd_is_our_netns);
  }
  std::filesystem::remove(socket_path());
  {
    FakeDaemon daemon(socket_path(), [](const Request&) {
      return error_reply(
          make_error(nsproxy::Code::kNotServing, "listener 127.0.0.1:8080 is not accepting"));
    });
    auto r = run(env("CHECK"), config().dump());
    expect_error(r, 100, "not accepting");
    EXPECT_EQ(r.out_json()["details"], "not_serving");
  }
}

TEST_F(PluginTest, CheckNeedsVersion040) {
  expect_error(run(env("CHECK"), config("0.3.1").dump()), 1);
}

TEST_F(PluginTest, StatusWithDaemonDownIs50NamingTheSocket) {
  auto r = run({{"CNI_COMMAND", "STATUS"}}, config().dump());
  expect_error(r, 50, socket_path());
}

TEST_F(PluginTest, StatusOkPrintsNothing) {
  FakeDaemon daemon(socket_path(), [](const Request&) { return ok_with({{"registrations", 0}}); });
  auto r = run({{"CNI_COMMAND", "STATUS"}}, config().dump());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");
  ASSERT_EQ(daemon.received().size(), 1u);
  EXPECT_EQ(daemon.received()[0].request.op, Op::Status);
}

TEST_F(PluginTest, StatusAndGcNeedVersion110) {
  expect_error(run({{"CNI_COMMAND", "STATUS"}}, config("1.0.0").dump()), 1);
  auto c = config("1.0.0");
  c["cni.dev/valid-attachments"] = json::array();
  expect_error(run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, c.dump()), 1);
}

TEST_F(PluginTest, GcSendsValidAttachments) {
  FakeDaemon daemon(socket_path(), [](const Request&) {
    return ok_with({{"removed", json::array()}});
  });
  auto c = config();
  c["cni.dev/valid-attachments"] =
      json::parse(R"([{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}])");
  auto r = run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, c.dump());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");
  auto got = daemon.received();
  ASSERT_EQ(got.size(), 1u);
  const Request& req = got[0].request;
  EXPECT_EQ(req.op, Op::Gc);
  EXPECT_EQ(req.attachment.network, "tenants");
  ASSERT_EQ(req.valid_attachments.size(), 2u);
  EXPECT_EQ(req.valid_attachments[0].display(), "tenants/c1/eth0");
  EXPECT_EQ(req.valid_attachments[1].display(), "tenants/c2/net1");
}

TEST_F(PluginTest, GcWithDaemonDownIsCode11) {
  auto c = config();
  c["cni.dev/valid-attachments"] = json::array();
  expect_error(run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, c.dump()), 11,
               socket_path());
}

}  // namespace
}  // namespace nsproxy::cni
