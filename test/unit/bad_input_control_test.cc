// docs/bad-input.md, control messages: every decode error of decode_request that the
// table lists, each with its exact code and message.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "control_protocol.h"

namespace nsproxy {
namespace {

using nlohmann::json;

json listener() {
  return {{"listen", "127.0.0.1:8080"}, {"upstream", "127.0.0.1:1"}};
}

// A valid add request; each case breaks one thing.
json valid_add() {
  return {{"version", 1},
          {"op", "add"},
          {"attachment", {{"network", "net1"}, {"id", "c0ffee"}, {"ifname", "eth0"}}},
          {"netns", "/run/netns/t1"},
          {"listeners", json::array({listener()})}};
}

json valid_gc() {
  return {{"version", 1},
          {"op", "gc"},
          {"attachment", {{"network", "net1"}}},
          {"valid_attachments", json::array({{{"id", "a"}, {"ifname", "eth0"}}})}};
}

struct Case {
  const char* name;
  json request;
  const char* code;
  std::string message;  // exact
};

class BadInputControlDecode : public ::testing::TestWithParam<Case> {};

TEST_P(BadInputControlDecode, ExactCodeAndMessage) {
  const Case& c = GetParam();
  std::string text = c.request.dump();
  auto r = decode_request(text);
  ASSERT_FALSE(r.ok()) << text.substr(0, 300);
  EXPECT_EQ(code_name(r.error().code), c.code);  // the name a reply carries
  EXPECT_EQ(r.error().message, c.message);
}

json with(json j, const json::json_pointer& where, json value) {
  j[where] = std::move(value);
  return j;
}

json without(json j, const json::json_pointer& where) {
  j[where.parent_pointer()].erase(where.back());
  return j;
}

json many_labels(size_t n) {
  json l = json::object();
  for (size_t i = 0; i < n; ++i) l["k" + std::to_string(i)] = "v";
  return l;
}

json many_valid_attachments(size_t n) {
  json a = json::array();
  for (size_t i = 0; i < n; ++i) a.push_back({{"id", "c" + std::to_string(i)}});
  return a;
}

using P = json::json_pointer;
const std::string kNul("a\0b", 3);

std::vector<Case> cases() {
  return {
      // op
      {"OpMissing", without(valid_add(), P("/op")), "bad_request", "missing field \"op\""},
      {"OpNull", with(valid_add(), P("/op"), nullptr), "bad_request", "missing field \"op\""},
      {"OpNotString", with(valid_add(), P("/op"), 7), "bad_request",
       "field \"op\" must be a string"},
      // attachment
      {"AttachmentNotObject", with(valid_add(), P("/attachment"), "net1/c0ffee"), "bad_request",
       "\"attachment\" must be an object"},
      {"AttachmentArray", with(valid_add(), P("/attachment"), json::array()), "bad_request",
       "\"attachment\" must be an object"},
      {"AddIdMissing", without(valid_add(), P("/attachment/id")), "bad_request",
       "missing field \"id\""},
      {"AddIdEmpty", with(valid_add(), P("/attachment/id"), ""), "bad_request",
       "field \"id\" must not be empty"},
      {"DelIdMissing", json{{"version", 1}, {"op", "del"}, {"attachment", {{"network", "n"}}}},
       "bad_request", "missing field \"id\""},
      {"CheckIdEmpty", json{{"version", 1}, {"op", "check"}, {"attachment", {{"id", ""}}}},
       "bad_request", "field \"id\" must not be empty"},
      // string bounds
      {"IdTooLong", with(valid_add(), P("/attachment/id"), std::string(257, 'a')), "bad_request",
       "field \"id\" is longer than 256"},
      {"NetworkTooLong", with(valid_add(), P("/attachment/network"), std::string(257, 'n')),
       "bad_request", "field \"network\" is longer than 256"},
      {"IfnameTooLong", with(valid_add(), P("/attachment/ifname"), std::string(257, 'i')),
       "bad_request", "field \"ifname\" is longer than 256"},
      {"NetnsTooLong", with(valid_add(), P("/netns"), "/" + std::string(4096, 'x')), "bad_request",
       "field \"netns\" is longer than 4096"},
      {"ListenTooLong", with(valid_add(), P("/listeners/0/listen"), std::string(257, '1')),
       "bad_request", "listeners[0]: field \"listen\" is longer than 256"},
      {"UpstreamTooLong",
       with(valid_add(), P("/listeners/0/upstream"), "unix:/" + std::string(4091, 'u')),
       "bad_request", "listeners[0]: field \"upstream\" is longer than 4096"},
      {"ModeTooLong", with(valid_add(), P("/listeners/0/mode"), std::string(17, 'm')),
       "bad_request", "listeners[0]: field \"mode\" is longer than 16"},
      {"ProxyProtocolTooLong",
       with(valid_add(), P("/listeners/0/proxy_protocol"), std::string(17, 'p')), "bad_request",
       "listeners[0]: field \"proxy_protocol\" is longer than 16"},
      // NUL
      {"NetnsNul", with(valid_add(), P("/netns"), "/run/netns/" + kNul), "bad_request",
       "field \"netns\" contains NUL"},
      {"IdNul", with(valid_add(), P("/attachment/id"), kNul), "bad_request",
       "field \"id\" contains NUL"},
      {"OpNul", with(valid_add(), P("/op"), "add" + kNul), "bad_request",
       "field \"op\" contains NUL"},
      {"UpstreamNul", with(valid_add(), P("/listeners/0/upstream"), "unix:/" + kNul), "bad_request",
       "listeners[0]: field \"upstream\" contains NUL"},
      // listeners
      {"ListenersNotArray", with(valid_add(), P("/listeners"), listener()), "bad_request",
       "\"listeners\" must be an array"},
      {"ListenerNotObject", with(valid_add(), P("/listeners/0"), "127.0.0.1:8080"), "bad_request",
       "listeners[0] must be an object"},
      {"SecondListenerNotObject", with(valid_add(), P("/listeners/1"), 1), "bad_request",
       "listeners[1] must be an object"},
      {"ProxyProtocolV3", with(valid_add(), P("/listeners/0/proxy_protocol"), "v3"), "bad_request",
       "listeners[0].proxy_protocol: must be \"none\" or \"v2\", got \"v3\""},
      {"ProxyProtocolV2OnHttp",
       with(with(valid_add(), P("/listeners/0/proxy_protocol"), "v2"), P("/listeners/0/mode"),
            "http"),
       "bad_request", "listeners[0].proxy_protocol: only tcp listeners send a PROXY header"},
      {"ProxyProtocolV2DefaultModeIsHttp",
       with(valid_add(), P("/listeners/0/proxy_protocol"), "v2"), "bad_request",
       "listeners[0].proxy_protocol: only tcp listeners send a PROXY header"},
      // labels
      {"LabelsNotObject", with(valid_add(), P("/labels"), json::array({"a=b"})), "bad_request",
       "\"labels\" must be an object of strings"},
      {"LabelsString", with(valid_add(), P("/labels"), "a=b"), "bad_request",
       "\"labels\" must be an object of strings"},
      {"TooManyLabels", with(valid_add(), P("/labels"), many_labels(65)), "bad_request",
       "too many labels (max 64)"},
      {"LabelNameEmpty", with(valid_add(), P("/labels"), json{{"", "v"}}), "bad_request",
       "label name \"\" must be 1-63 characters"},
      {"LabelNameTooLong", with(valid_add(), P("/labels"), json{{std::string(64, 'k'), "v"}}),
       "bad_request", "label name \"" + std::string(64, 'k') + "\" must be 1-63 characters"},
      {"LabelValueTooLong", with(valid_add(), P("/labels"), json{{"k", std::string(1025, 'v')}}),
       "bad_request", "label \"k\" value is too long"},
      {"LabelValueNewline", with(valid_add(), P("/labels"), json{{"k", "a\nb"}}), "bad_request",
       "label \"k\" value contains a control character"},
      {"LabelValueDel", with(valid_add(), P("/labels"), json{{"k", "a\x7f"}}), "bad_request",
       "label \"k\" value contains a control character"},
      {"LabelValueNul", with(valid_add(), P("/labels"), json{{"k", kNul}}), "bad_request",
       "label \"k\" value contains a control character"},
      // headers
      {"HeadersNotObject", with(valid_add(), P("/headers"), "X-Tenant"), "bad_request",
       "\"headers\" must be an object"},
      {"HeadersUnknownKey", with(valid_add(), P("/headers"), json{{"x", "X-A"}}), "bad_request",
       "headers.x: unknown key"},
      {"HeadersTenantIdNotString", with(valid_add(), P("/headers"), json{{"tenant_id", 1}}),
       "bad_request", "headers.tenant_id must be a string"},
      {"HeadersLabelPrefixNotString",
       with(valid_add(), P("/headers"), json{{"label_prefix", json::array()}}), "bad_request",
       "headers.label_prefix must be a string"},
      {"HeadersTenantIdNotHeaderName", with(valid_add(), P("/headers"), json{{"tenant_id", "a b"}}),
       "bad_request",
       "headers.tenant_id: \"a b\" is not a valid header name (1-64 token characters)"},
      {"HeadersTenantIdEmpty", with(valid_add(), P("/headers"), json{{"tenant_id", ""}}),
       "bad_request", "headers.tenant_id: \"\" is not a valid header name (1-64 token characters)"},
      {"HeadersLabelPrefixTooLong",
       with(valid_add(), P("/headers"), json{{"label_prefix", std::string(65, 'X')}}),
       "bad_request",
       "headers.label_prefix: \"" + std::string(65, 'X') +
           "\" is not a valid header name (1-64 token characters)"},
      {"HeadersLabelPrefixColon", with(valid_add(), P("/headers"), json{{"label_prefix", "X:"}}),
       "bad_request",
       "headers.label_prefix: \"X:\" is not a valid header name (1-64 token characters)"},
      // limits
      {"LimitsNotObject", with(valid_add(), P("/limits"), json::array()), "bad_request",
       "\"limits\" must be an object like {\"rate\":10,\"burst\":20,\"connections\":100}"},
      {"LimitsUnknownKey", with(valid_add(), P("/limits"), json{{"max_connections", 5}}),
       "bad_request", "limits.max_connections: unknown key (expected rate, burst, connections)"},
      {"LimitsRateNotNumber", with(valid_add(), P("/limits"), json{{"rate", "10/s"}}),
       "bad_request", "limits.rate: must be a number (requests per second)"},
      {"LimitsRateNegative", with(valid_add(), P("/limits"), json{{"rate", -1}}), "bad_request",
       "limits.rate: must be from 0 (no limit) to 1000000 requests per second"},
      {"LimitsBurstZero", with(valid_add(), P("/limits"), json{{"burst", 0}}), "bad_request",
       "limits.burst: must be an integer from 1 to 1000000, got 0"},
      {"LimitsBurstFraction", with(valid_add(), P("/limits"), json{{"burst", 1.5}}), "bad_request",
       "limits.burst: must be an integer from 1 to 1000000, got 1.5"},
      {"LimitsConnectionsTooLarge", with(valid_add(), P("/limits"), json{{"connections", 1000001}}),
       "bad_request", "limits.connections: must be an integer from 1 to 1000000, got 1000001"},
      {"LimitsConnectionsNotNumber", with(valid_add(), P("/limits"), json{{"connections", "100"}}),
       "bad_request", "limits.connections: must be an integer from 1 to 1000000, got \"100\""},
      // valid_attachments
      {"ValidAttachmentsNotArray", with(valid_gc(), P("/valid_attachments"), json::object()),
       "bad_request", "\"valid_attachments\" must be an array"},
      {"TooManyValidAttachments",
       with(valid_gc(), P("/valid_attachments"), many_valid_attachments(30001)), "bad_request",
       "too many valid_attachments"},
      {"ValidAttachmentWithoutId",
       with(valid_gc(), P("/valid_attachments/1"), json{{"ifname", "eth0"}}), "bad_request",
       "missing field \"id\""},
      {"ValidAttachmentEmptyId", with(valid_gc(), P("/valid_attachments/0/id"), ""), "bad_request",
       "field \"id\" must not be empty"},
      // An entry that is not an object is reported with the word "attachment".
      {"ValidAttachmentNotObject", with(valid_gc(), P("/valid_attachments/0"), "a"), "bad_request",
       "\"attachment\" must be an object"},
      {"ValidAttachmentsOnAdd", with(valid_add(), P("/valid_attachments"), json::array()),
       "bad_request", "\"valid_attachments\" belongs to gc requests only"},
  };
}

INSTANTIATE_TEST_SUITE_P(BadInput, BadInputControlDecode, ::testing::ValuesIn(cases()),
                         [](const auto& p) { return std::string(p.param.name); });

// The address parser's reason is its own business; the control layer must name the
// field and quote the input.
TEST(BadInputControl, BadUpstreamAddressNamesTheField) {
  for (const char* upstream : {"localhost:80", "127.0.0.1", "nonsense", "unix:", "[::1:80"}) {
    json j = with(valid_add(), P("/listeners/0/upstream"), upstream);
    auto r = decode_request(j.dump());
    ASSERT_FALSE(r.ok()) << upstream;
    EXPECT_EQ(r.error().code, nsproxy::Code::kBadRequest);
    std::string prefix =
        std::string("listeners[0].upstream: invalid address \"") + upstream + "\": ";
    EXPECT_EQ(r.error().message.substr(0, prefix.size()), prefix) << r.error().message;
    EXPECT_GT(r.error().message.size(), prefix.size()) << "no reason given";
  }
}

// Bounds are inclusive: exactly the limit is accepted.
TEST(BadInputControl, LimitsAreInclusive) {
  json j = valid_add();
  j["attachment"]["id"] = std::string(256, 'a');
  j["netns"] = "/" + std::string(4095, 'x');
  j["labels"] = many_labels(63);
  j["labels"][std::string(63, 'k')] = std::string(1024, 'v');
  j["headers"] = {{"tenant_id", std::string(64, 'T')}};
  j["limits"] = {{"rate", 1000000}, {"burst", 1000000}, {"connections", 1000000}};
  auto r = decode_request(j.dump());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->labels.size(), 64u);
  EXPECT_EQ(r->limits, (TenantLimits{1e6, 1000000, 1000000}));

  json gc = with(valid_gc(), P("/valid_attachments"), many_valid_attachments(30000));
  auto g = decode_request(gc.dump());
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->valid_attachments.size(), 30000u);
}

}  // namespace
}  // namespace nsproxy
