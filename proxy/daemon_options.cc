#include "daemon_options.h"

#include <getopt.h>

#include <cstdio>
#include <cstdlib>

#include "address.h"
#include "version.h"

namespace nsproxy {
namespace {

void usage(FILE* out) {
  ProxyConfig d;
  std::fprintf(
      out,
      "usage: nsproxyd [OPTIONS]\n"
      "\n"
      "  --socket PATH                   control socket (default %s)\n"
      "  --state-dir DIR                 state directory (default /run/nsproxy)\n"
      "  --fsync                         fdatasync every state change (state dir on disk)\n"
      "  --log-level LEVEL               debug, info, warn or error (default info)\n"
      "  --log-format FORMAT             text or json (one object per line) (default text)\n"
      "  --access-log PATH               one JSON line per HTTP request (\"-\": stdout);\n"
      "                                  reopened on SIGHUP\n"
      "  --metrics-listen IP:PORT        serve /metrics, /healthz, /readyz (host namespace)\n"
      "  --no-watch-certificates         read https certificates again on SIGHUP only, not\n"
      "                                  also when their files change\n"
      "  --reconcile-interval SECONDS    drop registrations whose namespace vanished (default 10)\n"
      "  --allow-gid GID                 also serve control clients of this primary group\n"
      "  --max-registrations N           refuse add beyond N registrations (default 65536)\n"
      "  --max-connections N             tenant connections over all tenants (default: from\n"
      "                                  RLIMIT_NOFILE, (limit - 256) / 2)\n"
      "  --allow-host-netns              allow registering nsproxyd's own network namespace\n"
      "  --takeover                      take the listening sockets over from the nsproxyd\n"
      "                                  running on --socket (upgrade without refusing\n"
      "                                  tenants); starts normally when none runs\n"
      "  --workers N                     worker threads serving tenant connections (default:\n"
      "                                  one per online CPU; 0: the main thread serves them;\n"
      "                                  at most %d)\n"
      "  --detach                        fork; exit 0 once the new daemon serves (1 if it\n"
      "                                  failed); for the unit's ExecReload with --takeover\n"
      "  --drain-timeout SECONDS         after a takeover, the old daemon serves its open\n"
      "                                  connections at most this long (default 30)\n"
      "  --tenant-header NAME            identity header (default %s)\n"
      "  --label-header-prefix PREFIX    label header prefix (default %s)\n"
      "  --connect-timeout SECONDS       upstream connect (default %g)\n"
      "  --head-timeout SECONDS          request head must arrive within (default %g)\n"
      "  --idle-timeout SECONDS          keep-alive idle between requests (default %g)\n"
      "  --response-timeout SECONDS      upstream response head (default %g)\n"
      "  --body-timeout SECONDS          body inactivity (default %g)\n"
      "  --max-head-size BYTES           request head limit, 431 beyond (default %zu)\n"
      "  --max-connections-per-tenant N  per registration; at the limit its listeners stop\n"
      "                                  accepting until one ends (default %zu)\n"
      "  --listen-backlog N              listen backlog of tenant listeners: where a tenant's\n"
      "                                  connections beyond its limit wait (default %d)\n"
      "  --tenant-rate N                 requests per second per tenant (http mode), over\n"
      "                                  it 429 with Retry-After; 0: no limit (default 0)\n"
      "  --tenant-burst N                requests a tenant may send at once above the rate\n"
      "                                  (default: one second's worth)\n"
      "  --tenant-max-in-flight N        requests of one tenant at its upstreams at once;\n"
      "                                  more wait for a slot (default %zu)\n"
      "  --socket-buffer BYTES           SO_SNDBUF/SO_RCVBUF of tenant and upstream sockets;\n"
      "                                  0: kernel autotuning (default %d)\n"
      "  --upstream-idle-max N           idle pooled connections per upstream (default %zu)\n"
      "  --upstream-idle-timeout SECONDS close pooled connections idle that long (default %g)\n"
      "  --help, --version\n",
      kDefaultSocketPath, kMaxWorkers, d.tenant_header.c_str(), d.label_header_prefix.c_str(),
      d.connect_timeout, d.head_timeout, d.idle_timeout, d.response_timeout, d.body_timeout,
      d.max_head_size, d.max_connections_per_tenant, d.listen_backlog, d.tenant_max_in_flight,
      d.socket_buffer, d.upstream_idle_max, d.upstream_idle_timeout);
}

bool parse_seconds(const char* flag, const char* text, double* out) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (*text == '\0' || *end != '\0' || !(v > 0) || v > 86400) {
    std::fprintf(stderr, "nsproxyd: %s: expected seconds (0 < s <= 86400), got \"%s\"\n", flag,
                 text);
    return false;
  }
  *out = v;
  return true;
}

bool parse_count(const char* flag, const char* text, size_t min, size_t max, size_t* out) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(text, &end, 10);
  if (*text == '\0' || *text == '-' || *end != '\0' || v < min || v > max) {
    std::fprintf(stderr, "nsproxyd: %s: expected an integer %zu..%zu, got \"%s\"\n", flag, min, max,
                 text);
    return false;
  }
  *out = static_cast<size_t>(v);
  return true;
}

