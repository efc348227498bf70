// docs/bad-input.md, CNI plugin: the config/environment classes not covered by
// cni_config_test.cc, cni_env_test.cc and plugin_test.cc. Drives run_plugin directly;
// where a daemon is needed, a fake one in a temp dir answers with raw bytes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "control_protocol.h"
#include "control_transport.h"
#include "plugin.h"
#include "unique_fd.h"

namespace nsproxy::cni {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

class BadInputCni : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsproxy-bad-cni-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    ASSERT_NE(p, nullptr);
    dir_ = p;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string socket_path() const { return dir_ + "/nsproxyd.sock"; }

  ordered_json config() const {
    ordered_json c;
    c["cniVersion"] = "1.1.0";
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
            {"CNI_NETNS", "/proc/self/ns/net"},
            {"CNI_IFNAME", "eth0"},
            {"CNI_PATH", "/opt/cni/bin"}};
  }

  struct Run {
    int exit_code = -1;
    json out;
  };
  static Run run(const std::map<std::string, std::string>& e, const std::string& stdin_text) {
    std::ostringstream out;
    Run r;
    r.exit_code = run_plugin(e, stdin_text, out);
    r.out = json::parse(out.str(), nullptr, false);
    return r;
  }

  // Exit 1 with exactly this code and msg.
  static void expect_error(const Run& r, int code, const std::string& msg) {
    EXPECT_EQ(r.exit_code, 1) << r.out.dump();
    ASSERT_TRUE(r.out.is_object()) << "stdout is not a JSON object";
    EXPECT_EQ(r.out["code"], code) << r.out.dump();
    EXPECT_EQ(r.out["msg"], msg) << r.out.dump();
  }

  std::string dir_;
};

const std::string kNul("a\0b", 3);

TEST_F(BadInputCni, NulInAnyStringFieldIsCode7NamingTheField) {
  struct Case {
    const char* path;
    std::function<void(ordered_json&)> edit;
  };
  const std::vector<Case> cases = {
      {"name", [](ordered_json& c) { c["name"] = kNul; }},
      {"type", [](ordered_json& c) { c["type"] = "nsproxy" + kNul; }},
      {"socket", [](ordered_json& c) { c["socket"] = "/run/" + kNul; }},
      {"cniVersion", [](ordered_json& c) { c["cniVersion"] = "1.1.0" + kNul; }},
      {"listeners[0].listen",
       [](ordered_json& c) { c["listeners"][0]["listen"] = "127.0.0.1:8080" + kNul; }},
      {"listeners[0].upstream", [](ordered_json& c) { c["listeners"][0]["upstream"] = kNul; }},
      {"listeners[0].mode", [](ordered_json& c) { c["listeners"][0]["mode"] = "tcp" + kNul; }},
      {"listeners[0].proxyProtocol",
       [](ordered_json& c) { c["listeners"][0]["proxyProtocol"] = kNul; }},
      {"headers.tenantId",
       [](ordered_json& c) {
         c["headers"] = {{"tenantId", kNul}};
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    ordered_json conf = config();
    c.edit(conf);
    expect_error(run(env("ADD"), conf.dump()), 7, std::string(c.path) + ": contains a NUL byte");
  }
  // GC's valid attachments go through the same check.
  ordered_json gc = config();
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", kNul}, {"ifname", "eth0"}}});
  expect_error(run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, gc.dump()), 7,
               "cni.dev/valid-attachments[0].containerID: contains a NUL byte");
}

TEST_F(BadInputCni, ConfigLabelsPlusPodLabelsOver64IsCode7) {
  ordered_json conf = config();
  for (int i = 0; i < 62; ++i) conf["labels"]["l" + std::to_string(i)] = "v";
  auto e = env("ADD");
  e["CNI_ARGS"] = "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_UID=u1";
  expect_error(run(e, conf.dump()), 7,
               "labels: more than 64 labels together with the pod labels of CNI_ARGS");
  auto c = env("CHECK");
  c["CNI_ARGS"] = e["CNI_ARGS"];
  expect_error(run(c, conf.dump()), 7,
               "labels: more than 64 labels together with the pod labels of CNI_ARGS");
}

TEST_F(BadInputCni, ValidAttachmentEntryTooLongOrTooManyIsCode7) {
  const std::map<std::string, std::string> gc_env = {{"CNI_COMMAND", "GC"},
                                                     {"CNI_PATH", "/opt/cni/bin"}};
  ordered_json conf = config();
  conf["cni.dev/valid-attachments"] =
      json::array({{{"containerID", std::string(257, 'c')}, {"ifname", "eth0"}}});
  expect_error(run(gc_env, conf.dump()), 7, "cni.dev/valid-attachments[0]: longer than 256 bytes");
  conf["cni.dev/valid-attachments"] =
      json::array({{{"containerID", "c1"}, {"ifname", "eth0"}},
                   {{"containerID", "c2"}, {"ifname", std::string(257, 'i')}}});
  expect_error(run(gc_env, conf.dump()), 7, "cni.dev/valid-attachments[1]: longer than 256 bytes");

  json many = json::array();
  for (int i = 0; i < 30001; ++i) {
    many.push_back({{"containerID", "c" + std::to_string(i)}, {"ifname", "eth0"}});
  }
  conf["cni.dev/valid-attachments"] = many;
  expect_error(run(gc_env, conf.dump()), 7, "cni.dev/valid-attachments: more than 30000 entries");
}

// Every entry valid on its own, the whole list too large for one 4 MiB datagram: 999,
// before any attempt to reach the daemon (no daemon runs here; reaching for it would
// give 11).
TEST_F(BadInputCni, GcLargerThanOneControlMessageIs999) {
  json many = json::array();
  const int n = 10000;  // ~550 bytes each encoded: ~5.5 MB
  for (int i = 0; i < n; ++i) {
    std::string id = std::to_string(i);
    many.push_back({{"containerID", id + std::string(256 - id.size(), 'c')},
                    {"ifname", std::string(256, 'i')}});
  }
  ordered_json conf = config();
  conf["cni.dev/valid-attachments"] = many;
  expect_error(run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, conf.dump()), 999,
               "GC: 10000 valid attachments do not fit in one control message of 4194304 bytes");
}

