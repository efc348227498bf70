#include "control_protocol.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <string>

namespace nsproxy {
namespace {

Request sample_add() {
  Request r;
  r.op = Op::Add;
  r.attachment = {"net1", "c0ffee", "eth0"};
  r.netns_path = "/run/netns/t1";
  r.listeners = {{"127.0.0.1:8080", "127.0.0.1:18080", Mode::Tcp},
                 {"[::1]:8443", "unix:/run/app.sock", Mode::Http}};
  r.labels = {{"pod-name", "web-0"}, {"team", "blue"}};
  return r;
}

TEST(ControlProtocol, AddRoundTripsEveryField) {
  Request in = sample_add();
  auto out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->op, Op::Add);
  EXPECT_EQ(out->attachment, in.attachment);
  EXPECT_EQ(out->netns_path, in.netns_path);
  EXPECT_EQ(out->listeners, in.listeners);
  EXPECT_EQ(out->labels, in.labels);
}

TEST(ControlProtocol, AddAddressRoundTripsForServiceAddresses) {
  Request in = sample_add();
  in.listeners = {{"169.254.169.254:80", "127.0.0.1:18080", Mode::Http},
                  {"[fd00:ec2::254]:80", "127.0.0.1:18080", Mode::Http}};
  in.listeners[0].add_address = true;
  in.listeners[1].add_address = true;
  auto out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->listeners, in.listeners);
  EXPECT_TRUE(out->listeners[1].add_address);
}

TEST(ControlProtocol, HttpsListenerRoundTripsItsCertificatesInOrder) {
  Request in = sample_add();
  ListenerSpec l{"169.254.169.254:443", "127.0.0.1:18080", Mode::Https};
  l.certificates = {{"/etc/nsproxy/tls/a.pem", "/etc/nsproxy/tls/a.key"},
                    {"/etc/nsproxy/tls/b.pem", "/etc/nsproxy/tls/b.key"}};
  in.listeners = {l};
  const std::string wire = encode_request(in);
  EXPECT_NE(wire.find("\"mode\":\"https\""), std::string::npos) << wire;
  auto out = decode_request(wire);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->listeners, in.listeners);
  EXPECT_EQ(out->listeners[0].certificates[1].key_file, "/etc/nsproxy/tls/b.key");
}

TEST(ControlProtocol, UpstreamTlsRoundTripsAndIsRefusedInTcpMode) {
  Request in = sample_add();
  ListenerSpec l{"127.0.0.1:8080", "127.0.0.1:8443", Mode::Http};
  l.upstream_tls = {true, "/etc/ca.pem", "api.internal", false};
  ListenerSpec insecure{"127.0.0.1:8081", "127.0.0.1:8443", Mode::Http};
  insecure.upstream_tls.enabled = true;
  insecure.upstream_tls.insecure_skip_verify = true;
  in.listeners = {l, insecure};
  auto out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->listeners, in.listeners);

  auto tcp = decode_request(
      R"({"version":1,"op":"add","attachment":{"id":"t"},"listeners":[{"listen":"127.0.0.1:80",)"
      R"("upstream":"127.0.0.1:443","mode":"tcp","upstream_tls":{}}]})");
  ASSERT_FALSE(tcp.ok());
  EXPECT_EQ(tcp.error().message.rfind("listeners[0].upstream_tls: only http and https", 0), 0u)
      << tcp.error().message;
  EXPECT_TRUE(strip_https_scheme(&(l.upstream = "HTTPS://[::1]:443/")));
  EXPECT_EQ(l.upstream, "[::1]:443");
  EXPECT_FALSE(valid_server_name("a..b"));
  EXPECT_TRUE(valid_server_name("api-1.internal"));
}

