#include "cni_config.h"

#include <gtest/gtest.h>

#include <string>

#include "cni_version.h"

namespace nsproxy::cni {
namespace {

using nlohmann::json;

json base_config() {
  return json::parse(R"({
    "cniVersion": "1.0.0", "name": "tenants", "type": "nsproxy",
    "listeners": [{"listen": "127.0.0.1:8080", "upstream": "127.0.0.1:18080", "mode": "http"}]
  })");
}

CniResult<PluginConfig> parse(const json& j, Command c = Command::Add) {
  return parse_config(j.dump(), c);
}

// Expects code 7 with a message that starts with `field`.
void expect_invalid(const json& j, const std::string& field, Command c = Command::Add) {
  auto r = parse(j, c);
  ASSERT_FALSE(r.ok()) << "accepted: " << j.dump();
  EXPECT_EQ(r.error().code, code::kInvalidConfig) << r.error().msg;
  EXPECT_EQ(r.error().msg.rfind(field + ":", 0), 0u) << "msg: " << r.error().msg;
}

TEST(CniConfig, ParsesValidConfigWithDefaults) {
  auto r = parse(base_config());
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->cni_version, "1.0.0");
  EXPECT_EQ(r->name, "tenants");
  EXPECT_EQ(r->type, "nsproxy");
  EXPECT_EQ(r->socket, kDefaultSocketPath);
  EXPECT_EQ(r->timeout.count(), 3000);
  ASSERT_EQ(r->listeners.size(), 1u);
  EXPECT_EQ(r->listeners[0].listen, "127.0.0.1:8080");
  EXPECT_EQ(r->listeners[0].upstream, "127.0.0.1:18080");
  EXPECT_EQ(r->listeners[0].mode, Mode::Http);
  EXPECT_EQ(r->listeners[0].proxy_protocol, ProxyProtocol::None);
  EXPECT_TRUE(r->labels.empty());
  EXPECT_EQ(r->headers, IdentityHeaders{});  // the daemon's defaults
  EXPECT_TRUE(r->limits.empty());            // the daemon's defaults
  EXPECT_FALSE(r->prev_result.has_value());
}

TEST(CniConfig, ModeDefaultsToHttpAndUnixUpstreamAllowed) {
  json j = base_config();
  j["listeners"] = json::parse(R"([{"listen":"[::1]:80","upstream":"unix:/run/app.sock"}])");
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->listeners[0].mode, Mode::Http);
  EXPECT_EQ(r->listeners[0].proxy_protocol, ProxyProtocol::None);
  EXPECT_EQ(r->listeners[0].upstream, "unix:/run/app.sock");
}

TEST(CniConfig, TcpListenerMayAskForProxyProtocolV2) {
  json j = base_config();
  j["listeners"] = json::parse(R"([
    {"listen":"127.0.0.1:443","upstream":"127.0.0.1:8443","mode":"tcp","proxyProtocol":"v2"},
    {"listen":"127.0.0.1:444","upstream":"127.0.0.1:8444","mode":"tcp","proxyProtocol":"none"},
    {"listen":"127.0.0.1:445","upstream":"127.0.0.1:8445","mode":"tcp"},
    {"listen":"127.0.0.1:80","upstream":"127.0.0.1:8080","proxyProtocol":"none"}])");
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  ASSERT_EQ(r->listeners.size(), 4u);
  EXPECT_EQ(r->listeners[0].mode, Mode::Tcp);
  EXPECT_EQ(r->listeners[0].proxy_protocol, ProxyProtocol::V2);
  EXPECT_EQ(r->listeners[1].proxy_protocol, ProxyProtocol::None);
  EXPECT_EQ(r->listeners[2].proxy_protocol, ProxyProtocol::None);
  EXPECT_EQ(r->listeners[3].mode, Mode::Http);
  EXPECT_EQ(r->listeners[3].proxy_protocol, ProxyProtocol::None);
}

