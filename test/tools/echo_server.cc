// nsproxy-echo: a small upstream server for tests, benchmarks and the demo.
//
//   nsproxy-echo --listen ADDR [--mode echo|http|silent] [--name NAME] [--proxy-protocol]
//
// ADDR is "127.0.0.1:18080", "[::1]:0" or "unix:/path". After listening it prints
// "listening on <actual address>" on stdout (port 0 resolved), then serves any number
// of concurrent connections from one libev loop. SIGTERM/SIGINT exit 0.
//
// Modes:
//   echo    every byte is written back; on client EOF the write side is shut down once
//           everything has been echoed (half-close aware), then the socket is closed.
//   http    HTTP/1.1 server (http-parser): keep-alive, pipelining, Content-Length and
//           chunked bodies (counted, not stored). Answers 200 with a JSON description of
//           the request; GET /bytes/N answers N bytes of 'x'; /status/N answers status N.
//   silent  accepts and reads, never writes (for timeout tests).
//
// --proxy-protocol: every connection must start with a PROXY protocol v2 header (parsed
// here independently of the daemon's encoder). A bad or truncated header closes the
// connection. In echo mode the first line written is
//   PROXY v2 src=IP:PORT dst=IP:PORT unique_id=ID labels=k=v,k2=v2
// (src/dst "-" for a LOCAL header), then the bytes after the header are echoed. In http
// mode the JSON gains "proxy":{"src","dst","unique_id","labels":{..}}. TLVs read:
// 0x05 (PP2_TYPE_UNIQUE_ID) and 0xE0 ("name=value", one label each); others are skipped.
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "address.h"
#include "log.h"
#include "unique_fd.h"

namespace {

enum class Mode { Echo, Http, Silent };

constexpr size_t kReadChunk = 64 * 1024;
// Stop reading while this much is queued for the peer (backpressure).
constexpr size_t kMaxQueued = 1024 * 1024;
constexpr size_t kMaxSendPerWakeup = 256 * 1024;  // see conn_flush

struct Server;

// What a PROXY v2 header said.
struct ProxyInfo {
  std::string src = "-", dst = "-";
  std::string unique_id;
  std::vector<std::pair<std::string, std::string>> labels;  // in header order
};

// One piece of output: literal bytes, or a run of 'x' generated on the fly (/bytes/N).
struct Segment {
  std::string data;
  size_t x_count = 0;
  size_t offset = 0;  // bytes of this segment already sent
  size_t size() const { return data.empty() ? x_count : data.size(); }
};

struct Conn {
  Server* server = nullptr;
  nsproxy::UniqueFd fd;
  ev_io rio{};
  ev_io wio{};
  std::string peer;
  // --proxy-protocol: bytes of a header still incomplete, then what it said.
  bool proxy_done = false;
  std::string proxy_pending;
  ProxyInfo proxy;
  std::deque<Segment> out;
  size_t queued_bytes = 0;   // literal bytes in `out` (x runs are not counted: they use no memory)
  bool read_eof = false;     // peer sent FIN (or we stopped caring about input)
  bool close_after = false;  // close once `out` is drained (http: Connection: close, errors)
  bool wr_shut = false;
  bool draining = false;  // write side shut; discarding input until EOF or linger timeout
  ev_timer linger{};

