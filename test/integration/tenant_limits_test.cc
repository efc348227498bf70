// Per-tenant limits in http mode: the request rate (429 with Retry-After), the cap on
// requests in flight to upstreams (a line, then 503), per-registration overrides, and the
// fair share of the daemon-wide connection budget (reclaiming the largest holder's oldest
// idle keep-alive connection, then its oldest incomplete head; out of fds, idle ones
// first). In tcp mode, a tenant at its share of a spent budget waits in its backlog.
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ascii.h"
#include "fixture.h"

namespace nspit {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kListen = "127.0.0.1:8080";

Millis since(Clock::time_point t0) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t0);
}

class TenantLimitsTest : public HttpTest {
 protected:
  void start_daemon(std::vector<std::string> flags, std::vector<std::string> prefix = {}) {
    daemon_ = std::make_unique<Daemon>(tmp_.path(), std::move(prefix));
    daemon_->set_extra_args(std::move(flags));
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http");
    ASSERT_TRUE(echo_->start());
  }
  // A new namespace registered as `id` with `limits`, listening on kListen.
  const Netns& tenant(const std::string& id, const nsproxy::TenantLimits& limits = {},
                      const std::string& upstream = "") {
    tenants_.push_back(std::make_unique<Netns>());
    const Netns& ns = *tenants_.back();
    EXPECT_TRUE(ns.ok()) << ns.error();
    EXPECT_TRUE(register_tenant(*daemon_, ns.path(), id,
                                {.listen = kListen,
                                 .upstream = upstream.empty() ? echo_->address() : upstream,
                                 .limits = limits}));
    return ns;
  }
  // GET on a fresh connection from inside ns.
  nsproxy::Result<HttpResponse> get(const Netns& ns, const std::string& path,
                                    Millis timeout = 5000ms) {
    HttpConn c = HttpConn::open(ns.path(), kListen);
    if (!c.ok()) return nsproxy::make_error(nsproxy::Code::kUnreachable, c.error());
    return c.request(http_request("GET", path), timeout);
  }
  nlohmann::json status() {
    nsproxy::Request req;
    req.op = nsproxy::Op::Status;
    auto r = daemon_->call(req);
    EXPECT_TRUE(r.ok() && r->ok);
    return r.ok() ? r->data : nlohmann::json::object();
  }
  nlohmann::json registration(const std::string& id) {
    auto regs = daemon_->registrations_with_id(id);
    EXPECT_EQ(regs.size(), 1u) << id;
    return regs.empty() ? nlohmann::json::object() : regs.front();
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::vector<std::unique_ptr<Netns>> tenants_;
};

nsproxy::TenantLimits limits(std::optional<double> rate, std::optional<uint32_t> burst,
                             std::optional<uint32_t> connections) {
  nsproxy::TenantLimits l;
  l.rate = rate;
  l.burst = burst;
  l.connections = connections;
  return l;
}

// The daemon's default rate admits the burst, then answers 429 with a Retry-After that
// is long enough; another tenant whose registration lifts the limit is not affected.
TEST_F(TenantLimitsTest, OverItsRateATenantGets429WithRetryAfter) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--tenant-rate", "1", "--tenant-burst", "3"}));
  const std::string a_id = "rate-a-" + short_token(), b_id = "rate-b-" + short_token();
  const Netns& a = tenant(a_id);
  const Netns& b = tenant(b_id, limits(0, std::nullopt, std::nullopt));

  for (int i = 0; i < 3; ++i) {
    auto r = get(a, "/burst");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << "request " << i << " of the burst: " << r->describe();
  }
  auto refused = get(a, "/over");
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  ASSERT_EQ(refused->status, 429) << refused->describe();
  auto retry = refused->header("Retry-After");
  ASSERT_TRUE(retry.has_value()) << refused->describe();
  int seconds = std::stoi(*retry);
  EXPECT_GE(seconds, 1) << refused->describe();
  EXPECT_LE(seconds, 2) << "1 request/s: a token is back within a second; " << refused->describe();
  EXPECT_NE(refused->body.find("rate"), std::string::npos) << refused->describe();

  for (int i = 0; i < 10; ++i) {
    auto r = get(b, "/unlimited");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->status, 200) << "tenant without a rate limit, request " << i << ": "
                              << r->describe();
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds) + 100ms);
  auto again = get(a, "/after-retry-after");
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->status, 200) << "still refused after Retry-After: " << again->describe();

  auto st = status();
  EXPECT_EQ(st["refused"].value("rate_limit", 0), 1) << st.dump();
  auto ra = registration(a_id);
  EXPECT_EQ(ra["limits"]["rate"], 1.0) << ra.dump();
  EXPECT_EQ(ra["limits"]["burst"], 3.0) << ra.dump();
  EXPECT_EQ(ra["stats"]["refused"].value("rate_limit", 0), 1) << ra.dump();
  EXPECT_EQ(registration(b_id)["limits"]["rate"], 0.0);
}

