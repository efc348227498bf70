// A two-way byte stream between a session's two connections: tcp mode, and http mode
// after 101 Switching Protocols. sniproxy's rules, in one place:
//   - interest comes from the queues: a side is read only while the queue towards the
//     other side is below the high-water mark; bytes for a side are written at once,
//     and its write watcher is armed only while its socket is full (Connection::flush);
//   - half-close: when one side ends its stream, the other side's write half is shut
//     only after everything the first side sent has been delivered;
//   - the stream is over when both directions are finished.
// The session owns the connections and queues; the pump moves bytes between them and
// keeps the end-of-stream state.
#pragma once

#include <sys/types.h>

#include <cstddef>

#include "forward/byte_queue.h"
#include "forward/connection.h"

namespace nsproxy {

class BytePump {
 public:
  BytePump(Connection* client, Connection* upstream, ByteQueue* to_upstream, ByteQueue* to_client,
           size_t high_water)
      : client_(client),
        upstream_(upstream),
        to_upstream_(to_upstream),
        to_client_(to_client),
        high_water_(high_water) {}

  // One transfer, as its connection's readable or writable event asks. Returns the bytes
  // moved (> 0), 0 (would block, or end of stream, which is noted), or
  // Connection::kError with errno set.
  ssize_t client_readable() { return pull(client_, to_upstream_, &client_eof_); }
  ssize_t upstream_readable() { return pull(upstream_, to_client_, &upstream_eof_); }
  ssize_t client_writable() { return client_->write_from(to_client_); }
  ssize_t upstream_writable() { return upstream_->write_from(to_upstream_); }

  // The tenant (or the upstream) ended its stream outside the pump (http mode reads
  // before the tunnel starts).
  void client_ended() { client_eof_ = true; }
  void upstream_ended() { upstream_eof_ = true; }

  // Writes what waits for each side (the upstream once upstream_ready: connected), shuts
  // write halves that are due, then sets every watcher's interest. *to_client_sent (when
  // given) gets the bytes written to the tenant. A failed write returns at once, errno set.
  enum class State { kOpen, kDone, kClientWriteFailed, kUpstreamWriteFailed };
  State update(bool upstream_ready = true, size_t* to_client_sent = nullptr);

  bool client_eof() const { return client_eof_; }
  bool upstream_eof() const { return upstream_eof_; }

 private:
  ssize_t pull(Connection* from, ByteQueue* into, bool* eof);

  Connection* client_;
  Connection* upstream_;
  ByteQueue* to_upstream_;
  ByteQueue* to_client_;
  size_t high_water_;
  bool client_eof_ = false;     // the tenant finished sending
  bool upstream_eof_ = false;   // the upstream finished sending
  bool client_shut_ = false;    // we shut the tenant's write half
  bool upstream_shut_ = false;  // we shut the upstream's write half
};

}  // namespace nsproxy
