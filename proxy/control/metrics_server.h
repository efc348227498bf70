// The operator's HTTP endpoint (--metrics-listen), in the host's network namespace:
//   GET /metrics  Prometheus text exposition format 0.0.4
//   GET /healthz  200 while the process runs
//   GET /readyz   200 once registrations are restored and the control socket serves;
//                 503 before that and while draining after a takeover
// Anything else: 404 (405 for a method other than GET/HEAD on a known path). Requests are
// parsed with http-parser; every response closes the connection (the /metrics body is
// delimited by the close: it is rendered while it is sent, so its length is not known). It shares
// the proxy's loop and must never stall it: sockets are non-blocking, a request head is bounded
// (kMaxRequest bytes, 431 beyond) and must arrive within kTimeoutSeconds, malformed ones
// get 400, at most kMaxClients are served at once, and EMFILE pauses accepting.
#pragma once

#include <ev.h>

#include <functional>
#include <string>
#include <unordered_set>

#include "address.h"
#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

class MetricsServer {
 public:
  // Called once per scrape; returns the body's producer: each call appends the next
  // piece of the exposition to *out and returns false when there is no more. Pieces are
  // rendered as the socket takes them, a few per loop iteration.
  using Producer = std::function<bool(std::string* out)>;
  using Render = std::function<Producer()>;
  using Ready = std::function<bool()>;

  static constexpr size_t kMaxRequest = 8192;
  static constexpr size_t kMaxClients = 64;
  static constexpr double kTimeoutSeconds = 10;

  MetricsServer(struct ev_loop* loop, Render render, Ready ready);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and listens on addr (an IP address and port) in the current namespace.
  Status listen(const Address& addr);
  // After a handover, before the state directory is released (the new daemon binds the
  // address after that): answers up to kAcceptsPerWakeup connections already queued (a
  // scraper holds one or two; any more are reset), then closes the listener; requests in
  // progress finish (/readyz says 503 from here on).
  void stop_listening();

  // For the libev callbacks.
  struct Client;
  void on_acceptable();
  void on_pause_over();
  void drop(Client* c);
  // The response to one parsed request: status line, headers and body, or for /metrics
  // the head only, with *body set to the producer of the rest.
  std::string respond(int method, const std::string& url, Producer* body);

 private:
  struct ev_loop* loop_;
  Render render_;
  Ready ready_;
  UniqueFd fd_;
  ev_io accept_w_;
  ev_timer pause_t_;
  std::unordered_set<Client*> clients_;
};

}  // namespace nsproxy
