// The tests' own HTTP/1.1 client: one connection from inside a tenant namespace
// (HttpConn) and the response it reads (HttpResponse). Its parser is deliberately
// independent of the daemon's (it follows RFC 9112 framing: 1xx/204/304/HEAD without a
// body, chunked, Content-Length, or until EOF). Also: building a request, and reading
// the headers out of nsproxy-echo's JSON answer.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "error.h"
#include "unique_fd.h"
#include "wait.h"

namespace nspit {

struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;    // the body arrived with Transfer-Encoding: chunked
  bool until_eof = false;  // the body was delimited by the connection closing
  std::string head;        // raw status line and headers, for messages

  // First header with that name (case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
  // Every value of headers with that name, in order.
  std::vector<std::string> all(std::string_view name) const;
  // The body parsed as JSON (null when it is not JSON).
  nlohmann::json json() const;
  // The head plus the start of the body, for assertion messages.
  std::string describe(size_t body_bytes = 300) const;
};

// One client connection (usually from inside a tenant namespace). Keeps the bytes read
// past the end of a response for the next one (keep-alive, pipelining).
class HttpConn {
 public:
  HttpConn() = default;
  explicit HttpConn(nsproxy::UniqueFd fd) : fd_(std::move(fd)) {}
  // Connects from inside the namespace (connect_in_netns); check ok() / error().
  static HttpConn open(const std::string& netns_path, const std::string& address,
                       Millis timeout = 3000ms);

  bool ok() const { return static_cast<bool>(fd_); }
  const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }

  nsproxy::Status send(std::string_view data, Millis timeout = 10000ms);
  // Reads one response. head_request: the request was HEAD (no body whatever the
  // headers say). The whole response must arrive within timeout.
  nsproxy::Result<HttpResponse> read_response(Millis timeout = 5000ms, bool head_request = false);
  // Reads a response head only (status line and headers), leaving the body unread.
  nsproxy::Result<HttpResponse> read_head(Millis timeout = 5000ms);
  // Reads exactly n bytes (buffered ones first).
  nsproxy::Result<std::string> read_exact(size_t n, Millis timeout = 5000ms);
  // send + read_response.
  nsproxy::Result<HttpResponse> request(std::string_view raw, Millis timeout = 5000ms,
                                        bool head_request = false);
  // Waits for the peer to close (EOF or reset). Returns the bytes that arrived before
  // the close (buffered ones included), or an error on timeout.
  nsproxy::Result<std::string> wait_closed(Millis timeout = 5000ms);
  // Bytes read but not yet consumed by a response.
  const std::string& buffered() const { return buf_; }
  void close() { fd_.reset(); }

 private:
  // Reads more into buf_. Error on timeout; "eof" error when the peer closed.
  nsproxy::Status fill(std::chrono::steady_clock::time_point deadline);

  nsproxy::UniqueFd fd_;
  std::string error_;
  std::string buf_;
  bool eof_ = false;
};

// "METHOD PATH HTTP/1.1\r\nHost: tenant.test\r\n" + extra_headers + "\r\n" + body.
// extra_headers: complete lines, each ending in \r\n.
std::string http_request(const std::string& method, const std::string& path,
                         const std::string& extra_headers = "", const std::string& body = "");

// Values of every header `name` (case-insensitive) in an nsproxy-echo JSON answer
// ({"headers":[[name,value],...]}).
std::vector<std::string> echo_headers(const nlohmann::json& echo, std::string_view name);
// Names of the headers in an nsproxy-echo answer that start with `prefix`
// (case-insensitive), as "name: value" lines.
std::vector<std::string> echo_headers_with_prefix(const nlohmann::json& echo,
                                                  std::string_view prefix);

}  // namespace nspit
