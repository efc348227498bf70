#include "http_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "ascii.h"
#include "sockets.h"
#include "text.h"

namespace nspit {
namespace {

using detail::Clock;
using detail::printable;
using detail::remaining_ms;
using nsproxy::make_error;
using nsproxy::Result;
using nsproxy::Status;

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (nsproxy::iequals(k, name)) return v;
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (nsproxy::iequals(k, name)) out.push_back(v);
  }
  return out;
}

nlohmann::json HttpResponse::json() const {
  auto j = nlohmann::json::parse(body, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

std::string HttpResponse::describe(size_t body_bytes) const {
  return printable(head, 4000) + " | body (" + std::to_string(body.size()) +
         " bytes): " + printable(body, body_bytes);
}

HttpConn HttpConn::open(const std::string& netns_path, const std::string& address, Millis timeout) {
  auto c = connect_in_netns(netns_path, address, timeout);
  HttpConn h;
  if (!c.ok()) {
    h.error_ = c.message;
    return h;
  }
  h.fd_ = std::move(c.fd);
  return h;
}

Status HttpConn::send(std::string_view data, Millis timeout) {
  if (!fd_) return make_error(nsproxy::Code::kIo, "send on a closed connection");
  return send_all(fd_.get(), data, timeout);
}

Status HttpConn::fill(Clock::time_point deadline) {
  if (!fd_) return make_error(nsproxy::Code::kIo, "read on a closed connection");
  if (eof_) return make_error(nsproxy::Code::kEof, "connection closed by the peer");
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(buf, static_cast<size_t>(n));
      return {};
    }
    if (n == 0) {
      eof_ = true;
      return make_error(nsproxy::Code::kEof, "connection closed by the peer");
    }
    if (errno == ECONNRESET) {
      eof_ = true;
      return make_error(nsproxy::Code::kEof, "connection reset by the peer");
    }
    if (errno != EAGAIN && errno != EINTR) return nsproxy::errno_error(nsproxy::Code::kIo, "recv");
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout, "timed out waiting for bytes");
    }
  }
}

Result<HttpResponse> HttpConn::read_head(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    auto st = fill(deadline);
    if (!st.ok()) {
      return make_error(st.error().code,
                        st.error().message + " before a complete response head; got " +
                            std::to_string(buf_.size()) + " bytes: \"" + printable(buf_) + "\"");
    }
  }
  HttpResponse r;
  r.head = buf_.substr(0, end + 4);
  buf_.erase(0, end + 4);
  std::string_view head(r.head);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  size_t sp1 = status_line.find(' ');
  if (sp1 == std::string_view::npos || status_line.substr(0, 5) != "HTTP/") {
    return make_error(nsproxy::Code::kProtocol,
                      "bad status line: \"" + printable(status_line) + "\"");
  }
  r.version = std::string(status_line.substr(0, sp1));
  size_t sp2 = status_line.find(' ', sp1 + 1);
  std::string code(status_line.substr(
      sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1));
  if (code.size() != 3 || !std::isdigit(static_cast<unsigned char>(code[0])) ||
      !std::isdigit(static_cast<unsigned char>(code[1])) ||
      !std::isdigit(static_cast<unsigned char>(code[2]))) {
    return make_error(nsproxy::Code::kProtocol,
                      "bad status code in \"" + printable(status_line) + "\"");
  }
  r.status = std::stoi(code);
  if (sp2 != std::string_view::npos) r.reason = std::string(status_line.substr(sp2 + 1));
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == pos) break;
    std::string_view line = head.substr(pos, e - pos);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line[colon - 1] == ' ') {
      return make_error(nsproxy::Code::kProtocol, "bad header line: \"" + printable(line) + "\"");
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), trim(line.substr(colon + 1)));
    pos = e + 2;
  }
  return r;
}

Result<std::string> HttpConn::read_exact(size_t n, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (buf_.size() < n) {
    auto st = fill(deadline);
    if (!st.ok()) {
      return make_error(st.error().code, st.error().message + " after " +
                                             std::to_string(buf_.size()) + " of " +
                                             std::to_string(n) + " bytes");
    }
  }
  std::string out = buf_.substr(0, n);
  buf_.erase(0, n);
  return out;
}

