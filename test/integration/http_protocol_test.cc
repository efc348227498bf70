// http mode: HTTP/1.1 behaviour a tenant relies on: Upgrade tunnels, HEAD/204/304,
// pipelining, HTTP/1.0, Expect: 100-continue, Connection: close both ways, access log.
#include <sys/socket.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
constexpr const char* kListen = kTenantListen;

class HttpProtocolTest : public OneTenantTest {
 protected:
  HttpProtocolTest() : OneTenantTest("proto-", {{"team", "blue"}}) {}
};

// The upstream answers 101 and then echoes every byte: after the 101 the connection is a
// tunnel in both directions.
TEST_F(HttpProtocolTest, UpgradeBecomesATunnelThatEchoesBytes) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::mutex mu;
  std::string upstream_head;
  RawUpstream ws([&](int fd) {
    std::string rest;
    auto head = read_head_blocking(fd, &rest);
    if (!head) return;
    {
      std::lock_guard<std::mutex> lock(mu);
      upstream_head = *head;
    }
    if (!write_all_blocking(fd,
                            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                            "Upgrade: echo\r\n\r\n" +
                                rest)) {
      return;
    }
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (!write_all_blocking(fd, std::string_view(buf, static_cast<size_t>(n)))) break;
    }
    ::shutdown(fd, SHUT_WR);
  });
  ASSERT_TRUE(ws.ok());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string id = "ws-" + short_token();
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), id, {.upstream = ws.address()}));

  auto c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  ASSERT_TRUE(c.send("GET /chat HTTP/1.1\r\nHost: tenant.test\r\nConnection: Upgrade\r\n"
                     "Upgrade: echo\r\nX-Tenant-Id: forged\r\n\r\n")
                  .ok());
  auto r = c.read_head(5000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->status, 101) << r->describe();
  EXPECT_EQ(r->header("Upgrade").value_or(""), "echo") << r->describe();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_NE(upstream_head.find("\r\nX-Tenant-Id: " + id + "\r\n"), std::string::npos)
        << "the upgrade request lacks the tenant's identity: " << upstream_head;
    EXPECT_EQ(upstream_head.find("forged"), std::string::npos) << upstream_head;
    EXPECT_NE(upstream_head.find("Upgrade: echo"), std::string::npos)
        << "Upgrade was not passed on: " << upstream_head;
  }
  // Small messages, one at a time.
  for (int i = 0; i < 5; ++i) {
    std::string msg = "frame-" + std::to_string(i);
    ASSERT_TRUE(c.send(msg).ok());
    auto back = c.read_exact(msg.size(), 3000ms);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(*back, msg);
  }
  // Bytes that look like HTTP are just bytes now.
  std::string fake = "GET /not-a-request HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(c.send(fake).ok());
  auto back = c.read_exact(fake.size(), 3000ms);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, fake);
  // A large payload in both directions at once, then half-close.
  std::string big(2 * 1024 * 1024, 'w');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>('a' + i % 26);
  auto got = exchange(c.fd(), big, 30000ms);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->size(), big.size());
  EXPECT_TRUE(*got == big) << "tunnelled bytes differ";
}

// HEAD, 204 and 304 carry no body; a proxy that sent one would corrupt the next
// response on the same connection.
TEST_F(HttpProtocolTest, HeadAnd204And304HaveNoBodyAndTheConnectionStaysUsable) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = conn();
  auto head = c.request(http_request("HEAD", "/bytes/1000"), 5000ms, /*head_request=*/true);
  ASSERT_TRUE(head.ok()) << head.error().message;
  EXPECT_EQ(head->status, 200) << head->describe();
  EXPECT_EQ(head->header("Content-Length").value_or(""), "1000") << head->describe();

  auto no_content = c.request(http_request("GET", "/status/204"));
  ASSERT_TRUE(no_content.ok()) << no_content.error().message;
  EXPECT_EQ(no_content->status, 204) << no_content->describe();

  auto not_modified = c.request(http_request("GET", "/status/304", "If-None-Match: \"x\"\r\n"));
  ASSERT_TRUE(not_modified.ok()) << not_modified.error().message;
  EXPECT_EQ(not_modified->status, 304) << not_modified->describe();

  auto head2 = c.request(http_request("HEAD", "/"), 5000ms, true);
  ASSERT_TRUE(head2.ok()) << head2.error().message;
  EXPECT_EQ(head2->status, 200) << head2->describe();

  auto last = c.request(http_request("GET", "/last"));
  ASSERT_TRUE(last.ok()) << last.error().message;
  EXPECT_EQ(last->status, 200) << last->describe();
  EXPECT_EQ(last->json().value("path", ""), "/last") << last->describe();
  // Nothing stray after the last response.
  std::this_thread::sleep_for(200ms);
  auto stray = c.wait_closed(100ms);
  EXPECT_FALSE(stray.ok()) << "the connection closed after HEAD/204/304";
  EXPECT_EQ(c.buffered(), "") << "stray bytes on the connection";
}

