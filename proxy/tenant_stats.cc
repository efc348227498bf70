#include "tenant_stats.h"

#include <cerrno>

namespace nsproxy {

const char* refusal_label(Refusal r) {
  switch (r) {
    case Refusal::ConnectionLimit: return "connection_limit";
    case Refusal::HeadTimeout: return "head_timeout";
    case Refusal::BodyTimeout: return "body_timeout";
    case Refusal::HeadTooLarge: return "head_too_large";
    case Refusal::BadRequest: return "bad_request";
    case Refusal::MethodNotAllowed: return "method_not_allowed";
    case Refusal::kCount: break;
  }
  return "other";
}

const char* upstream_error_label(UpstreamError e) {
  switch (e) {
    case UpstreamError::ConnectRefused: return "connect_refused";
    case UpstreamError::Timeout: return "timeout";
    case UpstreamError::Reset: return "reset";
    case UpstreamError::Malformed: return "malformed";
    case UpstreamError::Other:
    case UpstreamError::kCount: break;
  }
  return "other";
}

UpstreamError upstream_error_of(int err) {
  switch (err) {
    case ECONNREFUSED: return UpstreamError::ConnectRefused;
    case ETIMEDOUT: return UpstreamError::Timeout;
    case ECONNRESET:
    case EPIPE: return UpstreamError::Reset;
    default: return UpstreamError::Other;
  }
}

void TenantStats::add(const TenantStats& o) {
  connections_total += o.connections_total;
  for (size_t i = 0; i < requests.size(); ++i) requests[i] += o.requests[i];
  request_duration.add(o.request_duration);
  received_bytes += o.received_bytes;
  sent_bytes += o.sent_bytes;
  for (size_t i = 0; i < refused.size(); ++i) refused[i] += o.refused[i];
  for (size_t i = 0; i < upstream_errors.size(); ++i) upstream_errors[i] += o.upstream_errors[i];
}

}  // namespace nsproxy