TEST(ControlProtocol, TlsIsRequiredInHttpsModeAndRefusedElsewhere) {
  auto decode_listener = [](const std::string& listener) {
    return decode_request(R"({"version":1,"op":"add","attachment":{"id":"t"},"listeners":[)" +
                          listener + "]}");
  };
  const std::string cert = R"("tls":{"certificates":[{"cert_file":"/c.pem","key_file":"/k.pem"}]})";
  EXPECT_TRUE(
      decode_listener(R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"https",)" +
                      cert + "}")
          .ok());
  struct Case {
    std::string listener, message;
  };
  for (
      const auto& c : std::vector<Case>{
          {R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"https"})",
           "listeners[0].tls: required in https mode"},
          {R"({"listen":"127.0.0.1:80","upstream":"127.0.0.1:80","mode":"http",)" + cert + "}",
           "listeners[0].tls: only https listeners terminate TLS"},
          {R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"https","tls":{"certificates":[]}})",
           "listeners[0].tls: must be"},
          {R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"https","tls":{"certificates":[{"cert_file":"c.pem","key_file":"/k.pem"}]}})",
           "listeners[0].tls.certificates[0].cert_file: must be an absolute path"},
          {R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"https","tls":{"certificates":[{"cert_file":"/c.pem"}]}})",
           "listeners[0].tls.certificates[0]: missing field \"key_file\""},
          {R"({"listen":"127.0.0.1:443","upstream":"127.0.0.1:80","mode":"spdy"})",
           "listeners[0]: mode must be \"tcp\", \"http\" or \"https\""}}) {
    auto r = decode_listener(c.listener);
    ASSERT_FALSE(r.ok()) << c.listener;
    EXPECT_EQ(r.error().message.rfind(c.message, 0), 0u) << r.error().message;
  }
}

TEST(ControlProtocol, GcCarriesValidAttachments) {
  Request in;
  in.op = Op::Gc;
  in.attachment.network = "net1";
  in.valid_attachments = {{"net1", "a", "eth0"}, {"net1", "b", "eth1"}};
  auto out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  ASSERT_EQ(out->valid_attachments.size(), 2u);
  EXPECT_EQ(out->valid_attachments[1].id, "b");
  EXPECT_EQ(out->valid_attachments[1].ifname, "eth1");
}

TEST(ControlProtocol, ManualKeyDisplaysAsItsId) {
  AttachmentKey manual{"", "tenant-7", ""};
  EXPECT_TRUE(manual.manual());
  EXPECT_EQ(manual.display(), "tenant-7");
  AttachmentKey cni{"net1", "c0ffee", "eth0"};
  EXPECT_FALSE(cni.manual());
  EXPECT_EQ(cni.display(), "net1/c0ffee/eth0");
}

struct BadRequest {
  const char* name;
  std::string text;
  const char* code;
  const char* mentions;  // the message must name the problem
};

class ControlProtocolRejects : public ::testing::TestWithParam<BadRequest> {};

TEST_P(ControlProtocolRejects, WithCodeAndMessage) {
  const BadRequest& c = GetParam();
  auto r = decode_request(c.text);
  ASSERT_FALSE(r.ok()) << c.text;
  EXPECT_EQ(code_name(r.error().code), c.code);  // the name a reply carries
  EXPECT_NE(r.error().message.find(c.mentions), std::string::npos) << r.error().message;
}

const std::string kListener = R"([{"listen":"127.0.0.1:8080","upstream":"127.0.0.1:1"}])";

