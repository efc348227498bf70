// The plugin configuration read from stdin (one entry of the runtime's conflist, with
// prevResult and runtime keys added). Decoding fails with CNI code 6; a field with a
// wrong type or value fails with code 7 and a message that starts with the field's
// path, e.g. "listeners[0].listen: ..."; an unsupported cniVersion fails with code 1.
//
//   {"cniVersion":"1.1.0", "name":"tenants", "type":"nsproxy",
//    "socket":"/run/nsproxy/nsproxyd.sock",          optional, absolute path
//    "timeoutMs":3000,                              optional, integer 1..60000
//    "listeners":[{"listen":"169.254.169.254:80", "upstream":"127.0.0.1:8080",
//                  "mode":"http",                   optional, "http" (default) or "tcp"
//                  "proxyProtocol":"v2",            optional, "none" (default) or "v2";
//                                                   "v2" only with mode "tcp"
//                  "addAddress":true}],             optional, false (default): add the
//                                                   listen IP to lo (169.254/16, fc00::/7)
//    "labels":{"team":"a"},                         optional
//    "headers":{"tenantId":"X-Tenant-Id",           optional, http mode's identity header
//               "labelPrefix":"X-Tenant-Label-"},   names; absent: the daemon's defaults
//    "limits":{"rate":10,                           optional, each field too; absent: the
//              "burst":20,                          daemon's defaults. rate: requests/s,
//              "connections":100},                  0..1e6, 0 = no limit; burst: 1..1e6;
//                                                   connections: open at once, 1..1e6
//    "prevResult":{...}}                            passed through on ADD
// Unknown top-level keys (runtimeConfig, capabilities, args, ...) are ignored; unknown
// keys inside a listener, "headers" or "limits" are refused (a typo there would silently
// change behaviour).
#pragma once

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cni_env.h"
#include "cni_error.h"
#include "control_protocol.h"

namespace nsproxy::cni {

inline constexpr int kDefaultTimeoutMs = 3000;
inline constexpr int kMaxTimeoutMs = 60000;

// One entry of "cni.dev/valid-attachments" (GC, CNI 1.1.0).
struct ValidAttachment {
  std::string container_id;
  std::string ifname;
};

struct PluginConfig {
  std::string cni_version;
  std::string name;  // the network name: part of every attachment key
  std::string type;
  std::string socket = kDefaultSocketPath;
  std::chrono::milliseconds timeout{kDefaultTimeoutMs};
  std::vector<ListenerSpec> listeners;        // ADD, CHECK
  std::map<std::string, std::string> labels;  // ADD, CHECK
  IdentityHeaders headers;                    // ADD, CHECK; empty fields: daemon defaults
  TenantLimits limits;                        // ADD, CHECK; absent fields: daemon defaults
  std::optional<nlohmann::ordered_json> prev_result;
  std::vector<ValidAttachment> valid_attachments;  // GC
};

// Parses and validates what `command` needs: every command needs cniVersion, name,
// socket and timeoutMs; ADD and CHECK also need listeners (non-empty), labels, headers
// and limits; GC needs "cni.dev/valid-attachments" (required: without it GC would drop
// every registration of the network). When cni_version is given it receives the config's
// cniVersion as soon as it is known to be supported, so errors can be reported in it.
CniResult<PluginConfig> parse_config(std::string_view text, Command command,
                                     std::string* cni_version = nullptr);

// The two steps of parse_config(text, ...), for a caller that checks one text for several
// commands (the fuzz target) without decoding it each time: decode_config fails exactly
// as parse_config does before any field is read (code 6: not JSON, or not an object), and
// parse_config(text, c, v) is parse_decoded_config(*decode_config(text), c, v).
CniResult<nlohmann::ordered_json> decode_config(std::string_view text);
CniResult<PluginConfig> parse_decoded_config(const nlohmann::ordered_json& conf, Command command,
                                             std::string* cni_version = nullptr);

// A network name as libcni accepts it: an alphanumeric, then [a-zA-Z0-9_.-].
bool valid_network_name(std::string_view name);

}  // namespace nsproxy::cni
