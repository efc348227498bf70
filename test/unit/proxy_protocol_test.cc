// PROXY protocol v2 header encoding: exact bytes against the layout of HAProxy's
// proxy-protocol.txt (section 2.2), TLVs, length fields and the bounds.
//
// The unit test binary links nsproxy_shared and the plugin, not the daemon's core
// library: the encoder (one self-contained file) is compiled into this test directly.
#include "forward/proxy_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

namespace nsproxy {
namespace {

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

sockaddr_in v4(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

sockaddr_in6 v6(const char* ip, uint16_t port) {
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  ::inet_pton(AF_INET6, ip, &a.sin6_addr);
  return a;
}

const sockaddr* sa(const void* p) {
  return static_cast<const sockaddr*>(p);
}

constexpr const char* kSignatureHex = "0d0a0d0a000d0a515549540a";

// "team=a" -> e0 0006 7465616d3d61
std::string label_tlv_hex(const std::string& text) {
  char len[5];
  std::snprintf(len, sizeof len, "%04zx", text.size());
  return "e0" + std::string(len) + hex(text);
}

TEST(ProxyProtocolV2, Ipv4ExactBytes) {
  auto src = v4("127.0.0.1", 40000);
  auto dst = v4("127.0.0.1", 8080);
  auto h = encode_proxy_v2(sa(&src), sa(&dst), "tenant-a", {{"team", "a"}});
  ASSERT_TRUE(h) << h.error().message;
  const std::string expected = std::string(kSignatureHex) +
                               "21"    // version 2, PROXY
                               "11"    // TCP over IPv4
                               "0020"  // 12 address bytes + 11 + 9 TLV bytes
                               "7f000001"
                               "7f000001"  // src, dst address
                               "9c40"
                               "1f90"  // src port 40000, dst port 8080
                               "050008" +
                               hex("tenant-a") +          // PP2_TYPE_UNIQUE_ID
                               "e00006" + hex("team=a");  // label
  EXPECT_EQ(hex(*h), expected);
  EXPECT_EQ(h->size(), 16u + 0x20u);
}

TEST(ProxyProtocolV2, Ipv6ExactBytes) {
  auto src = v6("2001:db8::1", 443);
  auto dst = v6("::1", 8443);
  auto h = encode_proxy_v2(sa(&src), sa(&dst), "x", {});
  ASSERT_TRUE(h) << h.error().message;
  const std::string expected = std::string(kSignatureHex) +
                               "21"                                // version 2, PROXY
                               "21"                                // TCP over IPv6
                               "0028"                              // 36 address bytes + 4 TLV bytes
                               "20010db8000000000000000000000001"  // src address
                               "00000000000000000000000000000001"  // dst address
                               "01bb"
                               "20fb"  // ports 443, 8443
                               "050001" +
                               hex("x");
  EXPECT_EQ(hex(*h), expected);
}

TEST(ProxyProtocolV2, MixedFamiliesAreSentAsIpv6WithMappedIpv4) {
  auto src = v4("10.0.0.2", 1);
  auto dst = v6("fe80::1", 2);
  auto h = encode_proxy_v2(sa(&src), sa(&dst), "id", {});
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(hex(h->substr(12, 4)), "21210029");
  EXPECT_EQ(hex(h->substr(16, 16)), "00000000000000000000ffff0a000002");
}

TEST(ProxyProtocolV2, NonIpAddressesAreSentAsLocalUnspecWithTlvs) {
  sockaddr_storage unix_addr{};
  unix_addr.ss_family = AF_UNIX;
  auto dst = v4("127.0.0.1", 80);
  for (auto [s, d] : {std::pair{sa(&unix_addr), sa(&dst)}, std::pair{sa(nullptr), sa(nullptr)}}) {
    auto h = encode_proxy_v2(s, d, "id", {});
    ASSERT_TRUE(h) << h.error().message;
    EXPECT_EQ(hex(*h), std::string(kSignatureHex) +
                           "2000"
                           "0005"
                           "050002" +
                           hex("id"));
  }
}

TEST(ProxyProtocolV2, LabelsAreOneTlvEachInNameOrderAndLengthsAddUp) {
  auto src = v4("192.0.2.1", 1234);
  auto dst = v4("169.254.169.254", 80);
  std::map<std::string, std::string> labels = {
      {"k8s.pod.name", "web-0"}, {"a", ""}, {"team", std::string(300, 'v')}};
  auto h = encode_proxy_v2(sa(&src), sa(&dst), "0123456789abcdef", labels);
  ASSERT_TRUE(h) << h.error().message;
  const std::string tlvs = hex(h->substr(16 + 12));
  EXPECT_EQ(tlvs, "050010" + hex("0123456789abcdef") + label_tlv_hex("a=") +
                      label_tlv_hex("k8s.pod.name=web-0") +
                      label_tlv_hex("team=" + std::string(300, 'v')));
  // The length field counts everything after the 16 fixed bytes.
  size_t len = (static_cast<unsigned char>((*h)[14]) << 8) | static_cast<unsigned char>((*h)[15]);
  EXPECT_EQ(len, h->size() - 16);
  EXPECT_EQ(len, 12 + (3 + 16) + (3 + 2) + (3 + 18) + (3 + 305));
  // A label TLV over 255 bytes uses both length bytes.
  EXPECT_NE(tlvs.find("e00131" + hex("team=")), std::string::npos);
}

TEST(ProxyProtocolV2, UniqueIdBounds) {
  auto src = v4("127.0.0.1", 1);
  auto dst = v4("127.0.0.1", 2);
  auto max = encode_proxy_v2(sa(&src), sa(&dst), std::string(kProxyV2MaxUniqueId, 'a'), {});
  ASSERT_TRUE(max) << max.error().message;
  EXPECT_EQ(hex(max->substr(28, 3)), "050080");

  // Never truncated: a cut id could name another tenant.
  auto over = encode_proxy_v2(sa(&src), sa(&dst), std::string(kProxyV2MaxUniqueId + 1, 'a'), {});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, nsproxy::Code::kProxyHeader);
  EXPECT_NE(over.error().message.find("129 bytes"), std::string::npos) << over.error().message;

  auto empty = encode_proxy_v2(sa(&src), sa(&dst), "", {});
  EXPECT_FALSE(empty);
}

TEST(ProxyProtocolV2, TotalLengthIsBounded) {
  std::map<std::string, std::string> labels;
  for (int i = 0; i < 9; ++i) labels["l" + std::to_string(i)] = std::string(1000, 'v');
  auto src = v6("::1", 1);
  auto dst = v6("::1", 2);
  EXPECT_FALSE(check_proxy_v2_identity("id", labels));
  auto h = encode_proxy_v2(sa(&src), sa(&dst), "id", labels);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("more than 8192"), std::string::npos) << h.error().message;

  labels.erase("l8");
  ASSERT_TRUE(check_proxy_v2_identity("id", labels));
  auto fits = encode_proxy_v2(sa(&src), sa(&dst), "id", labels);
  ASSERT_TRUE(fits) << fits.error().message;
  EXPECT_LE(fits->size(), kProxyV2MaxHeader);
}

}  // namespace
}  // namespace nsproxy
