// What an operator watches: the --metrics-listen endpoint (per-tenant series, health,
// readiness, bad requests), a real Prometheus server scraping it, nsproxyctl's counters,
// JSON log lines and the access log reopened on SIGHUP.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "fixture.h"
#include "version.h"

namespace nspit {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kOwnNetns = "/proc/self/ns/net";  // the host side, where the test runs

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count_lines(const std::string& s) {
  size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

class MetricsTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    if (IsSkipped()) return;
    metrics_addr_ = "127.0.0.1:" + std::to_string(free_port());
  }

  void start_daemon(std::vector<std::string> extra = {}) {
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    std::vector<std::string> args = {"--metrics-listen", metrics_addr_};
    args.insert(args.end(), extra.begin(), extra.end());
    daemon_->set_extra_args(args);
    ASSERT_TRUE(daemon_->start());
  }

  // One request to the metrics endpoint from the host side; the raw response.
  std::string raw(const std::string& request) {
    Connection c = connect_in_netns(kOwnNetns, metrics_addr_);
    if (!c.ok()) {
      ADD_FAILURE() << "connect " << metrics_addr_ << ": " << c.message;
      return "";
    }
    auto got = exchange(c.fd.get(), request, 5000ms);
    if (!got.ok()) {
      ADD_FAILURE() << got.error().message;
      return "";
    }
    return *got;
  }

  HttpResponse get(const std::string& path) {
    Connection conn = connect_in_netns(kOwnNetns, metrics_addr_);
    HttpConn c(std::move(conn.fd));
    auto r = c.request("GET " + path + " HTTP/1.1\r\nHost: metrics\r\n\r\n", 5000ms);
    if (!r.ok()) {
      ADD_FAILURE() << "GET " << path << ": " << r.error().message;
      return {};
    }
    return *r;
  }

