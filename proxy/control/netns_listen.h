// Creating listening sockets inside another network namespace.
//
// A socket belongs to the namespace that was current when it was created, and stays
// there. So: setns(tenant), socket/bind/listen, setns(host). The loop thread does this
// with nothing else running on it in between; a failed switch back aborts the process
// (carrying on in a tenant's namespace would connect upstreams in the wrong place).
#pragma once

#include <string>
#include <vector>

#include "address.h"
#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

struct ListenTarget {
  Address addr;
  bool add_address = false;  // add the IP to lo first when it is missing
};

struct NetnsListeners {
  std::vector<UniqueFd> fds;   // one per target, in order
  std::vector<Address> added;  // IPs this call added to lo (one entry per IP)
};

class NetnsListenerFactory {
 public:
  // Remembers the calling thread's current namespace as "home".
  static Result<NetnsListenerFactory> open_home();

  // Enters netns_fd, brings lo up, adds the IPs of targets with add_address to lo when
  // missing, creates one non-blocking, close-on-exec listening socket per target
  // (SO_REUSEADDR), and returns home. All or nothing: on error the sockets already made
  // are closed, the IPs added are removed, and the error (code "listener_failed") names
  // the listener, the namespace path and the errno text:
  //   "listen 127.0.0.1:8080 in /run/netns/x: Address already in use"
  // noexcept: an exception (bad_alloc) between the switches terminates the process
  // rather than leave this thread in the tenant's namespace.
  Result<NetnsListeners> listen_all(int netns_fd, const std::string& netns_path,
                                    const std::vector<ListenTarget>& targets) const noexcept;

  // Enters netns_fd, removes these IPs from lo, returns home. Errors name the first
  // address that could not be removed.
  Status remove_addresses(int netns_fd, const std::string& netns_path,
                          const std::vector<Address>& addrs) const noexcept;

  int home_fd() const { return home_.get(); }

  // listen(2) backlog of the sockets made from now on (--listen-backlog). Connections of
  // a tenant at its connection limit wait there (the kernel caps it at the namespace's
  // net.core.somaxconn).
  void set_backlog(int backlog) { backlog_ = backlog; }
  // SO_SNDBUF/SO_RCVBUF of the sockets made from now on, inherited by the connections
  // they accept (--socket-buffer; 0: kernel autotuning).
  void set_socket_buffer(int bytes) { socket_buffer_ = bytes; }

 private:
  explicit NetnsListenerFactory(UniqueFd home) : home_(std::move(home)) {}
  UniqueFd home_;
  int backlog_ = 1024;
  int socket_buffer_ = 0;
};

}  // namespace nsproxy
