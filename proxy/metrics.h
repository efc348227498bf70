// The Prometheus exposition (text format 0.0.4) of the daemon's state and counters.
// Metric names are an interface (dashboards and the tests use them exactly):
//   nsproxy_build_info{version}                         gauge, 1
//   nsproxy_registrations, nsproxy_listeners            gauges
//   nsproxy_connections                                 gauge, open tenant connections
//   nsproxy_tenant_connections{tenant}                  gauge
//   nsproxy_tenant_connections_total{tenant}            counter
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
#pragma once

#include <string>

#include "control_server.h"
#include "registry.h"
#include "worker.h"

namespace nsproxy {

void render_metrics(std::string* out, const Registry& registry, const Worker& worker,
                    const ControlServer::RequestCounts& control);

// A label value, escaped as the text format wants (backslash, quote, newline).
void append_label_value(std::string* out, std::string_view v);

}  // namespace nsproxy