TEST(CniConfig, ProxyProtocolOnlyWithTcpAndOnlyKnownVersions) {
  json j = base_config();  // mode http
  j["listeners"][0]["proxyProtocol"] = "v2";
  expect_invalid(j, "listeners[0].proxyProtocol");
  j["listeners"][0].erase("mode");  // default mode is http too
  expect_invalid(j, "listeners[0].proxyProtocol");
  auto r = parse(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().msg.find("tcp"), std::string::npos) << r.error().msg;

  for (json bad : {json("v1"), json("V2"), json(""), json(2), json::array()}) {
    j = base_config();
    j["listeners"][0]["mode"] = "tcp";
    j["listeners"][0]["proxyProtocol"] = bad;
    expect_invalid(j, "listeners[0].proxyProtocol");
  }
  j = base_config();
  j["listeners"].push_back({{"listen", "127.0.0.1:9"},
                            {"upstream", "127.0.0.1:1"},
                            {"mode", "http"},
                            {"proxyProtocol", "v2"}});
  expect_invalid(j, "listeners[1].proxyProtocol");
}

TEST(CniConfig, AddAddressOnlyForLinkLocalOrUniqueLocalListenAddresses) {
  json j = base_config();
  j["listeners"][0]["listen"] = "169.254.169.254:80";
  j["listeners"][0]["addAddress"] = true;
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_TRUE(r->listeners[0].add_address);
  EXPECT_FALSE(parse(base_config())->listeners[0].add_address);

  j["listeners"][0]["listen"] = "[fd00:ec2::254]:80";
  EXPECT_TRUE(parse(j).ok());
  j["listeners"][0]["listen"] = "10.1.2.3:80";
  expect_invalid(j, "listeners[0].addAddress");
  j["listeners"][0]["listen"] = "127.0.0.1:80";
  expect_invalid(j, "listeners[0].addAddress");
  j["listeners"][0]["listen"] = "169.254.169.254:80";
  j["listeners"][0]["addAddress"] = "true";
  expect_invalid(j, "listeners[0].addAddress");
}

TEST(CniConfig, HttpsListenerTakesOneCertificateOrAListWithTheDefaultFirst) {
  json j = base_config();
  j["listeners"][0]["mode"] = "https";
  j["listeners"][0]["tls"] = {{"certFile", "/etc/nsproxy/tls/meta.pem"},
                              {"keyFile", "/etc/nsproxy/tls/meta.key"}};
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->listeners[0].mode, Mode::Https);
  ASSERT_EQ(r->listeners[0].certificates.size(), 1u);
  EXPECT_EQ(r->listeners[0].certificates[0].key_file, "/etc/nsproxy/tls/meta.key");

  j["listeners"][0]["tls"] = {
      {"certificates", json::array({{{"certFile", "/a.pem"}, {"keyFile", "/a.key"}},
                                    {{"certFile", "/b.pem"}, {"keyFile", "/b.key"}}})}};
  r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  ASSERT_EQ(r->listeners[0].certificates.size(), 2u);
  EXPECT_EQ(r->listeners[0].certificates[0].cert_file, "/a.pem");
  EXPECT_EQ(r->listeners[0].certificates[1].cert_file, "/b.pem");
}

TEST(CniConfig, TlsMistakesNameTheField) {
  json https = base_config();
  https["listeners"][0]["mode"] = "https";
  expect_invalid(https, "listeners[0].tls");  // required
  json j = https;
  j["listeners"][0]["tls"] = {{"certFile", "/a.pem"}};
  expect_invalid(j, "listeners[0].tls.keyFile");
  j["listeners"][0]["tls"] = {{"certFile", "a.pem"}, {"keyFile", "/a.key"}};
  expect_invalid(j, "listeners[0].tls.certFile");  // relative
  j["listeners"][0]["tls"] = {{"certFile", "/a.pem"}, {"keyFile", "/a.key"}, {"crt", "/x"}};
  expect_invalid(j, "listeners[0].tls.crt");
  j["listeners"][0]["tls"] = {{"certificates", json::array()}};
  expect_invalid(j, "listeners[0].tls.certificates");
  j["listeners"][0]["tls"] = {{"certificates", json::array({{{"certFile", "/a.pem"}}})}};
  expect_invalid(j, "listeners[0].tls.certificates[0].keyFile");
  j["listeners"][0]["tls"] = {
      {"certFile", "/a.pem"}, {"keyFile", "/a.key"}, {"certificates", json::array()}};
  expect_invalid(j, "listeners[0].tls");
  j["listeners"][0]["tls"] = "/a.pem";
  expect_invalid(j, "listeners[0].tls");
  json http = base_config();
  http["listeners"][0]["tls"] = {{"certFile", "/a.pem"}, {"keyFile", "/a.key"}};
  expect_invalid(http, "listeners[0].tls");  // only https
  http["listeners"][0]["mode"] = "HTTPS";
  expect_invalid(http, "listeners[0].mode");
}

