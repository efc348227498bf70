#include "cni_config.h"

#include <sys/un.h>

#include <cctype>
#include <cstdint>
#include <exception>
#include <utility>

#include "address.h"
#include "cni_version.h"

namespace nsproxy::cni {
namespace {

using Json = nlohmann::ordered_json;

CniError invalid(const std::string& field, const std::string& reason) {
  return cni_error(code::kInvalidConfig, field + ": " + reason);
}

// A printable excerpt of a JSON value for messages.
std::string excerpt(const Json& value) {
  std::string s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// Optional string field: absent or null leaves *out unchanged. Returns false after
// filling *error when the field is present but not a string.
bool get_string(const Json& obj, const char* key, const std::string& path, std::string* out,
                CniError* error) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return true;
  if (!it->is_string()) {
    *error = invalid(path, "must be a string, got " + excerpt(*it));
    return false;
  }
  *out = it->get<std::string>();
  if (out->find('\0') != std::string::npos) {
    *error = invalid(path, "contains a NUL byte");
    return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxLabelKeyLength) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

// One {"certFile": .., "keyFile": ..} of a listener's "tls".
std::optional<CniError> parse_certificate(const Json& j, const std::string& where,
                                          TlsCertificate* out) {
  if (!j.is_object()) return invalid(where, "must be an object, got " + excerpt(j));
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "certFile" && key != "keyFile") {
      return invalid(where + "." + key, "unknown key (expected certFile, keyFile)");
    }
  }
  CniError error;
  if (!get_string(j, "certFile", where + ".certFile", &out->cert_file, &error)) return error;
  if (!get_string(j, "keyFile", where + ".keyFile", &out->key_file, &error)) return error;
  if (out->cert_file.empty()) return invalid(where + ".certFile", "required (a PEM file)");
  if (out->key_file.empty()) return invalid(where + ".keyFile", "required (a PEM file)");
  if (auto ok = check_tls_file(out->cert_file, where + ".certFile"); !ok) {
    return invalid(where + ".certFile", ok.error().message);
  }
  if (auto ok = check_tls_file(out->key_file, where + ".keyFile"); !ok) {
    return invalid(where + ".keyFile", ok.error().message);
  }
  return std::nullopt;
}

// "tls": {"certFile": .., "keyFile": ..} (one certificate) or {"certificates": [{..}, ..]}
// (the first is the default, the others are picked by SNI). Required in https mode only.
std::optional<CniError> parse_tls(const Json& j, const std::string& where, ListenerSpec* out) {
  auto it = j.find("tls");
  const bool https = out->mode == Mode::Https;
  if (it == j.end() || it->is_null()) {
    if (!https) return std::nullopt;
    return invalid(where + ".tls",
                   "required with \"mode\": \"https\" (e.g. {\"certFile\": \"/etc/nsproxy/tls/"
                   "cert.pem\", \"keyFile\": \"/etc/nsproxy/tls/key.pem\"})");
  }
  if (!https) {
    return invalid(where + ".tls",
                   "only a listener with \"mode\": \"https\" terminates TLS (this "
                   "one is " +
                       std::string(mode_name(out->mode)) + ")");
  }
  if (!it->is_object()) return invalid(where + ".tls", "must be an object, got " + excerpt(*it));
  if (auto list = it->find("certificates"); list != it->end()) {
    if (it->size() != 1) {
      return invalid(where + ".tls",
                     "either certFile and keyFile (one certificate) or certificates, not both");
    }
    if (!list->is_array() || list->empty()) {
      return invalid(
          where + ".tls.certificates",
          "must be a non-empty array of {\"certFile\", \"keyFile\"}, got " + excerpt(*list));
    }
    if (list->size() > kMaxCertificates) {
      return invalid(where + ".tls.certificates",
                     "at most " + std::to_string(kMaxCertificates) + " certificates");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      TlsCertificate cert;
      if (auto e = parse_certificate((*list)[i],
                                     where + ".tls.certificates[" + std::to_string(i) + "]", &cert))
        return e;
      out->certificates.push_back(std::move(cert));
    }
    return std::nullopt;
  }
  TlsCertificate cert;
  if (auto e = parse_certificate(*it, where + ".tls", &cert)) return e;
  out->certificates.push_back(std::move(cert));
  return std::nullopt;
}

// "upstreamTls": {"caFile", "serverName", "insecureSkipVerify"}: TLS towards the upstream
// (also asked for by an "https://" upstream); http and https listeners only.
std::optional<CniError> parse_upstream_tls(const Json& j, const std::string& where,
                                           ListenerSpec* out) {
  UpstreamTls& t = out->upstream_tls;
  auto it = j.find("upstreamTls");
  const bool given = it != j.end() && !it->is_null();
  if (given) {
    const std::string at = where + ".upstreamTls";
    if (!it->is_object()) return invalid(at, "must be an object, got " + excerpt(*it));
    for (const auto& [key, value] : it->items()) {
      (void)value;
      if (key != "caFile" && key != "serverName" && key != "insecureSkipVerify") {
        return invalid(at + "." + key,
                       "unknown key (expected caFile, serverName, insecureSkipVerify)");
      }
    }
    CniError error;
    if (!get_string(*it, "caFile", at + ".caFile", &t.ca_file, &error)) return error;
    if (!get_string(*it, "serverName", at + ".serverName", &t.server_name, &error)) return error;
    if (!t.ca_file.empty()) {
      if (auto ok = check_tls_file(t.ca_file, at + ".caFile"); !ok) {
        return invalid(at + ".caFile", ok.error().message);
      }
    }
    if (!t.server_name.empty() && !valid_server_name(t.server_name)) {
      return invalid(at + ".serverName", "not a DNS name (letters, digits, '-' and '.'), got \"" +
                                             t.server_name.substr(0, 80) + "\"");
    }
    if (auto v = it->find("insecureSkipVerify"); v != it->end() && !v->is_null()) {
      if (!v->is_boolean()) {
        return invalid(at + ".insecureSkipVerify", "must be true or false, got " + excerpt(*v));
      }
      t.insecure_skip_verify = v->get<bool>();
    }
    t.enabled = true;
  }
  if (t.enabled && out->mode == Mode::Tcp) {
    return invalid(given ? where + ".upstreamTls" : where + ".upstream",
                   "TLS towards the upstream needs \"mode\": \"http\" or \"https\" (tcp mode "
                   "forwards the tenant's bytes as they are)");
  }
  return std::nullopt;
}

std::optional<CniError> parse_listener(const Json& j, size_t index, ListenerSpec* out) {
  const std::string where = "listeners[" + std::to_string(index) + "]";
  if (!j.is_object()) return invalid(where, "must be an object, got " + excerpt(j));
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "listen" && key != "upstream" && key != "mode" && key != "proxyProtocol" &&
        key != "addAddress" && key != "tls" && key != "upstreamTls") {
      return invalid(where + "." + key,
                     "unknown key (expected listen, upstream, mode, proxyProtocol, addAddress, "
                     "tls, upstreamTls)");
    }
  }
  CniError error;
  std::string listen, upstream, mode = "http", proxy_protocol = "none";
  if (!get_string(j, "listen", where + ".listen", &listen, &error)) return error;
  if (!get_string(j, "upstream", where + ".upstream", &upstream, &error)) return error;
  if (!get_string(j, "mode", where + ".mode", &mode, &error)) return error;
  if (!get_string(j, "proxyProtocol", where + ".proxyProtocol", &proxy_protocol, &error)) {
    return error;
  }
  if (listen.empty()) return invalid(where + ".listen", "required (e.g. \"127.0.0.1:8080\")");
  if (upstream.empty()) return invalid(where + ".upstream", "required (e.g. \"127.0.0.1:18080\")");
  out->upstream_tls.enabled = strip_https_scheme(&upstream);
  auto l = parse_address(listen, /*allow_unix=*/false);
  if (!l) return invalid(where + ".listen", l.error().message);
  auto u = parse_address(upstream, /*allow_unix=*/true);
  if (!u) return invalid(where + ".upstream", u.error().message);
  if (!parse_mode(mode, &out->mode)) {
    return invalid(where + ".mode",
                   "must be \"http\", \"https\" or \"tcp\", got \"" + mode.substr(0, 80) + "\"");
  }
  if (proxy_protocol.empty() || !parse_proxy_protocol(proxy_protocol, &out->proxy_protocol)) {
    return invalid(where + ".proxyProtocol",
                   "must be \"v2\" or \"none\", got \"" + proxy_protocol.substr(0, 80) + "\"");
  }
  if (out->proxy_protocol != ProxyProtocol::None && out->mode != Mode::Tcp) {
    return invalid(where + ".proxyProtocol",
                   "only a listener with \"mode\": \"tcp\" sends a PROXY protocol header (this "
                   "one is " +
                       std::string(mode_name(out->mode)) + "; http mode sends identity headers)");
  }
  if (auto it = j.find("addAddress"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean())
      return invalid(where + ".addAddress", "must be true or false, got " + excerpt(*it));
    out->add_address = it->get<bool>();
  }
  if (out->add_address) {
    if (auto ok = check_service_address(*l); !ok)
      return invalid(where + ".addAddress", ok.error().message);
  }
  if (auto e = parse_tls(j, where, out)) return e;
  if (auto e = parse_upstream_tls(j, where, out)) return e;
  // Canonical forms, so that a repeated ADD compares equal in the daemon.
  out->listen = l->text;
  out->upstream = u->text;
  return std::nullopt;
}

