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
  EXPECT_EQ(a.error().code, nsproxy::Code::kBadAddress);
  EXPECT_FALSE(parse_address("unix:relative", true).ok());
}

TEST(Address, RefusesBadInputWithReason) {
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
        "localhost:80", "::1:80", "[::1]80", "[::1:80", "300.1.1.1:80", ":80"}) {
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

TEST(Address, ServiceAddressesAreLinkLocalV4OrUniqueLocalV6) {
  for (const char* ok :
       {"169.254.169.254:80", "169.254.0.1:1", "[fd00:ec2::254]:80", "[fc00::1]:1"}) {
    auto a = parse_address(ok, false);
    ASSERT_TRUE(a.ok()) << ok;
    EXPECT_TRUE(check_service_address(*a)) << ok;
  }
  for (const char* no : {"127.0.0.1:80", "10.0.0.1:80", "169.253.255.255:80", "[::1]:80",
                         "[fe80::1]:80", "[2001:db8::1]:80"}) {
    auto a = parse_address(no, false);
    ASSERT_TRUE(a.ok()) << no;
    Status s = check_service_address(*a);
    EXPECT_FALSE(s) << no;
    if (!s) {
      EXPECT_NE(s.error().message.find(address_ip(*a)), std::string::npos) << s.error().message;
    }
  }
  EXPECT_EQ(address_ip(*parse_address("[fd00:ec2::254]:80", false)), "fd00:ec2::254");
}

}  // namespace
}  // namespace nsproxy
