// nsproxy-metrics-bench N [ROUNDS]: the cost of one /metrics scrape at N tenants, without
// N network namespaces (10,000 tenants need 20,000 fds, more than this machine's hard
// limit allows): N tenants with busy counters are made up, and the exposition is rendered
// ROUNDS times. Prints the median render time and the size. Used by test/bench.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "control/metrics.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: nsproxy-metrics-bench TENANTS [ROUNDS]\n");
    return 2;
  }
  size_t n = std::strtoul(argv[1], nullptr, 10);
  int rounds = argc > 2 ? std::atoi(argv[2]) : 9;
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // A container id: 64 hex digits, as podman and containerd make them.
    char buf[65];
    std::snprintf(buf, sizeof buf, "%016zx%048x", i * 2654435761u, 0xabcdefu);
    ids.emplace_back(buf);
  }
  nsproxy::MetricsSnapshot m;
  m.registrations = m.listeners = n;
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < n; ++i) {
    m.tenants.emplace_back();
    nsproxy::TenantTotals& t = m.tenants.back();
    t.id = ids[i];
    t.open = i % 7;
    t.stats.connections_total = 1000 + i;
    for (size_t c = 0; c < 5; ++c) t.stats.requests[c] = i * c;
    for (int k = 0; k < 50; ++k) t.stats.record_response(200, 0.0001 * k);
    t.stats.refuse(nsproxy::Refusal::ConnectionLimit);
    t.stats.upstream_failed(nsproxy::UpstreamError::Timeout);
    t.stats.received_bytes = 123456789;
    t.stats.sent_bytes = 987654321;
  }
  // The daemon renders piece by piece, each piece between two loop iterations: the
  // longest piece is how long one scrape can hold the loop at once.
  std::vector<double> us, longest;
  size_t size = 0;
  for (int r = 0; r < rounds; ++r) {
    std::string out, piece;
    nsproxy::MetricsRenderer renderer(m);
    double max_piece = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      auto p0 = std::chrono::steady_clock::now();
      bool more = renderer.next(&piece);
      max_piece = std::max(
          max_piece,
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - p0).count());
      if (!more) break;
      out += piece;
      piece.clear();
    }
    auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    longest.push_back(max_piece);
    size = out.size();
  }
  std::sort(us.begin(), us.end());
  std::sort(longest.begin(), longest.end());
  std::printf(
      "{\"tenants\": %zu, \"render_us_median\": %.0f, \"longest_piece_us_median\": %.0f, "
      "\"bytes\": %zu}\n",
      n, us[us.size() / 2], longest[longest.size() / 2], size);
  return 0;
}
