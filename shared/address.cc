#include "address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>

namespace nsproxy {
namespace {

Error bad(std::string_view text, const char* why) {
  return make_error(Code::kBadAddress, "invalid address \"" + std::string(text) + "\": " + why);
}

bool parse_port(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

Result<Address> parse_address(std::string_view text, bool allow_unix) {
  Address a;
  if (text.starts_with("unix:")) {
    if (!allow_unix) return bad(text, "unix sockets are only allowed for upstreams");
    std::string_view path = text.substr(5);
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    if (path.empty() || path[0] != '/') return bad(text, "unix path must be absolute");
    if (path.size() >= sizeof un->sun_path) return bad(text, "unix path too long");
    if (path.find('\0') != std::string_view::npos) return bad(text, "unix path contains NUL");
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.data(), path.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    a.text = std::string(text);
    return a;
  }

  std::string_view host, port_text;
  if (text.starts_with("[")) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad(text, "missing ']'");
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad(text, "missing :port");
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad(text, "missing :port");
    host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return bad(text, "IPv6 addresses must be written in brackets, e.g. [::1]:8080");
    }
    port_text = text.substr(colon + 1);
  }
  uint16_t port = 0;
  if (!parse_port(port_text, &port)) return bad(text, "port must be a number from 1 to 65535");
  if (host.empty() || host.size() >= INET6_ADDRSTRLEN) return bad(text, "missing IP address");
  char buf[INET6_ADDRSTRLEN] = {};
  std::memcpy(buf, host.data(), host.size());

  if (text.starts_with("[")) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) {
      return bad(text, "not an IPv6 address (host names are not resolved)");
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    a.length = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    if (inet_pton(AF_INET, buf, &in4->sin_addr) != 1) {
      return bad(text, "not an IPv4 address (host names are not resolved)");
    }
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    a.length = sizeof(sockaddr_in);
  }
  a.text = format_sockaddr(a.sa(), a.length);
  return a;
}

std::string address_ip(const Address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr, buf, sizeof buf);
  } else if (a.family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

Status check_service_address(const Address& a) {
  if (a.family() == AF_INET) {
    uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr.s_addr);
    if ((ip >> 16) == 0xA9FE) return {};  // 169.254.0.0/16
  } else if (a.family() == AF_INET6) {
    const auto& b = reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr.s6_addr;
    if ((b[0] & 0xFE) == 0xFC) return {};  // fc00::/7
  }
  return make_error(Code::kBadAddress,
                    address_ip(a) +
                        " is not a link-local IPv4 (169.254.0.0/16) or unique-local "
                        "IPv6 (fc00::/7) address; nsproxy adds only those to lo");
}

std::string format_sockaddr(const sockaddr* sa, socklen_t len) {
  char buf[INET6_ADDRSTRLEN] = {};
  switch (sa->sa_family) {
    case AF_INET: {
      auto* in4 = reinterpret_cast<const sockaddr_in*>(sa);
      inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(ntohs(in4->sin_port));
    }
    case AF_INET6: {
      auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
      return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    case AF_UNIX: {
      auto* un = reinterpret_cast<const sockaddr_un*>(sa);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      std::string path(un->sun_path, strnlen(un->sun_path, n));
      return "unix:" + path;
    }
    default:
      return "?";
  }
}

}  // namespace nsproxy