TEST(CniConfig, HttpsUpstreamOrUpstreamTlsAsksForTlsTowardsTheUpstream) {
  json j = base_config();
  j["listeners"][0]["upstream"] = "https://127.0.0.1:8443";
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->listeners[0].upstream, "127.0.0.1:8443");
  EXPECT_TRUE(r->listeners[0].upstream_tls.enabled);
  EXPECT_FALSE(r->listeners[0].upstream_tls.insecure_skip_verify);

  j["listeners"][0]["upstream"] = "127.0.0.1:8443";
  j["listeners"][0]["upstreamTls"] = {{"caFile", "/etc/nsproxy/upstream-ca.pem"},
                                      {"serverName", "api.internal"}};
  r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_TRUE(r->listeners[0].upstream_tls.enabled);
  EXPECT_EQ(r->listeners[0].upstream_tls.ca_file, "/etc/nsproxy/upstream-ca.pem");
  EXPECT_EQ(r->listeners[0].upstream_tls.server_name, "api.internal");
  EXPECT_FALSE(parse(base_config())->listeners[0].upstream_tls.enabled);
}

TEST(CniConfig, UpstreamTlsMistakesNameTheField) {
  json j = base_config();
  j["listeners"][0]["upstreamTls"] = {{"caFile", "ca.pem"}};
  expect_invalid(j, "listeners[0].upstreamTls.caFile");
  j["listeners"][0]["upstreamTls"] = {{"serverName", "not a name"}};
  expect_invalid(j, "listeners[0].upstreamTls.serverName");
  j["listeners"][0]["upstreamTls"] = {{"insecureSkipVerify", "yes"}};
  expect_invalid(j, "listeners[0].upstreamTls.insecureSkipVerify");
  j["listeners"][0]["upstreamTls"] = {{"verify", false}};
  expect_invalid(j, "listeners[0].upstreamTls.verify");
  j["listeners"][0]["upstreamTls"] = "https";
  expect_invalid(j, "listeners[0].upstreamTls");
  json tcp = base_config();
  tcp["listeners"][0]["mode"] = "tcp";
  tcp["listeners"][0]["upstream"] = "https://127.0.0.1:8443";
  expect_invalid(tcp, "listeners[0].upstream");
}

TEST(CniConfig, ReadsIdentityHeaderNames) {
  json j = base_config();
  j["headers"] = {{"tenantId", "X-Caller"}, {"labelPrefix", "X-Caller-"}};
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->headers.tenant_id, "X-Caller");
  EXPECT_EQ(r->headers.label_prefix, "X-Caller-");

  j["headers"] = {{"labelPrefix", "X-L-"}};  // either alone; the other keeps the default
  r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->headers.tenant_id, "");
  EXPECT_EQ(r->headers.label_prefix, "X-L-");

  j["headers"] = json::object();
  r = parse(j, Command::Check);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->headers, IdentityHeaders{});

  j["headers"] = nullptr;
  EXPECT_TRUE(parse(j).ok());
  j["headers"] = "X-Tenant-Id";  // not an object: ignored by commands that do not use it
  EXPECT_TRUE(parse(j, Command::Del).ok());
}

