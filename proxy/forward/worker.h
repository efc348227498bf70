// A worker: one event loop, on its own thread, serving the tenant connections the main
// thread accepted and handed to it (acceptor.h), with what those connections share: the
// buffer pool, the idle upstream connections, counters. nghttpx's model: a session never
// leaves its worker, and work crosses threads only through the worker's inbox (a mutex
// and a vector, woken by ev_async), never through locks on the request path.
//
// A worker without a thread of its own (--workers 0, and the unit tests) runs in the
// main loop: what would be posted to it runs at once.
#pragma once

#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "forward/chunk_pool.h"
#include "forward/proxy_config.h"
#include "forward/tenant_stats.h"
#include "unique_fd.h"

namespace nsproxy {

class Acceptor;
class Listener;
class Session;
struct Tenant;
struct TenantShard;

struct Worker {
  Worker() = default;
  ~Worker();  // stops its thread, if it runs
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  size_t index = 0;  // its place among the acceptor's workers (its tenants' shard slot)
  struct ev_loop* loop = nullptr;
  const ProxyConfig* config = nullptr;
  Acceptor* acceptor = nullptr;  // who hands it connections (and counts them daemon-wide)
  ChunkPool pool;
  class UpstreamPool* upstreams = nullptr;  // idle upstream connections (http mode)
  std::atomic<uint64_t> connections{0};     // open tenant connections here

  // Its own thread running `loop` (a loop of its own, not the main one) until stopped.
  void start();
  // Stopping, in three steps so that no worker posts to one already stopped: every
  // worker's loop is asked to end, then every thread joined, then every inbox run in the
  // main thread (from then on the worker is served inline; what it holds stays, closed by
  // its owners after). stop() does the three for this worker alone.
  void request_stop();
  void join();
  void drain();
  void stop();
  bool threaded() const { return threaded_; }
  bool in_own_thread() const;

  // Main thread: a connection `listener` accepted, to serve here.
  void hand_over(Listener* listener, UniqueFd fd, const sockaddr_storage& peer, bool over_limit);
  // Any thread: runs task in this worker's thread, later (at once when not threaded).
  void post(std::function<void()> task);
  // Main thread: runs task in this worker's thread and waits until it ran (at once when
  // not threaded). Workers never wait for the main thread, so this cannot deadlock.
  void run_and_wait(const std::function<void()>& task);
  void on_inbox();

  // Sessions: shard.connections went 0 -> 1 / 1 -> 0 here.
  void add_holder(TenantShard& s);
  void remove_holder(TenantShard& s);
  // Out of fds: closes the oldest idle keep-alive connection on this worker. False: none.
  bool reclaim_idle();
  // Closes the oldest idle (else the oldest incomplete-head) connection of t here, to make
  // room for another tenant: `why`. False: t has neither here.
  bool reclaim_for_other(Tenant& t, const std::string& why);
  // socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC); out of fds, reclaims an
  // idle keep-alive connection and tries once more. -1 with errno set on failure.
  int stream_socket(int family);
  // An in-flight slot of t came free on another worker: grants slots to the requests of t
  // waiting here while there are free ones.
  void offer_slots(Tenant& t);

 private:
  struct Message {
    Listener* listener = nullptr;  // a handed-over connection, or:
    std::function<void()> task;    // something to run
    int fd = -1;
    bool over_limit = false;
    sockaddr_storage peer{};
  };
  void push(Message m);

  std::vector<TenantShard*> holders_;  // shards with connections here
  std::mutex mutex_;
  std::vector<Message> inbox_;  // under mutex_
  std::vector<Message> taken_;  // the batch being run (its capacity is kept)
  ev_async inbox_w_;
  std::thread thread_;
  std::thread::id thread_id_;  // set once by start()
  bool threaded_ = false;      // from start() until drain(); changed while no worker thread runs
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