// On a keep-alive connection a bodiless request over the rate gets its 429 and the
// connection stays: the next request on it, once Retry-After passed, is served. A request
// with a body over the rate gets 429 and the connection closes (its body is not read).
TEST_F(TenantLimitsTest, A429KeepsAKeepAliveConnectionForTheNextRequest) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--tenant-rate", "1", "--tenant-burst", "2"}));
  const Netns& ns = tenant("rate-ka-" + short_token());
  HttpConn c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  for (int i = 0; i < 2; ++i) {
    auto r = c.request(http_request("GET", "/burst"));
    ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->describe() : r.error().message);
  }
  auto refused = c.request(http_request("GET", "/over"));
  ASSERT_TRUE(refused.ok()) << refused.error().message;
  ASSERT_EQ(refused->status, 429) << refused->describe();
  EXPECT_FALSE(refused->header("Connection").has_value()) << refused->describe();
  int seconds = std::stoi(refused->header("Retry-After").value_or("0"));
  ASSERT_GE(seconds, 1) << refused->describe();
  std::this_thread::sleep_for(std::chrono::seconds(seconds) + 100ms);
  auto again = c.request(http_request("GET", "/same-connection"));
  ASSERT_TRUE(again.ok()) << "the connection did not survive the 429: " << again.error().message;
  EXPECT_EQ(again->status, 200) << again->describe();

  // Over the rate again, now with a body: 429, then closed.
  HttpConn b = HttpConn::open(ns.path(), kListen);
  auto with_body = b.request(http_request("POST", "/upload", "Content-Length: 5\r\n", "hello"));
  ASSERT_TRUE(with_body.ok()) << with_body.error().message;
  EXPECT_EQ(with_body->status, 429) << with_body->describe();
  EXPECT_EQ(with_body->header("Connection").value_or(""), "close") << with_body->describe();
  EXPECT_TRUE(b.wait_closed(2000ms).ok());
}

// A registration's own limits replace the daemon's defaults, a changed limit is a changed
// registration, and the limits come back after a restart (they are journalled).
TEST_F(TenantLimitsTest, RegistrationLimitsOverrideTheDefaultsAndSurviveARestart) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({}));
  const std::string id = "own-limits-" + short_token();
  const Netns& ns = tenant(id, limits(5, 10, 2));
  auto reg = registration(id);
  EXPECT_EQ(
      reg["limits"],
      nlohmann::json({{"rate", 5.0}, {"burst", 10.0}, {"connections", 2}, {"in_flight", 256}}))
      << reg.dump();

  // Two connections are its limit: the third waits until one ends.
  HttpConn one = HttpConn::open(ns.path(), kListen), two = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(one.request(http_request("GET", "/1")).ok());
  ASSERT_TRUE(two.request(http_request("GET", "/2")).ok());
  HttpConn three = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(three.send(http_request("GET", "/3")).ok());
  auto early = three.read_response(700ms);
  EXPECT_FALSE(early.ok()) << "a third connection was served: " << early->describe();
  one.close();
  auto late = three.read_response(3000ms);
  ASSERT_TRUE(late.ok()) << late.error().message;
  EXPECT_EQ(late->status, 200) << late->describe();
  two.close();
  three.close();

  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  ASSERT_TRUE(daemon_->start());
  reg = registration(id);
  EXPECT_EQ(reg["limits"]["connections"], 2) << "limits lost in the restart: " << reg.dump();
  EXPECT_EQ(reg["limits"]["rate"], 5.0) << reg.dump();

  // The same add with other limits replaces the registration.
  std::optional<nsproxy::Reply> r;
  ASSERT_TRUE(register_tenant(*daemon_, ns.path(), id,
                              {.listen = kListen,
                               .upstream = echo_->address(),
                               .limits = limits(std::nullopt, std::nullopt, 3)},
                              &r));
  EXPECT_TRUE(r->data.value("created", false)) << r->data.dump();
  EXPECT_EQ(r->data["registration"]["limits"]["connections"], 3) << r->data.dump();
  EXPECT_EQ(r->data["registration"]["limits"]["rate"], 0.0) << "back to the default (none)";
}

