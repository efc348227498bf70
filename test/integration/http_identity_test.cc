// http mode: the identity the upstream learns (X-Tenant-Id, labels, X-Forwarded-For,
// Forwarded), that tenants cannot forge it, custom header names, and the upstream pool.
#include <algorithm>
#include <map>
#include <set>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";

// The echo upstream's description of what it received, from a response.
json echo_of(const HttpResponse& r) {
  json j = r.json();
  EXPECT_TRUE(j.is_object()) << "not an nsproxy-echo answer: " << r.describe();
  return j.is_object() ? j : json::object();
}

// GET /reuse on a new tenant connection; *echo: the upstream's description of it.
void get_on_new_connection(const Netns& ns, json* echo) {
  auto c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  auto r = c.request(http_request("GET", "/reuse"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->status, 200) << r->describe();
  *echo = echo_of(*r);
}

std::string join(const std::vector<std::string>& v) {
  std::string s = "[";
  for (const auto& x : v) s += (s.size() > 1 ? ", \"" : "\"") + x + "\"";
  return s + "]";
}

using Strings = std::vector<std::string>;

// The label headers the upstream saw, as "<prefix><label>: value", sorted; the prefix is
// matched case-insensitively and written as given, the label name kept as sent.
Strings labels_seen(const json& e, const std::string& prefix) {
  Strings out;
  for (auto& l : echo_headers_with_prefix(e, prefix))
    out.push_back(prefix + l.substr(prefix.size()));
  std::sort(out.begin(), out.end());
  return out;
}

class HttpIdentityTest : public HttpTest {};

// Two tenants with the same address 10.0.0.2, each with its own registration: every
// request reaches the upstream with the identity of the listener that accepted it, also
// when the two tenants' requests share one pooled upstream connection.
TEST_F(HttpIdentityTest, TwoTenantsWithTheSameAddressEachGetTheirOwnIdentity) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("http", {}, "127.0.0.1:0", "identity-upstream");
  ASSERT_TRUE(echo.start());
  Netns a, b;
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  ASSERT_TRUE(a.add_interface("eth0", "10.0.0.2/24"));
  ASSERT_TRUE(b.add_interface("eth0", "10.0.0.2/24"));
  const std::string id_a = "tenant-a-" + short_token(), id_b = "tenant-b-" + short_token();
  ASSERT_TRUE(register_tenant(d, a.path(), id_a,
                              {.listen = "10.0.0.2:8080",
                               .upstream = echo.address(),
                               .labels = {{"team", "blue"}, {"pod-name", "web-a"}}}));
  ASSERT_TRUE(register_tenant(
      d, b.path(), id_b,
      {.listen = "10.0.0.2:8080", .upstream = echo.address(), .labels = {{"team", "red"}}}));

  struct Tenant {
    const Netns* ns;
    std::string id;
    Strings labels;  // expected "name: value" lines, sorted
  };
  std::vector<Tenant> tenants = {
      {&a, id_a, {"X-Tenant-Label-pod-name: web-a", "X-Tenant-Label-team: blue"}},
      {&b, id_b, {"X-Tenant-Label-team: red"}}};

  // Alternate between the tenants, each on a fresh connection and on a kept-alive one.
  std::vector<HttpConn> kept;
  for (auto& t : tenants) {
    kept.push_back(HttpConn::open(t.ns->path(), "10.0.0.2:8080"));
    ASSERT_TRUE(kept.back().ok()) << kept.back().error();
  }
  for (int round = 0; round < 4; ++round) {
    for (size_t i = 0; i < tenants.size(); ++i) {
      const Tenant& t = tenants[i];
      for (bool fresh : {true, false}) {
        HttpConn fresh_conn;
        HttpConn* c = &kept[i];
        if (fresh) {
          fresh_conn = HttpConn::open(t.ns->path(), "10.0.0.2:8080");
          ASSERT_TRUE(fresh_conn.ok()) << fresh_conn.error();
          c = &fresh_conn;
        }
        std::string path = "/who?round=" + std::to_string(round);
        auto r = c->request(http_request("GET", path));
        ASSERT_TRUE(r.ok()) << t.id << ": " << r.error().message;
        ASSERT_EQ(r->status, 200) << r->describe();
        json e = echo_of(*r);
        SCOPED_TRACE("tenant " + t.id + (fresh ? " (fresh connection)" : " (keep-alive)") +
                     "; upstream saw " + e.dump());
        EXPECT_EQ(e.value("path", ""), path);
        EXPECT_EQ(echo_headers(e, "X-Tenant-Id"), Strings{t.id});
        EXPECT_EQ(labels_seen(e, "X-Tenant-Label-"), t.labels);
        EXPECT_EQ(echo_headers(e, "X-Forwarded-For"), Strings{"10.0.0.2"});
        EXPECT_EQ(echo_headers(e, "Forwarded"), Strings{"for=10.0.0.2"});
      }
    }
  }
}