std::optional<CniError> parse_listeners(const Json& conf, PluginConfig* out) {
  auto it = conf.find("listeners");
  if (it == conf.end() || it->is_null()) return invalid("listeners", "required");
  if (!it->is_array()) return invalid("listeners", "must be an array, got " + excerpt(*it));
  if (it->empty()) return invalid("listeners", "must name at least one listener");
  if (it->size() > kMaxListeners) {
    return invalid("listeners", "at most " + std::to_string(kMaxListeners) + " listeners");
  }
  for (size_t i = 0; i < it->size(); ++i) {
    ListenerSpec spec;
    if (auto e = parse_listener((*it)[i], i, &spec)) return e;
    for (size_t k = 0; k < out->listeners.size(); ++k) {
      if (out->listeners[k].listen == spec.listen) {
        return invalid("listeners[" + std::to_string(i) + "].listen",
                       spec.listen + " is already used by listeners[" + std::to_string(k) + "]");
      }
    }
    out->listeners.push_back(std::move(spec));
  }
  return std::nullopt;
}

std::optional<CniError> parse_labels(const Json& conf, PluginConfig* out) {
  auto it = conf.find("labels");
  if (it == conf.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return invalid("labels", "must be an object of strings");
  if (it->size() > kMaxLabels) {
    return invalid("labels", "at most " + std::to_string(kMaxLabels) + " labels");
  }
  for (const auto& [key, value] : it->items()) {
    const std::string where = "labels." + key.substr(0, 80);
    if (!valid_label_name(key)) {
      return invalid(where, "label names are 1-" + std::to_string(kMaxLabelKeyLength) +
                                " characters of [A-Za-z0-9._-]");
    }
    if (!value.is_string()) return invalid(where, "must be a string, got " + excerpt(value));
    const auto& s = value.get_ref<const std::string&>();
    if (s.size() > kMaxLabelValueLength) {
      return invalid(where, "longer than " + std::to_string(kMaxLabelValueLength) + " bytes");
    }
    for (char c : s) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return invalid(where, "contains a control character");
      }
    }
    out->labels[key] = s;
  }
  return std::nullopt;
}

