// The Prometheus exposition (text format 0.0.4) of the daemon's state and counters.
// Metric names are an interface (dashboards and the tests use them exactly):
//   nsproxy_build_info{version}                         gauge, 1
//   nsproxy_registrations, nsproxy_listeners            gauges
//   nsproxy_connections                                 gauge, open tenant connections
//   nsproxy_worker_connections{worker}                  gauge, per worker thread
//   nsproxy_tenant_connections{tenant}                  gauge
//   nsproxy_tenant_connections_total{tenant}            counter
//   nsproxy_tenant_at_connection_limit{tenant}          gauge, 1 while its listeners wait
//   nsproxy_tenant_requests_total{tenant,code}          counter, code 1xx..5xx
//   nsproxy_tenant_request_duration_seconds{tenant}     histogram
//   nsproxy_tenant_received_bytes_total{tenant}         counter, from the tenant
//   nsproxy_tenant_sent_bytes_total{tenant}             counter, to the tenant
//   nsproxy_tenant_refused_total{tenant,reason}         counter
//   nsproxy_upstream_errors_total{tenant,kind}          counter
//   nsproxy_control_requests_total{op,result}           counter
//   nsproxy_listener_setup_duration_seconds             histogram
//   nsproxy_reclaimed_total                             counter
// `tenant` is the registration's id (the container id, or nsproxyctl's --id); several
// registrations with the same id (one container on two networks) are summed into one
// series. A tenant's series exist while it is registered and vanish with it.
// requests_total has a sample for every code class; refused_total and
// upstream_errors_total only for the reasons and kinds that happened.
//
// A scrape copies the counters into a snapshot (the main thread reads the workers'
// counters, each written by one worker: relaxed atomics, never torn; registrations may
// come and go while it is sent), then renders it a few tenants at a time, so that a
// scrape of 10,000 tenants (tens of MB) never holds the proxy's loop for long.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control/control_server.h"
#include "forward/histogram.h"
#include "forward/tenant_stats.h"

namespace nsproxy {

class Registry;
class Acceptor;

struct TenantTotals {
  std::string id;
  TenantStats stats;
  uint64_t open = 0;      // open connections
  bool at_limit = false;  // at --max-connections-per-tenant: its listeners wait
};

struct MetricsSnapshot {
  uint64_t registrations = 0;
  uint64_t listeners = 0;
  uint64_t connections = 0;
  std::vector<uint64_t> worker_connections;  // by worker index
  uint64_t reclaimed = 0;
  Histogram listener_setup{kListenerSetupBounds};
  ControlServer::RequestCounts control;
  std::vector<TenantTotals> tenants;  // sorted by id, one per id
};

MetricsSnapshot snapshot_metrics(const Registry& registry, const Acceptor& acceptor,
                                 const ControlServer::RequestCounts& control);

// Renders a snapshot piece by piece.
class MetricsRenderer {
 public:
  static constexpr size_t kTenantsPerPiece = 64;

  explicit MetricsRenderer(MetricsSnapshot snapshot) : m_(std::move(snapshot)) {}
  // Appends the next piece (a family header, or up to kTenantsPerPiece tenants of one
  // family) to *out. Returns false when the exposition is complete (nothing appended).
  bool next(std::string* out);

 private:
  MetricsSnapshot m_;
  size_t family_ = 0;
  size_t tenant_ = 0;
};

// The whole exposition at once (tests, small daemons).
void render_metrics(std::string* out, MetricsSnapshot snapshot);

// A label value, escaped as the text format wants (backslash, quote, newline).
void append_label_value(std::string* out, std::string_view v);

}  // namespace nsproxy