  // http state
  http_parser parser{};
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  bool last_was_value = false;
  uint64_t body_bytes = 0;
  uint64_t requests = 0;
};

struct Server {
  struct ev_loop* loop = nullptr;
  Mode mode = Mode::Echo;
  std::string name = "nsproxy-echo";
  bool proxy_protocol = false;
  nsproxy::UniqueFd listen_fd;
  ev_io accept_io{};
  ev_timer accept_resume{};
  ev_signal sigterm{}, sigint{};
  std::unordered_set<Conn*> conns;
  http_parser_settings settings{};
};

char g_xbuf[kReadChunk];

void conn_close(Conn* c) {
  Server* s = c->server;
  ev_io_stop(s->loop, &c->rio);
  ev_io_stop(s->loop, &c->wio);
  ev_timer_stop(s->loop, &c->linger);
  s->conns.erase(c);
  delete c;  // UniqueFd closes the socket
}

void queue(Conn* c, std::string data) {
  if (data.empty()) return;
  c->queued_bytes += data.size();
  Segment seg;
  seg.data = std::move(data);
  c->out.push_back(std::move(seg));
}

void queue_x(Conn* c, size_t n) {
  if (n == 0) return;
  Segment seg;
  seg.x_count = n;
  c->out.push_back(std::move(seg));
}

// Starts/stops the watchers to match the connection's state. Returns false if the
// connection was closed (and freed).
bool conn_update(Conn* c) {
  Server* s = c->server;
  if (c->out.empty()) {
    ev_io_stop(s->loop, &c->wio);
    if (c->close_after && !c->read_eof) {
      // Closing with unread input would reset the connection and could destroy the
      // answer in flight: send FIN, then discard input until the peer closes (bounded).
      if (!c->draining) {
        ::shutdown(c->fd.get(), SHUT_WR);
        c->wr_shut = true;
        c->draining = true;
        ev_timer_start(s->loop, &c->linger);
      }
      ev_io_start(s->loop, &c->rio);
      return true;
    }
    if (c->close_after) {
      conn_close(c);
      return false;
    }
    if (c->read_eof) {
      if (s->mode == Mode::Echo && !c->wr_shut) {
        // Half-close: everything echoed, pass the FIN on, then we are done.
        ::shutdown(c->fd.get(), SHUT_WR);
        c->wr_shut = true;
      }
      conn_close(c);
      return false;
    }
  } else {
    ev_io_start(s->loop, &c->wio);
  }
  bool want_read = !c->read_eof && !c->close_after && c->queued_bytes < kMaxQueued;
  if (want_read)
    ev_io_start(s->loop, &c->rio);
  else
    ev_io_stop(s->loop, &c->rio);
  return true;
}

// Sends queued output until the socket takes no more or kMaxSendPerWakeup bytes went
// (the rest goes when the socket is writable again). Returns false on a fatal error.
// The bound keeps the server fair between its connections, as real servers are: without
// it, 300 clients of GET /bytes/10000000 made one loop iteration copy each socket's whole
// buffer (megabytes on loopback) and every other client waited for seconds.
bool conn_flush(Conn* c) {
  size_t sent = 0;
  while (!c->out.empty() && sent < kMaxSendPerWakeup) {
    Segment& seg = c->out.front();
    const char* p;
    size_t n;
    if (!seg.data.empty()) {
      p = seg.data.data() + seg.offset;
      n = seg.data.size() - seg.offset;
    } else {
      p = g_xbuf;
      n = std::min(seg.x_count - seg.offset, sizeof g_xbuf);
    }
    ssize_t w = ::send(c->fd.get(), p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      return false;
    }
    seg.offset += static_cast<size_t>(w);
    sent += static_cast<size_t>(w);
    if (!seg.data.empty()) c->queued_bytes -= static_cast<size_t>(w);
    if (seg.offset == seg.size()) c->out.pop_front();
  }
  return true;
}

// ---------------------------------------------------------------- PROXY protocol v2

constexpr char kProxySignature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T',  '\n'};

std::string ip_port(int family, const unsigned char* addr, const unsigned char* port) {
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, addr, 4);
    std::memcpy(&in->sin_port, port, 2);
    len = sizeof *in;
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, addr, 16);
    std::memcpy(&in6->sin6_port, port, 2);
    len = sizeof *in6;
  }
  return nsproxy::format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

// Parses a v2 header at the start of `in`. Returns its length, 0 when more bytes are
// needed, -1 when it is not a valid header.
long parse_proxy_v2(std::string_view in, ProxyInfo* out) {
  const auto* b = reinterpret_cast<const unsigned char*>(in.data());
  if (std::memcmp(in.data(), kProxySignature, std::min(in.size(), sizeof kProxySignature)) != 0)
    return -1;
  if (in.size() < 16) return 0;
  unsigned ver_cmd = b[12], fam = b[13];
  size_t total = 16 + ((size_t{b[14]} << 8) | b[15]);
  if ((ver_cmd & 0xf0) != 0x20 || (ver_cmd & 0x0f) > 1) return -1;
  if (in.size() < total) return 0;
  size_t pos = 16;
  if (fam == 0x11) {
    if (total < 16 + 12) return -1;
    out->src = ip_port(AF_INET, b + 16, b + 24);
    out->dst = ip_port(AF_INET, b + 20, b + 26);
    pos += 12;
  } else if (fam == 0x21) {
    if (total < 16 + 36) return -1;
    out->src = ip_port(AF_INET6, b + 16, b + 48);
    out->dst = ip_port(AF_INET6, b + 32, b + 50);
    pos += 36;
  } else if (fam != 0x00) {
    return -1;  // UDP, unix: not something a tcp listener sends
  }
  if ((ver_cmd & 0x0f) == 0) out->src = out->dst = "-";  // LOCAL: addresses are not the caller's
  while (pos < total) {
    if (total - pos < 3) return -1;
    unsigned type = b[pos];
    size_t len = (size_t{b[pos + 1]} << 8) | b[pos + 2];
    pos += 3;
    if (total - pos < len) return -1;
    std::string value(in.substr(pos, len));
    pos += len;
    if (type == 0x05) {
      if (len > 128) return -1;
      out->unique_id = std::move(value);
    } else if (type == 0xE0) {
      size_t eq = value.find('=');
      if (eq == std::string::npos) return -1;
      out->labels.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    }
  }
  return static_cast<long>(total);
}