bool parse_header_flag(const char* flag, const char* text, std::string* out) {
  if (!valid_header_name(text)) {
    std::fprintf(stderr, "nsproxyd: %s: \"%s\" is not a valid header name\n", flag, text);
    return false;
  }
  *out = text;
  return true;
}

}  // namespace

int parse_options(int argc, char** argv, Options* o) {
  enum {
    kSocket = 256,
    kStateDir,
    kLogLevel,
    kAccessLog,
    kTenantHeader,
    kLabelPrefix,
    kConnectTimeout,
    kHeadTimeout,
    kIdleTimeout,
    kResponseTimeout,
    kBodyTimeout,
    kMaxHead,
    kMaxConns,
    kIdleMax,
    kIdlePoolTimeout,
    kReconcile,
    kAllowGid,
    kAllowHost,
    kMaxRegs,
    kMaxAllConns,
    kTakeover,
    kDrain,
    kFsync,
    kLogFormat,
    kMetricsListen,
    kDetach,
    kBacklog,
    kTenantRate,
    kTenantBurst,
    kInFlight,
    kSocketBuffer,
    kWorkers,
    kNoWatchCerts,
    kHelp,
    kShowVersion
  };
  static const option long_opts[] = {
      {"socket", required_argument, nullptr, kSocket},
      {"state-dir", required_argument, nullptr, kStateDir},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"access-log", required_argument, nullptr, kAccessLog},
      {"tenant-header", required_argument, nullptr, kTenantHeader},
      {"label-header-prefix", required_argument, nullptr, kLabelPrefix},
      {"connect-timeout", required_argument, nullptr, kConnectTimeout},
      {"head-timeout", required_argument, nullptr, kHeadTimeout},
      {"idle-timeout", required_argument, nullptr, kIdleTimeout},
      {"response-timeout", required_argument, nullptr, kResponseTimeout},
      {"body-timeout", required_argument, nullptr, kBodyTimeout},
      {"max-head-size", required_argument, nullptr, kMaxHead},
      {"max-connections-per-tenant", required_argument, nullptr, kMaxConns},
      {"upstream-idle-max", required_argument, nullptr, kIdleMax},
      {"upstream-idle-timeout", required_argument, nullptr, kIdlePoolTimeout},
      {"reconcile-interval", required_argument, nullptr, kReconcile},
      {"allow-gid", required_argument, nullptr, kAllowGid},
      {"max-registrations", required_argument, nullptr, kMaxRegs},
      {"takeover", no_argument, nullptr, kTakeover},
      {"drain-timeout", required_argument, nullptr, kDrain},
      {"max-connections", required_argument, nullptr, kMaxAllConns},
      {"allow-host-netns", no_argument, nullptr, kAllowHost},
      {"fsync", no_argument, nullptr, kFsync},
      {"log-format", required_argument, nullptr, kLogFormat},
      {"metrics-listen", required_argument, nullptr, kMetricsListen},
      {"detach", no_argument, nullptr, kDetach},
      {"listen-backlog", required_argument, nullptr, kBacklog},
      {"tenant-rate", required_argument, nullptr, kTenantRate},
      {"tenant-burst", required_argument, nullptr, kTenantBurst},
      {"tenant-max-in-flight", required_argument, nullptr, kInFlight},
      {"socket-buffer", required_argument, nullptr, kSocketBuffer},
      {"workers", required_argument, nullptr, kWorkers},
      {"no-watch-certificates", no_argument, nullptr, kNoWatchCerts},
      {"help", no_argument, nullptr, kHelp},
      {"version", no_argument, nullptr, kShowVersion},
      {nullptr, 0, nullptr, 0}};
  ProxyConfig& p = o->proxy;
  int c;
  while ((c = getopt_long(argc, argv, "", long_opts, nullptr)) != -1) {
    bool ok = true;
    switch (c) {
      case kSocket:
        o->socket_path = optarg;
        break;
      case kStateDir:
        o->state_dir = optarg;
        break;
      case kAccessLog:
        o->access_log_path = optarg;
        break;
      case kLogLevel:
        ok = parse_log_level(optarg, &o->log_level);
        if (!ok)
          std::fprintf(stderr,
                       "nsproxyd: --log-level: expected debug, info, warn or error, got \"%s\"\n",
                       optarg);
        break;
      case kTenantHeader:
        ok = parse_header_flag("--tenant-header", optarg, &p.tenant_header);
        break;
      case kLabelPrefix:
        ok = parse_header_flag("--label-header-prefix", optarg, &p.label_header_prefix);
        break;
      case kConnectTimeout:
        ok = parse_seconds("--connect-timeout", optarg, &p.connect_timeout);
        break;
      case kHeadTimeout:
        ok = parse_seconds("--head-timeout", optarg, &p.head_timeout);
        break;
      case kIdleTimeout:
        ok = parse_seconds("--idle-timeout", optarg, &p.idle_timeout);
        break;
      case kResponseTimeout:
        ok = parse_seconds("--response-timeout", optarg, &p.response_timeout);
        break;
      case kBodyTimeout:
        ok = parse_seconds("--body-timeout", optarg, &p.body_timeout);
        break;
      case kMaxHead:
        ok = parse_count("--max-head-size", optarg, 1024, 1 << 20, &p.max_head_size);
        break;
      case kMaxConns:
        ok = parse_count("--max-connections-per-tenant", optarg, 1, 1000000,
                         &p.max_connections_per_tenant);
        break;
      case kIdleMax:
        ok = parse_count("--upstream-idle-max", optarg, 0, 100000, &p.upstream_idle_max);
        break;
      case kIdlePoolTimeout:
        ok = parse_seconds("--upstream-idle-timeout", optarg, &p.upstream_idle_timeout);
        break;
      case kReconcile:
        ok = parse_seconds("--reconcile-interval", optarg, &o->reconcile_interval);
        break;
      case kAllowGid: {
        size_t gid = 0;
        ok = parse_count("--allow-gid", optarg, 0, 4294967294u, &gid);
        o->allow_gid = static_cast<long>(gid);
        break;
      }
      case kAllowHost:
        o->allow_host_netns = true;
        break;
      case kTakeover:
        o->takeover = true;
        break;
      case kDrain:
        ok = parse_seconds("--drain-timeout", optarg, &o->drain_timeout);
        break;
      case kMaxRegs:
        ok = parse_count("--max-registrations", optarg, 1, 10000000, &p.max_registrations);
        break;
      case kMaxAllConns:
        ok = parse_count("--max-connections", optarg, 1, 100000000, &p.max_connections);
        break;
      case kFsync:
        o->fsync = true;
        break;
      case kDetach:
        o->detach = true;
        break;
      case kNoWatchCerts:
        o->watch_certificates = false;
        break;
      case kWorkers: {
        size_t n = 0;
        ok = parse_count("--workers", optarg, 0, kMaxWorkers, &n);
        o->workers = static_cast<long>(n);
        break;
      }
      case kBacklog: {
        size_t n = 0;
        ok = parse_count("--listen-backlog", optarg, 1, 65535, &n);
        p.listen_backlog = static_cast<int>(n);
        break;
      }
      case kTenantRate: {
        char* end = nullptr;
        double v = std::strtod(optarg, &end);
        ok = *optarg != '\0' && *end == '\0' && v >= 0 && v <= kMaxTenantRate;
        if (!ok)
          std::fprintf(stderr,
                       "nsproxyd: --tenant-rate: expected requests per second (0 = no limit .. "
                       "%.0f), got \"%s\"\n",
                       kMaxTenantRate, optarg);
        p.tenant_rate = v;
        break;
      }
      case kTenantBurst:
        ok = parse_count("--tenant-burst", optarg, 1, kMaxTenantBurst, &p.tenant_burst);
        break;
      case kInFlight:
        ok = parse_count("--tenant-max-in-flight", optarg, 1, 1000000, &p.tenant_max_in_flight);
        break;
      case kSocketBuffer: {
        size_t n = 0;
        ok = parse_count("--socket-buffer", optarg, 0, 64 << 20, &n);
        if (ok && n > 0 && n < 4096) {
          std::fprintf(
              stderr,
              "nsproxyd: --socket-buffer: 0 (kernel autotuning) or 4096..%d bytes, got %zu\n",
              64 << 20, n);
          ok = false;
        }
        p.socket_buffer = static_cast<int>(n);
        break;
      }
      case kLogFormat:
        ok = parse_log_format(optarg, &o->log_format);
        if (!ok)
          std::fprintf(stderr, "nsproxyd: --log-format: expected text or json, got \"%s\"\n",
                       optarg);
        break;
      case kMetricsListen: {
        auto a = parse_address(optarg, /*allow_unix=*/false);
        ok = static_cast<bool>(a);
        if (!ok)
          std::fprintf(stderr, "nsproxyd: --metrics-listen: %s\n", a.error().message.c_str());
        o->metrics_listen = optarg;
        break;
      }
      case kHelp:
        usage(stdout);
        return -1;
      case kShowVersion:
        std::printf("nsproxyd %s\n", kVersion);
        return -1;
      default:
        usage(stderr);
        return 2;
    }
    if (!ok) return 2;
  }
  if (optind < argc) {
    std::fprintf(stderr, "nsproxyd: unexpected argument \"%s\"\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  return 0;
}

}  // namespace nsproxy
