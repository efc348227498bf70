// One request and its response, as a session of http mode knows them: reset by value
// (`exchange = Exchange{}`) when the tenant starts the next request, so nothing of one
// request can leak into the next.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace nsproxy {

// Why the request head was refused while it was parsed (http-parser only knows "stop").
enum class HeadError { kNone, kTooLarge, kBadHeaderName, kBadTransferEncoding };

struct Exchange {
  // The request.
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  const char* method = nullptr;  // http_method_str(), once the head is in
  size_t head_bytes = 0;
  HeadError head_error = HeadError::kNone;
  bool ready = false;         // head parsed; the upstream must be engaged
  bool req_complete = false;  // the whole request was parsed
  bool req_chunked = false;
  bool has_body = false;
  bool http10 = false;
  bool upgrade = false;
  // The request said it is the tenant's last (Connection: close, or HTTP/1.0 without
  // keep-alive): the tenant sends nothing after it (RFC 9112 9.6).
  bool tenant_closes = false;
  // A bodiless idempotent request: may be replayed once on a fresh connection when a
  // pooled one turns out closed (its head is rebuilt from the parsed fields).
  bool retry_ok = false;
  uint64_t bytes_in = 0;

  // The response.
  int status = 0;
  bool resp_started = false;  // a response head was queued to the tenant
  bool resp_complete = false;
  bool chunked_out = false;  // chunked framing towards the tenant
  bool interim = false;      // the message being parsed is a 1xx
  bool tunnel_next = false;  // 101 accepted: a tunnel after the head
  bool keep_alive = true;    // the tenant connection stays open after this response
  uint64_t bytes_out = 0;
};

}  // namespace nsproxy