// A valid add with "limits": the given JSON text.
std::string add_with_limits(const std::string& limits) {
  return R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":)" + kListener +
         R"(,"limits":)" + limits + "}";
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, ControlProtocolRejects,
    ::testing::Values(
        BadRequest{"NotJson", "not json {", "bad_request", "not valid JSON"},
        BadRequest{"NotObject", "[1,2]", "bad_request", "object"},
        BadRequest{"NoVersion", R"({"op":"list"})", "bad_request", "version"},
        BadRequest{"FutureVersion", R"({"version":99,"op":"list"})", "unsupported_version", "99"},
        BadRequest{"UnknownOp", R"({"version":1,"op":"explode"})", "bad_request", "explode"},
        BadRequest{"AddWithoutKey", R"({"version":1,"op":"add","listeners":)" + kListener + "}",
                   "bad_request", "attachment"},
        BadRequest{"AddWithoutListeners", R"({"version":1,"op":"add","attachment":{"id":"x"}})",
                   "bad_request", "listener"},
        BadRequest{
            "BadListenAddress",
            R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":[{"listen":"nonsense","upstream":"127.0.0.1:1"}]})",
            "bad_request", "listeners[0].listen"},
        BadRequest{
            "UnixListen",
            R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":[{"listen":"unix:/x","upstream":"127.0.0.1:1"}]})",
            "bad_request", "listeners[0].listen"},
        BadRequest{
            "BadMode",
            R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":[{"listen":"127.0.0.1:1","upstream":"127.0.0.1:1","mode":"udp"}]})",
            "bad_request", "udp"},
        BadRequest{
            "AddAddressNotLinkLocal",
            R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":[{"listen":"10.0.0.1:80","upstream":"127.0.0.1:1","add_address":true}]})",
            "bad_request", "listeners[0].add_address: 10.0.0.1 is not a link-local"},
        BadRequest{
            "AddAddressNotBool",
            R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":[{"listen":"169.254.1.1:80","upstream":"127.0.0.1:1","add_address":1}]})",
            "bad_request", "listeners[0].add_address: must be true or false"},
        BadRequest{"IdNotString", R"({"version":1,"op":"del","attachment":{"id":5}})",
                   "bad_request", "id"},
        BadRequest{"LabelNameBad",
                   R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":)" + kListener +
                       R"(,"labels":{"bad name":"v"}})",
                   "bad_request", "bad name"},
        BadRequest{"LabelValueNotString",
                   R"({"version":1,"op":"add","attachment":{"id":"x"},"listeners":)" + kListener +
                       R"(,"labels":{"k":1}})",
                   "bad_request", "\"k\""},
        BadRequest{"LimitsNotObject", add_with_limits("5"), "bad_request",
                   "\"limits\" must be an object"},
        BadRequest{"LimitsUnknownKey", add_with_limits(R"({"rate":1,"connection":5})"),
                   "bad_request",
                   "limits.connection: unknown key (expected rate, burst, connections)"},
        BadRequest{"LimitsUnknownKeyEvenWhenNull", add_with_limits(R"({"Rate":null})"),
                   "bad_request", "limits.Rate: unknown key"},
        BadRequest{"LimitsRateNotNumber", add_with_limits(R"({"rate":"10"})"), "bad_request",
                   "limits.rate: must be a number"},
        BadRequest{"LimitsRateBool", add_with_limits(R"({"rate":true})"), "bad_request",
                   "limits.rate: must be a number"},
        BadRequest{"LimitsRateNegative", add_with_limits(R"({"rate":-0.5})"), "bad_request",
                   "limits.rate: must be from 0 (no limit) to 1000000 requests per second"},
        BadRequest{"LimitsRateTooLarge", add_with_limits(R"({"rate":1000000.5})"), "bad_request",
                   "limits.rate: must be from 0 (no limit) to 1000000"},
        BadRequest{"LimitsBurstZero", add_with_limits(R"({"burst":0})"), "bad_request",
                   "limits.burst: must be an integer from 1 to 1000000, got 0"},
        BadRequest{"LimitsBurstNegative", add_with_limits(R"({"burst":-3})"), "bad_request",
                   "limits.burst: must be an integer from 1 to 1000000, got -3"},
        BadRequest{"LimitsBurstFraction", add_with_limits(R"({"burst":2.5})"), "bad_request",
                   "limits.burst: must be an integer from 1 to 1000000, got 2.5"},
        BadRequest{"LimitsBurstString", add_with_limits(R"({"burst":"20"})"), "bad_request",
                   "limits.burst: must be an integer from 1 to 1000000, got \"20\""},
        BadRequest{"LimitsBurstTooLarge", add_with_limits(R"({"burst":1000001})"), "bad_request",
                   "limits.burst: must be an integer from 1 to 1000000, got 1000001"},
        BadRequest{"LimitsBurstAbove32Bits", add_with_limits(R"({"burst":4294967297})"),
                   "bad_request", "limits.burst: must be an integer from 1 to 1000000"},
        BadRequest{"LimitsBurstAbove64Bits", add_with_limits(R"({"burst":100000000000000000000})"),
                   "bad_request", "limits.burst: must be an integer from 1 to 1000000"},
        BadRequest{"LimitsConnectionsZero", add_with_limits(R"({"connections":0})"), "bad_request",
                   "limits.connections: must be an integer from 1 to 1000000"},
        BadRequest{"LimitsConnectionsNegative", add_with_limits(R"({"connections":-1})"),
                   "bad_request", "limits.connections: must be an integer from 1 to 1000000"},
        BadRequest{"LimitsConnectionsTooLarge", add_with_limits(R"({"connections":1000001})"),
                   "bad_request", "limits.connections: must be an integer from 1 to 1000000"},
        BadRequest{"LimitsConnectionsArray", add_with_limits(R"({"connections":[1]})"),
                   "bad_request", "limits.connections: must be an integer"},
        BadRequest{"GcWithoutNetwork", R"({"version":1,"op":"gc","attachment":{"id":"x"}})",
                   "bad_request", "network"},
        BadRequest{"TooLarge", std::string(kMaxMessageSize + 1, ' '), "too_large", "large"}),
    [](const ::testing::TestParamInfo<BadRequest>& p) { return std::string(p.param.name); });

