// The harness of the libFuzzer targets that drive a tenant session end to end over real
// loopback sockets, in the current network namespace (no root needed):
// fuzz_http_request.cc (http mode) and fuzz_tls_request.cc (https mode).
//
// Setup (once): a Worker with its own libev loop and the default ProxyConfig, a Listener
// in http mode on 127.0.0.1:<ephemeral> (given certificates: https), whose upstream is
// 127.0.0.1:<port> where <port> is held by a bound socket that never listens: every
// forwarded request meets a refused connection and ends in 502, so no upstream behaviour
// is fuzzed, only the tenant side.
//
// Per input (run_input): a client connects to the listener, writes the bytes, shuts down
// its write side, and the loop runs (EVRUN_NOWAIT, no sleeps) until the client sees the
// daemon close. Then the client resets the connection and the loop runs until the
// session is gone.
//
// Properties checked (abort on violation), beyond "no crash, no ASan/UBSan report":
//   - the daemon answers or closes: the client sees end of stream within kMaxSpins loop
//     iterations (nothing here waits for a timer: the input is complete and the upstream
//     refuses at once);
//   - what the daemon sent first passes the target's check (an HTTP status line, a TLS
//     record);
//   - after the client is gone, the session is deleted: listener.connections(), the
//     worker's and the tenant's connection counts return to 0, no idle upstream
//     connection is pooled.
#pragma once

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "address.h"
#include "control_protocol.h"
#include "forward/acceptor.h"
#include "forward/http/http_session.h"
#include "forward/listener.h"
#include "forward/proxy_config.h"
#include "forward/tenant.h"
#include "forward/tls_server.h"
#include "forward/upstream_pool.h"
#include "forward/worker.h"
#include "log.h"
#include "unique_fd.h"

namespace fuzz_session {

using namespace nsproxy;

constexpr int kMaxSpins = 5000;

struct Harness {
  const char* name = "fuzz";
  ProxyConfig config;
  std::unique_ptr<Acceptor> acceptor;
  Worker worker;  // in the acceptor's loop (--workers 0)
  std::unique_ptr<UpstreamPool> upstreams;
  std::map<std::string, std::string> labels{{"team", "fuzz"}, {"pod-name", "p"}};
  std::shared_ptr<Tenant> tenant;
  std::unique_ptr<Listener> listener;
  ListenerSpec spec;         // the listener points at it
  UniqueFd upstream_holder;  // keeps the upstream port taken and closed
  sockaddr_in listen_addr{};
};

inline Harness* h = nullptr;

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "%s: %s: %s\n", h != nullptr ? h->name : "fuzz", what, std::strerror(errno));
  std::abort();
}

[[noreturn]] inline void fail(const char* what, const uint8_t* data, size_t size,
                              const std::string& detail = {}) {
  std::fprintf(stderr, "%s: %s\n  input (%zu bytes): %.*s\n  detail: %s\n", h->name, what, size,
               static_cast<int>(size > 2000 ? 2000 : size), reinterpret_cast<const char*>(data),
               detail.c_str());
  std::abort();
}

// A TCP socket bound to 127.0.0.1:0; returns it and fills *addr.
inline int bound_socket(sockaddr_in* addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) die("bind 127.0.0.1:0");
  socklen_t len = sizeof *addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(addr), &len) < 0) die("getsockname");
  return fd;
}