TEST_F(BadInputCni, NetnsPathLongerThan4096IsCode4) {
  for (const char* command : {"ADD", "CHECK", "DEL"}) {
    SCOPED_TRACE(command);
    auto e = env(command);
    e["CNI_NETNS"] = "/" + std::string(4096, 'n');
    expect_error(run(e, config().dump()), 4, "CNI_NETNS: path longer than 4096 bytes");
  }
  // Exactly 4096 passes this check (and then fails to open: ENAMETOOLONG, code 5).
  auto e = env("ADD");
  e["CNI_NETNS"] = "/" + std::string(4095, 'n');
  auto r = run(e, config().dump());
  EXPECT_EQ(r.out["code"], 5) << r.out.dump();
}

// open(2) failing with anything but ENOENT: code 5, details netns_open_failed. As root
// EACCES is not reproducible; ENOTDIR and ENAMETOOLONG are. (A directory opens fine and
// is then "not a namespace file": code 4.)
TEST_F(BadInputCni, NetnsOpenFailureOtherThanEnoentIsCode5) {
  std::string file = dir_ + "/plain";
  { UniqueFd f(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)); }
  const std::string not_dir = file + "/netns";
  const std::string name_too_long = dir_ + "/" + std::string(300, 'x');
  for (const auto& [path, err] : {std::pair{not_dir, ENOTDIR}, {name_too_long, ENAMETOOLONG}}) {
    SCOPED_TRACE(path);
    for (const char* command : {"ADD", "CHECK"}) {
      auto e = env(command);
      e["CNI_NETNS"] = path;
      auto r = run(e, config().dump());
      expect_error(r, 5, "CNI_NETNS: open netns " + path + ": " + std::strerror(err));
      EXPECT_EQ(r.out["details"], "netns_open_failed");
    }
  }
  auto e = env("ADD");
  e["CNI_NETNS"] = dir_;
  auto r = run(e, config().dump());
  EXPECT_EQ(r.out["code"], 4) << r.out.dump();
  EXPECT_EQ(r.out["details"], "not_netns") << r.out.dump();
}

// Answers every connection with fixed raw bytes (not necessarily a valid reply).
class RawReplyDaemon {
 public:
  RawReplyDaemon(const std::string& path, std::string reply) : reply_(std::move(reply)) {
    listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
        << std::strerror(errno);
    EXPECT_EQ(::listen(listen_.get(), 8), 0);
    thread_ = std::thread([this] {
      for (;;) {
        UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn || stop_) return;
        auto msg = recv_message(conn.get(), kMaxMessageSize);
        if (!msg) continue;
        ++served_;
        (void)send_message(conn.get(), reply_);
      }
    });
  }
  ~RawReplyDaemon() {
    stop_ = true;
    ::shutdown(listen_.get(), SHUT_RDWR);  // wakes accept4
    thread_.join();
  }
  int served() const { return served_; }

 private:
  std::string reply_;
  UniqueFd listen_;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::thread thread_;
};

TEST_F(BadInputCni, UndecodableDaemonReplyIsCode11) {
  const std::string expected =
      "nsproxyd on " + socket_path() + " sent a reply that cannot be decoded";
  for (const char* reply : {"this is not json", "[1,2,3]", R"({"version":1})",
                            R"({"version":1,"ok":false})", R"({"version":1,"ok":"yes"})"}) {
    SCOPED_TRACE(reply);
    RawReplyDaemon daemon(socket_path(), reply);
    expect_error(run(env("ADD"), config().dump()), 11, expected);
    expect_error(run(env("CHECK"), config().dump()), 11, expected);
    ordered_json gc = config();
    gc["cni.dev/valid-attachments"] = json::array();
    expect_error(run({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}, gc.dump()), 11,
                 expected);
    // STATUS reports 50 for the same failure; DEL treats it as success.
    expect_error(run({{"CNI_COMMAND", "STATUS"}}, config().dump()), 50, expected);
    auto del = run(env("DEL"), config().dump());
    EXPECT_EQ(del.exit_code, 0) << del.out.dump();
    EXPECT_EQ(daemon.served(), 5);
    std::filesystem::remove(socket_path());
  }
}

}  // namespace
}  // namespace nsproxy::cni
