#include "metrics.h"

#include <charconv>
#include <map>
#include <string_view>

#include "tenant.h"
#include "version.h"

namespace nsproxy {
namespace {

struct TenantTotals {
  TenantStats stats;
  uint64_t open = 0;
};

void append_number(std::string* out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

void append_number(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

void family(std::string* out, const char* name, const char* type, const char* help) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

// name{k1="v1",k2="v2"} value
template <class V>
void sample(std::string* out, std::string_view name, std::string_view k1, std::string_view v1,
            std::string_view k2, std::string_view v2, V value) {
  out->append(name);
  if (!k1.empty()) {
    out->push_back('{');
    out->append(k1);
    out->append("=\"");
    append_label_value(out, v1);
    out->push_back('"');
    if (!k2.empty()) {
      out->append(",");
      out->append(k2);
      out->append("=\"");
      append_label_value(out, v2);
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
  append_number(out, value);
  out->push_back('\n');
}

template <class V>
void sample(std::string* out, std::string_view name, V value) {
  sample(out, name, {}, {}, {}, {}, value);
}

// The _bucket/_sum/_count lines of one histogram; tenant empty: no tenant label.
void histogram(std::string* out, const std::string& name, std::string_view tenant,
               const Histogram& h) {
  const std::string bucket = name + "_bucket";
  char le[32];
  for (size_t i = 0; i <= h.bounds().size(); ++i) {
    std::string_view le_text = "+Inf";
    if (i < h.bounds().size()) {
      auto r = std::to_chars(le, le + sizeof le, h.bounds()[i]);
      le_text = std::string_view(le, static_cast<size_t>(r.ptr - le));
    }
    uint64_t n = i < h.bounds().size() ? h.cumulative(i) : h.count();
    if (tenant.empty()) {
      sample(out, bucket, "le", le_text, {}, {}, n);
    } else {
      sample(out, bucket, "tenant", tenant, "le", le_text, n);
    }
  }
  std::string_view key = tenant.empty() ? std::string_view() : "tenant";
  sample(out, name + "_sum", key, tenant, {}, {}, h.sum());
  sample(out, name + "_count", key, tenant, {}, {}, h.count());
}

}  // namespace

void append_label_value(std::string* out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '"') {
      out->append("\\\"");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void render_metrics(std::string* out, const Registry& registry, const Worker& worker,
                    const ControlServer::RequestCounts& control) {
  std::map<std::string_view, TenantTotals> tenants;
  registry.for_each([&tenants](const Registration& reg) {
    if (!reg.tenant) return;
    TenantTotals& t = tenants[reg.tenant->id];
    t.stats.add(reg.tenant->stats);
    t.open += reg.tenant->connections;
  });

  family(out, "nsproxy_build_info", "gauge", "nsproxyd's version.");
  sample(out, "nsproxy_build_info", "version", kVersion, {}, {}, uint64_t{1});
  family(out, "nsproxy_registrations", "gauge", "Registered network namespaces (attachments).");
  sample(out, "nsproxy_registrations", static_cast<uint64_t>(registry.size()));
  family(out, "nsproxy_listeners", "gauge", "Listening sockets inside tenant namespaces.");
  sample(out, "nsproxy_listeners", static_cast<uint64_t>(registry.listener_count()));
  family(out, "nsproxy_connections", "gauge", "Open tenant connections, all tenants.");
  sample(out, "nsproxy_connections", worker.connections);

  family(out, "nsproxy_tenant_connections", "gauge", "Open connections of a tenant.");
  for (const auto& [id, t] : tenants) sample(out, "nsproxy_tenant_connections", "tenant", id, {}, {}, t.open);
  family(out, "nsproxy_tenant_connections_total", "counter",
         "Connections a tenant opened (refused ones included).");
  for (const auto& [id, t] : tenants) {
    sample(out, "nsproxy_tenant_connections_total", "tenant", id, {}, {}, t.stats.connections_total);
  }
  family(out, "nsproxy_tenant_requests_total", "counter",
         "HTTP responses to a tenant, by status class (nsproxyd's own error answers included).");
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (const auto& [id, t] : tenants) {
    for (size_t c = 0; c < 5; ++c) {
      sample(out, "nsproxy_tenant_requests_total", "tenant", id, "code", kClasses[c],
             t.stats.requests[c]);
    }
  }
  family(out, "nsproxy_tenant_request_duration_seconds", "histogram",
         "From a request's first byte to its complete response.");
  for (const auto& [id, t] : tenants) {
    histogram(out, "nsproxy_tenant_request_duration_seconds", id, t.stats.request_duration);
  }
  family(out, "nsproxy_tenant_received_bytes_total", "counter", "Bytes received from a tenant.");
  for (const auto& [id, t] : tenants) {
    sample(out, "nsproxy_tenant_received_bytes_total", "tenant", id, {}, {}, t.stats.received_bytes);
  }
  family(out, "nsproxy_tenant_sent_bytes_total", "counter", "Bytes sent to a tenant.");
  for (const auto& [id, t] : tenants) {
    sample(out, "nsproxy_tenant_sent_bytes_total", "tenant", id, {}, {}, t.stats.sent_bytes);
  }
  family(out, "nsproxy_tenant_refused_total", "counter",
         "Connections or requests nsproxyd turned away itself, by reason.");
  for (const auto& [id, t] : tenants) {
    for (size_t r = 0; r < t.stats.refused.size(); ++r) {
      if (t.stats.refused[r] == 0) continue;
      sample(out, "nsproxy_tenant_refused_total", "tenant", id, "reason",
             refusal_label(static_cast<Refusal>(r)), t.stats.refused[r]);
    }
  }
  family(out, "nsproxy_upstream_errors_total", "counter",
         "Failures talking to a tenant's upstream, by kind.");
  for (const auto& [id, t] : tenants) {
    for (size_t k = 0; k < t.stats.upstream_errors.size(); ++k) {
      if (t.stats.upstream_errors[k] == 0) continue;
      sample(out, "nsproxy_upstream_errors_total", "tenant", id, "kind",
             upstream_error_label(static_cast<UpstreamError>(k)), t.stats.upstream_errors[k]);
    }
  }

  family(out, "nsproxy_control_requests_total", "counter",
         "Control socket requests, by operation and result (ok or the error code).");
  for (const auto& [key, n] : control) {
    sample(out, "nsproxy_control_requests_total", "op", key.first, "result", key.second, n);
  }
  family(out, "nsproxy_listener_setup_duration_seconds", "histogram",
         "Creating a registration's listeners inside its namespace (setns .. setns back).");
  histogram(out, "nsproxy_listener_setup_duration_seconds", {}, registry.listener_setup());
  family(out, "nsproxy_reclaimed_total", "counter",
         "Registrations dropped because their namespace vanished without a DEL.");
  sample(out, "nsproxy_reclaimed_total", registry.reclaimed());
}

}  // namespace nsproxy