TEST(CniConfig, BadIdentityHeadersNameTheField) {
  json j = base_config();
  j["headers"] = "X-Tenant-Id";
  expect_invalid(j, "headers");
  j["headers"] = {{"tenantid", "X-Tenant-Id"}};  // keys are case-sensitive: a typo
  expect_invalid(j, "headers.tenantid");
  for (json bad : {json(""), json("X Tenant"), json("X-Tenant:"), json("X-T\xc3\xa9"),
                   json(std::string(kMaxHeaderNameLength + 1, 'x')), json(1), json::array()}) {
    j["headers"] = {{"tenantId", bad}};
    expect_invalid(j, "headers.tenantId");
    j["headers"] = {{"labelPrefix", bad}};
    expect_invalid(j, "headers.labelPrefix");
  }
  j["headers"] = {{"tenantId", std::string(kMaxHeaderNameLength, 'x')}};
  EXPECT_TRUE(parse(j).ok());
}

TEST(CniConfig, ReadsTenantLimits) {
  json j = base_config();
  j["limits"] = {{"rate", 10.5}, {"burst", 20}, {"connections", 100}};
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->limits.rate, 10.5);
  EXPECT_EQ(r->limits.burst, 20u);
  EXPECT_EQ(r->limits.connections, 100u);

  j["limits"] = {{"connections", 5}};  // each field alone; the others: the daemon's defaults
  r = parse(j, Command::Check);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_FALSE(r->limits.rate.has_value());
  EXPECT_FALSE(r->limits.burst.has_value());
  EXPECT_EQ(r->limits.connections, 5u);

  j["limits"] = {{"rate", 0}};  // 0: no rate limit, which is not the same as absent
  r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->limits.rate, 0.0);

  // Bounds are inclusive.
  j["limits"] = {{"rate", 1000000}, {"burst", 1000000}, {"connections", 1000000}};
  EXPECT_TRUE(parse(j).ok());
  j["limits"] = {{"rate", 0.001}, {"burst", 1}, {"connections", 1}};
  EXPECT_TRUE(parse(j).ok());

  for (json empty : {json(nullptr), json::object(),
                     json{{"rate", nullptr}, {"burst", nullptr}, {"connections", nullptr}}}) {
    j["limits"] = empty;
    r = parse(j);
    ASSERT_TRUE(r.ok()) << r.error().msg;
    EXPECT_TRUE(r->limits.empty()) << empty.dump();
  }
  j.erase("limits");
  r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_TRUE(r->limits.empty());

  j["limits"] = "fast";  // not an object: ignored by commands that do not use it
  EXPECT_TRUE(parse(j, Command::Del).ok());
}

TEST(CniConfig, BadTenantLimitsNameTheField) {
  json j = base_config();
  j["limits"] = 10;
  expect_invalid(j, "limits");
  j["limits"] = json::array({10});
  expect_invalid(j, "limits");

  for (const char* key : {"Rate", "connection", "maxConnections", "in_flight"}) {
    j["limits"] = {{"rate", 1}, {key, 1}};
    auto r = parse(j);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.error().code, code::kInvalidConfig);
    EXPECT_EQ(r.error().msg,
              std::string("limits.") + key + ": unknown key (expected rate, burst, connections)");
  }
  j["limits"] = {{"rate", 1}, {"Burst", nullptr}};  // a typo is refused even when null
  expect_invalid(j, "limits.Burst");

  for (json bad : {json("10"), json(true), json(-1), json(-0.001), json(1000000.5), json(1e7),
                   json::array(), json::object()}) {
    SCOPED_TRACE(bad.dump());
    j["limits"] = {{"rate", bad}};
    expect_invalid(j, "limits.rate");
  }
  for (const char* key : {"burst", "connections"}) {
    for (json bad : {json(0), json(-1), json(1.5), json(20.0), json("20"), json(false),
                     json(1000001), json(4294967297ULL), json(1e20), json::array({1})}) {
      SCOPED_TRACE(std::string(key) + "=" + bad.dump());
      j["limits"] = {{key, bad}};
      expect_invalid(j, std::string("limits.") + key);
    }
  }

  // The whole message, for the record (docs/bad-input.md).
  j["limits"] = {{"burst", 0}};
  auto r = parse(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg, "limits.burst: must be an integer from 1 to 1000000, got 0");
  j["limits"] = {{"rate", -1}};
  r = parse(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().msg,
            "limits.rate: must be a number of requests per second from 0 (no limit) to 1000000, "
            "got -1");
}

