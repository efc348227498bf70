// One socket of a session, the tenant's or the upstream's (nghttpx's Connection): owns
// the fd and its read and write watchers, whose `data` points at the session that owns
// the connection. Closing (or destroying) it stops both watchers before the fd closes, so
// no watcher is ever active on a closed socket.
//
// I/O contract of read(), read_into() and write_from(): > 0 bytes moved; 0 would block
// (nothing to do now); kEof the peer ended its stream (reads only); kError with errno set.
//
// TLS (set_tls, https listeners): the same calls move plaintext through OpenSSL on the
// same fd, handshake first (nghttpx's tls read/write in its Connection). What a socket
// event cannot show is handled here: bytes OpenSSL already decrypted but not yet handed
// out make the read watcher fire again (ev_feed_event) while it is armed; a read that
// needs the socket writable (or a write that needs it readable) arms that watcher and
// the owner is told by tls_retry_read() / tls_retry_write() to call the other side.
#pragma once

#include <ev.h>
#include <openssl/ssl.h>
#include <sys/types.h>

#include <cstddef>
#include <string>

#include "address.h"
#include "forward/byte_queue.h"
#include "unique_fd.h"

namespace nsproxy {

struct Worker;

class Connection {
 public:
  static constexpr ssize_t kError = -1;
  static constexpr ssize_t kEof = -2;

  using Callback = void (*)(struct ev_loop*, ev_io*, int);
  // owner: what the callbacks find in w->data.
  Connection(struct ev_loop* loop, void* owner, Callback on_readable, Callback on_writable);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // A new owner for the callbacks (the upstream pool parking the connection, a session
  // taking it back). The watchers stay as they are, active or not: a parked connection
  // keeps its registration in epoll, and handing it over costs no system call.
  void rebind(void* owner, Callback on_readable, Callback on_writable);

  // Takes fd (watchers stopped, pointed at it); an empty fd leaves it closed.
  void attach(UniqueFd fd);
  // Stops both watchers and gives the fd back (to the upstream pool): closed after.
  UniqueFd detach();
  // Stops both watchers and closes the fd.
  void close();

  int fd() const { return fd_.get(); }
  explicit operator bool() const { return static_cast<bool>(fd_); }
  bool connecting() const { return connecting_; }

  // Starts or stops the read / write watcher (no system call when it already is so).
  void want_read(bool on);
  void want_write(bool on);

  ssize_t read(char* buf, size_t len);
  // One read into q's free tail (a fresh chunk when it has none).
  ssize_t read_into(ByteQueue* q);
  // One write of what q holds (the bytes written leave q).
  ssize_t write_from(ByteQueue* q);
  // Writes what q holds now unless the write watcher already waits for room, then arms
  // the write watcher only if bytes are left (the socket is full) and disarms it once q
  // is empty: while writes complete at once, the watcher stays off and costs no
  // epoll_ctl. Returns what write_from returns (0 also when it waited for the watcher).
  ssize_t flush(ByteQueue* q);
  bool write_armed() const { return ev_is_active(&write_w_); }
  bool read_armed() const { return ev_is_active(&read_w_); }
  // Ends our sending half (the peer reads end of stream after what was written); with
  // TLS, a close_notify alert first.
  void shutdown_write();

  // From now on reads and writes go through ssl (owned, freed with the fd), which is
  // bound to fd() and in accept (or connect) state.
  void set_tls(SSL* ssl);
  SSL* tls() const { return ssl_; }
  bool tls_handshake_done() const;
  // Why the last TLS read or write failed ("" when it did not): OpenSSL's reason, or the
  // alert the peer sent.
  const std::string& tls_error() const { return tls_error_; }
  // The peer started a renegotiation (TLS 1.2), which is refused: the owner closes.
  bool tls_renegotiation() const { return tls_renegotiation_; }
  // True (once) when a TLS read waited for the socket to be writable: the owner's
  // writable handler calls its readable handler. tls_retry_write: the other way round.
  bool tls_retry_read();
  bool tls_retry_write();

  // The upstream side: a new non-blocking socket towards `to` from the worker's budget
  // (which closes an idle keep-alive connection when out of fds), SO_SNDBUF/SO_RCVBUF
  // from --socket-buffer, TCP_NODELAY, and connect() started.
  //   kConnected   connected at once (a unix socket)
  //   kInProgress  wait until writable, then finish_connect(); connecting() is true
  //   kFailed      *err holds why; EMFILE/ENFILE also set acceptor.out_of_fds, so that
  //                the listeners pause instead of accepting what they cannot serve
  enum class Connect { kConnected, kInProgress, kFailed };
  Connect connect(Worker* worker, const Address& to, int* err);
  // Writable while connecting: 0 once connected, else the connect's errno.
  int finish_connect();

 private:
  ssize_t tls_read(char* buf, size_t len);
  ssize_t tls_write_from(ByteQueue* q);
  // Classifies a failed SSL_read/SSL_write/SSL_shutdown: 0 (wait), kEof or kError.
  ssize_t tls_failure(int rc, bool reading);
  void free_tls();
  static void tls_message(int write_p, int version, int content_type, const void* buf, size_t len,
                          SSL* ssl, void* arg);

  struct ev_loop* loop_;
  UniqueFd fd_;
  ev_io read_w_, write_w_;
  bool connecting_ = false;
  SSL* ssl_ = nullptr;
  bool tls_read_wants_write_ = false;
  bool tls_write_wants_read_ = false;
  bool tls_renegotiation_ = false;
  std::string tls_error_;
};

}  // namespace nsproxy
