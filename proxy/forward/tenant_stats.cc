#include "forward/tenant_stats.h"

#include <cerrno>

namespace nsproxy {

const char* refusal_label(Refusal r) {
  switch (r) {
    case Refusal::ConnectionLimit:
      return "connection_limit";
    case Refusal::HeadTimeout:
      return "head_timeout";
    case Refusal::BodyTimeout:
      return "body_timeout";
    case Refusal::HeadTooLarge:
      return "head_too_large";
    case Refusal::BadRequest:
      return "bad_request";
    case Refusal::MethodNotAllowed:
      return "method_not_allowed";
    case Refusal::RateLimit:
      return "rate_limit";
    case Refusal::InFlightLimit:
      return "in_flight_limit";
    case Refusal::TlsHandshake:
      return "tls_handshake";
    case Refusal::TlsRenegotiation:
      return "tls_renegotiation";
    case Refusal::kCount:
      break;
  }
  return "other";
}

const char* reclaim_label(Reclaim r) {
  return r == Reclaim::Idle ? "idle" : "head";
}

const char* upstream_error_label(UpstreamError e) {
  switch (e) {
    case UpstreamError::ConnectRefused:
      return "connect_refused";
    case UpstreamError::Timeout:
      return "timeout";
    case UpstreamError::Reset:
      return "reset";
    case UpstreamError::Malformed:
      return "malformed";
    case UpstreamError::Other:
    case UpstreamError::kCount:
      break;
  }
  return "other";
}

UpstreamError upstream_error_of(int err) {
  switch (err) {
    case ECONNREFUSED:
      return UpstreamError::ConnectRefused;
    case ETIMEDOUT:
      return UpstreamError::Timeout;
    case ECONNRESET:
    case EPIPE:
      return UpstreamError::Reset;
    default:
      return UpstreamError::Other;
  }
}

void TenantStats::add(const TenantStats& o) {
  connections_total += o.connections_total.get();
  for (size_t i = 0; i < requests.size(); ++i) requests[i] += o.requests[i].get();
  request_duration.add(o.request_duration);
  received_bytes += o.received_bytes.get();
  sent_bytes += o.sent_bytes.get();
  for (size_t i = 0; i < refused.size(); ++i) refused[i] += o.refused[i].get();
  for (size_t i = 0; i < upstream_errors.size(); ++i) {
    upstream_errors[i] += o.upstream_errors[i].get();
  }
  for (size_t i = 0; i < reclaimed.size(); ++i) reclaimed[i] += o.reclaimed[i].get();
}

uint64_t TenantStats::requests_total() const {
  uint64_t n = 0;
  for (const Counter& r : requests) n += r.get();
  return n;
}

uint64_t TenantStats::errors_total() const {
  uint64_t n = 0;
  for (const Counter& r : refused) n += r.get();
  for (const Counter& e : upstream_errors) n += e.get();
  return n;
}

nlohmann::json TenantStats::to_json() const {
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  nlohmann::json responses = nlohmann::json::object();
  for (size_t c = 0; c < requests.size(); ++c) responses[kClasses[c]] = requests[c].get();
  nlohmann::json ref = nlohmann::json::object();
  for (size_t r = 0; r < refused.size(); ++r) {
    if (refused[r] != 0) ref[refusal_label(static_cast<Refusal>(r))] = refused[r].get();
  }
  nlohmann::json up = nlohmann::json::object();
  for (size_t k = 0; k < upstream_errors.size(); ++k) {
    if (upstream_errors[k] != 0)
      up[upstream_error_label(static_cast<UpstreamError>(k))] = upstream_errors[k].get();
  }
  nlohmann::json rec = nlohmann::json::object();
  for (size_t k = 0; k < reclaimed.size(); ++k) {
    if (reclaimed[k] != 0) rec[reclaim_label(static_cast<Reclaim>(k))] = reclaimed[k].get();
  }
  return {{"requests", requests_total()},
          {"errors", errors_total()},
          {"connections_total", connections_total.get()},
          {"received_bytes", received_bytes.get()},
          {"sent_bytes", sent_bytes.get()},
          {"responses", std::move(responses)},
          {"refused", std::move(ref)},
          {"upstream_errors", std::move(up)},
          {"reclaimed", std::move(rec)}};
}

}  // namespace nsproxy
