// What every connection of one event loop shares: the loop, the buffer pool, counters.
#pragma once

#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdint>

#include "forward/chunk_pool.h"
#include "forward/connection_budget.h"
#include "forward/proxy_config.h"

namespace nsproxy {

class UpstreamPool;

struct Worker {
  struct ev_loop* loop = nullptr;
  const ProxyConfig* config = nullptr;
  ChunkPool pool;
  UpstreamPool* upstreams = nullptr;  // idle upstream connections (http mode)
  uint64_t connections = 0;           // currently open tenant connections
  ConnectionBudget budget;            // who holds them; reclaims when they run out
  // Set when an upstream socket() failed with EMFILE/ENFILE (Connection::connect): the
  // next listener to accept pauses, as for a failed accept, instead of accepting
  // connections it cannot serve.
  bool out_of_fds = false;
  uint64_t connections_total = 0;  // accepted since start
};

// Disables Nagle on TCP sockets: a proxy forwards small writes (a response head, then
// its body) that must not wait for the peer's delayed ACK. No-op on unix sockets.
inline void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// SO_SNDBUF and SO_RCVBUF (--socket-buffer); 0 leaves the kernel's autotuning on.
inline void set_socket_buffer(int fd, int bytes) {
  if (bytes <= 0) return;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

// Starts or stops an io watcher so that it is active exactly when `on`.
inline void set_active(struct ev_loop* loop, ev_io* w, bool on) {
  if (on && !ev_is_active(w)) {
    ev_io_start(loop, w);
  } else if (!on && ev_is_active(w)) {
    ev_io_stop(loop, w);
  }
}

}  // namespace nsproxy
