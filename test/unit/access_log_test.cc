// The access log line is written by hand (no heap allocation per request); it must be
// byte for byte what nlohmann::json::dump(-1, ' ', false, replace) wrote before, for any
// input: invalid UTF-8, control characters, quotes, any duration.
#include "forward/http/access_log.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

namespace nsproxy {
namespace {

using nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string mine_string(std::string_view s) {
  std::string out;
  append_json_string(&out, s);
  return out;
}

std::string mine_number(double v) {
  std::string out;
  append_json_number(&out, v);
  return out;
}

TEST(AccessLogLine, StringEscapesLikeNlohmann) {
  const std::string cases[] = {
      "",
      "/plain/path?q=1&r=2",
      "quote \" backslash \\ slash /",
      std::string("ctl \x01\x02\x08\x09\x0a\x0b\x0c\x0d\x1f\x7f end"),
      std::string("nul \0 inside", 12),
      "utf8 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
      "lone \x80 cont",
      "bad lead \xc0\xaf \xc1\xbf \xf5\x80 \xff",
      "cut \xe2\x82",
      "cut at end \xf0\x9f\x98",
      "\xe2\x82X broken in the middle",
      "overlong \xe0\x80\xaf and surrogate \xed\xa0\x80 and big \xf4\x90\x80\x80",
      "edges \xed\x9f\xbf \xee\x80\x80 \xf0\x90\x80\x80 \xf4\x8f\xbf\xbf",
      "\xf0\x90\x80",
      "\xc2",
  };
  for (const auto& c : cases) {
    EXPECT_EQ(mine_string(c), dump(json(c)))
        << "input bytes: " << json(c).dump(-1, ' ', true, json::error_handler_t::replace);
  }
}

TEST(AccessLogLine, StringRandomBytesLikeNlohmann) {
  std::mt19937 rng(12345);
  // Bytes drawn mostly from the interesting ranges: ASCII controls, continuation bytes,
  // lead bytes (valid and not).
  const unsigned char pool[] = {0x00, 0x01, 0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x1f, 0x20,
                                0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed,
                                0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
  for (int n = 0; n < 20000; ++n) {
    std::string s(rng() % 12, '\0');
    for (auto& ch : s) {
      ch = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : pool[rng() % sizeof pool]);
    }
    ASSERT_EQ(mine_string(s), dump(json(s)))
        << "input bytes: " << json(s).dump(-1, ' ', true, json::error_handler_t::replace);
  }
}

TEST(AccessLogLine, DurationLikeNlohmann) {
  // Durations are whole microseconds expressed in milliseconds: k / 1000.0.
  for (int64_t k = 0; k < 50000; ++k) {
    double v = static_cast<double>(k) / 1000.0;
    ASSERT_EQ(mine_number(v), dump(json(v))) << k;
  }
  std::mt19937_64 rng(7);
  for (int n = 0; n < 30000; ++n) {
    int64_t k = static_cast<int64_t>(rng() % 1000000000000ull);  // up to ~11 days
    double v = static_cast<double>(k) / 1000.0;
    ASSERT_EQ(mine_number(v), dump(json(v))) << k;
  }
  for (double v : {1.0, 10.0, 1000000.0, 123456789.0, 0.5, 2.25}) {
    EXPECT_EQ(mine_number(v), dump(json(v))) << v;
  }
}

TEST(AccessLogLine, WholeLineLikeNlohmann) {
  AccessLogRecord r;
  r.tenant = "cid-\xff\"x";
  r.listen = "127.0.0.1:8080";
  r.method = "GET";
  r.path = "/a\tb?c=\xe2\x82";
  r.status = 404;
  r.bytes_in = 123456789012ull;
  r.bytes_out = 0;
  r.duration_ms = 12.345;
  json j = {{"tenant", r.tenant},       {"listen", r.listen},          {"method", r.method},
            {"path", r.path},           {"status", r.status},          {"bytes_in", r.bytes_in},
            {"bytes_out", r.bytes_out}, {"duration_ms", r.duration_ms}};
  std::string line;
  append_access_log_line(&line, r);
  EXPECT_EQ(line, dump(j));
  r.method = "-";
  r.path = "";
  r.status = 101;
  r.duration_ms = 0;
  j["method"] = "-";
  j["path"] = "";
  j["status"] = 101;
  j["duration_ms"] = 0.0;
  line.clear();
  append_access_log_line(&line, r);
  EXPECT_EQ(line, dump(j));
}

}  // namespace
}  // namespace nsproxy