std::optional<CniError> parse_headers(const Json& conf, PluginConfig* out) {
  auto it = conf.find("headers");
  if (it == conf.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) {
    return invalid("headers",
                   "must be an object like {\"tenantId\": \"X-Tenant-Id\", "
                   "\"labelPrefix\": \"X-Tenant-Label-\"}, got " +
                       excerpt(*it));
  }
  for (const auto& [key, value] : it->items()) {
    (void)value;
    if (key != "tenantId" && key != "labelPrefix") {
      return invalid("headers." + key.substr(0, 80),
                     "unknown key (expected tenantId, labelPrefix)");
    }
  }
  CniError error;
  for (auto [key, target] : {std::pair{"tenantId", &out->headers.tenant_id},
                             std::pair{"labelPrefix", &out->headers.label_prefix}}) {
    const std::string where = std::string("headers.") + key;
    if (!get_string(*it, key, where, target, &error)) return error;
    auto field = it->find(key);
    if (field != it->end() && !field->is_null() && !valid_header_name(*target)) {
      return invalid(where, "\"" + target->substr(0, 80) + "\" is not a header field name (1-" +
                                std::to_string(kMaxHeaderNameLength) +
                                " characters of letters, digits and !#$%&'*+-.^_`|~)");
    }
  }
  return std::nullopt;
}