// A tenant sends the identity headers itself: forged values, mixed case, duplicated, on
// the first and on later requests of one keep-alive connection. The upstream sees only
// what the proxy set.
TEST_F(HttpIdentityTest, ForgedIdentityHeadersAreStrippedOnEveryRequestOfAKeepAliveConnection) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string id = "real-" + short_token();
  ASSERT_TRUE(register_tenant(d, ns.path(), id,
                              {.upstream = echo.address(), .labels = {{"team", "blue"}}}));

  const std::string forged =
      "X-Tenant-Id: someone-else\r\n"
      "x-tenant-id: someone-else-2\r\n"
      "X-TENANT-ID: someone-else-3\r\n"
      "X-Tenant-Label-team: red\r\n"
      "x-tenant-label-team: green\r\n"
      "X-Tenant-Label-x: forged\r\n"
      "X-TENANT-LABEL-admin: true\r\n"
      "X-Forwarded-For: 6.6.6.6\r\n"
      "x-forwarded-for: 7.7.7.7, 8.8.8.8\r\n"
      "Forwarded: for=6.6.6.6\r\n"
      "FORWARDED: for=\"[2001:db8::6]\"\r\n"
      "X-Other: kept\r\n";
  auto c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  for (int i = 1; i <= 3; ++i) {
    // Request 2 carries a body, so the forged headers of request 3 follow a body.
    std::string body = i == 2 ? "hello" : "";
    std::string extra = forged;
    if (!body.empty()) extra += "Content-Length: 5\r\n";
    auto r = c.request(
        http_request(i == 2 ? "POST" : "GET", "/forged/" + std::to_string(i), extra, body));
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error().message;
    ASSERT_EQ(r->status, 200) << r->describe();
    json e = echo_of(*r);
    SCOPED_TRACE("request " + std::to_string(i) + " of one connection; upstream saw " + e.dump());
    EXPECT_EQ(echo_headers(e, "X-Tenant-Id"), Strings{id});
    EXPECT_EQ(labels_seen(e, "X-Tenant-Label-"), Strings{"X-Tenant-Label-team: blue"});
    EXPECT_EQ(echo_headers(e, "X-Forwarded-For"), Strings{"127.0.0.1"});
    EXPECT_EQ(echo_headers(e, "Forwarded"), Strings{"for=127.0.0.1"});
    EXPECT_EQ(echo_headers(e, "X-Other"), Strings{"kept"}) << "an ordinary header was lost";
    EXPECT_EQ(e.value("body_bytes", -1), static_cast<int>(body.size()));
  }
}

// Connections to the upstream are pooled: sequential requests on one tenant connection,
// and requests from a later tenant connection, reuse one upstream connection.
// One worker: its upstream pool serves every tenant connection.
TEST_F(HttpIdentityTest, UpstreamConnectionIsReusedAcrossRequestsAndTenantConnections) {
  Daemon d(tmp_.path());
  d.set_extra_args({"--workers", "1"});
  ASSERT_TRUE(d.start());
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(d, ns.path(), "pool-" + short_token(), {.upstream = echo.address()}));

  std::set<std::string> peers;
  std::vector<int> counts;
  {
    auto c = HttpConn::open(ns.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    for (int i = 0; i < 3; ++i) {
      auto r = c.request(http_request("GET", "/reuse"));
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_EQ(r->status, 200) << r->describe();
      json e = echo_of(*r);
      peers.insert(e.value("peer", ""));
      counts.push_back(e.value("connection_requests", -1));
    }
  }
  // A second and a third tenant connection, one after the other.
  for (int i = 0; i < 2; ++i) {
    json e;
    ASSERT_NO_FATAL_FAILURE(get_on_new_connection(ns, &e));
    peers.insert(e.value("peer", ""));
    counts.push_back(e.value("connection_requests", -1));
  }
  EXPECT_EQ(counts, (std::vector<int>{1, 2, 3, 4, 5}))
      << "connection_requests as counted by the upstream: each value is the index of the "
         "request on its upstream connection";
  EXPECT_EQ(peers.size(), 1u) << "upstream saw requests from several proxy connections";
}

