// The control socket: a SOCK_SEQPACKET Unix socket, root-only (mode 0600 and a peer
// credential check). Each client connection carries request datagrams; every request
// gets exactly one reply datagram, an error reply for garbage included. A client that
// sends nothing for kIdleSeconds is dropped, and at most kMaxClients are served at
// once, so one stuck client cannot hold the daemon's fds.
#pragma once

#include <ev.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_set>

#include "control_protocol.h"
#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

class ControlServer {
 public:
  using Handler = std::function<Reply(const Request&, UniqueFd netns_fd)>;

  static constexpr size_t kMaxClients = 256;
  static constexpr double kIdleSeconds = 30.0;

  ControlServer(struct ev_loop* loop, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Peers with uid 0 are served; with allow_gid set, also peers whose primary group is
  // that gid (the socket is then mode 0660, group allow_gid). Call before listen().
  void allow_gid(gid_t gid) {
    allowed_gid_ = gid;
    has_allowed_gid_ = true;
  }

  // Creates the socket directory, refuses when another daemon answers on path, replaces
  // a stale socket file, binds with mode 0600 (0660 with allow_gid) and starts serving.
  Status listen(const std::string& path);
  // Serves an already bound and listening socket (taken over from another daemon, or
  // passed by socket activation). Its file is never unlinked by this process.
  void serve_inherited(UniqueFd fd);
  // Stops accepting, closes every client and removes the socket file.
  void close();
  // Handover: stops accepting and closes every client, but leaves the socket file: it
  // belongs to the daemon that took the listening socket over.
  void release();
  int listen_fd() const { return fd_.get(); }

  // Requests answered since start, by (op, result): result "ok" or the error code; op
  // "invalid" for requests refused before they were decoded.
  using RequestCounts = std::map<std::pair<std::string, std::string>, uint64_t>;
  const RequestCounts& request_counts() const { return requests_; }

  // Called for a handover request with the client's fd; the client is dropped after.
  void set_handover_handler(std::function<void(int client_fd)> h) { handover_ = std::move(h); }

  // For the libev callbacks.
  struct Client;
  void on_acceptable();
  void drop(Client* c);

 private:
  struct ev_loop* loop_;
  Handler handler_;
  std::function<void(int)> handover_;
  gid_t allowed_gid_ = 0;
  bool has_allowed_gid_ = false;
  std::string path_;
  UniqueFd fd_;
  ev_io accept_w_;
  ev_timer pause_t_;  // accepting paused after EMFILE/ENFILE
  std::unordered_set<Client*> clients_;
  RequestCounts requests_;
};

}  // namespace nsproxy