// A count ("limits.burst", "limits.connections"): an integer from 1 to max.
std::optional<CniError> get_count(const Json& value, const std::string& where, uint32_t max,
                                  std::optional<uint32_t>* out) {
  bool in_range = false;
  if (value.is_number_unsigned()) {
    in_range = value.get<uint64_t>() >= 1 && value.get<uint64_t>() <= max;
  } else if (value.is_number_integer()) {
    in_range = value.get<int64_t>() >= 1 && value.get<int64_t>() <= max;
  }
  if (!in_range) {
    return invalid(
        where, "must be an integer from 1 to " + std::to_string(max) + ", got " + excerpt(value));
  }
  *out = static_cast<uint32_t>(value.get<uint64_t>());
  return std::nullopt;
}

std::optional<CniError> parse_limits(const Json& conf, PluginConfig* out) {
  auto it = conf.find("limits");
  if (it == conf.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) {
    return invalid("limits",
                   "must be an object like {\"rate\": 10, \"burst\": 20, \"connections\": 100}, "
                   "got " +
                       excerpt(*it));
  }
  for (const auto& [key, value] : it->items()) {
    (void)value;
    if (key != "rate" && key != "burst" && key != "connections") {
      return invalid("limits." + key.substr(0, 80),
                     "unknown key (expected rate, burst, connections)");
    }
  }
  if (auto rate = it->find("rate"); rate != it->end() && !rate->is_null()) {
    // !(a && b) also refuses NaN; JSON has no NaN or infinity, but be explicit.
    if (!rate->is_number() ||
        !(rate->get<double>() >= 0 && rate->get<double>() <= kMaxTenantRate)) {
      return invalid("limits.rate",
                     "must be a number of requests per second from 0 (no limit) to " +
                         std::to_string(static_cast<long>(kMaxTenantRate)) + ", got " +
                         excerpt(*rate));
    }
    out->limits.rate = rate->get<double>();
  }
  if (auto burst = it->find("burst"); burst != it->end() && !burst->is_null()) {
    if (auto e = get_count(*burst, "limits.burst", kMaxTenantBurst, &out->limits.burst)) return e;
  }
  if (auto conns = it->find("connections"); conns != it->end() && !conns->is_null()) {
    if (auto e = get_count(*conns, "limits.connections", kMaxTenantConnections,
                           &out->limits.connections)) {
      return e;
    }
  }
  return std::nullopt;
}

std::optional<CniError> parse_valid_attachments(const Json& conf, PluginConfig* out) {
  static constexpr const char* kKey = "cni.dev/valid-attachments";
  auto it = conf.find(kKey);
  if (it == conf.end() || it->is_null()) return invalid(kKey, "required for GC");
  if (!it->is_array()) return invalid(kKey, "must be an array, got " + excerpt(*it));
  if (it->size() > kMaxValidAttachments) {
    return invalid(kKey, "more than " + std::to_string(kMaxValidAttachments) + " entries");
  }
  out->valid_attachments.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& e = (*it)[i];
    const std::string where = std::string(kKey) + "[" + std::to_string(i) + "]";
    if (!e.is_object()) return invalid(where, "must be an object, got " + excerpt(e));
    ValidAttachment a;
    CniError error;
    if (!get_string(e, "containerID", where + ".containerID", &a.container_id, &error)) {
      return error;
    }
    if (!get_string(e, "ifname", where + ".ifname", &a.ifname, &error)) return error;
    if (a.container_id.empty()) return invalid(where + ".containerID", "required");
    if (a.ifname.empty()) return invalid(where + ".ifname", "required");
    if (a.container_id.size() > kMaxIdLength || a.ifname.size() > kMaxIdLength) {
      return invalid(where, "longer than " + std::to_string(kMaxIdLength) + " bytes");
    }
    out->valid_attachments.push_back(std::move(a));
  }
  return std::nullopt;
}

}  // namespace