// Two workers: tenant connections, one after the other, go to both (the one with fewer
// open connections, ties taken in turn), and each worker reuses its own pooled upstream
// connection: the upstream sees exactly two proxy connections, each carrying every
// request its worker forwarded, in order.
TEST_F(HttpIdentityTest, TwoWorkersShareTheTenantsConnectionsAndEachReusesItsUpstreamConnection) {
  Daemon d(tmp_.path());
  d.set_extra_args({"--workers", "2"});
  ASSERT_TRUE(d.start());
  EXPECT_EQ(daemon_status(d).value("workers", -1), 2) << daemon_status(d).dump();
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(
      register_tenant(d, ns.path(), "pool2-" + short_token(), {.upstream = echo.address()}));

  std::map<std::string, std::vector<int>> by_peer;  // upstream-side peer -> request indexes
  for (int i = 0; i < 6; ++i) {
    json e;
    ASSERT_NO_FATAL_FAILURE(get_on_new_connection(ns, &e));
    by_peer[e.value("peer", "")].push_back(e.value("connection_requests", -1));
  }
  ASSERT_EQ(by_peer.size(), 2u) << "the six connections did not reach both workers' pools";
  for (const auto& [peer, counts] : by_peer) {
    std::vector<int> expected(counts.size());
    for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int>(i) + 1;
    EXPECT_EQ(counts, expected) << "upstream connection " << peer
                                << " was not reused request after request";
  }
  EXPECT_EQ(by_peer.begin()->second.size(), 3u) << "not split evenly between the workers";
}