std::string proxy_line(const ProxyInfo& p) {
  std::string labels;
  for (auto& [k, v] : p.labels) labels += (labels.empty() ? "" : ",") + k + "=" + v;
  return "PROXY v2 src=" + p.src + " dst=" + p.dst + " unique_id=" + p.unique_id +
         " labels=" + labels + "\n";
}

// ---------------------------------------------------------------- http

Conn* conn_of(http_parser* p) {
  return static_cast<Conn*>(p->data);
}

int on_message_begin(http_parser* p) {
  Conn* c = conn_of(p);
  c->url.clear();
  c->headers.clear();
  c->last_was_value = false;
  c->body_bytes = 0;
  return 0;
}

int on_url(http_parser* p, const char* at, size_t len) {
  conn_of(p)->url.append(at, len);
  return 0;
}

int on_header_field(http_parser* p, const char* at, size_t len) {
  Conn* c = conn_of(p);
  if (c->headers.empty() || c->last_was_value) c->headers.emplace_back();
  c->headers.back().first.append(at, len);
  c->last_was_value = false;
  return 0;
}

int on_header_value(http_parser* p, const char* at, size_t len) {
  Conn* c = conn_of(p);
  if (c->headers.empty()) c->headers.emplace_back();
  c->headers.back().second.append(at, len);
  c->last_was_value = true;
  return 0;
}

bool iequals(const std::string& a, const char* b) {
  return strcasecmp(a.c_str(), b) == 0;
}

int on_headers_complete(http_parser* p) {
  Conn* c = conn_of(p);
  if (p->http_major == 1 && p->http_minor >= 1) {
    for (auto& [k, v] : c->headers) {
      if (iequals(k, "expect") && iequals(v, "100-continue")) {
        queue(c, "HTTP/1.1 100 Continue\r\n\r\n");
        break;
      }
    }
  }
  return 0;
}

int on_body(http_parser* p, const char*, size_t len) {
  conn_of(p)->body_bytes += len;
  return 0;
}

// Parses "/prefix/<digits>" (query string ignored). Returns false if it does not match.
bool route_number(const std::string& path, const char* prefix, uint64_t* out) {
  size_t plen = strlen(prefix);
  if (path.compare(0, plen, prefix) != 0) return false;
  std::string digits = path.substr(plen);
  if (digits.empty() || digits.size() > 15) return false;
  for (char ch : digits)
    if (ch < '0' || ch > '9') return false;
  *out = std::stoull(digits);
  return true;
}

const char* reason(unsigned status) {
  const char* r = http_status_str(static_cast<enum http_status>(status));
  return (r && std::strcmp(r, "<unknown>") != 0) ? r : "Status";
}