// An upstream that answers after `delay`, counting how many requests of each tenant it
// holds at once (by the identity header the daemon adds).
class SlowUpstream {
 public:
  explicit SlowUpstream(Millis delay)
      : raw_([this, delay](int fd) {
          std::string rest;
          auto head = read_head_blocking(fd, &rest, 10000ms);
          if (!head) return;
          std::string tenant = header_value(*head, "x-tenant-id");
          {
            std::lock_guard<std::mutex> lock(mu_);
            int now = ++current_[tenant];
            max_[tenant] = std::max(max_[tenant], now);
          }
          std::this_thread::sleep_for(delay);
          {
            std::lock_guard<std::mutex> lock(mu_);
            --current_[tenant];
          }
          write_all_blocking(fd,
                             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }) {}
  bool ok() const { return raw_.ok(); }
  const std::string& address() const { return raw_.address(); }
  int max_at_once(const std::string& tenant) {
    std::lock_guard<std::mutex> lock(mu_);
    return max_[tenant];
  }

 private:
  static std::string header_value(const std::string& head, const std::string& lower_name) {
    std::string lower = nsproxy::to_lower(head);
    auto at = lower.find("\r\n" + lower_name + ":");
    if (at == std::string::npos) return "";
    at += 3 + lower_name.size();
    auto end = head.find("\r\n", at);
    std::string v = head.substr(at, end - at);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  }

  std::mutex mu_;
  std::map<std::string, int> current_, max_;
  RawUpstream raw_;  // last: its threads stop before the counters go
};

// Six concurrent requests of one tenant with an in-flight cap of 2: the upstream never
// holds more than two of them, all six are answered, and another tenant's request goes
// through while they wait in line.
TEST_F(TenantLimitsTest, InFlightCapQueuesATenantsRequestsAndLeavesOthersAlone) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--tenant-max-in-flight", "2", "--connect-timeout", "5"}));
  SlowUpstream upstream(400ms);
  ASSERT_TRUE(upstream.ok());
  const std::string a_id = "inflight-a-" + short_token(), b_id = "inflight-b-" + short_token();
  const Netns& a = tenant(a_id, {}, upstream.address());
  const Netns& b = tenant(b_id, {}, upstream.address());

  std::atomic<int> ok{0};
  std::vector<std::string> failures(6);
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&, i] {
      auto r = get(a, "/a" + std::to_string(i), 10000ms);
      if (r.ok() && r->status == 200) {
        ++ok;
      } else {
        failures[i] = r.ok() ? r->describe() : r.error().message;
      }
    });
  }
  std::this_thread::sleep_for(150ms);  // A's first two at the upstream, four in line
  auto t0 = Clock::now();
  auto rb = get(b, "/b", 10000ms);
  auto b_took = since(t0);
  for (auto& t : clients) t.join();
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  EXPECT_EQ(rb->status, 200) << rb->describe();
  EXPECT_LT(b_took.count(), 1000) << "tenant B waited behind tenant A's line";
  EXPECT_EQ(ok.load(), 6) << failures[0] << failures[1] << failures[2] << failures[3] << failures[4]
                          << failures[5];
  EXPECT_EQ(upstream.max_at_once(a_id), 2) << "tenant A's requests at the upstream at once";
}

// A request that waits longer than --connect-timeout for a slot gets 503 with
// Retry-After, counted as in_flight_limit.
TEST_F(TenantLimitsTest, ARequestWaitingTooLongForASlotGets503) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--tenant-max-in-flight", "1", "--connect-timeout", "1"}));
  SlowUpstream upstream(2500ms);
  ASSERT_TRUE(upstream.ok());
  const std::string id = "inflight-wait-" + short_token();
  const Netns& ns = tenant(id, {}, upstream.address());
  std::thread first([&] { (void)get(ns, "/holds-the-slot", 10000ms); });
  std::this_thread::sleep_for(200ms);
  auto t0 = Clock::now();
  auto r = get(ns, "/waits", 10000ms);
  auto took = since(t0);
  first.join();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 503) << r->describe();
  EXPECT_TRUE(r->header("Retry-After").has_value()) << r->describe();
  EXPECT_NE(r->body.find("in flight"), std::string::npos) << r->describe();
  EXPECT_GE(took.count(), 800) << "503 before the 1 s wait";
  EXPECT_LT(took.count(), 2300) << "503 only once the slot freed, not after the 1 s wait";
  EXPECT_EQ(registration(id)["stats"]["refused"].value("in_flight_limit", 0), 1);
}

