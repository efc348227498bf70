#include "forward/proxy_protocol.h"

#include <netinet/in.h>

#include <cstring>

namespace nsproxy {
namespace {

constexpr char kSignature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                 '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr size_t kFixedLength = 16;  // signature, ver_cmd, family, length
constexpr size_t kTlvHead = 3;       // type, length (2)
constexpr uint8_t kVersion2Proxy = 0x21;
constexpr uint8_t kVersion2Local = 0x20;
constexpr uint8_t kTcpOverIpv4 = 0x11;
constexpr uint8_t kTcpOverIpv6 = 0x21;
constexpr uint8_t kUnspec = 0x00;
constexpr size_t kIpv4Block = 12;
constexpr size_t kIpv6Block = 36;

void put16(std::string* out, size_t v) {
  out->push_back(static_cast<char>((v >> 8) & 0xff));
  out->push_back(static_cast<char>(v & 0xff));
}

void put_tlv(std::string* out, uint8_t type, std::string_view a, std::string_view b = {},
             std::string_view c = {}) {
  out->push_back(static_cast<char>(type));
  put16(out, a.size() + b.size() + c.size());
  out->append(a).append(b).append(c);
}

size_t tlv_bytes(std::string_view unique_id, const std::map<std::string, std::string>& labels) {
  size_t n = kTlvHead + unique_id.size();
  for (const auto& [k, v] : labels) n += kTlvHead + k.size() + 1 + v.size();
  return n;
}

// An IPv4 or IPv6 address as 16 bytes (IPv4 mapped) and its port, both network order.
void as_ipv6(const sockaddr* sa, char addr[16], char port[2]) {
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(addr, &in6->sin6_addr, 16);
    std::memcpy(port, &in6->sin6_port, 2);
  } else {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    std::memset(addr, 0, 10);
    addr[10] = addr[11] = static_cast<char>(0xff);
    std::memcpy(addr + 12, &in->sin_addr, 4);
    std::memcpy(port, &in->sin_port, 2);
  }
}

bool is_ip(const sockaddr* sa) {
  return sa != nullptr && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

}  // namespace

Status check_proxy_v2_identity(std::string_view unique_id,
                               const std::map<std::string, std::string>& labels) {
  if (unique_id.empty()) return make_error(Code::kProxyHeader, "PROXY v2: empty tenant id");
  if (unique_id.size() > kProxyV2MaxUniqueId) {
    return make_error(Code::kProxyHeader, "PROXY v2: tenant id is " +
                                              std::to_string(unique_id.size()) +
                                              " bytes, PP2_TYPE_UNIQUE_ID allows at most " +
                                              std::to_string(kProxyV2MaxUniqueId));
  }
  size_t total = kFixedLength + kIpv6Block + tlv_bytes(unique_id, labels);
  if (total > kProxyV2MaxHeader) {
    return make_error(Code::kProxyHeader, "PROXY v2: header with these labels would be " +
                                              std::to_string(total) + " bytes, more than " +
                                              std::to_string(kProxyV2MaxHeader));
  }
  return {};
}

Result<std::string> encode_proxy_v2(const sockaddr* src, const sockaddr* dst,
                                    std::string_view unique_id,
                                    const std::map<std::string, std::string>& labels) {
  if (auto s = check_proxy_v2_identity(unique_id, labels); !s) return s.error();

  std::string out;
  out.reserve(kFixedLength + kIpv6Block + tlv_bytes(unique_id, labels));
  out.append(kSignature, sizeof kSignature);
  size_t block = 0;
  if (!is_ip(src) || !is_ip(dst)) {
    out.push_back(static_cast<char>(kVersion2Local));
    out.push_back(static_cast<char>(kUnspec));
  } else if (src->sa_family == AF_INET && dst->sa_family == AF_INET) {
    out.push_back(static_cast<char>(kVersion2Proxy));
    out.push_back(static_cast<char>(kTcpOverIpv4));
    block = kIpv4Block;
  } else {
    out.push_back(static_cast<char>(kVersion2Proxy));
    out.push_back(static_cast<char>(kTcpOverIpv6));
    block = kIpv6Block;
  }
  put16(&out, block + tlv_bytes(unique_id, labels));

  if (block == kIpv4Block) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(src);
    const auto* d = reinterpret_cast<const sockaddr_in*>(dst);
    out.append(reinterpret_cast<const char*>(&s->sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&d->sin_addr), 4);
    out.append(reinterpret_cast<const char*>(&s->sin_port), 2);
    out.append(reinterpret_cast<const char*>(&d->sin_port), 2);
  } else if (block == kIpv6Block) {
    char saddr[16], daddr[16], sport[2], dport[2];
    as_ipv6(src, saddr, sport);
    as_ipv6(dst, daddr, dport);
    out.append(saddr, 16).append(daddr, 16).append(sport, 2).append(dport, 2);
  }

  put_tlv(&out, kPp2TypeUniqueId, unique_id);
  for (const auto& [k, v] : labels) put_tlv(&out, kPp2TypeTenantLabel, k, "=", v);
  return out;
}

}  // namespace nsproxy