int on_message_complete(http_parser* p) {
  Conn* c = conn_of(p);
  Server* s = c->server;
  c->requests++;
  bool keep_alive = http_should_keep_alive(p) != 0;
  bool head = p->method == HTTP_HEAD;
  std::string path = c->url.substr(0, c->url.find('?'));

  unsigned status = 200;
  uint64_t n = 0;
  bool bytes_route = false;
  if (route_number(path, "/bytes/", &n)) {
    bytes_route = true;
  } else if (route_number(path, "/status/", &n) && n >= 200 && n <= 599) {
    status = static_cast<unsigned>(n);
  }

  std::string body;
  const char* content_type = "application/json";
  if (bytes_route) {
    content_type = "application/octet-stream";
  } else {
    nlohmann::json hdrs = nlohmann::json::array();
    for (auto& [k, v] : c->headers) hdrs.push_back({k, v});
    nlohmann::json j = {
        {"server", s->name},
        {"method", http_method_str(static_cast<enum http_method>(p->method))},
        {"path", c->url},
        {"http_version", std::to_string(p->http_major) + "." + std::to_string(p->http_minor)},
        {"headers", std::move(hdrs)},
        {"body_bytes", c->body_bytes},
        {"peer", c->peer},
        {"connection_requests", c->requests},
    };
    if (s->proxy_protocol) {
      nlohmann::json labels = nlohmann::json::object();
      for (auto& [k, v] : c->proxy.labels) labels[k] = v;
      j["proxy"] = {{"src", c->proxy.src},
                    {"dst", c->proxy.dst},
                    {"unique_id", c->proxy.unique_id},
                    {"labels", std::move(labels)}};
    }
    body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    body.push_back('\n');
  }
  uint64_t body_len = bytes_route ? n : body.size();
  bool no_body = status == 204 || status == 304;

  std::string head_text = "HTTP/1.1 " + std::to_string(status) + " " + reason(status) + "\r\n";
  head_text += "Server: nsproxy-echo\r\n";
  if (!no_body) {
    head_text += std::string("Content-Type: ") + content_type + "\r\n";
    head_text += "Content-Length: " + std::to_string(body_len) + "\r\n";
  }
  if (!keep_alive)
    head_text += "Connection: close\r\n";
  else if (p->http_major == 1 && p->http_minor == 0)
    head_text += "Connection: keep-alive\r\n";
  head_text += "\r\n";
  queue(c, std::move(head_text));
  if (!head && !no_body) {
    if (bytes_route)
      queue_x(c, n);
    else
      queue(c, std::move(body));
  }
  if (!keep_alive) {
    c->close_after = true;
    http_parser_pause(p, 1);  // ignore anything pipelined after a closing request
  }
  return 0;
}

