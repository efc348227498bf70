// How http mode rewrites message heads, as pure functions over parsed heads (no socket,
// no session): which headers are hop-by-hop, which are identity headers the tenant may
// not send, and the exact request head the upstream gets and response head the tenant
// gets. The session decides framing from http-parser's flags and calls these.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ascii.h"
#include "forward/byte_queue.h"
#include "forward/http/head_fields.h"

namespace nsproxy {

// Header names as CGI-style upstreams (WSGI, Rack, PHP) see them: case-insensitive and
// '_' equal to '-' (both become HTTP_X_TENANT_ID). Identity checks use this form, so
// "X_Tenant_Id" cannot slip past the stripping.
bool cgi_equals(std::string_view a, std::string_view b);
bool cgi_starts_with(std::string_view s, std::string_view prefix);

// Hop-by-hop headers (RFC 9110 7.6.1) plus the framing headers the proxy re-creates.
bool hop_by_hop(std::string_view name);

// Calls f(token) on each comma-separated token of a header value, trimmed of spaces and
// tabs (empty tokens skipped), until f returns true; returns whether one did.
template <class F>
bool any_token(std::string_view value, F f) {
  size_t i = 0;
  while (i < value.size()) {
    size_t j = value.find(',', i);
    if (j == std::string_view::npos) j = value.size();
    std::string_view tok = value.substr(i, j - i);
    size_t a = tok.find_first_not_of(" \t");
    if (a != std::string_view::npos) {
      size_t b = tok.find_last_not_of(" \t");
      if (f(tok.substr(a, b - a + 1))) return true;
    }
    i = j + 1;
  }
  return false;
}

// The header names a head's Connection headers list (such headers are hop-by-hop),
// gathered in one pass and sorted, so checking every header of a head costs
// O(n log n), not one scan of the head per header: a 32 KB head of thousands of
// headers would otherwise take the loop, and every tenant on it, for a second.
class ConnectionListed {
 public:
  explicit ConnectionListed(const HeadFields& h);
  bool contains(std::string_view name) const;

 private:
  std::vector<std::string_view> names_;  // sorted case-insensitively, without duplicates
};
// Only token characters (RFC 9110 5.6.2): "Host : x" (whitespace before the colon) is a
// smuggling shape that http-parser tolerates.
bool valid_header_name_piece(std::string_view piece);
// Transfer-Encoding is exactly one "chunked" over all the head's Transfer-Encoding
// headers: another coding (gzip, chunked) would reach the upstream without its coding,
// since the body is re-framed.
bool chunked_only(const HeadFields& h);

// Who the daemon says is calling, and the header names it owns.
struct Identity {
  std::string_view tenant_id;
  const std::map<std::string, std::string>* labels = nullptr;
  std::string_view tenant_header;        // the registration's (or the daemon's default)
  std::string_view label_header_prefix;  // the same
  // The daemon's defaults: stripped too when a registration chose other names.
  std::string_view default_tenant_header;
  std::string_view default_label_header_prefix;
  std::string_view peer_ip;  // the tenant's address in its namespace
};

// Whether a header the tenant sent names an identity: every version of it is dropped.
bool identity_header(std::string_view name, const Identity& id);

// The body framing of a request as parsed.
struct RequestFraming {
  bool chunked = false;
  bool has_length = false;  // a Content-Length header (possibly 0)
  uint64_t content_length = 0;
  bool upgrade = false;
};

// The request head the upstream gets, appended to q: always HTTP/1.1; the tenant's
// headers minus hop-by-hop ones, those its Connection header lists, and every identity
// header; then the identity (tenant id, labels, X-Forwarded-For, Forwarded) and the
// framing and upgrade headers the proxy owns.
void append_request_head(ByteQueue* q, std::string_view method, const HeadFields& request,
                         const RequestFraming& framing, const Identity& id);

// A final response head as parsed, and what the request asked for.
struct ResponseFacts {
  int status = 0;
  bool chunked = false;
  bool has_length = false;
  uint64_t content_length = 0;
  bool head_request = false;  // the request was HEAD
  bool http10 = false;        // the tenant spoke HTTP/1.0
  bool upgrade_requested = false;
};

// How the response goes to the tenant.
struct ResponsePlan {
  bool chunked_out = false;  // re-chunked towards the tenant
  bool keep_alive = true;    // the tenant connection stays open after it
};
// keep_alive: what the request allowed. A body delimited by the upstream's close, a
// refused upgrade, or chunked towards an HTTP/1.0 tenant (sent raw) end the connection.
ResponsePlan plan_response(const ResponseFacts& r, bool keep_alive);

// A piece of a body, appended to q as it is (chunked: as one chunk of its own). The end of
// a chunked body is "0\r\n\r\n".
void append_body(ByteQueue* q, std::string_view piece, bool chunked);

// The response head the tenant gets, appended to q.
void append_response_head(ByteQueue* q, const HeadFields& response, const ResponseFacts& r,
                          const ResponsePlan& plan);

}  // namespace nsproxy
