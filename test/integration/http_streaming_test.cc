// http mode: 10 MB bodies in both directions, with Content-Length and chunked, streamed
// through the daemon while its resident memory stays bounded (nsproxy-echo counts what it
// receives; nginx from Debian stores uploads and serves files).
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "fixture.h"

namespace nspit {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kListen = "127.0.0.1:8080";
constexpr size_t kTenMb = 10 * 1024 * 1024;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

// Allowed RSS growth over the baseline while 10 MB flow through: a daemon that buffered
// a whole body would grow by at least 10 MB. Under ASan the daemon runs without the
// allocator's quarantine (which would otherwise count every freed buffer as resident);
// ASan's own bookkeeping still costs some, hence the looser bound there.
constexpr long kMaxGrowthKib = kAsan ? 9 * 1024 : 8 * 1024;

// Samples the daemon's VmRSS every few milliseconds; max() is the peak seen.
class RssSampler {
 public:
  explicit RssSampler(pid_t pid) : pid_(pid) {
    thread_ = std::thread([this] {
      while (!stop_) {
        sample();
        std::this_thread::sleep_for(5ms);
      }
    });
  }
  ~RssSampler() {
    stop_ = true;
    thread_.join();
  }
  void sample() {
    long v = rss_kib(pid_);
    long m = max_.load();
    while (v > m && !max_.compare_exchange_weak(m, v)) {
    }
  }
  long max() {
    sample();
    return max_.load();
  }

