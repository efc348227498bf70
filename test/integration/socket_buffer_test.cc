// --socket-buffer: the kernel buffers of tenant connections, read back with ss.
#include <unistd.h>

#include <string>

#include "fixture.h"

namespace nspit {
namespace {

constexpr const char* kListen = "127.0.0.1:8080";

// --socket-buffer (default 256 KiB) caps the kernel buffers of tenant connections (the
// kernel doubles the value): a tenant that never reads parks at most that much kernel
// memory per connection instead of the megabytes autotuning grows to. 0 leaves
// autotuning on. Read back with ss, as an operator would.
class SocketBufferTest : public IntegrationTest {};  // root, or a loud skip

TEST_F(SocketBufferTest, TenantConnectionsGetTheConfiguredKernelBuffers) {
  ASSERT_EQ(run({"sh", "-c", "command -v ss"}).exit_code, 0) << "ss (iproute2) missing";
  for (const char* flag : {"", "0"}) {
    TempDir tmp;
    EchoServer echo("http");
    ASSERT_TRUE(echo.start());
    Daemon d(tmp.path());
    if (*flag != '\0') d.set_extra_args({"--socket-buffer", flag});
    ASSERT_TRUE(d.start());
    Netns ns;
    ASSERT_TRUE(ns.ok()) << ns.error();
    ASSERT_TRUE(
        register_tenant(d, ns.path(), "sockbuf-" + short_token(), {.upstream = echo.address()}));
    HttpConn c = HttpConn::open(ns.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    ASSERT_TRUE(c.request(http_request("GET", "/")).ok());
    // The daemon's end of the connection: local port 8080 inside the namespace.
    auto ss = ns.exec("ss -tmnH state established '( sport = :8080 )'");
    ASSERT_EQ(ss.exit_code, 0) << ss.describe();
    const bool capped = ss.out.find("rb524288") != std::string::npos &&
                        ss.out.find("tb524288") != std::string::npos;
    if (*flag == '\0') {
      EXPECT_TRUE(capped) << "default --socket-buffer 262144: expected rb/tb 524288\n" << ss.out;
    } else {
      EXPECT_FALSE(capped) << "--socket-buffer 0 must leave autotuning on\n" << ss.out;
    }
  }
}

}  // namespace
}  // namespace nspit