void http_bad_request(Conn* c) {
  std::string body =
      std::string("bad request: ") + http_errno_description(HTTP_PARSER_ERRNO(&c->parser)) + "\n";
  queue(c,
        "HTTP/1.1 400 Bad Request\r\nServer: nsproxy-echo\r\nContent-Type: text/plain\r\n"
        "Content-Length: " +
            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  c->close_after = true;
}

// Feeds bytes (or EOF when len == 0) to the parser.
void http_feed(Conn* c, const char* data, size_t len) {
  if (c->close_after) return;
  size_t used = http_parser_execute(&c->parser, &c->server->settings, data, len);
  enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
  if (err == HPE_PAUSED) return;  // closing request answered; rest ignored
  if (err != HPE_OK || (len > 0 && used != len)) {
    // A request cut short by EOF is not worth a 400 (nobody is reading it); a malformed
    // request is.
    if (len == 0) {
      c->close_after = true;
      return;
    }
    http_bad_request(c);
  }
}

// ---------------------------------------------------------------- io callbacks

// Hands bytes from the peer to the mode.
void deliver(Conn* c, const char* data, size_t len) {
  switch (c->server->mode) {
    case Mode::Echo:
      queue(c, std::string(data, len));
      break;
    case Mode::Http:
      http_feed(c, data, len);
      break;
    case Mode::Silent:
      break;
  }
}

// --proxy-protocol: collects the header; delivers what follows it. false: bad header.
bool proxy_input(Conn* c, const char* data, size_t len) {
  c->proxy_pending.append(data, len);
  long n = parse_proxy_v2(c->proxy_pending, &c->proxy);
  if (n < 0) {
    LOG_INFO("%s: bad PROXY v2 header, closing", c->peer.c_str());
    return false;
  }
  if (n == 0) return true;  // wait for more (bounded: the length field is 16 bits)
  c->proxy_done = true;
  std::string rest = c->proxy_pending.substr(static_cast<size_t>(n));
  c->proxy_pending.clear();
  c->proxy_pending.shrink_to_fit();
  if (c->server->mode == Mode::Echo) queue(c, proxy_line(c->proxy));
  if (!rest.empty()) deliver(c, rest.data(), rest.size());
  return true;
}

void on_readable(struct ev_loop*, ev_io* w, int) {
  Conn* c = static_cast<Conn*>(w->data);
  Server* s = c->server;
  char buf[kReadChunk];
  if (c->draining) {
    for (;;) {
      ssize_t r = ::recv(c->fd.get(), buf, sizeof buf, 0);
      if (r > 0) continue;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      conn_close(c);  // EOF or error
      return;
    }
  }
  for (int round = 0; round < 16; ++round) {
    if (c->read_eof || c->close_after || c->queued_bytes >= kMaxQueued) break;
    ssize_t r = ::recv(c->fd.get(), buf, sizeof buf, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      conn_close(c);
      return;
    }
    if (r == 0) {
      if (s->proxy_protocol && !c->proxy_done) {
        conn_close(c);  // ended before a complete header
        return;
      }
      c->read_eof = true;
      if (s->mode == Mode::Http) {
        http_feed(c, nullptr, 0);
        // HTTP: the client is done sending; finish the answers we owe, then close.
        c->close_after = true;
      }
      break;
    }
    if (s->proxy_protocol && !c->proxy_done) {
      if (!proxy_input(c, buf, static_cast<size_t>(r))) {
        conn_close(c);
        return;
      }
    } else {
      deliver(c, buf, static_cast<size_t>(r));
    }
  }
  if (!conn_flush(c)) {
    conn_close(c);
    return;
  }
  conn_update(c);
}

void on_writable(struct ev_loop*, ev_io* w, int) {
  Conn* c = static_cast<Conn*>(w->data);
  if (!conn_flush(c)) {
    conn_close(c);
    return;
  }
  conn_update(c);
}

void on_linger_timeout(struct ev_loop*, ev_timer* w, int) {
  conn_close(static_cast<Conn*>(w->data));
}

void on_accept(struct ev_loop* loop, ev_io* w, int) {
  Server* s = static_cast<Server*>(w->data);
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(s->listen_fd.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: pause accepting for a moment instead of spinning.
        ev_io_stop(loop, &s->accept_io);
        ev_timer_set(&s->accept_resume, 0.1, 0.);
        ev_timer_start(loop, &s->accept_resume);
      }
      return;
    }
    if (ss.ss_family != AF_UNIX) {
      // Responses go out as a head and a body: no Nagle delay between them.
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    auto* c = new Conn;
    c->server = s;
    c->fd.reset(fd);
    c->peer = nsproxy::format_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    ev_timer_init(&c->linger, on_linger_timeout, 2.0, 0.);
    c->rio.data = c;
    c->wio.data = c;
    c->linger.data = c;
    if (s->mode == Mode::Http) {
      http_parser_init(&c->parser, HTTP_REQUEST);
      c->parser.data = c;
    }
    s->conns.insert(c);
    ev_io_start(loop, &c->rio);
  }
}

void on_accept_resume(struct ev_loop* loop, ev_timer* w, int) {
  Server* s = static_cast<Server*>(w->data);
  ev_io_start(loop, &s->accept_io);
}

void on_signal(struct ev_loop* loop, ev_signal*, int) {
  ev_break(loop, EVBREAK_ALL);
}

// ---------------------------------------------------------------- setup