TEST(CniConfig, ReadsOptionalFields) {
  json j = base_config();
  j["socket"] = "/tmp/nsproxy.sock";
  j["timeoutMs"] = 250;
  j["labels"] = {{"team", "a"}, {"tier.x_y-z", ""}};
  j["prevResult"] = json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}]})");
  j["runtimeConfig"] = {{"portMappings", json::array()}};
  j["somethingElse"] = 42;
  auto r = parse(j);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->socket, "/tmp/nsproxy.sock");
  EXPECT_EQ(r->timeout.count(), 250);
  EXPECT_EQ(r->labels.at("team"), "a");
  EXPECT_EQ(r->labels.at("tier.x_y-z"), "");
  ASSERT_TRUE(r->prev_result.has_value());
  EXPECT_EQ((*r->prev_result)["interfaces"][0]["name"], "eth0");
}

TEST(CniConfig, InvalidJsonIsDecodingFailure) {
  for (const char* text : {"", "{", "{\"cniVersion\":", "[1,2]", "\"x\"", "not json"}) {
    auto r = parse_config(text, Command::Add);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, code::kDecodingFailure) << text;
  }
}

// parse_config(text) is decode_config then parse_decoded_config (the fuzz target decodes
// once and checks every command on the decoded config): same results, same errors.
TEST(CniConfig, DecodeThenParseIsParseConfig) {
  for (const char* text : {"", "{", "[1,2]", "\"x\"", "not json"}) {
    auto whole = parse_config(text, Command::Add);
    auto decoded = decode_config(text);
    ASSERT_FALSE(whole.ok()) << text;
    ASSERT_FALSE(decoded.ok()) << text;
    EXPECT_EQ(decoded.error().code, code::kDecodingFailure) << text;
    EXPECT_EQ(decoded.error().msg, whole.error().msg) << text;
  }
  json bad_version = base_config();
  bad_version["cniVersion"] = "0.2.0";
  json no_listeners = base_config();
  no_listeners.erase("listeners");
  for (const json& j : {base_config(), bad_version, no_listeners}) {
    for (Command c : {Command::Add, Command::Del, Command::Check, Command::Status, Command::Gc}) {
      std::string v1 = "x", v2 = "x";
      auto whole = parse_config(j.dump(), c, &v1);
      auto decoded = decode_config(j.dump());
      ASSERT_TRUE(decoded.ok()) << j.dump();
      auto parsed = parse_decoded_config(*decoded, c, &v2);
      ASSERT_EQ(whole.ok(), parsed.ok()) << j.dump() << " " << command_name(c);
      EXPECT_EQ(v1, v2);
      if (whole.ok()) {
        EXPECT_EQ(whole->name, parsed->name);
        EXPECT_EQ(whole->listeners.size(), parsed->listeners.size());
      } else {
        EXPECT_EQ(whole.error().code, parsed.error().code);
        EXPECT_EQ(whole.error().msg, parsed.error().msg);
      }
    }
  }
}

TEST(CniConfig, UnsupportedVersionIsCode1) {
  for (const char* v : {"0.2.0", "0.1.0", "2.0.0", "1.1"}) {
    json j = base_config();
    j["cniVersion"] = v;
    auto r = parse(j);
    ASSERT_FALSE(r.ok()) << v;
    EXPECT_EQ(r.error().code, code::kIncompatibleVersion) << v;
    EXPECT_NE(r.error().details.find(v), std::string::npos) << r.error().details;
  }
}

TEST(CniConfig, EverySupportedVersionParses) {
  for (const auto& v : supported_versions()) {
    json j = base_config();
    j["cniVersion"] = v;
    std::string seen;
    auto r = parse_config(j.dump(), Command::Add, &seen);
    ASSERT_TRUE(r.ok()) << v << ": " << r.error().msg;
    EXPECT_EQ(seen, v);
  }
}

TEST(CniConfig, ReportsVersionEvenWhenALaterFieldFails) {
  json j = base_config();
  j["cniVersion"] = "0.4.0";
  j["timeoutMs"] = 0;
  std::string seen;
  auto r = parse_config(j.dump(), Command::Add, &seen);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(seen, "0.4.0");
}