// Three requests in one write: three responses, in order.
TEST_F(HttpProtocolTest, PipelinedRequestsAreAnsweredInOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = conn();
  ASSERT_TRUE(c.send(http_request("GET", "/first") + http_request("GET", "/bytes/70000") +
                     http_request("POST", "/third", "Content-Length: 3\r\n", "abc") +
                     http_request("GET", "/fourth", "X-Tenant-Id: forged\r\n"))
                  .ok());
  auto r1 = c.read_response();
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(r1->json().value("path", ""), "/first") << r1->describe();
  auto r2 = c.read_response();
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->body, std::string(70000, 'x')) << r2->describe(100);
  auto r3 = c.read_response();
  ASSERT_TRUE(r3.ok()) << r3.error().message;
  EXPECT_EQ(r3->json().value("path", ""), "/third") << r3->describe();
  EXPECT_EQ(r3->json().value("body_bytes", -1), 3) << r3->describe();
  auto r4 = c.read_response();
  ASSERT_TRUE(r4.ok()) << r4.error().message;
  EXPECT_EQ(r4->json().value("path", ""), "/fourth") << r4->describe();
  EXPECT_EQ(echo_headers(r4->json(), "X-Tenant-Id"), std::vector<std::string>{id_})
      << r4->describe();
}

TEST_F(HttpProtocolTest, Http10ClientGetsItsResponseAndTheConnectionCloses) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    auto c = conn();
    auto r = c.request("GET /old HTTP/1.0\r\nHost: tenant.test\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_EQ(r->json().value("path", ""), "/old") << r->describe();
    EXPECT_EQ(echo_headers(r->json(), "X-Tenant-Id"), std::vector<std::string>{id_})
        << r->describe();
    auto rest = c.wait_closed(3000ms);
    ASSERT_TRUE(rest.ok()) << "HTTP/1.0 without keep-alive: " << rest.error().message;
    EXPECT_EQ(*rest, "");
  }
  {
    // Without a Host header, as HTTP/1.0 allows.
    auto c = conn();
    auto r = c.request("GET /no-host HTTP/1.0\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_TRUE(c.wait_closed(3000ms).ok());
  }
  {
    // HTTP/1.0 with keep-alive: either kept open (and a second request answered), or
    // closed after the response; never left hanging.
    auto c = conn();
    auto r = c.request("GET /ka HTTP/1.0\r\nHost: tenant.test\r\nConnection: keep-alive\r\n\r\n");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    auto conn_hdr = r->header("Connection").value_or("");
    if (conn_hdr.find("eep-alive") != std::string::npos) {
      auto r2 =
          c.request("GET /ka2 HTTP/1.0\r\nHost: tenant.test\r\nConnection: keep-alive\r\n\r\n");
      ASSERT_TRUE(r2.ok()) << r2.error().message;
      EXPECT_EQ(r2->status, 200) << r2->describe();
    } else {
      EXPECT_TRUE(c.wait_closed(3000ms).ok())
          << "HTTP/1.0 response without keep-alive, but the connection stayed open: "
          << r->describe();
    }
  }
}

TEST_F(HttpProtocolTest, Expect100ContinueGetsInterimResponseThen200) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = conn();
  ASSERT_TRUE(
      c.send(http_request("POST", "/expect", "Content-Length: 11\r\nExpect: 100-continue\r\n"))
          .ok());
  auto interim = c.read_response(3000ms);
  ASSERT_TRUE(interim.ok()) << "no 100 Continue before the body was sent: "
                            << interim.error().message;
  EXPECT_EQ(interim->status, 100) << interim->describe();
  ASSERT_TRUE(c.send("hello world").ok());
  auto r = c.read_response();
  ASSERT_TRUE(r.ok()) << r.error().message;
  int extra_100 = 0;
  while (r->status == 100 && extra_100 < 3) {
    ++extra_100;
    r = c.read_response();
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  EXPECT_EQ(extra_100, 0) << "the client got more than one 100 Continue";
  EXPECT_EQ(r->status, 200) << r->describe();
  EXPECT_EQ(r->json().value("body_bytes", -1), 11) << r->describe();
  // The connection goes on.
  auto next = c.request(http_request("GET", "/after-expect"));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->status, 200) << next->describe();
}

// A tenant that asked to close gets its connection closed as soon as the last byte is
// queued in the kernel (no half-close, no lingering read): what is queued still
// arrives whole, however late the tenant reads it, and then the end of the stream.
TEST_F(HttpProtocolTest, ALargeResponseToAClosingRequestArrivesWholeWhenReadLate) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto c = conn();
  ASSERT_TRUE(c.send(http_request("GET", "/bytes/3000000", "Connection: close\r\n")).ok());
  std::this_thread::sleep_for(500ms);  // the daemon has queued what the sockets take
  auto r = c.read_response(10000ms);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200) << r->describe();
  EXPECT_EQ(r->body.size(), 3000000u);
  EXPECT_EQ(r->body.find_first_not_of('x'), std::string::npos);
  auto rest = c.wait_closed(3000ms);
  ASSERT_TRUE(rest.ok()) << rest.error().message;
  EXPECT_EQ(*rest, "");
}