nsproxy::Result<nsproxy::UniqueFd> listen_on(const nsproxy::Address& addr) {
  nsproxy::UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return nsproxy::errno_error(nsproxy::Code::kSocket, "socket for " + addr.text);
  if (addr.family() == AF_UNIX) {
    // Replace a stale socket file left by an earlier run (never any other kind of file).
    auto* un = reinterpret_cast<const sockaddr_un*>(addr.sa());
    struct stat st {};
    if (un->sun_path[0] != '\0' && ::lstat(un->sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
      ::unlink(un->sun_path);
  } else {
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  if (::bind(fd.get(), addr.sa(), addr.length) < 0)
    return nsproxy::errno_error(nsproxy::Code::kSocket, "bind " + addr.text);
  if (::listen(fd.get(), 4096) < 0)
    return nsproxy::errno_error(nsproxy::Code::kSocket, "listen " + addr.text);
  return fd;
}

void usage(FILE* f) {
  std::fprintf(f,
               "usage: nsproxy-echo --listen ADDR [--mode echo|http|silent] [--name NAME]\n"
               "                    [--proxy-protocol]\n"
               "  ADDR: 127.0.0.1:18080, [::1]:0, unix:/path (port 0 picks a free port)\n"
               "  prints 'listening on <address>' on stdout once listening\n");
}

}  // namespace

int main(int argc, char** argv) {
  nsproxy::set_log_prefix("nsproxy-echo");
  Server s;
  std::string listen_text;
  static const option opts[] = {
      {"listen", required_argument, nullptr, 'l'}, {"mode", required_argument, nullptr, 'm'},
      {"name", required_argument, nullptr, 'n'},   {"proxy-protocol", no_argument, nullptr, 'p'},
      {"help", no_argument, nullptr, 'h'},         {nullptr, 0, nullptr, 0},
  };
  for (;;) {
    int o = getopt_long(argc, argv, "l:m:n:h", opts, nullptr);
    if (o == -1) break;
    switch (o) {
      case 'l':
        listen_text = optarg;
        break;
      case 'm':
        if (std::strcmp(optarg, "echo") == 0)
          s.mode = Mode::Echo;
        else if (std::strcmp(optarg, "http") == 0)
          s.mode = Mode::Http;
        else if (std::strcmp(optarg, "silent") == 0)
          s.mode = Mode::Silent;
        else {
          std::fprintf(stderr, "nsproxy-echo: unknown mode '%s'\n", optarg);
          usage(stderr);
          return 2;
        }
        break;
      case 'n':
        s.name = optarg;
        break;
      case 'p':
        s.proxy_protocol = true;
        break;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (listen_text.empty() || optind != argc) {
    usage(stderr);
    return 2;
  }
  // parse_address refuses port 0 (an operator never means it); here it means "any free
  // port", so parse with a placeholder port and clear it.
  bool any_port = listen_text.size() > 2 && listen_text.compare(0, 5, "unix:") != 0 &&
                  listen_text.compare(listen_text.size() - 2, 2, ":0") == 0;
  if (any_port) listen_text.back() = '1';
  auto addr = nsproxy::parse_address(listen_text, true);
  if (addr && any_port) {
    if (addr->family() == AF_INET)
      reinterpret_cast<sockaddr_in*>(&addr->storage)->sin_port = 0;
    else if (addr->family() == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&addr->storage)->sin6_port = 0;
  }
  if (!addr) {
    std::fprintf(stderr, "nsproxy-echo: %s\n", addr.error().message.c_str());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::memset(g_xbuf, 'x', sizeof g_xbuf);

  auto lfd = listen_on(*addr);
  if (!lfd) {
    std::fprintf(stderr, "nsproxy-echo: %s\n", lfd.error().message.c_str());
    return 1;
  }
  s.listen_fd = std::move(*lfd);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(s.listen_fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen) < 0) {
    std::perror("nsproxy-echo: getsockname");
    return 1;
  }

  s.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_SIGNALFD);
  if (!s.loop) {
    std::fprintf(stderr, "nsproxy-echo: cannot create event loop\n");
    return 1;
  }
  s.settings.on_message_begin = on_message_begin;
  s.settings.on_url = on_url;
  s.settings.on_header_field = on_header_field;
  s.settings.on_header_value = on_header_value;
  s.settings.on_headers_complete = on_headers_complete;
  s.settings.on_body = on_body;
  s.settings.on_message_complete = on_message_complete;

  ev_io_init(&s.accept_io, on_accept, s.listen_fd.get(), EV_READ);
  s.accept_io.data = &s;
  ev_io_start(s.loop, &s.accept_io);
  ev_timer_init(&s.accept_resume, on_accept_resume, 0.1, 0.);
  s.accept_resume.data = &s;
  ev_signal_init(&s.sigterm, on_signal, SIGTERM);
  ev_signal_init(&s.sigint, on_signal, SIGINT);
  ev_signal_start(s.loop, &s.sigterm);
  ev_signal_start(s.loop, &s.sigint);

  std::printf("listening on %s\n",
              nsproxy::format_sockaddr(reinterpret_cast<sockaddr*>(&bound), blen).c_str());
  std::fflush(stdout);

  ev_run(s.loop, 0);

  for (Conn* c : std::vector<Conn*>(s.conns.begin(), s.conns.end())) conn_close(c);
  ev_io_stop(s.loop, &s.accept_io);
  ev_timer_stop(s.loop, &s.accept_resume);
  if (s.listen_fd && addr->family() == AF_UNIX) {
    auto* un = reinterpret_cast<const sockaddr_un*>(addr->sa());
    if (un->sun_path[0] != '\0') ::unlink(un->sun_path);
  }
  ev_loop_destroy(s.loop);
  return 0;
}