TEST(CniConfig, BadTopLevelFieldsNameTheField) {
  json j;
  j = base_config();
  j.erase("cniVersion");
  expect_invalid(j, "cniVersion");
  j = base_config();
  j["cniVersion"] = 1;
  expect_invalid(j, "cniVersion");
  j = base_config();
  j.erase("name");
  expect_invalid(j, "name");
  j = base_config();
  j["name"] = "";
  expect_invalid(j, "name");
  j = base_config();
  j["name"] = "bad/name";
  expect_invalid(j, "name");
  j = base_config();
  j["name"] = 5;
  expect_invalid(j, "name");
  j = base_config();
  j["type"] = true;
  expect_invalid(j, "type");
  j = base_config();
  j["socket"] = "relative.sock";
  expect_invalid(j, "socket");
  j = base_config();
  j["socket"] = 3;
  expect_invalid(j, "socket");
  j = base_config();
  j["socket"] = "/" + std::string(200, 'a');
  expect_invalid(j, "socket");
  j = base_config();
  j["timeoutMs"] = 0;
  expect_invalid(j, "timeoutMs");
  j = base_config();
  j["timeoutMs"] = -5;
  expect_invalid(j, "timeoutMs");
  j = base_config();
  j["timeoutMs"] = 60001;
  expect_invalid(j, "timeoutMs");
  j = base_config();
  j["timeoutMs"] = 1.5;
  expect_invalid(j, "timeoutMs");
  j = base_config();
  j["timeoutMs"] = "3000";
  expect_invalid(j, "timeoutMs");
  j = base_config();
  j["prevResult"] = "x";
  expect_invalid(j, "prevResult");
}

TEST(CniConfig, TimeoutBoundsAreInclusive) {
  for (int ms : {1, 60000}) {
    json j = base_config();
    j["timeoutMs"] = ms;
    auto r = parse(j);
    ASSERT_TRUE(r.ok()) << ms << ": " << r.error().msg;
    EXPECT_EQ(r->timeout.count(), ms);
  }
}

TEST(CniConfig, BadListenersNameTheField) {
  json j;
  j = base_config();
  j.erase("listeners");
  expect_invalid(j, "listeners");
  j = base_config();
  j["listeners"] = json::array();
  expect_invalid(j, "listeners");
  j = base_config();
  j["listeners"] = json::object();
  expect_invalid(j, "listeners");
  j = base_config();
  j["listeners"][0] = 1;
  expect_invalid(j, "listeners[0]");
  j = base_config();
  j["listeners"][0].erase("listen");
  expect_invalid(j, "listeners[0].listen");
  j = base_config();
  j["listeners"][0]["listen"] = "localhost:80";
  expect_invalid(j, "listeners[0].listen");
  j = base_config();
  j["listeners"][0]["listen"] = "unix:/x.sock";
  expect_invalid(j, "listeners[0].listen");
  j = base_config();
  j["listeners"][0]["listen"] = 80;
  expect_invalid(j, "listeners[0].listen");
  j = base_config();
  j["listeners"][0].erase("upstream");
  expect_invalid(j, "listeners[0].upstream");
  j = base_config();
  j["listeners"][0]["upstream"] = "127.0.0.1";
  expect_invalid(j, "listeners[0].upstream");
  j = base_config();
  j["listeners"][0]["mode"] = "udp";
  expect_invalid(j, "listeners[0].mode");
  j = base_config();
  j["listeners"][0]["mdoe"] = "http";
  expect_invalid(j, "listeners[0].mdoe");
  j = base_config();
  j["listeners"].push_back({{"listen", "127.0.0.1:9090"}, {"upstream", "bad"}});
  expect_invalid(j, "listeners[1].upstream");
  j = base_config();
  j["listeners"].push_back({{"listen", "127.0.0.1:8080"}, {"upstream", "127.0.0.1:1"}});
  expect_invalid(j, "listeners[1].listen");
}