// Connection: close from the tenant: the proxy closes after the response. From the
// upstream: the proxy does not reuse that upstream connection, and the tenant's
// connection goes on.
TEST_F(HttpProtocolTest, ConnectionCloseIsHonouredBothWays) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    auto c = conn();
    auto r = c.request(http_request("GET", "/close", "Connection: close\r\n"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    auto rest = c.wait_closed(3000ms);
    ASSERT_TRUE(rest.ok()) << "Connection: close not honoured: " << rest.error().message;
    EXPECT_EQ(*rest, "");
  }
  {
    // A request pipelined after the closing one is not answered.
    auto c = conn();
    ASSERT_TRUE(c.send(http_request("GET", "/close", "Connection: close\r\n") +
                       http_request("GET", "/after-close"))
                    .ok());
    auto r = c.read_response();
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->json().value("path", ""), "/close") << r->describe();
    auto rest = c.wait_closed(3000ms);
    ASSERT_TRUE(rest.ok()) << rest.error().message;
    EXPECT_EQ(*rest, "") << "a request after Connection: close was answered";
  }
  // An upstream that answers "Connection: close" and closes each connection.
  std::atomic<int> served{0};
  RawUpstream closing([&](int fd) {
    std::string rest;
    if (!read_head_blocking(fd, &rest)) return;
    ++served;
    write_all_blocking(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    ::shutdown(fd, SHUT_WR);
  });
  ASSERT_TRUE(closing.ok());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), "closing-" + short_token(),
                              {.upstream = closing.address()}));
  auto c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  for (int i = 0; i < 3; ++i) {
    auto r = c.request(http_request("GET", "/upstream-closes"));
    ASSERT_TRUE(r.ok()) << "request " << i + 1 << ": " << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_EQ(r->body, "ok");
    if (r->header("Connection").value_or("") == "close") {
      // Passing the close on to the tenant is allowed; then reconnect.
      ASSERT_TRUE(c.wait_closed(3000ms).ok());
      c = HttpConn::open(ns.path(), kListen);
      ASSERT_TRUE(c.ok()) << c.error();
    }
  }
  EXPECT_EQ(closing.accepted(), 3) << "the proxy reused an upstream connection that said close";
  EXPECT_EQ(served.load(), 3);
}

TEST_F(HttpProtocolTest, AccessLogHasOneJsonLinePerRequest) {
  const std::string log_path = tmp_.file("access.log");
  ASSERT_NO_FATAL_FAILURE(start({"--access-log", log_path}));
  auto c = conn();
  auto r1 = c.request(http_request("GET", "/logged?q=1"));
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  auto r2 = c.request(http_request("POST", "/upload", "Content-Length: 5\r\n", "hello"));
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  auto r3 = c.request(http_request("GET", "/status/404"));
  ASSERT_TRUE(r3.ok()) << r3.error().message;
  const size_t expected = 3;

  auto read_lines = [&] {
    std::ifstream in(log_path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) {
      if (!l.empty()) lines.push_back(l);
    }
    return lines;
  };
  // The log is line-buffered: every line is in the file while the daemon runs (tail -f
  // works), not only once it exits. A line may land just after its response reached the
  // tenant, so wait for them (the bound only guards against a hang).
  std::vector<std::string> lines;
  wait_until([&] {
    lines = read_lines();
    return lines.size() >= expected;
  });
  ASSERT_TRUE(daemon_->running());
  ASSERT_EQ(lines.size(), expected) << "access log lines of the running daemon";
  struct Want {
    const char* method;
    const char* path;
    int status;
  };
  std::vector<Want> want = {
      {"GET", "/logged?q=1", 200}, {"POST", "/upload", 200}, {"GET", "/status/404", 404}};
  for (size_t i = 0; i < expected; ++i) {
    SCOPED_TRACE("line " + std::to_string(i + 1) + ": " + lines[i]);
    json j = json::parse(lines[i], nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object";
    EXPECT_EQ(j.value("tenant", ""), id_);
    EXPECT_EQ(j.value("method", ""), want[i].method);
    std::string path = j.value("path", "");
    EXPECT_EQ(path.substr(0, path.find('?')),
              std::string(want[i].path).substr(0, std::string(want[i].path).find('?')));
    EXPECT_EQ(j.value("status", 0), want[i].status);
    for (const char* k : {"bytes_in", "bytes_out", "duration_ms"}) {
      EXPECT_TRUE(j.contains(k) && j[k].is_number()) << "missing number " << k;
    }
    EXPECT_GT(j.value("bytes_out", 0), 0);
    EXPECT_GE(j.value("duration_ms", -1.0), 0.0);
  }
  json post = json::parse(lines[1], nullptr, false);
  EXPECT_GE(post.value("bytes_in", 0), 5) << "bytes_in of a 5-byte POST: " << lines[1];
}

}  // namespace
}  // namespace nspit
