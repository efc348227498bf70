#include "forward/http/header_rules.h"

#include <algorithm>
#include <cctype>

namespace nsproxy {
namespace {

char cgi_fold(char c) {
  return c == '_' ? '-' : ascii_lower(c);
}

void append_header(ByteQueue* q, std::string_view name, std::string_view value) {
  q->append(name);
  q->append(": ");
  q->append(value);
  q->append("\r\n");
}

// The Upgrade headers of h, then "Connection: upgrade".
void append_upgrade(ByteQueue* q, const HeadFields& h) {
  for (auto [name, value] : h) {
    if (iequals(name, "upgrade")) append_header(q, "Upgrade", value);
  }
  q->append("Connection: upgrade\r\n");
}

}  // namespace

bool cgi_equals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (cgi_fold(a[i]) != cgi_fold(b[i])) return false;
  }
  return true;
}

bool cgi_starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && cgi_equals(s.substr(0, prefix.size()), prefix);
}

bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection",        "keep-alive",       "te",
                                                "trailer",           "proxy-connection", "upgrade",
                                                "transfer-encoding", "content-length"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

ConnectionListed::ConnectionListed(const HeadFields& h) {
  for (auto [n, value] : h) {
    if (!iequals(n, "connection")) continue;
    any_token(value, [this](std::string_view tok) {
      // "close", "keep-alive", "upgrade": hop-by-hop anyway, the common case costs nothing.
      if (!hop_by_hop(tok)) names_.push_back(tok);
      return false;
    });
  }
  std::sort(names_.begin(), names_.end(), iless);
  names_.erase(std::unique(names_.begin(), names_.end(), iequals), names_.end());
}

bool ConnectionListed::contains(std::string_view name) const {
  auto it = std::lower_bound(names_.begin(), names_.end(), name, iless);
  return it != names_.end() && iequals(*it, name);
}

bool valid_header_name_piece(std::string_view piece) {
  for (char ch : piece) {
    auto c = static_cast<unsigned char>(ch);
    if (!std::isalnum(c) &&
        std::string_view("!#$%&'*+-.^_`|~").find(ch) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool chunked_only(const HeadFields& h) {
  size_t codings = 0;
  bool only = true;
  for (auto [name, value] : h) {
    if (!iequals(name, "transfer-encoding")) continue;
    any_token(value, [&](std::string_view tok) {
      ++codings;
      if (!iequals(tok, "chunked")) only = false;
      return false;
    });
  }
  return codings == 1 && only;
}

bool identity_header(std::string_view name, const Identity& id) {
  return cgi_equals(name, id.tenant_header) || cgi_equals(name, id.default_tenant_header) ||
         cgi_starts_with(name, id.label_header_prefix) ||
         cgi_starts_with(name, id.default_label_header_prefix) ||
         cgi_equals(name, "x-forwarded-for") || cgi_equals(name, "forwarded");
}

void append_request_head(ByteQueue* q, std::string_view method, const HeadFields& request,
                         const RequestFraming& framing, const Identity& id) {
  const ConnectionListed listed(request);
  q->append(method);
  q->push_back(' ');
  q->append(request.start());
  q->append(" HTTP/1.1\r\n");
  for (auto [name, value] : request) {
    if (hop_by_hop(name) || listed.contains(name)) continue;
    // Identity is the daemon's to state: drop every version the tenant sent.
    if (identity_header(name, id)) continue;
    append_header(q, name, value);
  }
  append_header(q, id.tenant_header, id.tenant_id);
  if (id.labels != nullptr) {
    for (const auto& [k, v] : *id.labels) {
      q->append(id.label_header_prefix);
      append_header(q, k, v);
    }
  }
  append_header(q, "X-Forwarded-For", id.peer_ip);
  bool v6 = id.peer_ip.find(':') != std::string_view::npos;
  q->append(v6 ? "Forwarded: for=\"[" : "Forwarded: for=");
  q->append(id.peer_ip);
  q->append(v6 ? "]\"\r\n" : "\r\n");
  if (framing.chunked) {
    q->append("Transfer-Encoding: chunked\r\n");
  } else if (framing.has_length) {
    q->append("Content-Length: ");
    q->append_decimal(framing.content_length);
    q->append("\r\n");
  }
  if (framing.upgrade) append_upgrade(q, request);
  q->append("\r\n");
}

void append_body(ByteQueue* q, std::string_view piece, bool chunked) {
  if (!chunked) {
    q->append(piece);
    return;
  }
  q->append_hex(piece.size());
  q->append("\r\n", 2);
  q->append(piece);
  q->append("\r\n", 2);
}

namespace {

// HEAD, 204 and 304 responses never carry a body, nor does a 101's head.
bool without_body(const ResponseFacts& r) {
  return r.head_request || r.status == 204 || r.status == 304 || r.status == 101;
}

}  // namespace

ResponsePlan plan_response(const ResponseFacts& r, bool keep_alive) {
  ResponsePlan plan;
  plan.keep_alive = keep_alive;
  bool until_close = !without_body(r) && !r.chunked && !r.has_length;
  if (until_close) plan.keep_alive = false;  // the body ends with the connection
  if (r.upgrade_requested && r.status != 101) plan.keep_alive = false;
  // HTTP/1.0 tenants cannot read chunked framing: the body goes raw and the close ends it.
  plan.chunked_out = r.chunked && !r.http10;
  if (r.chunked && r.http10) plan.keep_alive = false;
  return plan;
}

void append_response_head(ByteQueue* q, const HeadFields& response, const ResponseFacts& r,
                          const ResponsePlan& plan) {
  const ConnectionListed listed(response);
  const bool no_body = without_body(r);
  q->append(r.http10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  q->append_decimal(static_cast<uint64_t>(r.status));
  q->push_back(' ');
  q->append(response.start());
  q->append("\r\n");
  for (auto [name, value] : response) {
    if (iequals(name, "content-length")) {
      // HEAD and 304 report the entity's length.
      if (no_body && r.status != 101 && r.status != 204) append_header(q, name, value);
      continue;
    }
    if (hop_by_hop(name) || listed.contains(name)) continue;
    append_header(q, name, value);
  }
  if (!no_body) {
    if (plan.chunked_out) {
      q->append("Transfer-Encoding: chunked\r\n");
    } else if (r.has_length) {
      q->append("Content-Length: ");
      q->append_decimal(r.content_length);
      q->append("\r\n");
    }
  }
  if (r.status == 101) {
    append_upgrade(q, response);
  } else if (!plan.keep_alive) {
    q->append("Connection: close\r\n");
  } else if (r.http10) {
    q->append("Connection: keep-alive\r\n");
  }
  q->append("\r\n");
}

}  // namespace nsproxy