TEST(CniConfig, ListenerCountIsBounded) {
  json j = base_config();
  j["listeners"] = json::array();
  for (size_t i = 0; i < kMaxListeners; ++i) {
    j["listeners"].push_back(
        {{"listen", "127.0.0.1:" + std::to_string(10000 + i)}, {"upstream", "127.0.0.1:1"}});
  }
  ASSERT_TRUE(parse(j).ok());
  j["listeners"].push_back({{"listen", "127.0.0.1:9999"}, {"upstream", "127.0.0.1:1"}});
  expect_invalid(j, "listeners");
}

TEST(CniConfig, BadLabelsNameTheField) {
  json j;
  j = base_config();
  j["labels"] = json::array();
  expect_invalid(j, "labels");
  j = base_config();
  j["labels"] = {{"team", 1}};
  expect_invalid(j, "labels.team");
  j = base_config();
  j["labels"] = {{"bad key", "v"}};
  expect_invalid(j, "labels.bad key");
  j = base_config();
  j["labels"] = {{"k", "line\nbreak"}};
  expect_invalid(j, "labels.k");
  j = base_config();
  j["labels"] = {{std::string(kMaxLabelKeyLength + 1, 'k'), "v"}};
  expect_invalid(j, "labels." + std::string(kMaxLabelKeyLength + 1, 'k').substr(0, 80));
  j = base_config();
  j["labels"] = {{"k", std::string(kMaxLabelValueLength + 1, 'v')}};
  expect_invalid(j, "labels.k");
  j = base_config();
  for (size_t i = 0; i <= kMaxLabels; ++i) j["labels"]["l" + std::to_string(i)] = "v";
  expect_invalid(j, "labels");
}

TEST(CniConfig, DelStatusAndGcDoNotNeedListeners) {
  json j = base_config();
  j["cniVersion"] = "1.1.0";
  j.erase("listeners");
  j["labels"] = "ignored";  // not looked at outside ADD/CHECK
  EXPECT_TRUE(parse(j, Command::Del).ok());
  EXPECT_TRUE(parse(j, Command::Status).ok());
  expect_invalid(j, "listeners", Command::Add);
  expect_invalid(j, "listeners", Command::Check);
}

TEST(CniConfig, GcReadsValidAttachments) {
  json j = base_config();
  j["cniVersion"] = "1.1.0";
  j["cni.dev/valid-attachments"] =
      json::parse(R"([{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"net1"}])");
  auto r = parse(j, Command::Gc);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  ASSERT_EQ(r->valid_attachments.size(), 2u);
  EXPECT_EQ(r->valid_attachments[1].container_id, "c2");
  EXPECT_EQ(r->valid_attachments[1].ifname, "net1");

  j["cni.dev/valid-attachments"] = json::array();
  r = parse(j, Command::Gc);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_TRUE(r->valid_attachments.empty());
}

TEST(CniConfig, GcBadValidAttachmentsNameTheField) {
  const std::string key = "cni.dev/valid-attachments";
  json j = base_config();
  j["cniVersion"] = "1.1.0";
  expect_invalid(j, key, Command::Gc);  // missing: GC would otherwise drop everything
  j[key] = json::object();
  expect_invalid(j, key, Command::Gc);
  j[key] = json::parse(R"([{"containerID":"c1","ifname":"eth0"},{"ifname":"eth0"}])");
  expect_invalid(j, key + "[1].containerID", Command::Gc);
  j[key] = json::parse(R"([{"containerID":"c1"}])");
  expect_invalid(j, key + "[0].ifname", Command::Gc);
  j[key] = json::parse(R"([{"containerID":7,"ifname":"eth0"}])");
  expect_invalid(j, key + "[0].containerID", Command::Gc);
  j[key] = json::parse(R"(["c1"])");
  expect_invalid(j, key + "[0]", Command::Gc);
}

TEST(CniConfig, NetworkNames) {
  EXPECT_TRUE(valid_network_name("a"));
  EXPECT_TRUE(valid_network_name("my-net_1.x"));
  EXPECT_FALSE(valid_network_name(""));
  EXPECT_FALSE(valid_network_name("-net"));
  EXPECT_FALSE(valid_network_name("net work"));
  EXPECT_FALSE(valid_network_name(std::string(kMaxIdLength + 1, 'a')));
}

}  // namespace
}  // namespace nsproxy::cni