// The budget of 10 is spent by tenant A's idle keep-alive connections. A connection of A
// beyond it waits in A's backlog; tenant B, below its share, is served at once, and A's
// oldest idle connection is the one that was closed for it.
TEST_F(TenantLimitsTest, FairShareReclaimsTheLargestHoldersOldestIdleConnection) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--max-connections", "10"}));
  const std::string a_id = "share-a-" + short_token(), b_id = "share-b-" + short_token();
  const Netns& a = tenant(a_id, limits(std::nullopt, std::nullopt, 100));
  const Netns& b = tenant(b_id);
  std::vector<HttpConn> idle;
  for (int i = 0; i < 10; ++i) {
    idle.push_back(HttpConn::open(a.path(), kListen));
    auto r = idle.back().request(http_request("GET", "/idle" + std::to_string(i)));
    ASSERT_TRUE(r.ok() && r->status == 200)
        << i << ": " << (r.ok() ? r->describe() : r.error().message);
    std::this_thread::sleep_for(20ms);  // distinct ages
  }
  EXPECT_EQ(status().value("connections", 0), 10);
  HttpConn extra = HttpConn::open(a.path(), kListen);
  ASSERT_TRUE(extra.send(http_request("GET", "/beyond-the-budget")).ok());
  auto early = extra.read_response(500ms);
  EXPECT_FALSE(early.ok()) << "A was served beyond its share of a spent budget: "
                           << early->describe();

  auto rb = get(b, "/victim", 3000ms);
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  EXPECT_EQ(rb->status, 200) << rb->describe();
  auto closed = idle.front().wait_closed(2000ms);
  EXPECT_TRUE(closed.ok()) << "A's oldest idle connection is still open";
  for (size_t i = 1; i < idle.size(); ++i) {
    auto still = idle[i].request(http_request("GET", "/still-open"), 2000ms);
    EXPECT_TRUE(still.ok() && still->status == 200) << "connection " << i << " of A was closed";
  }
  auto st = status();
  EXPECT_EQ(st["connections_reclaimed"].value("idle", 0), 1) << st.dump();
  EXPECT_EQ(registration(a_id)["stats"]["reclaimed"].value("idle", 0), 1);
}

// With no idle connection to give, A's oldest incomplete request head goes.
TEST_F(TenantLimitsTest, FairShareReclaimsAnIncompleteHeadWhenNoIdleConnectionIsLeft) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--max-connections", "10", "--head-timeout", "30"}));
  const std::string a_id = "heads-a-" + short_token(), b_id = "heads-b-" + short_token();
  const Netns& a = tenant(a_id, limits(std::nullopt, std::nullopt, 100));
  const Netns& b = tenant(b_id);
  std::vector<HttpConn> heads;
  for (int i = 0; i < 10; ++i) {
    heads.push_back(HttpConn::open(a.path(), kListen));
    ASSERT_TRUE(heads.back().send("GET /never-ends HTTP/1.1\r\nHost: x\r\n").ok());
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(status().value("connections", 0), 10);
  auto rb = get(b, "/victim", 3000ms);
  ASSERT_TRUE(rb.ok()) << rb.error().message;
  EXPECT_EQ(rb->status, 200) << rb->describe();
  EXPECT_TRUE(heads.front().wait_closed(2000ms).ok()) << "A's oldest head is still open";
  auto st = status();
  EXPECT_EQ(st["connections_reclaimed"].value("head", 0), 1) << st.dump();
}

// Nothing to reclaim (A's connections are all in the middle of a request): B's
// connection gets 503 at once, before it even sent a request, and nothing else breaks.
TEST_F(TenantLimitsTest, NothingToReclaimAnswers503AtOnce) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--max-connections", "4"}));
  const std::string a_id = "busy-a-" + short_token(), b_id = "busy-b-" + short_token();
  const Netns& a = tenant(a_id, limits(std::nullopt, std::nullopt, 100));
  const Netns& b = tenant(b_id);
  std::vector<HttpConn> uploads;
  for (int i = 0; i < 4; ++i) {
    uploads.push_back(HttpConn::open(a.path(), kListen));
    ASSERT_TRUE(uploads.back()
                    .send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npart")
                    .ok());
  }
  std::this_thread::sleep_for(300ms);
  HttpConn c = HttpConn::open(b.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  auto t0 = Clock::now();
  auto r = c.read_response(2000ms);
  ASSERT_TRUE(r.ok()) << "no answer without a request: " << r.error().message;
  EXPECT_LT(since(t0).count(), 1000);
  EXPECT_EQ(r->status, 503) << r->describe();
  EXPECT_EQ(r->header("Retry-After").value_or(""), "1") << r->describe();
  EXPECT_NE(r->body.find("connection limit"), std::string::npos) << r->describe();
  // A's uploads were not cut.
  for (auto& u : uploads) {
    auto done = u.request(std::string(996, 'x'), 3000ms);
    EXPECT_TRUE(done.ok() && done->status == 200)
        << (done.ok() ? done->describe() : done.error().message);
  }
}