TEST(ControlProtocol, LimitsRoundTrip) {
  Request in = sample_add();
  in.limits = {10.5, 20, 100};
  auto out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->limits, in.limits);
  EXPECT_EQ(*out->limits.rate, 10.5);
  EXPECT_EQ(*out->limits.burst, 20u);
  EXPECT_EQ(*out->limits.connections, 100u);

  // A rate that is not a short decimal comes back exactly (the daemon compares limits
  // to tell a repeated add from a changed one); 0 means no limit and is kept as 0.
  for (double rate : {1.0 / 3, 0.1, 0.0, 1e6, 5e-7}) {
    in.limits = {rate, std::nullopt, std::nullopt};
    out = decode_request(encode_request(in));
    ASSERT_TRUE(out.ok()) << out.error().message;
    EXPECT_EQ(out->limits, in.limits) << rate;
  }
  // Bounds are inclusive.
  in.limits = {1e6, kMaxTenantBurst, kMaxTenantConnections};
  out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->limits, in.limits);
  in.limits = {0.0, 1, 1};
  out = decode_request(encode_request(in));
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->limits, in.limits);
}

TEST(ControlProtocol, AbsentLimitsStayAbsent) {
  Request in = sample_add();
  std::string text = encode_request(in);
  EXPECT_EQ(text.find("limits"), std::string::npos) << text;  // no limits: no key at all
  auto out = decode_request(text);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_TRUE(out->limits.empty());

  in.limits.connections = 7;  // one field: only that one is sent and set
  text = encode_request(in);
  EXPECT_NE(text.find(R"("limits":{"connections":7})"), std::string::npos) << text;
  out = decode_request(text);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_FALSE(out->limits.rate.has_value());
  EXPECT_FALSE(out->limits.burst.has_value());
  EXPECT_EQ(out->limits.connections, 7u);

  // null, {} and null fields are the same as absent.
  for (const char* limits : {"null", "{}", R"({"rate":null,"burst":null,"connections":null})"}) {
    auto r = decode_request(add_with_limits(limits));
    ASSERT_TRUE(r.ok()) << limits << ": " << r.error().message;
    EXPECT_TRUE(r->limits.empty()) << limits;
  }
  auto r = decode_request(add_with_limits(R"({"rate":null,"burst":5})"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->limits.rate.has_value());
  EXPECT_EQ(r->limits.burst, 5u);
}

TEST(ControlProtocol, ValidateLimitsNamesTheField) {
  EXPECT_TRUE(validate_limits({}).ok());
  EXPECT_TRUE(validate_limits({0.0, 1, 1}).ok());
  EXPECT_TRUE(validate_limits({1e6, 1000000, 1000000}).ok());
  struct Bad {
    TenantLimits limits;
    const char* message;
  };
  for (const Bad& b : {
           Bad{{-1.0, {}, {}},
               "limits.rate: must be from 0 (no limit) to 1000000 requests per second"},
           Bad{{1e6 + 1, {}, {}},
               "limits.rate: must be from 0 (no limit) to 1000000 requests per second"},
           Bad{{std::nan(""), {}, {}}, "limits.rate: "},
           Bad{{HUGE_VAL, {}, {}}, "limits.rate: "},
           Bad{{{}, 0u, {}}, "limits.burst: must be an integer from 1 to 1000000"},
           Bad{{{}, 1000001u, {}}, "limits.burst: must be an integer from 1 to 1000000"},
           Bad{{{}, {}, 0u}, "limits.connections: must be an integer from 1 to 1000000"},
           Bad{{{}, {}, UINT32_MAX}, "limits.connections: must be an integer from 1 to 1000000"},
       }) {
    Status s = validate_limits(b.limits);
    ASSERT_FALSE(s.ok()) << b.message;
    EXPECT_EQ(s.error().code, nsproxy::Code::kBadRequest);
    EXPECT_EQ(s.error().message.rfind(b.message, 0), 0u) << s.error().message;
  }
}

TEST(ControlProtocol, LimitsJsonHasOnlyTheSetFields) {
  EXPECT_EQ(limits_json({}), nlohmann::json::object());
  EXPECT_EQ(limits_json({2.5, {}, 9u}), (nlohmann::json{{"rate", 2.5}, {"connections", 9}}));
}

TEST(ControlProtocol, TooManyListenersIsRefused) {
  nlohmann::json ls = nlohmann::json::array();
  for (size_t i = 0; i <= kMaxListeners; ++i) {
    ls.push_back(
        {{"listen", "127.0.0.1:" + std::to_string(8000 + i)}, {"upstream", "127.0.0.1:1"}});
  }
  nlohmann::json j = {
      {"version", 1}, {"op", "add"}, {"attachment", {{"id", "x"}}}, {"listeners", ls}};
  auto r = decode_request(j.dump());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("too many listeners"), std::string::npos);
}