  // The value of one sample line of the exposition ("name{labels} value"); -1 if absent.
  static double sample(const std::string& exposition, const std::string& series) {
    std::istringstream in(exposition);
    std::string line;
    while (std::getline(in, line)) {
      if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
          line[series.size()] == ' ') {
        return std::stod(line.substr(series.size() + 1));
      }
    }
    return -1;
  }

  void send_requests(const Netns& ns, int n, const std::string& method = "GET") {
    for (int i = 0; i < n; ++i) {
      auto c = HttpConn::open(ns.path(), "127.0.0.1:8080");
      ASSERT_TRUE(c.ok()) << c.error();
      auto r = c.request(http_request(method, "/n" + std::to_string(i)));
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
  }

  std::string metrics_addr_;
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(MetricsTest, EveryTenantHasItsOwnSeriesAndTheyVanishWithTheRegistration) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns a, b, c;
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(register_tenant(*daemon_, a.path(), "tenant-a", {.upstream = upstream.address()}));
  ASSERT_TRUE(register_tenant(*daemon_, b.path(), "tenant-b", {.upstream = upstream.address()}));
  // Nobody listens on this port: every request is a 502 and a refused connect.
  ASSERT_TRUE(register_tenant(*daemon_, c.path(), "tenant-c",
                              {.upstream = "127.0.0.1:" + std::to_string(free_port())}));

  ASSERT_NO_FATAL_FAILURE(send_requests(a, 5));
  ASSERT_NO_FATAL_FAILURE(send_requests(b, 3));
  ASSERT_NO_FATAL_FAILURE(send_requests(b, 1, "CONNECT"));  // 405, refused by nsproxyd
  ASSERT_NO_FATAL_FAILURE(send_requests(c, 2));
  // An open keep-alive connection of tenant a shows in its gauge.
  auto open = HttpConn::open(a.path(), "127.0.0.1:8080");
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE(open.request(http_request("GET", "/keep")).ok());

  HttpResponse m = get("/metrics");
  ASSERT_EQ(m.status, 200) << m.describe();
  EXPECT_EQ(m.header("Content-Type").value_or(""), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& e = m.body;
  EXPECT_EQ(sample(e, std::string("nsproxy_build_info{version=\"") + nsproxy::kVersion + "\"}"), 1)
      << e.substr(0, 300);
  EXPECT_EQ(sample(e, "nsproxy_registrations"), 3);
  EXPECT_EQ(sample(e, "nsproxy_listeners"), 3);
  EXPECT_EQ(sample(e, "nsproxy_tenant_requests_total{tenant=\"tenant-a\",code=\"2xx\"}"), 6);
  EXPECT_EQ(sample(e, "nsproxy_tenant_requests_total{tenant=\"tenant-b\",code=\"2xx\"}"), 3);
  EXPECT_EQ(sample(e, "nsproxy_tenant_requests_total{tenant=\"tenant-b\",code=\"4xx\"}"), 1);
  EXPECT_EQ(
      sample(e, "nsproxy_tenant_refused_total{tenant=\"tenant-b\",reason=\"method_not_allowed\"}"),
      1);
  EXPECT_EQ(sample(e, "nsproxy_tenant_requests_total{tenant=\"tenant-c\",code=\"5xx\"}"), 2);
  EXPECT_EQ(
      sample(e, "nsproxy_upstream_errors_total{tenant=\"tenant-c\",kind=\"connect_refused\"}"), 2);
  EXPECT_EQ(sample(e, "nsproxy_tenant_connections{tenant=\"tenant-a\"}"), 1);
  EXPECT_EQ(sample(e, "nsproxy_tenant_at_connection_limit{tenant=\"tenant-a\"}"), 0);
  EXPECT_EQ(sample(e, "nsproxy_tenant_connections_total{tenant=\"tenant-a\"}"), 6);
  EXPECT_EQ(sample(e, "nsproxy_tenant_request_duration_seconds_count{tenant=\"tenant-a\"}"), 6);
  EXPECT_EQ(
      sample(e, "nsproxy_tenant_request_duration_seconds_bucket{tenant=\"tenant-a\",le=\"+Inf\"}"),
      6);
  EXPECT_GT(sample(e, "nsproxy_tenant_received_bytes_total{tenant=\"tenant-a\"}"), 6 * 30);
  EXPECT_GT(sample(e, "nsproxy_tenant_sent_bytes_total{tenant=\"tenant-a\"}"), 6 * 100);
  EXPECT_EQ(sample(e, "nsproxy_control_requests_total{op=\"add\",result=\"ok\"}"), 3);
  EXPECT_EQ(sample(e, "nsproxy_listener_setup_duration_seconds_count"), 3);
  EXPECT_EQ(sample(e, "nsproxy_reclaimed_total"), 0);

  // The exposition is valid for Prometheus' own checker.
  std::string file = tmp_.write("scrape.txt", e);
  auto check = run_shell("promtool check metrics < " + file + " 2>&1");
  EXPECT_EQ(check.exit_code, 0) << check.describe();
  // promtool exits 0 but prints lint findings (naming, help text) on stdout.
  EXPECT_EQ(check.out, "") << check.describe();

  // nsproxyctl shows the same counters.
  auto list = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.describe();
  json regs = json::parse(list.out)["registrations"];
  for (const auto& r : regs) {
    std::string id = r["attachment"]["id"];
    if (id == "tenant-b") {
      EXPECT_EQ(r["stats"]["requests"], 4) << r.dump();
      EXPECT_EQ(r["stats"]["errors"], 1) << r.dump();
    }
    if (id == "tenant-a") {
      EXPECT_EQ(r["connections"], 1) << r.dump();
    }
  }
  auto table = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "list"});
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(tenant-c .* 0 +2 +2 +-)"))) << table.out;
  auto status = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "status"});
  EXPECT_NE(status.out.find("requests 12, errors 3"), std::string::npos) << status.describe();
  EXPECT_NE(status.out.find("refused: method_not_allowed 1"), std::string::npos)
      << status.describe();
  EXPECT_NE(status.out.find("upstream errors: connect_refused 2"), std::string::npos)
      << status.describe();
  EXPECT_NE(status.out.find("tenants at their connection limit: 0"), std::string::npos)
      << status.describe();

  // Deleted tenants leave nothing behind.
  open.close();
  nsproxy::Request del;
  del.op = nsproxy::Op::Del;
  del.attachment.id = "tenant-a";
  ASSERT_TRUE(daemon_->call(del).ok());
  std::string after = get("/metrics").body;
  EXPECT_EQ(after.find("tenant=\"tenant-a\""), std::string::npos) << after;
  EXPECT_NE(after.find("tenant=\"tenant-b\""), std::string::npos);
  EXPECT_EQ(sample(after, "nsproxy_registrations"), 2);
}