Result<HttpResponse> HttpConn::read_response(Millis timeout, bool head_request) {
  auto deadline = Clock::now() + timeout;
  auto head = read_head(timeout);
  if (!head) return head.error();
  HttpResponse r = std::move(*head);
  if (head_request || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
    return r;
  }
  auto te = r.header("Transfer-Encoding");
  if (te && te->size() >= 7 && nsproxy::iequals(te->substr(te->size() - 7), "chunked")) {
    r.chunked = true;
    for (;;) {
      size_t e;
      while ((e = buf_.find("\r\n")) == std::string::npos) {
        auto st = fill(deadline);
        if (!st.ok()) {
          return make_error(st.error().code, st.error().message + " in a chunk size line after " +
                                                 std::to_string(r.body.size()) + " body bytes; " +
                                                 r.describe());
        }
      }
      std::string line = buf_.substr(0, e);
      buf_.erase(0, e + 2);
      size_t semi = line.find(';');
      std::string hex = trim(line.substr(0, semi));
      char* endp = nullptr;
      unsigned long long size = std::strtoull(hex.c_str(), &endp, 16);
      if (hex.empty() || *endp != '\0') {
        return make_error(nsproxy::Code::kProtocol,
                          "bad chunk size line \"" + printable(line) + "\" after " +
                              std::to_string(r.body.size()) + " body bytes");
      }
      if (size == 0) {
        // Trailers, then an empty line.
        for (;;) {
          while ((e = buf_.find("\r\n")) == std::string::npos) {
            auto st = fill(deadline);
            if (!st.ok()) return make_error(st.error().code, st.error().message + " in trailers");
          }
          bool empty = e == 0;
          buf_.erase(0, e + 2);
          if (empty) break;
        }
        return r;
      }
      auto data = read_exact(static_cast<size_t>(size) + 2, Millis(remaining_ms(deadline)));
      if (!data) {
        return make_error(data.error().code, data.error().message + " in a chunk after " +
                                                 std::to_string(r.body.size()) + " body bytes");
      }
      if (data->compare(size, 2, "\r\n") != 0) {
        return make_error(
            nsproxy::Code::kProtocol,
            "chunk not followed by CRLF after " + std::to_string(r.body.size()) + " body bytes");
      }
      r.body.append(*data, 0, static_cast<size_t>(size));
    }
  }
  auto cl = r.header("Content-Length");
  if (cl) {
    char* endp = nullptr;
    unsigned long long n = std::strtoull(cl->c_str(), &endp, 10);
    if (cl->empty() || *endp != '\0') {
      return make_error(nsproxy::Code::kProtocol, "bad Content-Length: " + r.describe());
    }
    auto data = read_exact(static_cast<size_t>(n), Millis(remaining_ms(deadline)));
    if (!data) {
      return make_error(data.error().code,
                        data.error().message + " of the body; head: " + printable(r.head));
    }
    r.body = std::move(*data);
    return r;
  }
  // Delimited by the close of the connection.
  r.until_eof = true;
  for (;;) {
    auto st = fill(deadline);
    if (!st.ok()) {
      if (st.error().code == nsproxy::Code::kEof) break;
      return make_error(st.error().code, st.error().message + " reading a body delimited by EOF");
    }
  }
  r.body = std::move(buf_);
  buf_.clear();
  return r;
}

Result<HttpResponse> HttpConn::request(std::string_view raw, Millis timeout, bool head_request) {
  auto st = send(raw, timeout);
  if (!st.ok()) return st.error();
  return read_response(timeout, head_request);
}

Result<std::string> HttpConn::wait_closed(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto st = fill(deadline);
    if (!st.ok()) {
      if (st.error().code == nsproxy::Code::kEof) {
        std::string out = std::move(buf_);
        buf_.clear();
        return out;
      }
      return make_error(st.error().code, "the connection stayed open for " +
                                             std::to_string(timeout.count()) + " ms; received \"" +
                                             printable(buf_) + "\"");
    }
  }
}

std::string http_request(const std::string& method, const std::string& path,
                         const std::string& extra_headers, const std::string& body) {
  return method + " " + path + " HTTP/1.1\r\nHost: tenant.test\r\n" + extra_headers + "\r\n" + body;
}

std::vector<std::string> echo_headers(const nlohmann::json& echo, std::string_view name) {
  std::vector<std::string> out;
  if (!echo.is_object() || !echo.contains("headers") || !echo["headers"].is_array()) return out;
  for (const auto& h : echo["headers"]) {
    if (h.is_array() && h.size() == 2 && nsproxy::iequals(h[0].get<std::string>(), name)) {
      out.push_back(h[1].get<std::string>());
    }
  }
  return out;
}

std::vector<std::string> echo_headers_with_prefix(const nlohmann::json& echo,
                                                  std::string_view prefix) {
  std::vector<std::string> out;
  if (!echo.is_object() || !echo.contains("headers") || !echo["headers"].is_array()) return out;
  for (const auto& h : echo["headers"]) {
    if (!h.is_array() || h.size() != 2) continue;
    auto k = h[0].get<std::string>();
    if (k.size() >= prefix.size() &&
        nsproxy::iequals(std::string_view(k).substr(0, prefix.size()), prefix)) {
      out.push_back(k + ": " + h[1].get<std::string>());
    }
  }
  return out;
}

}  // namespace nspit
