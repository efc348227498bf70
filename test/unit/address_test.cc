#include "address.h"

#include <gtest/gtest.h>

namespace nsproxy {
namespace {

TEST(Address, ParsesIpv4WithPort) {
  auto a = parse_address("127.0.0.1:8080", false);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->family(), AF_INET);
  EXPECT_EQ(a->text, "127.0.0.1:8080");
}

TEST(Address, ParsesBracketedIpv6) {
  auto a = parse_address("[::1]:80", false);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->family(), AF_INET6);
  EXPECT_EQ(a->text, "[::1]:80");
}

TEST(Address, ParsesUnixOnlyWhenAllowed) {
  EXPECT_TRUE(parse_address("unix:/run/app.sock", true).ok());
  auto a = parse_address("unix:/run/app.sock", false);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, "bad_address");
  EXPECT_FALSE(parse_address("unix:relative", true).ok());
}

TEST(Address, RefusesBadInputWithReason) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:80x", "localhost:80", "::1:80", "[::1]80", "[::1:80",
                          "300.1.1.1:80", ":80"}) {
    auto a = parse_address(bad, true);
    EXPECT_FALSE(a.ok()) << bad;
    if (!a.ok()) {
      EXPECT_NE(a.error().message.find("invalid address"), std::string::npos);
    }
  }
  auto a = parse_address("localhost:80", false);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("host names are not resolved"), std::string::npos);
}

}  // namespace
}  // namespace nsproxy