// README "Metrics": "A tenant's series exist while it is registered and disappear with it
// (DEL, GC, reconcile)". DEL is above; here a namespace deleted without a DEL (reconcile)
// and a CNI GC through the plugin, while the other tenants' series stay.
TEST_F(MetricsTest, ATenantsSeriesVanishOnReconcileAndOnGcAndTheOthersStay) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--reconcile-interval", "0.5"}));
  Netns kept, gone, gc_kept, gc_dropped;
  ASSERT_TRUE(kept.ok() && gone.ok() && gc_kept.ok() && gc_dropped.ok());
  ASSERT_TRUE(register_tenant(*daemon_, kept.path(), "kept", {.upstream = upstream.address()}));
  ASSERT_TRUE(register_tenant(*daemon_, gone.path(), "gone", {.upstream = upstream.address()}));
  // Two CNI attachments of one network (the tenant is the container id).
  const std::string network = unique_name();
  json cfg = plugin_config(network, daemon_->socket_path(),
                           json::array({listener("127.0.0.1:8080", upstream.address(), "http")}));
  auto add_kept = run_plugin(cni_env("ADD", "gc-kept", gc_kept.path()), cfg.dump());
  ASSERT_EQ(add_kept.exit_code, 0) << add_kept.describe();
  auto add_dropped = run_plugin(cni_env("ADD", "gc-dropped", gc_dropped.path()), cfg.dump());
  ASSERT_EQ(add_dropped.exit_code, 0) << add_dropped.describe();
  for (const Netns* ns : {&kept, &gone, &gc_kept, &gc_dropped}) {
    ASSERT_NO_FATAL_FAILURE(send_requests(*ns, 2));
  }
  auto requests = [](const std::string& tenant) {
    return "nsproxy_tenant_requests_total{tenant=\"" + tenant + "\",code=\"2xx\"}";
  };
  auto has_series = [](const std::string& exposition, const std::string& tenant) {
    return exposition.find("tenant=\"" + tenant + "\"") != std::string::npos;
  };
  std::string e = get("/metrics").body;
  for (const char* t : {"kept", "gone", "gc-kept", "gc-dropped"}) {
    EXPECT_EQ(sample(e, requests(t)), 2) << t << "\n" << e;
  }

  // Reconcile: the namespace goes without a DEL. A bound, not a measurement: thirty
  // reconcile intervals.
  ASSERT_TRUE(gone.remove());
  EXPECT_TRUE(
      wait_until([&] { return daemon_->registrations_with_id("gone").empty(); }, 15000ms, 100ms))
      << "not reclaimed: " << daemon_->list().dump(2);
  e = get("/metrics").body;
  EXPECT_FALSE(has_series(e, "gone")) << e;
  EXPECT_EQ(sample(e, "nsproxy_reclaimed_total"), 1) << e;
  EXPECT_EQ(sample(e, "nsproxy_registrations"), 3) << e;
  for (const char* t : {"kept", "gc-kept", "gc-dropped"}) {
    EXPECT_EQ(sample(e, requests(t)), 2) << t << "\n" << e;
  }

  // GC: the runtime lists only gc-kept as valid for the network.
  json gc = cfg;
  gc["cniVersion"] = "1.1.0";  // GC exists since CNI 1.1.0
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", "gc-kept"}, {"ifname", "eth0"}}});
  auto r = run_plugin({{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/usr/lib/cni"}}, gc.dump());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  e = get("/metrics").body;
  EXPECT_FALSE(has_series(e, "gc-dropped")) << e;
  EXPECT_FALSE(has_series(e, "gone")) << e;
  EXPECT_EQ(sample(e, "nsproxy_registrations"), 2) << e;
  for (const char* t : {"kept", "gc-kept"}) {
    EXPECT_EQ(sample(e, requests(t)), 2) << t << "\n" << e;
  }
}

TEST_F(MetricsTest, HealthReadinessAndBadRequestsNeverStallTheProxy) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), "t", {.upstream = upstream.address()}));

  EXPECT_EQ(get("/healthz").status, 200);
  HttpResponse ready = get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.describe();
  EXPECT_EQ(get("/metricsx").status, 404);
  EXPECT_EQ(get("/").status, 404);
  std::string post = raw("POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.substr(0, 12), "HTTP/1.1 405") << post;
  std::string garbage = raw("\x01\x02 not http at all\r\n\r\n");
  EXPECT_EQ(garbage.substr(0, 12), "HTTP/1.1 400") << garbage;
  std::string huge = raw("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.substr(0, 12), "HTTP/1.1 431") << huge.substr(0, 200);

  // Clients that connect and say nothing (or half a request) hold nothing up: tenants are
  // served, and so is the next scrape.
  std::vector<Connection> silent;
  for (int i = 0; i < 10; ++i) {
    silent.push_back(connect_in_netns(kOwnNetns, metrics_addr_));
    ASSERT_TRUE(silent.back().ok());
  }
  ASSERT_TRUE(send_all(silent[0].fd.get(), "GET /metr").ok());
  auto t0 = Clock::now();
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 3));
  EXPECT_EQ(get("/metrics").status, 200);
  EXPECT_LT(Clock::now() - t0, 3s) << "tenant requests or the scrape waited for silent clients";
}

