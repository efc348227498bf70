// nsproxyctl: register network namespaces with nsproxyd by hand, and inspect it.
//
//   nsproxyctl [--socket PATH] [--timeout MS] COMMAND [OPTIONS]
//     add    --id ID --netns PATH --listen ADDR --upstream ADDR [--mode http|https|tcp]
//            [--tls-cert FILE --tls-key FILE]...   https: certificates, the first the default
//            [--listen ... --upstream ...]... [--label k=v]...
//            [--rate N] [--burst N] [--max-connections N]   this tenant's limits
//     del    --id ID
//     check  --id ID [--netns PATH]
//     list   [--json]
//     status [--json]
//     cni install|uninstall ...   put the plugin into a node's CNI configuration
//                                 (cni_command.cc)
//
// CNI registrations are addressed with --network NET --id CONTAINERID --ifname IF.
// --json (any command) prints the daemon's reply; an option the command does not take is
// a usage error (exit 2).
#include <getopt.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cni_command.h"
#include "control_client.h"
#include "control_protocol.h"
#include "log.h"
#include "netns.h"
#include "table.h"
#include "version.h"

namespace nsproxy {
namespace {

constexpr int kExitUsage = 2;

struct Global {
  std::string socket_path = kDefaultSocketPath;
  int timeout_ms = 5000;
};

void usage(FILE* out) {
  std::fprintf(out,
               "usage: nsproxyctl [--socket PATH] [--timeout MS] COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n"
               "  add    --id ID --netns PATH --listen ADDR --upstream ADDR\n"
               "         [--mode http|https|tcp] [--tls-cert FILE --tls-key FILE]...\n"
               "         [--proxy-protocol none|v2] [--add-address]\n"
               "         [--listen ADDR --upstream ADDR ...]...\n"
               "         [--label KEY=VALUE]... [--tenant-header NAME] [--label-header-prefix P]\n"
               "         [--rate N] [--burst N] [--max-connections N]\n"
               "         register a network namespace; each --listen starts a listener and\n"
               "         the --upstream/--mode/--proxy-protocol after it apply to it;\n"
               "         mode defaults to http; --proxy-protocol v2 needs --mode tcp;\n"
               "         --mode https needs --tls-cert and --tls-key (PEM files nsproxyd\n"
               "         reads), repeated for more certificates chosen by SNI, the first\n"
               "         the default;\n"
               "         --upstream https://ADDR speaks TLS to the upstream, verifying its\n"
               "         certificate (--upstream-ca FILE, --upstream-server-name NAME,\n"
               "         --upstream-insecure-skip-verify);\n"
               "         --add-address adds the listen IP (169.254/16, fc00::/7) to lo;\n"
               "         --rate requests/s (0: no limit), --burst requests at once above it\n"
               "         and --max-connections open connections are this tenant's limits\n"
               "         (default: the daemon's; each at most 1000000)\n"
               "  del    --id ID                 unregister (succeeds when not registered)\n"
               "  check  --id ID [--netns PATH]  verify the registration is serving\n"
               "  list   [--json]                show registrations\n"
               "  status [--json]                show daemon status\n"
               "  cni install|uninstall ...      add the plugin to the node's CNI\n"
               "                                 configuration, or remove it\n"
               "                                 (nsproxyctl cni --help)\n"
               "\n"
               "  --network NET --ifname IF      with --id (add, del, check): address a CNI\n"
               "                                 registration\n"
               "  --json                         any command: the daemon's reply as JSON\n"
               "  an option a command does not take is a usage error (exit 2)\n"
               "  --socket PATH                  control socket (default %s)\n"
               "  --timeout MS                   reply timeout (default 5000)\n"
               "  --help, --version\n",
               kDefaultSocketPath);
}

[[noreturn]] void die_usage(const std::string& msg) {
  std::fprintf(stderr, "nsproxyctl: %s\n", msg.c_str());
  std::fprintf(stderr, "run 'nsproxyctl --help' for usage\n");
  std::exit(kExitUsage);
}

// --rate: a plain decimal number from 0 to kMaxTenantRate ("10", "0.5"; no sign, no
// exponent, no hex, no "inf"), or a usage error.
double parse_rate(const char* text) {
  const std::string max = std::to_string(static_cast<long>(kMaxTenantRate));
  const std::string bad = "--rate: expected requests per second, a number from 0 (no limit) to " +
                          max + ", got \"" + text + "\"";
  size_t digits = std::strspn(text, "0123456789");
  const char* rest = text + digits;
  if (*rest == '.') {
    size_t frac = std::strspn(rest + 1, "0123456789");
    digits += frac;
    rest += 1 + frac;
  }
  if (digits == 0 || *rest != '\0') die_usage(bad);
  double v = std::strtod(text, nullptr);
  if (!(v >= 0 && v <= kMaxTenantRate)) die_usage(bad);
  return v;
}

// --burst, --max-connections: decimal digits only, from 1 to max, or a usage error.
uint32_t parse_count(const char* flag, const char* text, uint32_t max) {
  const std::string bad = std::string(flag) + ": expected an integer from 1 to " +
                          std::to_string(max) + ", got \"" + text + "\"";
  size_t digits = std::strspn(text, "0123456789");
  if (digits == 0 || text[digits] != '\0' || digits > 10) die_usage(bad);
  unsigned long long v = std::strtoull(text, nullptr, 10);
  if (v < 1 || v > max) die_usage(bad);
  return static_cast<uint32_t>(v);
}

// 10 -> "10", 1000000 -> "1000000", 2.5 -> "2.5", 1/3 -> "0.333333".
std::string number_text(double v) {
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", v);
  }
  return buf;
}

// "rate 10/s burst 20, 100 connections, 256 in flight" from a registration's "limits"
// as the daemon reports them (every field; rate 0: "no rate limit"); "" when it has none.
std::string limits_text(const nlohmann::json& limits) {
  if (!limits.is_object() || limits.empty()) return "";
  std::string s;
  auto add = [&s](const std::string& part) { s += (s.empty() ? "" : ", ") + part; };
  if (auto r = limits.find("rate"); r != limits.end() && r->is_number()) {
    if (r->get<double>() > 0) {
      std::string part = "rate " + number_text(r->get<double>()) + "/s";
      if (auto b = limits.find("burst"); b != limits.end() && b->is_number()) {
        part += " burst " + number_text(b->get<double>());
      }
      add(part);
    } else {
      add("no rate limit");
    }
  }
  if (auto c = limits.find("connections"); c != limits.end() && c->is_number_integer()) {
    add(std::to_string(c->get<uint64_t>()) + " connections");
  }
  if (auto f = limits.find("in_flight"); f != limits.end() && f->is_number_integer()) {
    add(std::to_string(f->get<uint64_t>()) + " in flight");
  }
  return s;
}

struct CommandArgs {
  AttachmentKey key;
  std::string netns;
  std::vector<ListenerSpec> listeners;
  std::map<std::string, std::string> labels;
  IdentityHeaders headers;
  TenantLimits limits;
  bool json = false;
  bool saw_upstream_for_last = true;
};

// The options each command takes, as their getopt codes (see opts below); any other
// option is a usage error naming it, not silently ignored.
const char* options_of(const std::string& cmd) {
  if (cmd == "add") return "inLumPATXlrbcNIjCKask";
  if (cmd == "del") return "iNIj";
  if (cmd == "check") return "inNIj";
  if (cmd == "list" || cmd == "status") return "j";
  return "";  // help
}

// nsproxyd reads the files in its own working directory: a relative path is made absolute
// here, as the operator meant it.
std::string absolute_path(const char* path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? std::string(path) : abs.lexically_normal().string();
}

CommandArgs parse_command_args(const std::string& cmd, int argc, char** argv) {
  static const option opts[] = {{"id", required_argument, nullptr, 'i'},
                                {"netns", required_argument, nullptr, 'n'},
                                {"listen", required_argument, nullptr, 'L'},
                                {"upstream", required_argument, nullptr, 'u'},
                                {"mode", required_argument, nullptr, 'm'},
                                {"proxy-protocol", required_argument, nullptr, 'P'},
                                {"add-address", no_argument, nullptr, 'A'},
                                {"tls-cert", required_argument, nullptr, 'C'},
                                {"tls-key", required_argument, nullptr, 'K'},
                                {"upstream-ca", required_argument, nullptr, 'a'},
                                {"upstream-server-name", required_argument, nullptr, 's'},
                                {"upstream-insecure-skip-verify", no_argument, nullptr, 'k'},
                                {"tenant-header", required_argument, nullptr, 'T'},
                                {"label-header-prefix", required_argument, nullptr, 'X'},
                                {"label", required_argument, nullptr, 'l'},
                                {"rate", required_argument, nullptr, 'r'},
                                {"burst", required_argument, nullptr, 'b'},
                                {"max-connections", required_argument, nullptr, 'c'},
                                {"network", required_argument, nullptr, 'N'},
                                {"ifname", required_argument, nullptr, 'I'},
                                {"json", no_argument, nullptr, 'j'},
                                {nullptr, 0, nullptr, 0}};
  CommandArgs a;
  optind = 1;
  opterr = 0;
  const char* allowed = options_of(cmd);
  int c;
  int index = -1;
  while ((c = getopt_long(argc, argv, "", opts, &index)) != -1) {
    if (c != '?' && c != ':' && index >= 0 && std::strchr(allowed, c) == nullptr) {
      std::string takes;
      for (const option* o = opts; o->name != nullptr; ++o) {
        if (std::strchr(allowed, o->val) == nullptr) continue;
        takes += std::string(takes.empty() ? "" : ", ") + "--" + o->name;
      }
      die_usage(cmd + ": --" + opts[index].name + " does not apply to " + cmd + " (" + cmd +
                (takes.empty() ? " takes no options)" : " takes " + takes + ")"));
    }
    index = -1;
    switch (c) {
      case 'i':
        a.key.id = optarg;
        break;
      case 'n':
        a.netns = optarg;
        break;
      case 'N':
        a.key.network = optarg;
        break;
      case 'I':
        a.key.ifname = optarg;
        break;
      case 'L':
        if (!a.saw_upstream_for_last)
          die_usage("--listen " + a.listeners.back().listen + " has no --upstream");
        a.listeners.push_back(ListenerSpec{optarg, "", Mode::Http, ProxyProtocol::None});
        a.saw_upstream_for_last = false;
        break;
      case 'u':
        if (a.listeners.empty() || a.saw_upstream_for_last)
          die_usage("--upstream must follow a --listen");
        a.listeners.back().upstream = optarg;
        // "https://host:port": TLS towards the upstream, verified (the flags below tune it).
        if (strip_https_scheme(&a.listeners.back().upstream)) {
          a.listeners.back().upstream_tls.enabled = true;
        }
        a.saw_upstream_for_last = true;
        break;
      case 'a':
        if (a.listeners.empty()) die_usage("--upstream-ca must follow a --listen");
        a.listeners.back().upstream_tls.enabled = true;
        a.listeners.back().upstream_tls.ca_file = absolute_path(optarg);
        break;
      case 's':
        if (a.listeners.empty()) die_usage("--upstream-server-name must follow a --listen");
        if (!valid_server_name(optarg))
          die_usage(std::string("--upstream-server-name: not a DNS name: \"") + optarg + "\"");
        a.listeners.back().upstream_tls.enabled = true;
        a.listeners.back().upstream_tls.server_name = optarg;
        break;
      case 'k':
        if (a.listeners.empty())
          die_usage("--upstream-insecure-skip-verify must follow a --listen");
        a.listeners.back().upstream_tls.enabled = true;
        a.listeners.back().upstream_tls.insecure_skip_verify = true;
        break;
      case 'm':
        if (a.listeners.empty()) die_usage("--mode must follow a --listen");
        if (!parse_mode(optarg, &a.listeners.back().mode)) {
          die_usage(std::string("--mode: expected http, https or tcp, got \"") + optarg + "\"");
        }
        break;
      case 'P':
        if (a.listeners.empty()) die_usage("--proxy-protocol must follow a --listen");
        if (!parse_proxy_protocol(optarg, &a.listeners.back().proxy_protocol)) {
          die_usage(std::string("--proxy-protocol: expected none or v2, got \"") + optarg + "\"");
        }
        break;
      case 'C':
        if (a.listeners.empty()) die_usage("--tls-cert must follow a --listen");
        a.listeners.back().certificates.push_back({absolute_path(optarg), ""});
        break;
      case 'K': {
        if (a.listeners.empty()) die_usage("--tls-key must follow a --listen");
        auto& certs = a.listeners.back().certificates;
        if (certs.empty() || !certs.back().key_file.empty())
          die_usage("--tls-key must follow its --tls-cert");
        certs.back().key_file = absolute_path(optarg);
        break;
      }
      case 'A':
        if (a.listeners.empty()) die_usage("--add-address must follow a --listen");
        a.listeners.back().add_address = true;
        break;
      case 'T':
        if (!valid_header_name(optarg))
          die_usage(std::string("--tenant-header: invalid header name \"") + optarg + "\"");
        a.headers.tenant_id = optarg;
        break;
      case 'X':
        if (!valid_header_name(optarg))
          die_usage(std::string("--label-header-prefix: invalid header name \"") + optarg + "\"");
        a.headers.label_prefix = optarg;
        break;
      case 'l': {
        std::string kv = optarg;
        auto eq = kv.find('=');
        if (eq == std::string::npos || eq == 0)
          die_usage("--label: expected KEY=VALUE, got \"" + kv + "\"");
        a.labels[kv.substr(0, eq)] = kv.substr(eq + 1);
        break;
      }
      case 'r':
        a.limits.rate = parse_rate(optarg);
        break;
      case 'b':
        a.limits.burst = parse_count("--burst", optarg, kMaxTenantBurst);
        break;
      case 'c':
        a.limits.connections = parse_count("--max-connections", optarg, kMaxTenantConnections);
        break;
      case 'j':
        a.json = true;
        break;
      default:
        die_usage(cmd + ": unknown or incomplete option \"" + argv[optind - 1] + "\"");
    }
  }
  if (optind < argc) die_usage(cmd + ": unexpected argument \"" + argv[optind] + "\"");
  if (!a.saw_upstream_for_last)
    die_usage("--listen " + a.listeners.back().listen + " has no --upstream");
  if (!a.key.network.empty() && a.key.ifname.empty()) die_usage("--network needs --ifname");
  for (const auto& l : a.listeners) {
    if (l.mode == Mode::Https && l.certificates.empty())
      die_usage("--listen " + l.listen + " --mode https needs --tls-cert FILE --tls-key FILE");
    if (l.mode != Mode::Https && !l.certificates.empty())
      die_usage("--listen " + l.listen + ": --tls-cert applies to --mode https only");
    for (const auto& cert : l.certificates) {
      if (cert.key_file.empty()) die_usage("--tls-cert " + cert.cert_file + " has no --tls-key");
    }
    if (l.upstream_tls.enabled && l.mode == Mode::Tcp)
      die_usage("--listen " + l.listen + ": TLS towards the upstream needs --mode http or https");
  }
  return a;
}

Reply call_or_die(const Global& g, const Request& req, int netns_fd) {
  auto r = call_daemon(g.socket_path, req, netns_fd, std::chrono::milliseconds(g.timeout_ms));
  if (!r) {
    std::fprintf(stderr, "nsproxyctl: %s\n", r.error().message.c_str());
    std::exit(1);
  }
  if (!r->ok) {
    std::fprintf(stderr, "nsproxyctl: %s (%s)\n", r->error.message.c_str(),
                 std::string(code_name(r->error.code)).c_str());
    std::exit(1);
  }
  return std::move(*r);
}

std::string key_text(const nlohmann::json& attachment) {
  AttachmentKey k{attachment.value("network", ""), attachment.value("id", ""),
                  attachment.value("ifname", "")};
  return k.display();
}

int cmd_add(const Global& g, const CommandArgs& a) {
  if (a.key.id.empty()) die_usage("add: --id is required");
  if (a.netns.empty()) die_usage("add: --netns is required");
  if (a.listeners.empty()) die_usage("add: at least one --listen ADDR --upstream ADDR is required");
  auto ns = open_netns(a.netns);
  if (!ns) {
    std::fprintf(stderr, "nsproxyctl: %s\n", ns.error().message.c_str());
    return 1;
  }
  Request req;
  req.op = Op::Add;
  req.attachment = a.key;
  req.netns_path = a.netns;
  req.listeners = a.listeners;
  req.labels = a.labels;
  req.headers = a.headers;
  req.limits = a.limits;
  Reply r = call_or_die(g, req, ns->get());
  if (a.json) {
    std::printf("%s\n", r.data.dump(2).c_str());
    return 0;
  }
  bool created = r.data.value("created", true);
  std::printf("%s %s in %s\n",
              created ? "registered" : "already registered:", a.key.display().c_str(),
              a.netns.c_str());
  for (const auto& l : a.listeners) {
    std::string upstream_tls;
    if (l.upstream_tls.enabled) {
      upstream_tls = l.upstream_tls.insecure_skip_verify
                         ? ", TLS upstream NOT verified"
                         : ", TLS upstream verified for " + (l.upstream_tls.server_name.empty()
                                                                 ? std::string("its IP")
                                                                 : l.upstream_tls.server_name);
    }
    std::printf("  %s -> %s (%s%s%s%s%s)\n", l.listen.c_str(), l.upstream.c_str(),
                mode_name(l.mode), l.proxy_protocol == ProxyProtocol::V2 ? ", PROXY v2" : "",
                l.add_address ? ", address added to lo" : "",
                l.certificates.empty()
                    ? ""
                    : (", " + std::to_string(l.certificates.size()) + " certificate(s)").c_str(),
                upstream_tls.c_str());
  }
  if (!a.limits.empty()) {
    // What the daemon made of them, with its defaults for the fields not given.
    std::string limits = limits_text(r.data.value("registration", nlohmann::json::object())
                                         .value("limits", nlohmann::json::object()));
    if (!limits.empty()) std::printf("  limits: %s\n", limits.c_str());
  }
  return 0;
}

int cmd_del(const Global& g, const CommandArgs& a) {
  if (a.key.id.empty()) die_usage("del: --id is required");
  Request req;
  req.op = Op::Del;
  req.attachment = a.key;
  Reply r = call_or_die(g, req, -1);
  if (a.json) {
    std::printf("%s\n", r.data.dump(2).c_str());
  } else if (r.data.value("deleted", false)) {
    std::printf("unregistered %s\n", a.key.display().c_str());
  } else {
    std::printf("%s was not registered; nothing to do\n", a.key.display().c_str());
  }
  return 0;
}

int cmd_check(const Global& g, const CommandArgs& a) {
  if (a.key.id.empty()) die_usage("check: --id is required");
  UniqueFd ns;
  Request req;
  req.op = Op::Check;
  req.attachment = a.key;
  if (!a.netns.empty()) {
    auto opened = open_netns(a.netns);
    if (!opened) {
      std::fprintf(stderr, "nsproxyctl: %s\n", opened.error().message.c_str());
      return 1;
    }
    ns = std::move(*opened);
    req.netns_path = a.netns;
  }
  Reply r = call_or_die(g, req, ns.get());
  if (a.json) {
    std::printf("%s\n", r.data.dump(2).c_str());
    return 0;
  }
  const auto& reg = r.data["registration"];
  std::printf("%s: ok, %zu listener(s) accepting in %s\n", a.key.display().c_str(),
              reg.value("listeners", nlohmann::json::array()).size(),
              reg.value("netns", std::string()).c_str());
  return 0;
}

int cmd_list(const Global& g, const CommandArgs& a) {
  Request req;
  req.op = Op::List;
  Reply r = call_or_die(g, req, -1);
  if (a.json) {
    std::printf("%s\n", r.data.dump(2).c_str());
    return 0;
  }
  const nlohmann::json regs = r.data.value("registrations", nlohmann::json::array());
  // A LIMITS column only when the daemon reports limits (one from before them does not).
  bool with_limits = false;
  for (const auto& reg : regs) with_limits = with_limits || reg.contains("limits");
  std::vector<std::string> header = {"ID",    "NETNS", "LISTEN",   "UPSTREAM", "MODE",
                                     "STATE", "CONNS", "REQUESTS", "ERRORS",   "LABELS"};
  if (with_limits) header.push_back("LIMITS");
  Table t(std::move(header));
  for (const auto& reg : regs) {
    std::string labels;
    const nlohmann::json label_obj = reg.value("labels", nlohmann::json::object());
    for (const auto& [k, v] : label_obj.items()) {
      if (!labels.empty()) labels += ",";
      labels += k + "=" + v.get<std::string>();
    }
    // Requests, errors and limits belong to the registration: shown on its first
    // listener's row. LIMITS is the last column: its text has spaces.
    const nlohmann::json stats = reg.value("stats", nlohmann::json::object());
    const std::string limits = limits_text(reg.value("limits", nlohmann::json::object()));
    bool first = true;
    for (const auto& l : reg.value("listeners", nlohmann::json::array())) {
      std::vector<std::string> row = {
          key_text(reg.value("attachment", nlohmann::json::object())),
          reg.value("netns", ""),
          l.value("listen", ""),
          l.value("upstream", ""),
          l.value("mode", ""),
          l.value("accepting", false) ? "accepting" : "NOT ACCEPTING",
          std::to_string(l.value("connections", 0)),
          first ? std::to_string(stats.value("requests", uint64_t{0})) : "",
          first ? std::to_string(stats.value("errors", uint64_t{0})) : "",
          labels.empty() ? "-" : labels};
      if (with_limits) row.push_back(first ? limits : "");
      t.add(std::move(row));
      first = false;
    }
  }
  if (t.empty()) {
    std::printf("no registrations\n");
  } else {
    t.print(stdout);
  }
  return 0;
}

int cmd_status(const Global& g, const CommandArgs& a) {
  Request req;
  req.op = Op::Status;
  Reply r = call_or_die(g, req, -1);
  if (a.json) {
    std::printf("%s\n", r.data.dump(2).c_str());
    return 0;
  }
  const long long workers = r.data.value("workers", 0);
  std::printf("nsproxyd %s, pid %lld, instance %s, up %llds, %lld worker thread%s, socket %s\n",
              r.data.value("version", "?").c_str(), static_cast<long long>(r.data.value("pid", 0)),
              r.data.value("instance", "?").c_str(),
              static_cast<long long>(r.data.value("uptime_seconds", 0)), workers,
              workers == 1 ? "" : "s", g.socket_path.c_str());
  std::printf("registrations %llu, listeners %llu, connections %llu (%llu since start)\n",
              static_cast<unsigned long long>(r.data.value("registrations", 0)),
              static_cast<unsigned long long>(r.data.value("listeners", 0)),
              static_cast<unsigned long long>(r.data.value("connections", 0)),
              static_cast<unsigned long long>(r.data.value("connections_total", 0)));
  std::printf("requests %llu, errors %llu (of the tenants registered now)\n",
              static_cast<unsigned long long>(r.data.value("requests", 0)),
              static_cast<unsigned long long>(r.data.value("errors", 0)));
  auto breakdown = [&r](const char* key) {
    std::string s;
    const nlohmann::json counts = r.data.value(key, nlohmann::json::object());
    for (const auto& [k, v] : counts.items()) {
      s += (s.empty() ? "" : ", ") + k + " " + std::to_string(v.get<uint64_t>());
    }
    return s.empty() ? std::string("none") : s;
  };
  std::printf("refused: %s\n", breakdown("refused").c_str());
  std::printf("upstream errors: %s\n", breakdown("upstream_errors").c_str());
  std::printf("connections reclaimed (fair share, out of fds): %s\n",
              breakdown("connections_reclaimed").c_str());
  std::printf("tenants at their connection limit: %llu\n",
              static_cast<unsigned long long>(r.data.value("tenants_at_limit", 0)));
  std::printf("reclaimed %llu (registrations dropped because their namespace vanished)\n",
              static_cast<unsigned long long>(r.data.value("reclaimed", 0)));
  return 0;
}

int run(int argc, char** argv) {
  static const option global_opts[] = {{"socket", required_argument, nullptr, 's'},
                                       {"timeout", required_argument, nullptr, 't'},
                                       {"help", no_argument, nullptr, 'h'},
                                       {"version", no_argument, nullptr, 'V'},
                                       {nullptr, 0, nullptr, 0}};
  Global g;
  opterr = 0;
  int c;
  // "+": stop at the command name; its options are parsed separately.
  while ((c = getopt_long(argc, argv, "+", global_opts, nullptr)) != -1) {
    switch (c) {
      case 's':
        g.socket_path = optarg;
        break;
      case 't': {
        char* end = nullptr;
        long v = std::strtol(optarg, &end, 10);
        if (*optarg == '\0' || *end != '\0' || v <= 0 || v > 600000) {
          die_usage(std::string("--timeout: expected milliseconds (1..600000), got \"") + optarg +
                    "\"");
        }
        g.timeout_ms = static_cast<int>(v);
        break;
      }
      case 'h':
        usage(stdout);
        return 0;
      case 'V':
        std::printf("nsproxyctl %s\n", kVersion);
        return 0;
      default:
        die_usage(std::string("unknown or incomplete option \"") + argv[optind - 1] + "\"");
    }
  }
  if (optind >= argc) die_usage("missing command (add, del, check, list, status, cni)");
  std::string cmd = argv[optind];
  if (cmd == "cni") return run_cni_command(argc - optind, argv + optind);
  if (cmd != "add" && cmd != "del" && cmd != "check" && cmd != "list" && cmd != "status" &&
      cmd != "help") {
    die_usage("unknown command \"" + cmd + "\" (add, del, check, list, status, cni)");
  }
  int sub_argc = argc - optind;
  char** sub_argv = argv + optind;
  CommandArgs a = parse_command_args(cmd, sub_argc, sub_argv);
  if (cmd == "add") return cmd_add(g, a);
  if (cmd == "del") return cmd_del(g, a);
  if (cmd == "check") return cmd_check(g, a);
  if (cmd == "list") return cmd_list(g, a);
  if (cmd == "status") return cmd_status(g, a);
  usage(stdout);  // help
  return 0;
}

}  // namespace
}  // namespace nsproxy

int main(int argc, char** argv) {
  nsproxy::set_log_prefix("nsproxyctl");
  try {
    return nsproxy::run(argc, argv);
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "nsproxyctl: unexpected reply from nsproxyd: %s\n", e.what());
    return 1;
  }
}
