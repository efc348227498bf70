// PROXY protocol version 2 (HAProxy's proxy-protocol.txt, section 2.2), the header a tcp
// listener with "proxy_protocol": "v2" puts in front of the tenant's bytes, so that the
// upstream learns who is calling although the stream itself (e.g. TLS) is opaque to us.
//
// Layout (all lengths and ports in network byte order):
//   0  12  signature \r\n\r\n\0\r\nQUIT\n
//   12  1  0x21: version 2, command PROXY (0x20: LOCAL, see below)
//   13  1  0x11 TCP over IPv4, 0x21 TCP over IPv6, 0x00 UNSPEC
//   14  2  length of everything after these 16 bytes
//   16     IPv4: src addr (4), dst addr (4), src port (2), dst port (2)    = 12 bytes
//          IPv6: src addr (16), dst addr (16), src port (2), dst port (2)  = 36 bytes
//          then TLVs: type (1), length (2), value:
//            0x05 PP2_TYPE_UNIQUE_ID  the tenant id (registration id), 1..128 bytes
//            0xE0 (custom range)      one per label, "name=value", in name order
//
// src/dst are the tenant-side peer and local addresses of the accepted connection (as
// seen inside the tenant's namespace). A mixed IPv4/IPv6 pair is sent as IPv6 with the
// IPv4 address mapped (::ffff:a.b.c.d). Any other family (or none) is sent as LOCAL with
// family UNSPEC and no address block: receivers then use the real connection addresses;
// the TLVs still follow.
//
// The unique id is never truncated (a truncated id could name another tenant): an id
// over 128 bytes, an empty id, or a header over kProxyV2MaxHeader is an error.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "error.h"

namespace nsproxy {

inline constexpr size_t kProxyV2MaxUniqueId = 128;  // the spec's limit for PP2_TYPE_UNIQUE_ID
// Bound on the whole header: far below HAProxy's default buffer (16 KiB) and one chunk.
inline constexpr size_t kProxyV2MaxHeader = 8192;
inline constexpr uint8_t kPp2TypeUniqueId = 0x05;
inline constexpr uint8_t kPp2TypeTenantLabel = 0xE0;

// Whether a tenant's identity fits a v2 header whatever the addresses: the id is 1..128
// bytes and the header stays within kProxyV2MaxHeader. Errors: code "proxy_header".
Status check_proxy_v2_identity(std::string_view unique_id,
                               const std::map<std::string, std::string>& labels);

// The complete header. src/dst may be null (then LOCAL/UNSPEC). Errors as above.
Result<std::string> encode_proxy_v2(const sockaddr* src, const sockaddr* dst,
                                    std::string_view unique_id,
                                    const std::map<std::string, std::string>& labels);

}  // namespace nsproxy
