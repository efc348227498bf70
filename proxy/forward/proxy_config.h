// Daemon-wide settings of the forwarding path (nsproxyd flags), with their defaults.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace nsproxy {

struct ProxyConfig {
  // Identity headers (http mode); a registration may name its own.
  std::string tenant_header = "X-Tenant-Id";
  std::string label_header_prefix = "X-Tenant-Label-";

  // Timeouts, seconds.
  double connect_timeout = 5;    // upstream connect
  double head_timeout = 10;      // whole request head must arrive (slowloris)
  double idle_timeout = 60;      // tenant keep-alive connection between requests
  double response_timeout = 60;  // upstream response head after the request was sent
  double body_timeout = 30;      // no body progress in either direction

  // Limits.
  size_t max_head_size = 64 * 1024;          // request head -> 431 beyond this
  size_t max_connections_per_tenant = 1024;  // per registration: its listeners stop accepting
  int listen_backlog = 1024;                 // where a tenant's excess connections wait
  // SO_SNDBUF and SO_RCVBUF of tenant and upstream sockets (the kernel doubles it); 0:
  // the kernel's autotuning, which lets a tenant that never reads park megabytes of
  // kernel memory per connection (docs/benchmarks.md, slow reader).
  int socket_buffer = 256 * 1024;
  size_t max_connections = 0;        // all tenants; 0: derived from RLIMIT_NOFILE
  size_t max_registrations = 65536;  // add beyond -> error "limit"
  // Per-tenant request rate (http mode), a token bucket; a registration may override.
  double tenant_rate = 0;   // requests/s; 0: no limit
  size_t tenant_burst = 0;  // bucket size; 0: one second's worth (>= 1)
  // Requests of one tenant forwarded to upstreams at once (http mode); more wait in line.
  size_t tenant_max_in_flight = 256;

  // Upstream connection pool (http mode), per upstream address.
  size_t upstream_idle_max =
      256;  // 32 made bursts of 64 keep-alive tenants reconnect (docs/benchmarks.md)
  double upstream_idle_timeout = 30;

  // Access log: one JSON line per HTTP request; nullptr = off.
  FILE* access_log = nullptr;
};

}  // namespace nsproxy
