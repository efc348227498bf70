// The metrics pieces without root: the exposition's label escaping and histograms, the
// per-tenant counters, and the metrics HTTP server on a loop of its own (readiness
// false -> 503, which the daemon shows only before restore or after a handover).
#include "control/metrics.h"

#include <arpa/inet.h>
#include <ev.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>

#include "address.h"
#include "control/metrics_server.h"
#include "forward/histogram.h"
#include "forward/tenant_stats.h"
#include "unique_fd.h"

namespace nsproxy {
namespace {

TEST(Metrics, LabelValuesAreEscapedAsTheTextFormatWants) {
  std::string out;
  append_label_value(&out, "a\"b\\c\nd");
  EXPECT_EQ(out, "a\\\"b\\\\c\\nd");
}

TEST(Metrics, HistogramBucketsAreCumulativeAndTheLastIsEverything) {
  static constexpr double kBounds[] = {0.1, 1, 10};
  Histogram h{kBounds};
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.observe(v);
  EXPECT_EQ(h.cumulative(0), 2u);  // <= 0.1, the bound itself included
  EXPECT_EQ(h.cumulative(1), 3u);
  EXPECT_EQ(h.cumulative(2), 4u);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 55.65);
  Histogram g{kBounds};
  g.observe(0.2);
  g.add(h);
  EXPECT_EQ(g.cumulative(1), 4u);
  EXPECT_EQ(g.count(), 6u);
}

TEST(Metrics, TenantStatsCountClassesRefusalsAndErrors) {
  TenantStats s;
  s.record_response(200, 0.001);
  s.record_response(204, 0.001);
  s.record_response(503, 0.2);
  s.record_response(101, 0.001);
  s.record_response(999, 0.001);  // no class: counted in the histogram only
  s.refuse(Refusal::ConnectionLimit);
  s.upstream_failed(upstream_error_of(ECONNREFUSED));
  s.upstream_failed(upstream_error_of(EHOSTUNREACH));
  EXPECT_EQ(s.requests[0], 1u);
  EXPECT_EQ(s.requests[1], 2u);
  EXPECT_EQ(s.requests[4], 1u);
  EXPECT_EQ(s.requests_total(), 4u);
  EXPECT_EQ(s.errors_total(), 3u);
  EXPECT_EQ(s.request_duration.count(), 5u);
  auto j = s.to_json();
  EXPECT_EQ(j["responses"]["2xx"], 2);
  EXPECT_EQ(j["refused"]["connection_limit"], 1);
  EXPECT_EQ(j["upstream_errors"]["connect_refused"], 1);
  EXPECT_EQ(j["upstream_errors"]["other"], 1);
  EXPECT_FALSE(j["refused"].contains("head_timeout"));
}

TEST(Metrics, TheRendererGivesSmallPiecesInFamilyOrder) {
  MetricsSnapshot m;
  m.registrations = 200;
  for (int i = 0; i < 200; ++i) {
    TenantTotals t;
    t.id = "t" + std::to_string(1000 + i);
    t.stats.record_response(200, 0.001);
    m.tenants.push_back(std::move(t));
  }
  MetricsRenderer r(m);
  std::string all, piece;
  size_t pieces = 0, largest = 0;
  while (r.next(&piece)) {
    ++pieces;
    largest = std::max(largest, piece.size());
    all += piece;
    piece.clear();
  }
  std::string whole;
  render_metrics(&whole, m);
  EXPECT_EQ(all, whole);
  EXPECT_GT(pieces, 8u * (200 / MetricsRenderer::kTenantsPerPiece));
  EXPECT_LT(largest, 64u * 1024) << "one piece holds the loop too long";
  // Each family's samples stay together: its TYPE line comes before all of them, and
  // no other family's line sits between them.
  size_t type = whole.find("# TYPE nsproxy_tenant_requests_total counter");
  size_t first = whole.find("nsproxy_tenant_requests_total{");
  size_t last = whole.rfind("nsproxy_tenant_requests_total{");
  ASSERT_NE(type, std::string::npos);
  EXPECT_LT(type, first);
  EXPECT_EQ(whole.substr(first, last - first).find("# TYPE"), std::string::npos);
  EXPECT_NE(whole.find("nsproxy_tenant_requests_total{tenant=\"t1199\",code=\"2xx\"} 1\n"),
            std::string::npos);
}

// A MetricsServer on its own loop and thread; stop() ends both.
class ServerOnALoop {
 public:
  explicit ServerOnALoop(bool ready) : ready_(ready) {
    loop_ = ev_loop_new(EVFLAG_AUTO);
    server_ = std::make_unique<MetricsServer>(
        loop_,
        []() -> MetricsServer::Producer {
          auto pieces = std::make_shared<int>(0);
          return [pieces](std::string* out) {
            if (*pieces == 2) return false;
            *out += ++*pieces == 1 ? "nsproxy_registrations 0\n" : "nsproxy_listeners 0\n";
            return true;
          };
        },
        [this] { return ready_.load(); });
    // A free port: bind 0, read it back, let go (the server binds with SO_REUSEADDR).
    UniqueFd probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(probe.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    probe.reset();
    auto addr = parse_address("127.0.0.1:" + std::to_string(port_), false);
    EXPECT_TRUE(addr.ok());
    EXPECT_TRUE(server_->listen(*addr).ok());
    ev_async_init(&stop_, [](struct ev_loop* l, ev_async*, int) { ev_break(l, EVBREAK_ALL); });
    ev_async_start(loop_, &stop_);
    thread_ = std::thread([this] { ev_run(loop_, 0); });
  }
  ~ServerOnALoop() {
    ev_async_send(loop_, &stop_);
    thread_.join();
    server_.reset();
    ev_loop_destroy(loop_);
  }
  void set_ready(bool r) { ready_ = r; }

  // Sends the request, returns everything the server sent until it closed.
  std::string exchange(const std::string& request) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return "connect failed";
    (void)!::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL);
    std::string got;
    for (;;) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return got + "<timeout>";
      char buf[4096];
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  std::atomic<bool> ready_;
  struct ev_loop* loop_;
  std::unique_ptr<MetricsServer> server_;
  int port_ = 0;
  ev_async stop_;
  std::thread thread_;
};

TEST(MetricsServer, ReadyzIs503UntilReadyAndHealthzAlways200) {
  ServerOnALoop s(/*ready=*/false);
  EXPECT_EQ(s.exchange("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").substr(0, 12), "HTTP/1.1 503");
  EXPECT_EQ(s.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").substr(0, 12), "HTTP/1.1 200");
  s.set_ready(true);
  EXPECT_EQ(s.exchange("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").substr(0, 12), "HTTP/1.1 200");
}

TEST(MetricsServer, AnswersEveryShapeOfRequestAndCloses) {
  ServerOnALoop s(true);
  std::string m = s.exchange("GET /metrics?x=1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(m.substr(0, 12), "HTTP/1.1 200") << m;
  EXPECT_NE(m.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << m;
  // The body is rendered piece by piece as it is sent, delimited by the close.
  EXPECT_NE(m.find("\r\n\r\nnsproxy_registrations 0\nnsproxy_listeners 0\n"), std::string::npos)
      << m;
  EXPECT_EQ(m.find("Content-Length"), std::string::npos) << m;
  std::string head = s.exchange("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(head.substr(0, 12), "HTTP/1.1 200");
  EXPECT_EQ(head.find("nsproxy_registrations"), std::string::npos) << head;
  EXPECT_EQ(s.exchange("DELETE /metrics HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 405");
  EXPECT_EQ(s.exchange("GET /other HTTP/1.1\r\n\r\n").substr(0, 12), "HTTP/1.1 404");
  EXPECT_EQ(s.exchange("GET /" + std::string(2000, 'u') + " HTTP/1.1\r\n\r\n").substr(0, 12),
            "HTTP/1.1 400");  // URL over 1024 bytes
  EXPECT_EQ(s.exchange("\r\n\r\nGARBAGE\x7f\r\n\r\n").substr(0, 12), "HTTP/1.1 400");
  EXPECT_EQ(s.exchange("GET /metrics HTTP/1.1\r\nA: " + std::string(9000, 'a') + "\r\n\r\n")
                .substr(0, 12),
            "HTTP/1.1 431");
}

}  // namespace
}  // namespace nsproxy
