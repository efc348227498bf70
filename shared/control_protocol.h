// The control protocol between nsproxyd and its clients (the CNI plugin, nsproxyctl).
//
// Transport: a SOCK_SEQPACKET Unix socket. One request datagram, one reply datagram.
// A request for "add" or "check" carries the network namespace as a file descriptor
// (SCM_RIGHTS); its path travels in the JSON for display only.
//
// Request:  {"version":1, "op":"add", "attachment":{"network":"n","id":"c","ifname":"eth0"},
//            "netns":"/run/netns/x", "listeners":[{"listen":..,"upstream":..,"mode":"tcp"}],
//            "labels":{"k":"v"}, "limits":{"rate":N,"burst":N,"connections":N},
//            "valid_attachments":[{"id":..,"ifname":..}]}
// Reply:    {"version":1, "ok":true, "data":{...}}
//           {"version":1, "ok":false, "error":{"code":"listener_failed","message":"..."}}
//
// Reply data per op (a "registration" object is
//   {"attachment":{"network","id","ifname"}, "netns":"/run/netns/x", "netns_dev":N,
//    "netns_inode":N, "labels":{..}, "created_at":UNIX_SECONDS,
//    "listeners":[{"listen","upstream","mode","accepting":true,"connections":N}],
//    "limits":{"rate":R,"burst":B,"connections":C,"in_flight":F} (in effect; rate 0: none),
//    "connections":N, "stats":{"requests","errors","connections_total","received_bytes",
//    "sent_bytes","responses":{"1xx".."5xx"},"refused":{..},"upstream_errors":{..},
//    "reclaimed":{"idle":N,"head":N}}}):
//   add    {"registration":{..}, "created":bool}   created=false: idempotent repeat
//   del    {"deleted":bool}                        deleted=false: nothing was registered
//   check  {"registration":{..}}                   errors: not_found, netns_mismatch, not_serving
//   list   {"registrations":[{..},..]}
//   status {"version":"0.1.0", "pid":N, "instance":"<32 hex>", "uptime_seconds":N,
//           "registrations":N,
//           "listeners":N, "connections":N, "connections_total":N, "requests":N,
//           "errors":N, "refused":{"reason":N}, "upstream_errors":{"kind":N},
//           "connections_reclaimed":{"idle":N,"head":N}, "tenants_at_limit":N,
//           "reclaimed":N}   reclaimed: registrations whose namespace vanished
//   gc     {"removed":[{"network","id","ifname"},..]}
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "error.h"