// Out of file descriptors (low RLIMIT_NOFILE, a budget above what the fds allow), the
// oldest idle keep-alive connections are closed before anything is refused: A keeps
// opening keep-alive connections and each is served; so is every request of B.
TEST_F(TenantLimitsTest, OutOfFdsClosesIdleKeepAlivesFirst) {
  // prlimit execs nsproxyd in place: the pid is the daemon's.
  ASSERT_NO_FATAL_FAILURE(
      start_daemon({"--max-connections", "1000"}, {"prlimit", "--nofile=64:64"}));
  const std::string a_id = "fds-a-" + short_token(), b_id = "fds-b-" + short_token();
  const Netns& a = tenant(a_id, limits(std::nullopt, std::nullopt, 1000));
  const Netns& b = tenant(b_id);
  std::vector<HttpConn> idle;
  int a_failed = 0;
  for (int i = 0; i < 100; ++i) {
    idle.push_back(HttpConn::open(a.path(), kListen));
    auto r = idle.back().request(http_request("GET", "/idle"), 3000ms);
    if (!r.ok() || r->status != 200) ++a_failed;
  }
  for (int i = 0; i < 10; ++i) {
    auto r = get(b, "/victim", 3000ms);
    ASSERT_TRUE(r.ok()) << i << ": " << r.error().message << "\n" << daemon_->log().substr(0, 4000);
    EXPECT_EQ(r->status, 200) << r->describe();
  }
  EXPECT_EQ(a_failed, 0) << "A's new connections were refused while idle ones could go";
  auto st = status();
  EXPECT_GT(st["connections_reclaimed"].value("idle", 0), 30) << st.dump();
}

}  // namespace
}  // namespace nspit

namespace nspit {
namespace {

// tcp mode follows the same connection rules: with the budget of 4 spent by tenant A,
// A's fifth connection waits in its backlog (neither served nor closed) and is served
// once one of A's connections ends; tenant B, below its share but with nothing of A's
// to reclaim (tcp connections are never cut for someone else), is closed at once.
class TenantLimitsTcpTest : public IntegrationTest {};  // root, or a loud skip

TEST_F(TenantLimitsTcpTest, ATcpTenantAtItsShareOfASpentBudgetWaitsInItsBacklog) {
  TempDir tmp;
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Daemon d(tmp.path());
  d.set_extra_args({"--max-connections", "4"});
  ASSERT_TRUE(d.start());
  Netns a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  nsproxy::ListenerSpec spec{kListen, echo.address(), nsproxy::Mode::Tcp};
  nsproxy::TenantLimits many;
  many.connections = 100;
  ASSERT_TRUE(register_tenant(d, a.path(), "tcp-a-" + short_token(),
                              {.listeners = {spec}, .limits = many}));
  ASSERT_TRUE(register_tenant(d, b.path(), "tcp-b-" + short_token(), {.listeners = {spec}}));
  std::vector<Connection> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(connect_in_netns(a.path(), kListen));
    ASSERT_TRUE(held.back().ok()) << held.back().message;
    ASSERT_TRUE(send_all(held.back().fd.get(), "x").ok());
  }
  std::this_thread::sleep_for(300ms);
  Connection fifth = connect_in_netns(a.path(), kListen);
  ASSERT_TRUE(fifth.ok()) << fifth.message;
  ASSERT_TRUE(send_all(fifth.fd.get(), "fifth").ok());
  pollfd p{fifth.fd.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 700), 0) << "A's fifth connection was served or closed beyond its share";

  auto t0 = Clock::now();
  auto refused = roundtrip_in_netns(b.path(), kListen, "b", 3000ms);
  EXPECT_LT(since(t0).count(), 1500) << "B's connection waited instead of being closed at once";
  // Closed (a reset when "b" was unread) rather than forwarded: no echo.
  EXPECT_TRUE(!refused.ok() || refused->empty()) << "B was served beyond the budget: " << *refused;

  held.front().fd.reset();
  std::string got;
  char buf[16];
  p.events = POLLIN;
  ASSERT_EQ(::poll(&p, 1, 3000), 1) << "A's waiting connection was not served after a slot freed";
  ssize_t n = ::read(fifth.fd.get(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "fifth");
}

}  // namespace
}  // namespace nspit
