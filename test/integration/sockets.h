// Sockets for the tests: created inside a tenant's network namespace (connect, listen),
// bounded sends and reads, and on the host a small upstream of the test's own whose
// connections are served by test code (RawUpstream).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "error.h"
#include "unique_fd.h"
#include "wait.h"

namespace nspit {

// Creates a socket inside the namespace at netns_path (on a fresh thread that does
// setns and then ends). The socket stays in that namespace wherever it is used.
nsproxy::Result<nsproxy::UniqueFd> socket_in_netns(const std::string& netns_path, int domain,
                                                   int type);

struct Connection {
  nsproxy::UniqueFd fd;
  int err = 0;          // errno of the failed step (ECONNREFUSED, ETIMEDOUT...)
  std::string message;  // what failed, for assertion messages
  bool ok() const { return static_cast<bool>(fd); }
};
// Connects from inside the namespace to "ip:port" (blocking socket afterwards).
Connection connect_in_netns(const std::string& netns_path, const std::string& address,
                            Millis timeout = 3000ms);
// Binds and listens on "ip:port" inside the namespace (to occupy a port).
nsproxy::Result<nsproxy::UniqueFd> listen_in_netns(const std::string& netns_path,
                                                   const std::string& address);

// Writes everything, bounded by timeout.
nsproxy::Status send_all(int fd, std::string_view data, Millis timeout = 5000ms);
// Reads until EOF, bounded by timeout.
nsproxy::Result<std::string> recv_until_eof(int fd, Millis timeout = 5000ms);
// Sends payload while reading concurrently (no deadlock on large echoes), shuts down the
// write side after the last byte, then reads until EOF. Returns all bytes read.
nsproxy::Result<std::string> exchange(int fd, std::string_view payload, Millis timeout = 10000ms);
// connect_in_netns + exchange.
nsproxy::Result<std::string> roundtrip_in_netns(const std::string& netns_path,
                                                const std::string& address,
                                                std::string_view payload, Millis timeout = 10000ms);

// A small upstream of the test's own on 127.0.0.1:0: every accepted connection is
// handed to `handler` on its own thread (a blocking socket). The destructor shuts the
// listener and every connection down and joins the threads.
class RawUpstream {
 public:
  using Handler = std::function<void(int fd)>;
  explicit RawUpstream(Handler handler);
  ~RawUpstream();
  RawUpstream(const RawUpstream&) = delete;
  RawUpstream& operator=(const RawUpstream&) = delete;
  bool ok() const { return listen_fd_ >= 0; }
  const std::string& address() const { return address_; }
  int accepted() const { return accepted_.load(); }

 private:
  Handler handler_;
  int listen_fd_ = -1;
  std::string address_;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

// Helpers for RawUpstream handlers (blocking fd): read until "\r\n\r\n" (returns the
// head, everything up to and including it; extra bytes go to *rest), write everything.
std::optional<std::string> read_head_blocking(int fd, std::string* rest, Millis timeout = 5000ms);
bool write_all_blocking(int fd, std::string_view data);

// A free TCP port on 127.0.0.1 (bound to port 0, then released) for servers that cannot
// report the port they got.
int free_port();

}  // namespace nspit