bool valid_network_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxIdLength) return false;
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

CniResult<nlohmann::ordered_json> decode_config(std::string_view text) {
  Json conf;
  try {
    conf = Json::parse(text);
  } catch (const std::exception& e) {
    return cni_error(code::kDecodingFailure,
                     std::string("error decoding network config: ") + e.what());
  }
  if (!conf.is_object()) {
    return cni_error(code::kDecodingFailure,
                     "error decoding network config: expected a JSON object, got " + excerpt(conf));
  }
  return CniResult<Json>(std::move(conf));
}

CniResult<PluginConfig> parse_config(std::string_view text, Command command,
                                     std::string* cni_version) {
  auto conf = decode_config(text);
  if (!conf) return conf.error();
  return parse_decoded_config(*conf, command, cni_version);
}

CniResult<PluginConfig> parse_decoded_config(const nlohmann::ordered_json& conf, Command command,
                                             std::string* cni_version) {
  if (!conf.is_object()) {
    return cni_error(code::kDecodingFailure,
                     "error decoding network config: expected a JSON object, got " + excerpt(conf));
  }

  PluginConfig out;
  CniError error;
  if (!get_string(conf, "cniVersion", "cniVersion", &out.cni_version, &error)) return error;
  if (out.cni_version.empty()) return invalid("cniVersion", "required");
  if (!is_supported_version(out.cni_version)) {
    std::string list;
    for (const auto& v : supported_versions()) list += (list.empty() ? "" : ", ") + v;
    return cni_error(code::kIncompatibleVersion, "incompatible CNI version",
                     "config version \"" + out.cni_version.substr(0, 40) +
                         "\" is not supported; this plugin supports " + list);
  }
  if (cni_version != nullptr) *cni_version = out.cni_version;

  if (!get_string(conf, "name", "name", &out.name, &error)) return error;
  if (out.name.empty()) return invalid("name", "required (the network name)");
  if (!valid_network_name(out.name)) {
    return invalid("name", "\"" + out.name.substr(0, 80) +
                               "\" is not a valid network name (an alphanumeric, then "
                               "[a-zA-Z0-9_.-], at most " +
                               std::to_string(kMaxIdLength) + " characters)");
  }
  if (!get_string(conf, "type", "type", &out.type, &error)) return error;

  if (!get_string(conf, "socket", "socket", &out.socket, &error)) return error;
  if (out.socket.empty() || out.socket[0] != '/') {
    return invalid("socket", "must be an absolute path, got \"" + out.socket.substr(0, 200) + "\"");
  }
  if (out.socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return invalid("socket", "path longer than " +
                                 std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes");
  }

  if (auto it = conf.find("timeoutMs"); it != conf.end() && !it->is_null()) {
    bool in_range = false;
    if (it->is_number_unsigned()) {
      in_range =
          it->get<unsigned long long>() >= 1 && it->get<unsigned long long>() <= kMaxTimeoutMs;
    } else if (it->is_number_integer()) {
      in_range = it->get<long long>() >= 1 && it->get<long long>() <= kMaxTimeoutMs;
    }
    if (!in_range) {
      return invalid("timeoutMs", "must be an integer from 1 to " + std::to_string(kMaxTimeoutMs) +
                                      ", got " + excerpt(*it));
    }
    out.timeout = std::chrono::milliseconds(it->get<long long>());
  }

  if (auto it = conf.find("prevResult"); it != conf.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("prevResult", "must be an object, got " + excerpt(*it));
    out.prev_result = *it;
  }

  if (command == Command::Add || command == Command::Check) {
    if (auto e = parse_listeners(conf, &out)) return *e;
    if (auto e = parse_labels(conf, &out)) return *e;
    if (auto e = parse_headers(conf, &out)) return *e;
    if (auto e = parse_limits(conf, &out)) return *e;
  }
  if (command == Command::Gc) {
    if (auto e = parse_valid_attachments(conf, &out)) return *e;
  }
  return out;
}

}  // namespace nsproxy::cni