TEST_F(MetricsTest, ARealPrometheusScrapesTheTenantsRequests) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(
      register_tenant(*daemon_, ns.path(), "scraped-tenant", {.upstream = upstream.address()}));
  constexpr int kRequests = 17;
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, kRequests));

  std::string web = "127.0.0.1:" + std::to_string(free_port());
  std::string config = tmp_.write("prometheus.yml",
                                  "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                  "scrape_configs:\n  - job_name: nsproxy\n    static_configs:\n"
                                  "      - targets: ['" +
                                      metrics_addr_ + "']\n");
  Process prom({"prometheus", "--config.file=" + config, "--storage.tsdb.path=" + tmp_.file("tsdb"),
                "--web.listen-address=" + web, "--log.level=warn"});
  ASSERT_TRUE(prom.started()) << prom.start_error();

  // Prometheus' HTTP API, until the sample arrives (its first scrapes take a few seconds).
  const std::string query = "nsproxy_tenant_requests_total{tenant=\"scraped-tenant\",code=\"2xx\"}";
  json last;
  auto deadline = Clock::now() + 60s;
  double value = -1;
  while (Clock::now() < deadline && prom.running()) {
    auto r = run({"curl", "-s", "--max-time", "5", "-G", "http://" + web + "/api/v1/query",
                  "--data-urlencode", "query=" + query});
    last = json::parse(r.out, nullptr, false);
    if (!last.is_discarded() && last.value("status", "") == "success" &&
        !last["data"]["result"].empty()) {
      value = std::stod(last["data"]["result"][0]["value"][1].get<std::string>());
      break;
    }
    std::this_thread::sleep_for(500ms);
  }
  ASSERT_TRUE(prom.running()) << "prometheus exited: " << prom.err();
  EXPECT_EQ(value, kRequests) << "last answer: " << last.dump() << "\n" << prom.err();
  // Prometheus also reports the target healthy.
  auto up = run({"curl", "-s", "-G", "http://" + web + "/api/v1/query", "--data-urlencode",
                 "query=up{job=\"nsproxy\"}"});
  json upj = json::parse(up.out, nullptr, false);
  ASSERT_FALSE(upj.is_discarded()) << up.describe();
  ASSERT_FALSE(upj["data"]["result"].empty()) << upj.dump();
  EXPECT_EQ(upj["data"]["result"][0]["value"][1], "1") << upj.dump();
}

