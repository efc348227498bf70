#include "control/metrics.h"

#include <algorithm>
#include <charconv>
#include <map>

#include "control/registry.h"
#include "forward/acceptor.h"
#include "forward/tenant.h"
#include "forward/worker.h"
#include "version.h"

namespace nsproxy {
namespace {

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

// `name{k1="v1",k2="v2"} value`; labels are optional (empty k1 / k2).
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
      out->push_back(',');
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

// The _bucket/_sum/_count lines of one histogram; no tenant label when tenant is null.
void histogram(std::string* out, std::string_view name, const std::string* tenant,
               const Histogram& h) {
  for (size_t i = 0; i <= h.bounds().size(); ++i) {
    out->append(name);
    out->append("_bucket{");
    if (tenant != nullptr) {
      out->append("tenant=\"");
      append_label_value(out, *tenant);
      out->append("\",");
    }
    out->append("le=\"");
    if (i < h.bounds().size()) {
      append_number(out, h.bounds()[i]);
    } else {
      out->append("+Inf");
    }
    out->append("\"} ");
    append_number(out, i < h.bounds().size() ? h.cumulative(i) : h.count());
    out->push_back('\n');
  }
  std::string_view key = tenant != nullptr ? "tenant" : "";
  std::string_view value = tenant != nullptr ? std::string_view(*tenant) : "";
  for (const char* suffix : {"_sum", "_count"}) {
    out->append(name);
    out->append(suffix);
    if (!key.empty()) {
      out->append("{tenant=\"");
      append_label_value(out, value);
      out->append("\"}");
    }
    out->push_back(' ');
    if (suffix[1] == 's') {
      append_number(out, h.sum());
    } else {
      append_number(out, h.count());
    }
    out->push_back('\n');
  }
}

constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

// The per-tenant families, in order: header, then one tenant's lines.
struct TenantFamily {
  const char* name;
  const char* type;
  const char* help;
  void (*lines)(std::string* out, const TenantTotals& t);
};

const TenantFamily kTenantFamilies[] = {
    {"nsproxy_tenant_connections", "gauge", "Open connections of a tenant.",
     [](std::string* out, const TenantTotals& t) {
       sample(out, "nsproxy_tenant_connections", "tenant", t.id, {}, {}, t.open);
     }},
    {"nsproxy_tenant_connections_total", "counter",
     "Connections a tenant opened (refused ones included).",
     [](std::string* out, const TenantTotals& t) {
       sample(out, "nsproxy_tenant_connections_total", "tenant", t.id, {}, {},
              t.stats.connections_total);
     }},
    {"nsproxy_tenant_at_connection_limit", "gauge",
     "1 while a tenant's listeners hold new connections in the backlog: at its connection "
     "limit, or at its fair share of a spent daemon budget.",
     [](std::string* out, const TenantTotals& t) {
       sample(out, "nsproxy_tenant_at_connection_limit", "tenant", t.id, {}, {},
              uint64_t{t.at_limit ? 1u : 0u});
     }},
    {"nsproxy_tenant_requests_total", "counter",
     "HTTP responses to a tenant, by status class (nsproxyd's own error answers included).",
     [](std::string* out, const TenantTotals& t) {
       for (size_t c = 0; c < 5; ++c) {
         sample(out, "nsproxy_tenant_requests_total", "tenant", t.id, "code", kClasses[c],
                t.stats.requests[c]);
       }
     }},
    {"nsproxy_tenant_request_duration_seconds", "histogram",
     "From a request's first byte to its complete response.",
     [](std::string* out, const TenantTotals& t) {
       histogram(out, "nsproxy_tenant_request_duration_seconds", &t.id, t.stats.request_duration);
     }},
    {"nsproxy_tenant_received_bytes_total", "counter", "Bytes received from a tenant.",
     [](std::string* out, const TenantTotals& t) {
       sample(out, "nsproxy_tenant_received_bytes_total", "tenant", t.id, {}, {},
              t.stats.received_bytes);
     }},
    {"nsproxy_tenant_sent_bytes_total", "counter", "Bytes sent to a tenant.",
     [](std::string* out, const TenantTotals& t) {
       sample(out, "nsproxy_tenant_sent_bytes_total", "tenant", t.id, {}, {}, t.stats.sent_bytes);
     }},
    {"nsproxy_tenant_refused_total", "counter",
     "Connections or requests nsproxyd turned away itself, by reason.",
     [](std::string* out, const TenantTotals& t) {
       for (size_t r = 0; r < t.stats.refused.size(); ++r) {
         if (t.stats.refused[r] == 0) continue;
         sample(out, "nsproxy_tenant_refused_total", "tenant", t.id, "reason",
                refusal_label(static_cast<Refusal>(r)), t.stats.refused[r]);
       }
     }},
    {"nsproxy_tenant_reclaimed_total", "counter",
     "A tenant's connections nsproxyd closed to make room for a tenant below its fair share "
     "of the connection budget (or, out of fds, for anyone), by kind: idle, head.",
     [](std::string* out, const TenantTotals& t) {
       for (size_t k = 0; k < t.stats.reclaimed.size(); ++k) {
         if (t.stats.reclaimed[k] == 0) continue;
         sample(out, "nsproxy_tenant_reclaimed_total", "tenant", t.id, "kind",
                reclaim_label(static_cast<Reclaim>(k)), t.stats.reclaimed[k]);
       }
     }},
    {"nsproxy_upstream_errors_total", "counter",
     "Failures talking to a tenant's upstream, by kind.",
     [](std::string* out, const TenantTotals& t) {
       for (size_t k = 0; k < t.stats.upstream_errors.size(); ++k) {
         if (t.stats.upstream_errors[k] == 0) continue;
         sample(out, "nsproxy_upstream_errors_total", "tenant", t.id, "kind",
                upstream_error_label(static_cast<UpstreamError>(k)), t.stats.upstream_errors[k]);
       }
     }},
};
constexpr size_t kTenantFamilyCount = sizeof kTenantFamilies / sizeof kTenantFamilies[0];

void daemon_head(std::string* out, const MetricsSnapshot& m) {
  family(out, "nsproxy_build_info", "gauge", "nsproxyd's version.");
  sample(out, "nsproxy_build_info", "version", kVersion, {}, {}, uint64_t{1});
  family(out, "nsproxy_registrations", "gauge", "Registered network namespaces (attachments).");
  sample(out, "nsproxy_registrations", m.registrations);
  family(out, "nsproxy_listeners", "gauge", "Listening sockets inside tenant namespaces.");
  sample(out, "nsproxy_listeners", m.listeners);
  family(out, "nsproxy_connections", "gauge", "Open tenant connections, all tenants.");
  sample(out, "nsproxy_connections", m.connections);
  family(out, "nsproxy_worker_connections", "gauge",
         "Open tenant connections each worker thread serves (worker 0 alone with --workers 0: "
         "the main thread).");
  for (size_t i = 0; i < m.worker_connections.size(); ++i) {
    sample(out, "nsproxy_worker_connections", "worker", std::to_string(i), {}, {},
           m.worker_connections[i]);
  }
}

void daemon_tail(std::string* out, const MetricsSnapshot& m) {
  family(out, "nsproxy_control_requests_total", "counter",
         "Control socket requests, by operation and result (ok or the error code).");
  for (const auto& [key, n] : m.control) {
    sample(out, "nsproxy_control_requests_total", "op", key.first, "result", key.second, n);
  }
  family(out, "nsproxy_listener_setup_duration_seconds", "histogram",
         "Creating a registration's listeners inside its namespace (setns .. setns back).");
  histogram(out, "nsproxy_listener_setup_duration_seconds", nullptr, m.listener_setup);
  family(out, "nsproxy_reclaimed_total", "counter",
         "Registrations dropped because their namespace vanished without a DEL.");
  sample(out, "nsproxy_reclaimed_total", m.reclaimed);
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

MetricsSnapshot snapshot_metrics(const Registry& registry, const Acceptor& acceptor,
                                 const ControlServer::RequestCounts& control) {
  MetricsSnapshot m;
  m.registrations = registry.size();
  m.listeners = registry.listener_count();
  m.connections = acceptor.connections();
  for (const Worker* w : acceptor.workers()) m.worker_connections.push_back(w->connections.load());
  m.reclaimed = registry.reclaimed();
  m.listener_setup = registry.listener_setup();
  m.control = control;
  std::map<std::string_view, size_t> index;  // id -> position in m.tenants
  m.tenants.reserve(registry.size());
  registry.for_each([&](const Registration& reg) {
    if (!reg.tenant) return;
    auto [it, fresh] = index.try_emplace(reg.tenant->id, m.tenants.size());
    if (fresh) m.tenants.push_back(TenantTotals{std::string(reg.tenant->id), {}, 0});
    TenantTotals& t = m.tenants[it->second];
    t.stats.add(reg.tenant->total_stats());
    t.open += reg.tenant->connections.load();
    t.at_limit = t.at_limit || reg.tenant->holding();
  });
  std::sort(m.tenants.begin(), m.tenants.end(),
            [](const TenantTotals& a, const TenantTotals& b) { return a.id < b.id; });
  return m;
}

// Pieces: family_ 0 is the daemon-wide head; 1..kTenantFamilyCount the per-tenant
// families (a header when tenant_ is 0, then kTenantsPerPiece tenants per call); then the
// daemon-wide tail.
bool MetricsRenderer::next(std::string* out) {
  if (family_ == 0) {
    daemon_head(out, m_);
    family_ = 1;
    return true;
  }
  if (family_ <= kTenantFamilyCount) {
    const TenantFamily& f = kTenantFamilies[family_ - 1];
    if (tenant_ == 0) family(out, f.name, f.type, f.help);
    size_t end = std::min(m_.tenants.size(), tenant_ + kTenantsPerPiece);
    for (; tenant_ < end; ++tenant_) f.lines(out, m_.tenants[tenant_]);
    if (tenant_ == m_.tenants.size()) {
      ++family_;
      tenant_ = 0;
    }
    return true;
  }
  if (family_ == kTenantFamilyCount + 1) {
    daemon_tail(out, m_);
    ++family_;
    return true;
  }
  return false;
}

void render_metrics(std::string* out, MetricsSnapshot snapshot) {
  MetricsRenderer r(std::move(snapshot));
  while (r.next(out)) {
  }
}

}  // namespace nsproxy
