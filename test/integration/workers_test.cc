// --workers: how many threads nsproxyd runs, and that each setting serves tenants. The
// rest of the suite runs with the default (one worker per CPU), so every other test
// already crosses threads; the takeover, restart and journal tests run again with one
// worker (ctest integration.workers1.*).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

// The names of a process's threads (/proc/PID/task/*/comm), sorted.
std::vector<std::string> thread_names(pid_t pid) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(e.path() / "comm");
    std::string name;
    std::getline(in, name);
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

class WorkersTest : public LifecycleTest {
 protected:
  // nsproxyd with `args`, one http tenant; checks a request is answered with the tenant's
  // identity, that the daemon runs its main thread and `workers` threads named
  // nsproxyd-w0.., and says `workers` in status, its log and nsproxyctl status.
  void serve_with(const std::vector<std::string>& args, long workers) {
    Daemon d(tmp_.path());
    d.set_extra_args(args);
    ASSERT_TRUE(d.start());
    EchoServer echo("http");
    ASSERT_TRUE(echo.start());
    Netns ns;
    ASSERT_TRUE(ns.ok()) << ns.error();
    const std::string id = "w-" + short_token();
    ASSERT_TRUE(register_tenant(d, ns.path(), id, {.upstream = echo.address()}));
    for (int i = 0; i < 4; ++i) {  // several connections: every worker gets one
      auto c = HttpConn::open(ns.path(), kListen);
      ASSERT_TRUE(c.ok()) << c.error();
      auto r = c.request(http_request("GET", "/w"));
      ASSERT_TRUE(r.ok()) << r.error().message;
      EXPECT_EQ(r->status, 200) << r->describe();
      EXPECT_NE(r->body.find(id), std::string::npos) << "no tenant identity: " << r->describe();
    }
    json st = daemon_status(d);
    EXPECT_EQ(st.value("workers", -1), workers) << st.dump();
    // One thread per worker, named for it, besides the main thread (a sanitizer build may
    // run threads of its own, which inherit the process's name).
    std::vector<std::string> names = thread_names(d.pid());
    std::vector<std::string> expected;
    for (long i = 0; i < workers; ++i) expected.push_back("nsproxyd-w" + std::to_string(i));
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> worker_threads;
    std::copy_if(names.begin(), names.end(), std::back_inserter(worker_threads),
                 [](const std::string& n) { return n.rfind("nsproxyd-w", 0) == 0; });
    EXPECT_EQ(worker_threads, expected) << "worker threads of nsproxyd";
    EXPECT_NE(std::find(names.begin(), names.end(), "nsproxyd"), names.end())
        << "no main thread named nsproxyd";
    EXPECT_NE(d.log().find(std::to_string(workers) + " worker thread"), std::string::npos)
        << d.log();
    auto text = run({binary("nsproxyctl"), "--socket", d.socket_path(), "status"});
    EXPECT_EQ(text.exit_code, 0) << text.describe();
    EXPECT_NE(text.out.find(", " + std::to_string(workers) + " worker thread"), std::string::npos)
        << text.describe();
  }
};

TEST_F(WorkersTest, ByDefaultOneWorkerThreadPerCpuBesidesTheMainThread) {
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  ASSERT_GT(cpus, 0);
  serve_with({}, cpus);
}

TEST_F(WorkersTest, WorkersZeroServesEverythingFromTheMainThread) {
  serve_with({"--workers", "0"}, 0);
}

TEST_F(WorkersTest, ThreeWorkersOnTwoCpusAreThreeThreads) {
  serve_with({"--workers", "3"}, 3);
}

TEST_F(WorkersTest, AWorkerCountOutOfRangeIsAUsageError) {
  for (const char* bad : {"-1", "257", "two", ""}) {
    auto r = run({binary("nsproxyd"), "--socket", tmp_.file("w.sock"), "--state-dir",
                  tmp_.file("state"), "--workers", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.describe();
    EXPECT_NE(r.err.find("--workers"), std::string::npos) << r.describe();
  }
}

}  // namespace
}  // namespace nspit