TEST(ControlProtocol, RepliesRoundTrip) {
  auto ok = decode_reply(encode_reply(ok_reply({{"deleted", true}})));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->data["deleted"], true);

  auto err = decode_reply(encode_reply(error_reply(
      make_error(nsproxy::Code::kListenerFailed, "listen 127.0.0.1:8080 in /x: busy"))));
  ASSERT_TRUE(err.ok());
  EXPECT_FALSE(err->ok);
  EXPECT_EQ(err->error.code, nsproxy::Code::kListenerFailed);
  EXPECT_EQ(err->error.message, "listen 127.0.0.1:8080 in /x: busy");
}

TEST(ControlProtocol, UndecodableReplyIsAnError) {
  EXPECT_FALSE(decode_reply("{{{").ok());
  EXPECT_FALSE(decode_reply(R"({"version":1})").ok());
}

TEST(ErrorCodes, EveryCodeHasOneNameAndComesBackFromIt) {
  std::set<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(nsproxy::Code::kUnknown); ++i) {
    auto code = static_cast<nsproxy::Code>(i);
    std::string_view name = nsproxy::code_name(code);
    EXPECT_TRUE(names.insert(name).second) << "two codes named " << name;
    EXPECT_EQ(nsproxy::code_from_name(name), code) << name;
  }
  EXPECT_EQ(nsproxy::code_name(nsproxy::Code::kBadRequest), "bad_request");
  EXPECT_EQ(nsproxy::code_name(nsproxy::Code::kNetnsMismatch), "netns_mismatch");
  EXPECT_EQ(nsproxy::code_from_name("no_such_code"), nsproxy::Code::kUnknown);
}

TEST(ErrorCodes, AReplyWithAnUnknownCodeKeepsItInTheMessage) {
  auto r = decode_reply(R"({"version":1,"ok":false,"error":{"code":"shiny_new","message":"no"}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->error.code, nsproxy::Code::kUnknown);
  EXPECT_EQ(r->error.message, "no (code \"shiny_new\")");
  auto back =
      decode_reply(encode_reply(error_reply(nsproxy::make_error(nsproxy::Code::kNotServing, "x"))));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->error.code, nsproxy::Code::kNotServing);
  EXPECT_NE(encode_reply(error_reply(nsproxy::make_error(nsproxy::Code::kNotServing, "x")))
                .find("\"code\":\"not_serving\""),
            std::string::npos);
}

}  // namespace
}  // namespace nsproxy