inline std::string text_of(const sockaddr_in& a) {
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

// tls: the certificates of an https listener (nullptr: http).
inline void setup(const char* name, std::shared_ptr<TlsServer> tls = nullptr) {
  ::signal(SIGPIPE, SIG_IGN);
  set_log_level(LogLevel::Error);
  h = new Harness;
  h->name = name;
  h->worker.loop = ev_loop_new(EVFLAG_AUTO);
  if (h->worker.loop == nullptr) die("ev_loop_new");
  h->worker.config = &h->config;
  h->acceptor = std::make_unique<Acceptor>(h->worker.loop, &h->config);
  h->acceptor->add_worker(&h->worker);
  h->upstreams = std::make_unique<UpstreamPool>(h->worker.loop, h->config.upstream_idle_max,
                                                h->config.upstream_idle_timeout);
  h->worker.upstreams = h->upstreams.get();

  sockaddr_in up{};
  h->upstream_holder = UniqueFd(bound_socket(&up));  // bound, never listening: refuses
  auto upstream = parse_address(text_of(up), /*allow_unix=*/true);
  if (!upstream) die(upstream.error().message.c_str());

  int lfd = bound_socket(&h->listen_addr);
  if (::listen(lfd, 1024) < 0) die("listen");

  h->tenant = std::make_shared<Tenant>();
  h->tenant->id = "fuzz-tenant";
  h->tenant->display = "fuzz/fuzz-tenant/eth0";
  h->tenant->labels = &h->labels;
  h->tenant->tenant_header = h->config.tenant_header;
  h->tenant->label_header_prefix = h->config.label_header_prefix;
  h->tenant->apply_limits(h->config, {}, ev_now(h->worker.loop));

  h->spec = ListenerSpec{text_of(h->listen_addr), upstream->text, tls ? Mode::Https : Mode::Http};
  if (tls) h->spec.certificates = tls->certificates();
  h->listener = std::make_unique<Listener>(h->acceptor.get(), UniqueFd(lfd), h->spec,
                                           std::make_shared<const Address>(*upstream), h->tenant,
                                           make_http_session);
  if (tls) h->listener->set_tls(std::move(tls));
  h->listener->start();
}

inline void spin() {
  ev_run(h->worker.loop, EVRUN_NOWAIT);
}

inline bool quiet() {
  return h->listener->connections() == 0 && h->worker.connections == 0 &&
         h->tenant->connections == 0 && h->acceptor->connections() == 0;
}

// Sends the input as a tenant, checks the properties above; first_bytes gets the first 16
// bytes the daemon sent (empty when none) and returns "" when they are fine, else why not.
inline void run_input(const uint8_t* data, size_t size,
                      const std::function<std::string(const std::string&)>& check_first_bytes) {
  int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c < 0) die("client socket");
  if (::connect(c, reinterpret_cast<const sockaddr*>(&h->listen_addr), sizeof h->listen_addr) < 0 &&
      errno != EINPROGRESS) {
    die("client connect");
  }
  size_t sent = 0;
  bool shut = false;
  bool eof = false;
  bool write_failed = false;
  std::string head;  // the first bytes of what the daemon sent
  size_t received = 0;
  int spins = 0;
  for (; spins < kMaxSpins && !eof; ++spins) {
    if (!shut) {
      if (sent < size && !write_failed) {
        ssize_t n = ::send(c, data + sent, size - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                   errno != ENOTCONN) {
          write_failed = true;  // the daemon closed early (e.g. answered 400): fine
        }
      }
      if (sent == size || write_failed) {
        // ENOTCONN while a non-blocking connect is still in progress: retry.
        if (::shutdown(c, SHUT_WR) == 0 || errno != ENOTCONN) shut = true;
      }
    }
    spin();
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n > 0) {
        if (head.size() < 16) head.append(buf, std::min<size_t>(16 - head.size(), n));
        received += static_cast<size_t>(n);
        continue;
      }
      if (n == 0 ||
          (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ENOTCONN)) {
        eof = true;  // end of stream or reset: the daemon closed
      }
      break;
    }
  }
  if (!eof) {
    fail("the daemon neither answered to the end nor closed the connection", data, size,
         std::to_string(kMaxSpins) + " loop iterations, " + std::to_string(received) +
             " bytes received, " + std::to_string(sent) + " of " + std::to_string(size) + " sent");
  }
  if (received > 0) {
    if (std::string why = check_first_bytes(head); !why.empty())
      fail(why.c_str(), data, size, head);
  }
  // Reset the connection (no TIME_WAIT on the client side) and let the session go.
  linger lg{1, 0};
  ::setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(c);
  for (int i = 0; i < kMaxSpins && !quiet(); ++i) spin();
  if (!quiet()) {
    fail("a session outlived its client", data, size,
         "listener connections " + std::to_string(h->listener->connections()) +
             ", worker connections " + std::to_string(h->worker.connections.load()) +
             ", tenant connections " + std::to_string(h->tenant->connections.load()));
  }
  if (h->upstreams->idle() != 0) fail("an upstream connection was pooled", data, size);
}

}  // namespace fuzz_session
