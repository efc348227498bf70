// Who a listener serves: the identity the daemon vouches for to upstreams. Shared by a
// registration's listeners and kept alive by them (and so by their sessions).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tenant_stats.h"

namespace nsproxy {

struct Tenant {
  std::string id;       // container id (CNI) or the manual --id
  std::string display;  // "net/cid/eth0" or the manual id, for logs
  std::map<std::string, std::string> labels;
  std::string tenant_header;        // resolved: registration's or the daemon's default
  std::string label_header_prefix;  // resolved
  size_t connections = 0;           // open connections over all its listeners
  // Its listeners (they add and remove themselves). While the tenant is at its
  // connection limit none of them accepts: the excess waits in their backlogs, held by
  // the kernel, and costs the daemon nothing (no fd, no session, no budget).
  std::vector<class Listener*> listeners;
  bool at_limit = false;
  TenantStats stats;                // for /metrics and nsproxyctl list
};

}  // namespace nsproxy
