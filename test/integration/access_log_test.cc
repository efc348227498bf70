// `--access-log -`: one JSON line per HTTP request on the daemon's standard output
// (README's flag table: tenant, listen, method, path, status, bytes_in, bytes_out (body
// bytes), duration_ms; "-" for stdout).
#include <signal.h>

#include <sstream>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

class AccessLogTest : public IntegrationTest {};  // root, or a loud skip

TEST_F(AccessLogTest, DashWritesOneJsonLinePerRequestToStdout) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  TempDir tmp;
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp.path());
  d.set_extra_args({"--access-log", "-"});
  ASSERT_TRUE(d.start());
  const std::string id = "alog-" + short_token();
  ASSERT_TRUE(register_tenant(d, ns.path(), id, {.upstream = echo.address()}));

  auto c = HttpConn::open(ns.path(), "127.0.0.1:8080");
  ASSERT_TRUE(c.ok()) << c.error();
  auto r1 = c.request(http_request("GET", "/first?x=1"));
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  auto r2 = c.request(http_request("POST", "/second", "Content-Length: 5\r\n", "hello"));
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  // The line is written when the response is complete: wait for it on stdout.
  ASSERT_TRUE(d.process()->wait_for_line("\"path\":\"/second\"", 5000ms))
      << "no access log line on stdout; stdout: " << d.process()->out();
  // SIGHUP has no file to reopen with "-": stdout stays the access log.
  d.process()->signal(SIGHUP);
  for (auto deadline = Clock::now() + 5s;
       d.log().find("SIGHUP") == std::string::npos && Clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
  }
  auto r3 = c.request(http_request("GET", "/status/404"));
  ASSERT_TRUE(r3.ok()) << r3.error().message;
  ASSERT_TRUE(d.process()->wait_for_line("\"path\":\"/status/404\"", 5000ms))
      << "no access log line after SIGHUP; stdout: " << d.process()->out();
  ASSERT_EQ(d.stop(), 0) << d.log();

  // Standard output holds the access log and nothing else.
  auto lines = lines_of(d.process()->out());
  ASSERT_EQ(lines.size(), 3u) << d.process()->out();
  struct Want {
    const char* method;
    const char* path;
    int status;
    int bytes_in;
  };
  const Want want[] = {
      {"GET", "/first?x=1", 200, 0}, {"POST", "/second", 200, 5}, {"GET", "/status/404", 404, 0}};
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    json j = json::parse(lines[i], nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object";
    EXPECT_EQ(j.value("tenant", ""), id);
    EXPECT_EQ(j.value("listen", ""), "127.0.0.1:8080");
    EXPECT_EQ(j.value("method", ""), want[i].method);
    EXPECT_EQ(j.value("path", ""), want[i].path);
    EXPECT_EQ(j.value("status", 0), want[i].status);
    EXPECT_EQ(j.value("bytes_in", -1), want[i].bytes_in);
    EXPECT_TRUE(j.contains("bytes_out") && j["bytes_out"].is_number_unsigned());
    EXPECT_TRUE(j.contains("duration_ms") && j["duration_ms"].is_number());
  }
  // bytes_out is the response body's length.
  json first = json::parse(lines[0]);
  EXPECT_EQ(first.value("bytes_out", uint64_t{0}), r1->body.size());
}

}  // namespace
}  // namespace nspit
