// Who a listener serves: the identity the daemon vouches for to upstreams. Shared by a
// registration's listeners and kept alive by them (and so by their sessions).
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "control_protocol.h"
#include "forward/intrusive_list.h"
#include "forward/proxy_config.h"
#include "forward/session.h"
#include "forward/tenant_stats.h"
#include "forward/token_bucket.h"

namespace nsproxy {

inline const std::map<std::string, std::string> kNoLabels;

struct Tenant {
  // Its id, labels and header names are views into its registration's request (which
  // outlives the tenant: the tenant lives as long as that registration's listeners), the
  // header names resolved to the daemon's defaults when the registration names none; a
  // tenant holds no copies of them.
  std::string_view id;  // container id (CNI) or the manual --id
  std::string display;  // "net/cid/eth0" or the manual id, for logs
  const std::map<std::string, std::string>* labels = &kNoLabels;
  std::string_view tenant_header;
  std::string_view label_header_prefix;
  size_t connections = 0;  // open connections over all its listeners
  // Its listeners (they add and remove themselves). While the tenant is at its
  // connection limit none of them accepts: the excess waits in their backlogs, held by
  // the kernel, and costs the daemon nothing (no fd, no session, no budget).
  std::vector<class Listener*> listeners;
  bool at_limit = false;
  // Holding the excess in the backlogs as well: the daemon's connection budget is spent
  // and this tenant holds its fair share or more (see ConnectionBudget).
  bool over_share = false;
  bool holding() const { return at_limit || over_share; }
  // Limits, resolved from the registration's "limits" and the daemon's defaults.
  size_t max_connections = 0;  // its listeners stop accepting at this many connections
  TokenBucket rate;            // requests admitted (http mode); 429 beyond
  size_t max_in_flight = 0;    // requests at upstreams at once; more wait in `waiting`
  size_t in_flight = 0;        // slots held now
  // Its http connections by what they are doing, each oldest first: what the daemon
  // reclaims when its connection budget runs out (see ConnectionBudget).
  IntrusiveList<Session> idle;     // keep-alive, between requests
  IntrusiveList<Session> heads;    // a request head not complete yet (or none sent)
  IntrusiveList<Session> waiting;  // a request waiting for an in-flight slot
  size_t holder_index = 0;
  // Refusals (and reclaimed connections) are logged at most once a second per tenant;
  // the rest are counted.
  struct LogThrottle {
    double last = -1;
    size_t suppressed = 0;
    bool allow(double now) {
      if (last >= 0 && now - last < 1.0) {
        ++suppressed;
        return false;
      }
      last = now;
      return true;
    }
  } refusal_log, reclaim_log;  // in ConnectionBudget's holders, while connections > 0
  TenantStats stats;           // for /metrics and nsproxyctl list

  // The limits in effect: the registration's own, else the daemon's defaults. Every
  // Tenant gets this before its listeners start (a limit of 0 would hold them).
  void apply_limits(const ProxyConfig& cfg, const TenantLimits& own, double now) {
    max_connections = own.connections.value_or(cfg.max_connections_per_tenant);
    double r = own.rate.value_or(cfg.tenant_rate);
    double b = own.burst              ? *own.burst
               : cfg.tenant_burst > 0 ? static_cast<double>(cfg.tenant_burst)
                                      : std::ceil(r);
    rate.configure(r, b, now);
    max_in_flight = cfg.tenant_max_in_flight;
  }
};

}  // namespace nsproxy