namespace nsproxy {

constexpr int kProtocolVersion = 1;
// Requests: large enough for a GC listing kMaxValidAttachments attachments. Receivers
// allocate by the actual datagram size, so the limit costs nothing for small messages.
constexpr size_t kMaxMessageSize = 4 * 1024 * 1024;
// Replies (a list of every registration): as large as a request. The kernel refuses an
// AF_UNIX datagram much beyond 4 MiB whatever SO_SNDBUF says (its head must fit one
// kmalloc; ENOBUFS), so a larger reply could never be delivered: the daemon answers
// too_large instead of closing the connection without a word.
constexpr size_t kMaxReplySize = kMaxMessageSize;
constexpr size_t kMaxListeners = 32;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxIdLength = 256;
constexpr size_t kMaxLabelKeyLength = 63;
constexpr size_t kMaxLabelValueLength = 1024;
constexpr size_t kMaxPathLength = 4096;
constexpr size_t kMaxValidAttachments = 30000;

constexpr const char* kDefaultSocketPath = "/run/nsproxy/nsproxyd.sock";

// handover: a new nsproxyd asks the running one for its listening sockets (see
// proxy/handover.h); not a request/reply exchange.
enum class Op { Add, Del, Check, List, Status, Gc, Handover };
const char* op_name(Op op);

// Who a registration belongs to. CNI registrations: (network, container id, ifname).
// Manual registrations (nsproxyctl): network and ifname empty, id chosen by the operator.
struct AttachmentKey {
  std::string network;
  std::string id;
  std::string ifname;
  auto operator<=>(const AttachmentKey&) const = default;
  bool manual() const { return network.empty(); }
  std::string display() const;  // "net/cid/eth0" or "id"
};

// https: http mode behind TLS that nsproxyd terminates in the tenant's namespace.
enum class Mode { Tcp, Http, Https };
const char* mode_name(Mode mode);  // "tcp", "http", "https"
bool parse_mode(std::string_view text, Mode* out);

// https mode: a certificate chain and its private key, PEM files that nsproxyd reads (paths
// in its own mount namespace). A listener's first certificate is its default; the others
// are picked by the name the client asks for (SNI), among their DNS names.
struct TlsCertificate {
  std::string cert_file;
  std::string key_file;
  auto operator<=>(const TlsCertificate&) const = default;
};
constexpr size_t kMaxCertificates = 16;
// An absolute path without NUL, at most kMaxPathLength bytes; the message names `field`.
Status check_tls_file(const std::string& path, const std::string& field);

// tcp mode only: what precedes the tenant's bytes towards the upstream.
enum class ProxyProtocol { None, V2 };
const char* proxy_protocol_name(ProxyProtocol p);  // "none", "v2"
bool parse_proxy_protocol(std::string_view text, ProxyProtocol* out);

// http and https modes: TLS towards the upstream, asked for by an "https://" upstream or
// by an upstreamTls object. The upstream's certificate is verified against ca_file (or the
// system's trusted CAs) for server_name (or, when empty, the upstream's IP address) unless
// insecure_skip_verify. JSON: "upstream_tls":{"ca_file":..,"server_name":..,
// "insecure_skip_verify":true}, present only when enabled.
struct UpstreamTls {
  bool enabled = false;
  std::string ca_file;      // PEM bundle, absolute; empty: the system's
  std::string server_name;  // SNI and the name checked; empty: the IP (no SNI sent)
  bool insecure_skip_verify = false;
  auto operator<=>(const UpstreamTls&) const = default;
};
// "https://127.0.0.1:8443" -> "127.0.0.1:8443", true; anything else unchanged, false.
bool strip_https_scheme(std::string* upstream);
// A DNS name for SNI and verification: 1..253 bytes of [A-Za-z0-9.-], no empty label.
bool valid_server_name(std::string_view name);

struct ListenerSpec {
  std::string listen;    // "127.0.0.1:8080"
  std::string upstream;  // "127.0.0.1:18080" or "unix:/path"
  Mode mode = Mode::Http;
  ProxyProtocol proxy_protocol = ProxyProtocol::None;
  // Add the listen IP to the namespace's lo when it is missing, and remove it again when
  // the registration goes (only if nsproxy added it). Link-local / unique-local only.
  bool add_address = false;
  // https mode only (and required there): the default certificate first.
  // JSON: "tls":{"certificates":[{"cert_file":..,"key_file":..}, ...]}
  std::vector<TlsCertificate> certificates{};
  UpstreamTls upstream_tls{};
  bool operator==(const ListenerSpec&) const = default;
};

// Names of the identity headers http mode adds; empty fields take the daemon's defaults
// (X-Tenant-Id, X-Tenant-Label-<name>). JSON: "headers":{"tenant_id":..,"label_prefix":..}
struct IdentityHeaders {
  std::string tenant_id;
  std::string label_prefix;
  bool operator==(const IdentityHeaders&) const = default;
};

// Per-registration overrides of the daemon's per-tenant limits; an absent field takes the
// daemon's default (--tenant-rate, --tenant-burst, --max-connections-per-tenant).
// JSON: "limits":{"rate":10.5,"burst":20,"connections":100}
//   rate         requests per second admitted (token bucket); 0: no rate limit
//   burst        requests admitted at once above the rate (bucket size), >= 1
//   connections  open connections at once; beyond it the listeners stop accepting
struct TenantLimits {
  std::optional<double> rate;
  std::optional<uint32_t> burst;
  std::optional<uint32_t> connections;
  bool empty() const { return !rate && !burst && !connections; }
  bool operator==(const TenantLimits&) const = default;
};
constexpr double kMaxTenantRate = 1e6;
constexpr uint32_t kMaxTenantBurst = 1000000;
constexpr uint32_t kMaxTenantConnections = 1000000;
// Checks bounds; error message names the field ("limits.rate: ...").
Status validate_limits(const TenantLimits& l);
nlohmann::json limits_json(const TenantLimits& l);  // only the fields that are set
// {"certificates":[{"cert_file":..,"key_file":..}]}
nlohmann::json tls_json(const std::vector<TlsCertificate>& certs);
// {"ca_file":..,"server_name":..,"insecure_skip_verify":..}, set fields only.
nlohmann::json upstream_tls_json(const UpstreamTls& t);

// A header field name token (RFC 9110 tchar), 1..kMaxHeaderNameLength characters.
constexpr size_t kMaxHeaderNameLength = 64;
bool valid_header_name(std::string_view name);

struct Request {
  Op op = Op::Status;
  AttachmentKey attachment;
  std::string netns_path;
  std::vector<ListenerSpec> listeners;
  std::map<std::string, std::string> labels;
  IdentityHeaders headers;
  TenantLimits limits;
  std::vector<AttachmentKey> valid_attachments;  // gc: (id, ifname) pairs; network from attachment
};

struct Reply {
  bool ok = true;
  nlohmann::json data = nlohmann::json::object();
  Error error;  // when !ok
};

// Error codes carried in replies: Code (error.h), sent by name.

std::string encode_request(const Request& req);
// Validates everything the daemon relies on: version, op, field types and bounds,
// listener addresses. Never throws. Errors name the offending field.
Result<Request> decode_request(std::string_view text);

std::string encode_reply(const Reply& reply);
Result<Reply> decode_reply(std::string_view text);

Reply ok_reply(nlohmann::json data = nlohmann::json::object());
Reply error_reply(Error error);

}  // namespace nsproxy