 private:
  pid_t pid_;
  std::atomic<long> max_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Deterministic, non-repeating-looking content.
std::string pattern(size_t n) {
  std::string s;
  s.reserve(n + 32);
  for (uint64_t i = 0; s.size() < n; ++i) s += std::to_string(i * 2654435761u % 1000003) + ",";
  s.resize(n);
  return s;
}

std::string chunked(std::string_view body, size_t chunk) {
  std::string out;
  out.reserve(body.size() + body.size() / chunk * 12 + 16);
  char hex[32];
  for (size_t off = 0; off < body.size(); off += chunk) {
    size_t n = std::min(chunk, body.size() - off);
    std::snprintf(hex, sizeof hex, "%zx\r\n", n);
    out += hex;
    out.append(body.substr(off, n));
    out += "\r\n";
  }
  out += "0\r\n\r\n";
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class HttpStreamingTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(ns_.ok()) << ns_.error();
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    daemon_->set_extra_args({"--log-level", "info"});
    if (kAsan) {
      const char* cur = std::getenv("ASAN_OPTIONS");
      std::string opts = cur && *cur ? std::string(cur) + ":" : std::string();
      daemon_->set_env(
          {{"ASAN_OPTIONS", opts + "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"}});
    }
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http");
    ASSERT_TRUE(echo_->start());
    nginx_dir_ = tmp_.path() + "/nginx";
    ::mkdir(nginx_dir_.c_str(), 0755);
    nginx_ = std::make_unique<Nginx>(nginx_dir_,
                                     "    client_max_body_size 0;\n"
                                     "    location /upload/ {\n"
                                     "      dav_methods PUT;\n"
                                     "      create_full_put_path on;\n"
                                     "    }\n"
                                     "    location /files/ {\n"
                                     "    }\n"
                                     "    location /chunked/ {\n"
                                     "      alias " +
                                         nginx_dir_ +
                                         "/www/files/;\n"
                                         "      sub_filter 'no-such-text-anywhere' 'x';\n"
                                         "      sub_filter_once off;\n"
                                         "      sub_filter_types *;\n"
                                         "    }\n");
    ASSERT_TRUE(nginx_->start());
    ASSERT_TRUE(
        register_tenant(*daemon_, ns_.path(), "stream-" + short_token(),
                        {.listeners = {{"127.0.0.1:8080", echo_->address(), nsproxy::Mode::Http,
                                        nsproxy::ProxyProtocol::None},
                                       {"127.0.0.1:8081", nginx_->address(), nsproxy::Mode::Http,
                                        nsproxy::ProxyProtocol::None}}}));
    // Warm up (pools, buffers) before taking the baseline.
    for (const char* l : {"127.0.0.1:8080", "127.0.0.1:8081"}) {
      auto c = HttpConn::open(ns_.path(), l);
      ASSERT_TRUE(c.ok()) << c.error();
      auto r = c.request(http_request("GET", "/warm-up/" + pattern(10)));
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    std::this_thread::sleep_for(100ms);
    baseline_ = rss_kib(daemon_->pid());
    ASSERT_GT(baseline_, 0) << "cannot read VmRSS of pid " << daemon_->pid();
  }

  void expect_bounded(RssSampler& s, const std::string& what) {
    long peak = s.max();
    EXPECT_LT(peak - baseline_, kMaxGrowthKib)
        << what << ": daemon RSS grew from " << baseline_ << " KiB to " << peak << " KiB";
    std::cerr << "[ rss      ] " << what << ": baseline " << baseline_ << " KiB, peak " << peak
              << " KiB\n";
  }

  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::string nginx_dir_;
  std::unique_ptr<Nginx> nginx_;
  long baseline_ = 0;
};

TEST_F(HttpStreamingTest, TenMegabyteUploadsWithContentLengthAndChunked) {
  const std::string body = pattern(kTenMb);
  RssSampler rss(daemon_->pid());
  {
    SCOPED_TRACE("Content-Length upload to nsproxy-echo");
    auto c = HttpConn::open(ns_.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    ASSERT_TRUE(c.send(http_request("POST", "/upload-cl",
                                    "Content-Length: " + std::to_string(body.size()) + "\r\n"),
                       5000ms)
                    .ok());
    auto sent = c.send(body, 60000ms);
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    auto r = c.read_response(30000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->status, 200) << r->describe();
    EXPECT_EQ(r->json().value("body_bytes", uint64_t{0}), kTenMb) << r->describe();
    // The same connection goes on with a chunked upload.
    SCOPED_TRACE("chunked upload to nsproxy-echo on the same connection");
    sent = c.send(http_request("POST", "/upload-chunked", "Transfer-Encoding: chunked\r\n") +
                      chunked(body, 65536),
                  60000ms);
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    auto r2 = c.read_response(30000ms);
    ASSERT_TRUE(r2.ok()) << r2.error().message;
    ASSERT_EQ(r2->status, 200) << r2->describe();
    EXPECT_EQ(r2->json().value("body_bytes", uint64_t{0}), kTenMb) << r2->describe();
  }
  expect_bounded(rss, "uploads to nsproxy-echo");
  {
    SCOPED_TRACE("chunked PUT to nginx (odd chunk sizes)");
    auto c = HttpConn::open(ns_.path(), "127.0.0.1:8081");
    ASSERT_TRUE(c.ok()) << c.error();
    auto sent =
        c.send(http_request("PUT", "/upload/chunked.bin", "Transfer-Encoding: chunked\r\n") +
                   chunked(body, 100003),
               60000ms);
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    auto r = c.read_response(30000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(r->status == 201 || r->status == 204) << r->describe();
    std::string stored = read_file(nginx_->root() + "/upload/chunked.bin");
    EXPECT_EQ(stored.size(), body.size());
    EXPECT_TRUE(stored == body) << "nginx stored different bytes";
  }
  {
    SCOPED_TRACE("Content-Length PUT to nginx");
    auto c = HttpConn::open(ns_.path(), "127.0.0.1:8081");
    ASSERT_TRUE(c.ok()) << c.error();
    auto sent =
        c.send(http_request("PUT", "/upload/cl.bin",
                            "Content-Length: " + std::to_string(body.size()) + "\r\n", body),
               60000ms);
    ASSERT_TRUE(sent.ok()) << sent.error().message;
    auto r = c.read_response(30000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(r->status == 201 || r->status == 204) << r->describe();
    std::string stored = read_file(nginx_->root() + "/upload/cl.bin");
    EXPECT_EQ(stored.size(), body.size());
    EXPECT_TRUE(stored == body) << "nginx stored different bytes";
  }
  expect_bounded(rss, "uploads to nsproxy-echo and nginx");
}

TEST_F(HttpStreamingTest, TenMegabyteDownloadsWithContentLengthAndChunked) {
  const std::string body = pattern(kTenMb);
  ::mkdir((nginx_->root() + "/files").c_str(), 0755);
  std::ofstream(nginx_->root() + "/files/ten.bin", std::ios::binary) << body;
  RssSampler rss(daemon_->pid());
  {
    SCOPED_TRACE("Content-Length download from nginx");
    auto c = HttpConn::open(ns_.path(), "127.0.0.1:8081");
    ASSERT_TRUE(c.ok()) << c.error();
    auto r = c.request(http_request("GET", "/files/ten.bin"), 60000ms);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->status, 200) << r->describe(0);
    EXPECT_EQ(r->header("Content-Length").value_or(""), std::to_string(kTenMb)) << r->describe(0);
    EXPECT_EQ(r->body.size(), body.size());
    EXPECT_TRUE(r->body == body) << "downloaded bytes differ from the file";

    SCOPED_TRACE("chunked download from nginx on the same connection");
    auto r2 = c.request(http_request("GET", "/chunked/ten.bin"), 60000ms);
    ASSERT_TRUE(r2.ok()) << r2.error().message;
    ASSERT_EQ(r2->status, 200) << r2->describe(0);
    EXPECT_TRUE(r2->chunked) << "nginx's chunked answer did not arrive chunked: "
                             << r2->describe(0);
    EXPECT_EQ(r2->body.size(), body.size());
    EXPECT_TRUE(r2->body == body) << "downloaded bytes differ from the file";
  }
  expect_bounded(rss, "downloads from nginx");
  {
    SCOPED_TRACE("Content-Length download from nsproxy-echo, slow reader");
    // The tenant reads 1 MB, then stalls: the daemon must stop reading from the upstream
    // rather than buffer the other 9 MB.
    auto c = HttpConn::open(ns_.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    ASSERT_TRUE(c.send(http_request("GET", "/bytes/" + std::to_string(kTenMb))).ok());
    auto head = c.read_head(5000ms);
    ASSERT_TRUE(head.ok()) << head.error().message;
    ASSERT_EQ(head->status, 200) << head->describe();
    auto part = c.read_exact(1024 * 1024, 10000ms);
    ASSERT_TRUE(part.ok()) << part.error().message;
    std::this_thread::sleep_for(1500ms);
    expect_bounded(rss, "stalled download");
    auto rest = c.read_exact(kTenMb - 1024 * 1024, 60000ms);
    ASSERT_TRUE(rest.ok()) << rest.error().message;
    EXPECT_EQ(
        std::count(part->begin(), part->end(), 'x') + std::count(rest->begin(), rest->end(), 'x'),
        static_cast<long>(kTenMb));
    // And the connection goes on.
    auto r = c.request(http_request("GET", "/after-download"));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->describe();
  }
  expect_bounded(rss, "all downloads");
}

// Four concurrent 10 MB transfers (two each way) still stay well below one buffered body
// per transfer.
TEST_F(HttpStreamingTest, ConcurrentTransfersStayBounded) {
  const std::string body = pattern(kTenMb);
  RssSampler rss(daemon_->pid());
  std::vector<std::thread> threads;
  std::vector<std::string> errors(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto c = HttpConn::open(ns_.path(), kListen);
      if (!c.ok()) {
        errors[i] = c.error();
        return;
      }
      if (i % 2 == 0) {
        auto st = c.send(
            http_request("POST", "/up", "Transfer-Encoding: chunked\r\n") + chunked(body, 32768),
            60000ms);
        if (!st.ok()) {
          errors[i] = "upload: " + st.error().message;
          return;
        }
        auto r = c.read_response(30000ms);
        if (!r.ok()) {
          errors[i] = "upload response: " + r.error().message;
        } else if (r->json().value("body_bytes", uint64_t{0}) != kTenMb) {
          errors[i] = "upload: upstream counted " + r->describe();
        }
      } else {
        auto r = c.request(http_request("GET", "/bytes/" + std::to_string(kTenMb)), 60000ms);
        if (!r.ok()) {
          errors[i] = "download: " + r.error().message;
        } else if (r->body.size() != kTenMb) {
          errors[i] = "download: " + std::to_string(r->body.size()) + " bytes";
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(errors[i], "") << "transfer " << i;
  long peak = rss.max();
  EXPECT_LT(peak - baseline_, 2 * kMaxGrowthKib)
      << "daemon RSS grew from " << baseline_ << " KiB to " << peak << " KiB";
  std::cerr << "[ rss      ] concurrent: baseline " << baseline_ << " KiB, peak " << peak
            << " KiB\n";
}

}  // namespace
}  // namespace nspit
