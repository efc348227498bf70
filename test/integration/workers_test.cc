// --workers: how many threads nsproxyd runs, and that each setting serves tenants. The
// rest of the suite runs with the default (one worker per CPU), so every other test
// already crosses threads; the takeover, restart and journal tests run again with one
// worker (ctest integration.workers1.*).
#include <unistd.h>

#include <filesystem>
#include <string>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

// Threads of a process, from /proc/PID/task.
int thread_count(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    (void)e;
    ++n;
  }
  return n;
}

class WorkersTest : public LifecycleTest {
 protected:
  // nsproxyd with `args`, one http tenant; checks a request is answered with the tenant's
  // identity and that the daemon runs `threads` threads and says `workers` in status.
  void serve_with(const std::vector<std::string>& args, long workers, int threads) {
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
    EXPECT_EQ(thread_count(d.pid()), threads) << "threads of nsproxyd";
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
  serve_with({}, cpus, static_cast<int>(cpus) + 1);
}

TEST_F(WorkersTest, WorkersZeroServesEverythingFromTheMainThread) {
  serve_with({"--workers", "0"}, 0, 1);
}

TEST_F(WorkersTest, ThreeWorkersOnTwoCpusAreThreeThreads) {
  serve_with({"--workers", "3"}, 3, 4);
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
