// Socket addresses as operators write them:
//   "127.0.0.1:8080", "[::1]:8080", "169.254.169.254:80"  (IPv4/IPv6 literal + port)
//   "unix:/run/app.sock"                                   (upstreams only)
// Host names are refused on purpose: resolving them would block the daemon's loop.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "error.h"

namespace nsproxy {

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // canonical text form, for messages

  int family() const { return storage.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Parses an address. Unix paths are accepted only with allow_unix.
// Errors have code "bad_address" and a message naming the text and the reason.
Result<Address> parse_address(std::string_view text, bool allow_unix);

// The IP part of an IPv4/IPv6 address, without port or brackets ("169.254.169.254").
std::string address_ip(const Address& a);

// Whether nsproxy may add this listen address to a namespace's `lo` on request
// ("addAddress"): link-local IPv4 169.254.0.0/16, or unique-local IPv6 fc00::/7 (the
// metadata-service shapes: 169.254.169.254, fd00:ec2::254). Other addresses belong to the
// tenant's own network plan. Error code "bad_address" names the address and the ranges.
Status check_service_address(const Address& a);

// Formats a socket address as "ip:port" / "[ip6]:port" / "unix:/path".
std::string format_sockaddr(const sockaddr* sa, socklen_t len);

}  // namespace nsproxy
