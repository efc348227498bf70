// README, HTTP mode: "chunked bodies are re-chunked; an HTTP/1.0 tenant gets a chunked
// response unframed, then the connection closes."
#include <sys/socket.h>

#include "fixture.h"

namespace nspit {
namespace {

constexpr const char* kListen = "127.0.0.1:8080";
const std::string kBody = "hello, chunked world: " + std::string(3000, 'c') + " the end";

// Answers every request with kBody in three chunks (with a chunk extension and a
// trailer), keep-alive.
void chunked_upstream(int fd) {
  std::string rest;
  while (read_head_blocking(fd, &rest, 10000ms)) {
    std::string resp =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    auto chunk = [&resp](std::string_view data, const char* ext = "") {
      char size[32];
      std::snprintf(size, sizeof size, "%zx", data.size());
      resp += std::string(size) + ext + "\r\n" + std::string(data) + "\r\n";
    };
    chunk(std::string_view(kBody).substr(0, 10));
    chunk(std::string_view(kBody).substr(10, 2000), ";name=value");
    chunk(std::string_view(kBody).substr(2010));
    resp += "0\r\nX-Trailer: t\r\n\r\n";
    if (!write_all_blocking(fd, resp)) return;
  }
}

class Http10ChunkedTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(upstream_.ok());
    ASSERT_TRUE(ns_.ok()) << ns_.error();
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    ASSERT_TRUE(daemon_->start());
    ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), "h10-" + short_token(),
                                {.upstream = upstream_.address()}));
  }

  RawUpstream upstream_{chunked_upstream};
  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(Http10ChunkedTest, AnHttp10TenantGetsTheBodyUnframedAndThenTheClose) {
  for (const char* connection : {"", "Connection: keep-alive\r\n"}) {
    SCOPED_TRACE(*connection ? "HTTP/1.0 asking for keep-alive" : "plain HTTP/1.0");
    auto c = HttpConn::open(ns_.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    auto r = c.request(
        std::string("GET /chunked HTTP/1.0\r\nHost: tenant.test\r\n") + connection + "\r\n",
        10000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->version, "HTTP/1.0") << r->describe();
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_FALSE(r->header("Transfer-Encoding").has_value())
        << "chunked framing sent to an HTTP/1.0 client: " << r->describe();
    EXPECT_FALSE(r->header("Content-Length").has_value()) << r->describe();
    EXPECT_EQ(r->header("Connection").value_or(""), "close") << r->describe();
    EXPECT_TRUE(r->until_eof) << "the body was not delimited by the close: " << r->describe();
    EXPECT_EQ(r->body, kBody) << "the body is not the de-chunked upstream body: " << r->describe();
  }
}

// The contrast: an HTTP/1.1 tenant gets the same body chunked, and keeps its connection.
TEST_F(Http10ChunkedTest, AnHttp11TenantGetsItChunkedOnAKeptConnection) {
  auto c = HttpConn::open(ns_.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  for (int i = 0; i < 2; ++i) {
    auto r = c.request(http_request("GET", "/chunked"), 10000ms);
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_TRUE(r->chunked) << r->describe();
    EXPECT_EQ(r->body, kBody) << r->describe();
  }
  EXPECT_EQ(upstream_.accepted(), 1) << "the upstream connection was not kept either";
}

}  // namespace
}  // namespace nspit