TEST_F(MetricsTest, SighupReopensTheAccessLogWithoutLosingALine) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  const std::string log = tmp_.file("access.log");
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--access-log", log}));
  Netns ns;
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), "t", {.upstream = upstream.address()}));
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 4));
  // What logrotate does: rename, then signal.
  ASSERT_EQ(::rename(log.c_str(), (log + ".1").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 2));  // still into the renamed file
  daemon_->process()->signal(SIGHUP);
  auto deadline = Clock::now() + 5s;
  while (daemon_->log().find("reopened the access log") == std::string::npos &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(daemon_->log().find("reopened the access log"), std::string::npos) << daemon_->log();
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 3));
  EXPECT_EQ(count_lines(read_file(log + ".1")), 6u) << read_file(log + ".1");
  EXPECT_EQ(count_lines(read_file(log)), 3u) << read_file(log);
  json line = json::parse(read_file(log).substr(0, read_file(log).find('\n')), nullptr, false);
  EXPECT_EQ(line.value("tenant", ""), "t") << line.dump();

  // A log file that cannot be reopened keeps the old one in use.
  ASSERT_EQ(::rename(log.c_str(), (log + ".2").c_str()), 0);
  ASSERT_EQ(::mkdir(log.c_str(), 0700), 0);  // a directory where the file was
  daemon_->process()->signal(SIGHUP);
  deadline = Clock::now() + 5s;
  while (daemon_->log().find("still writing to the old file") == std::string::npos &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(daemon_->log().find("still writing to the old file"), std::string::npos)
      << daemon_->log();
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 1));
  EXPECT_EQ(count_lines(read_file(log + ".2")), 4u);
}

TEST_F(MetricsTest, JsonLogLinesCarryTheTenantAndTheError) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--log-format", "json"}));
  Netns ns;
  ASSERT_TRUE(ns.ok());
  // An upstream nobody listens on: the 502 is logged with the tenant and the error.
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), "json-tenant",
                              {.upstream = "127.0.0.1:" + std::to_string(free_port())}));
  ASSERT_NO_FATAL_FAILURE(send_requests(ns, 1));
  std::this_thread::sleep_for(200ms);
  std::istringstream in(daemon_->log());
  std::string text;
  bool saw_add = false, saw_upstream_error = false;
  int lines = 0;
  while (std::getline(in, text)) {
    ++lines;
    json j = json::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not a JSON line: " << text;
    ASSERT_TRUE(j.contains("ts") && j.contains("level") && j.contains("msg")) << text;
    if (j.value("tenant", "") != "json-tenant") continue;
    if (j.value("msg", "").rfind("add ", 0) == 0) {
      saw_add = j.value("netns", "") == ns.path();
    }
    if (j.contains("upstream") && j.value("error", "") == "Connection refused")
      saw_upstream_error = true;
  }
  EXPECT_GT(lines, 2);
  EXPECT_TRUE(saw_add) << daemon_->log();
  EXPECT_TRUE(saw_upstream_error) << daemon_->log();
}

// Two workers: keep-alive connections held open spread evenly over them, and the
// per-worker gauges add up to nsproxy_connections; once closed, every gauge is 0.
TEST_F(MetricsTest, WorkerConnectionsShowHowTheWorkersShareTheConnections) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--workers", "2"}));
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), "spread", {.upstream = upstream.address()}));
  std::vector<HttpConn> held;
  for (int i = 0; i < 6; ++i) {
    held.push_back(HttpConn::open(ns.path(), "127.0.0.1:8080"));
    ASSERT_TRUE(held.back().ok()) << held.back().error();
    auto r = held.back().request(http_request("GET", "/hold"));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  std::string e = get("/metrics").body;
  EXPECT_EQ(sample(e, "nsproxy_connections"), 6) << e;
  EXPECT_EQ(sample(e, "nsproxy_worker_connections{worker=\"0\"}"), 3) << e;
  EXPECT_EQ(sample(e, "nsproxy_worker_connections{worker=\"1\"}"), 3) << e;
  EXPECT_EQ(sample(e, "nsproxy_worker_connections{worker=\"2\"}"), -1) << "no third worker";
  held.clear();
  EXPECT_TRUE(wait_until([&] {
    std::string now = get("/metrics").body;
    return sample(now, "nsproxy_worker_connections{worker=\"0\"}") == 0 &&
           sample(now, "nsproxy_worker_connections{worker=\"1\"}") == 0 &&
           sample(now, "nsproxy_connections") == 0;
  })) << get("/metrics").body;
}

}  // namespace
}  // namespace nspit
