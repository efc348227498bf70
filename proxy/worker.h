// What every connection of one event loop shares: the loop, the buffer pool, counters.
#pragma once

#include <ev.h>

#include <cstdint>

#include "chunk_pool.h"
#include "proxy_config.h"

namespace nsproxy {

class UpstreamPool;

struct Worker {
  struct ev_loop* loop = nullptr;
  const ProxyConfig* config = nullptr;
  ChunkPool pool;
  UpstreamPool* upstreams = nullptr;  // idle upstream connections (http mode)
  uint64_t connections = 0;        // currently open tenant connections
  uint64_t connections_total = 0;  // accepted since start
};

// Starts or stops an io watcher so that it is active exactly when `on`.
inline void set_active(struct ev_loop* loop, ev_io* w, bool on) {
  if (on && !ev_is_active(w)) {
    ev_io_start(loop, w);
  } else if (!on && ev_is_active(w)) {
    ev_io_stop(loop, w);
  }
}

}  // namespace nsproxy