// The identity header names come from daemon flags, and a registration may name its own.
TEST_F(HttpIdentityTest, HeaderNamesFromDaemonFlagsAndPerRegistration) {
  ASSERT_TRUE(binaries_exist({"nsproxyctl"}));
  Daemon d(tmp_.path());
  d.set_extra_args({"--tenant-header", "X-Caller", "--label-header-prefix", "X-Caller-Label-"});
  ASSERT_TRUE(d.start());
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns a, b;
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_TRUE(b.ok()) << b.error();
  const std::string id_a = "flags-" + short_token(), id_b = "own-" + short_token();
  ASSERT_TRUE(register_tenant(d, a.path(), id_a,
                              {.upstream = echo.address(), .labels = {{"team", "blue"}}}));
  // The second registration names its own headers through nsproxyctl.
  auto ctl = run({binary("nsproxyctl"),
                  "--socket",
                  d.socket_path(),
                  "add",
                  "--id",
                  id_b,
                  "--netns",
                  b.path(),
                  "--listen",
                  kListen,
                  "--upstream",
                  echo.address(),
                  "--mode",
                  "http",
                  "--label",
                  "team=red",
                  "--tenant-header",
                  "X-Who",
                  "--label-header-prefix",
                  "X-Who-Label-"});
  ASSERT_EQ(ctl.exit_code, 0) << ctl.describe();

  {
    auto c = HttpConn::open(a.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    for (int i = 0; i < 2; ++i) {
      auto r =
          c.request(http_request("GET", "/", "X-Caller: forged\r\nx-caller-label-team: red\r\n"));
      ASSERT_TRUE(r.ok()) << r.error().message;
      json e = echo_of(*r);
      SCOPED_TRACE("daemon-wide names, request " + std::to_string(i + 1) + "; upstream saw " +
                   e.dump());
      EXPECT_EQ(echo_headers(e, "X-Caller"), Strings{id_a});
      EXPECT_EQ(labels_seen(e, "X-Caller-Label-"), Strings{"X-Caller-Label-team: blue"});
      EXPECT_TRUE(echo_headers(e, "X-Tenant-Id").empty());
      EXPECT_TRUE(echo_headers_with_prefix(e, "X-Tenant-Label-").empty());
    }
  }
  {
    auto c = HttpConn::open(b.path(), kListen);
    ASSERT_TRUE(c.ok()) << c.error();
    for (int i = 0; i < 2; ++i) {
      auto r = c.request(http_request("GET", "/", "X-Who: forged\r\nX-WHO-LABEL-team: green\r\n"));
      ASSERT_TRUE(r.ok()) << r.error().message;
      json e = echo_of(*r);
      SCOPED_TRACE("per-registration names, request " + std::to_string(i + 1) + "; upstream saw " +
                   e.dump());
      EXPECT_EQ(echo_headers(e, "X-Who"), Strings{id_b});
      EXPECT_EQ(labels_seen(e, "X-Who-Label-"), Strings{"X-Who-Label-team: red"});
      EXPECT_TRUE(echo_headers(e, "X-Caller").empty()) << join(echo_headers(e, "X-Caller"));
      EXPECT_TRUE(echo_headers(e, "X-Tenant-Id").empty());
    }
  }
}

// IPv6 callers: X-Forwarded-For carries the bare address, Forwarded the quoted form.
TEST_F(HttpIdentityTest, Ipv6CallerIsQuotedInForwarded) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  // IPv6 on in this test's own namespace, whatever the host's defaults (a new namespace
  // takes its all/default settings from them): lo gets ::1 when it comes up with IPv6
  // enabled. A kernel without IPv6 fails here, loudly: no skip that CI reports as a pass.
  auto v6 = ns.exec(
      "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 "
      "net.ipv6.conf.lo.disable_ipv6=0 && ip link set lo down && ip link set lo up && "
      "ip -6 addr show dev lo");
  ASSERT_EQ(v6.exit_code, 0) << "cannot enable IPv6 in the test namespace: " << v6.describe();
  ASSERT_NE(v6.out.find("inet6 ::1/128"), std::string::npos)
      << "no ::1 on lo after enabling IPv6: " << v6.describe();
  const std::string id = "v6-" + short_token();
  ASSERT_TRUE(
      register_tenant(d, ns.path(), id, {.listen = "[::1]:8080", .upstream = echo.address()}));
  auto c = HttpConn::open(ns.path(), "[::1]:8080");
  ASSERT_TRUE(c.ok()) << c.error();
  auto r = c.request(http_request("GET", "/v6"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->status, 200) << r->describe();
  json e = echo_of(*r);
  EXPECT_EQ(echo_headers(e, "X-Tenant-Id"), Strings{id}) << e.dump();
  EXPECT_EQ(echo_headers(e, "X-Forwarded-For"), Strings{"::1"}) << e.dump();
  EXPECT_EQ(echo_headers(e, "Forwarded"), Strings{"for=\"[::1]\""}) << e.dump();
}

// Hop-by-hop headers of the tenant's request do not reach the upstream.
TEST_F(HttpIdentityTest, HopByHopHeadersAreNotForwarded) {
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  EchoServer echo("http");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  ASSERT_TRUE(register_tenant(d, ns.path(), "hop-" + short_token(), {.upstream = echo.address()}));
  auto c = HttpConn::open(ns.path(), kListen);
  ASSERT_TRUE(c.ok()) << c.error();
  auto r = c.request(http_request("GET", "/hop",
                                  "Connection: keep-alive, X-Private-Hop\r\n"
                                  "X-Private-Hop: secret\r\n"
                                  "Keep-Alive: timeout=5\r\n"
                                  "Proxy-Connection: keep-alive\r\n"
                                  "TE: trailers\r\n"
                                  "X-End-To-End: yes\r\n"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->status, 200) << r->describe();
  json e = echo_of(*r);
  for (const char* h : {"X-Private-Hop", "Keep-Alive", "Proxy-Connection", "TE"}) {
    EXPECT_TRUE(echo_headers(e, h).empty()) << h << " reached the upstream: " << e.dump();
  }
  EXPECT_EQ(echo_headers(e, "X-End-To-End"), Strings{"yes"}) << e.dump();
  // The connection is still usable.
  auto r2 = c.request(http_request("GET", "/hop2"));
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->status, 200) << r2->describe();
}

}  // namespace
}  // namespace nspit
