// What /metrics reports per tenant: counters bumped by the event loop that owns the
// tenant's connections and read when Prometheus scrapes. Counting costs no allocation and
// no lock. A tenant's connections are spread over the worker threads: each worker keeps
// its own TenantStats per tenant (its TenantShard, tenant.h) and a scrape adds them up
// (add()). Each counter has one writer, its worker; the main thread only reads (relaxed
// atomics, counter.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "forward/counter.h"
#include "forward/histogram.h"

namespace nsproxy {

// Why nsproxyd turned a tenant's connection or request away itself.
enum class Refusal : uint8_t {
  ConnectionLimit,   // tenant or daemon connection limit (503, or closed in tcp mode)
  HeadTimeout,       // request head not received in time (408)
  BodyTimeout,       // request body stalled (408)
  HeadTooLarge,      // 431
  BadRequest,        // malformed or smuggling-shaped request (400)
  MethodNotAllowed,  // CONNECT (405)
  RateLimit,         // over its request rate (429)
  InFlightLimit,     // waited too long for an upstream slot (503)
  TlsHandshake,      // https: TLS handshake failed or not completed in time (closed)
  TlsRenegotiation,  // https: the tenant tried to renegotiate (closed)
  kCount
};
const char* refusal_label(Refusal r);

// Which of a tenant's connections the daemon closed to make room for another tenant
// (see ConnectionBudget).
enum class Reclaim : uint8_t {
  Idle,  // a keep-alive connection between requests
  Head,  // a connection whose request head had not arrived
  kCount
};
const char* reclaim_label(Reclaim r);  // "idle", "head"

// What went wrong with the upstream.
enum class UpstreamError : uint8_t {
  ConnectRefused,  // connect: ECONNREFUSED (nobody listens)
  Timeout,         // connect or response timeout (504)
  Reset,           // reset or closed in the middle of a response
  Malformed,       // unparsable response (502)
  Other,           // any other socket error (unreachable, out of fds, ...)
  kCount
};
const char* upstream_error_label(UpstreamError e);
UpstreamError upstream_error_of(int err);  // from the errno of a failed socket call

// Request durations, seconds (Prometheus' default buckets).
inline constexpr double kRequestDurationBounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,    2.5,   5,    10};

static_assert(std::size(kRequestDurationBounds) <= Histogram::kMaxBuckets);

struct TenantStats {
  Counter connections_total;          // accepted, refused ones included
  std::array<Counter, 5> requests{};  // answered, by status class 1xx..5xx
  Histogram request_duration{kRequestDurationBounds};
  Counter received_bytes;  // from the tenant
  Counter sent_bytes;      // to the tenant
  std::array<Counter, static_cast<size_t>(Refusal::kCount)> refused{};
  std::array<Counter, static_cast<size_t>(UpstreamError::kCount)> upstream_errors{};
  std::array<Counter, static_cast<size_t>(Reclaim::kCount)> reclaimed{};

  void record_response(int status, double seconds) {
    int c = status / 100;
    if (c >= 1 && c <= 5) ++requests[static_cast<size_t>(c - 1)];
    request_duration.observe(seconds);
  }
  void refuse(Refusal r) { ++refused[static_cast<size_t>(r)]; }
  void upstream_failed(UpstreamError e) { ++upstream_errors[static_cast<size_t>(e)]; }
  void reclaim(Reclaim r) { ++reclaimed[static_cast<size_t>(r)]; }
  void add(const TenantStats& o);

  uint64_t requests_total() const;
  // nsproxyd's own refusals plus upstream failures (what nsproxyctl list calls errors;
  // responses the upstream itself sent with 4xx/5xx are requests, by class).
  uint64_t errors_total() const;
  // {"requests":N,"errors":N,"connections_total":N,"received_bytes":N,"sent_bytes":N,
  //  "responses":{"2xx":N,...},"refused":{"reason":N},"upstream_errors":{"kind":N},
  //  "reclaimed":{"idle":N,"head":N}}
  nlohmann::json to_json() const;
};

}  // namespace nsproxy
