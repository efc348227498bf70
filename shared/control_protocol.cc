#include "control_protocol.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

#include "address.h"

namespace nsproxy {
namespace {

using nlohmann::json;

Error bad(const std::string& msg) {
  return make_error(Code::kBadRequest, msg);
}

// Reads an optional string field, bounded. Missing -> empty.
Status get_string(const json& obj, const char* field, size_t max, std::string* out,
                  bool required = false) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    if (required) return bad(std::string("missing field \"") + field + "\"");
    return {};
  }
  if (!it->is_string()) return bad(std::string("field \"") + field + "\" must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max) {
    return bad(std::string("field \"") + field + "\" is longer than " + std::to_string(max));
  }
  if (s.find('\0') != std::string::npos) {
    return bad(std::string("field \"") + field + "\" contains NUL");
  }
  *out = s;
  return {};
}

Status decode_attachment(const json& j, AttachmentKey* key, bool id_required) {
  if (!j.is_object()) return bad("\"attachment\" must be an object");
  if (auto s = get_string(j, "network", kMaxIdLength, &key->network); !s) return s;
  if (auto s = get_string(j, "id", kMaxIdLength, &key->id, id_required); !s) return s;
  if (auto s = get_string(j, "ifname", kMaxIdLength, &key->ifname); !s) return s;
  if (id_required && key->id.empty()) return bad("field \"id\" must not be empty");
  return {};
}

json encode_attachment(const AttachmentKey& k) {
  json j = {{"id", k.id}};
  if (!k.network.empty()) j["network"] = k.network;
  if (!k.ifname.empty()) j["ifname"] = k.ifname;
  return j;
}

// burst, connections: an integer from 1 to max.
Status decode_count(const json& val, const std::string& field, uint32_t max,
                    std::optional<uint32_t>* out) {
  bool in_range = false;
  if (val.is_number_unsigned()) {
    in_range = val.get<uint64_t>() >= 1 && val.get<uint64_t>() <= max;
  } else if (val.is_number_integer()) {
    in_range = val.get<int64_t>() >= 1 && val.get<int64_t>() <= max;
  }
  if (!in_range) {
    std::string got = val.dump(-1, ' ', false, json::error_handler_t::replace);
    if (got.size() > 80) got = got.substr(0, 77) + "...";
    return bad(field + ": must be an integer from 1 to " + std::to_string(max) + ", got " + got);
  }
  *out = static_cast<uint32_t>(val.get<uint64_t>());
  return {};
}

// "limits":{"rate":N,"burst":N,"connections":N}; a null field stays absent.
Status decode_limits(const json& j, TenantLimits* out) {
  if (!j.is_object()) {
    return bad("\"limits\" must be an object like {\"rate\":10,\"burst\":20,\"connections\":100}");
  }
  for (const auto& [k, val] : j.items()) {
    if (k != "rate" && k != "burst" && k != "connections") {
      return bad("limits." + k.substr(0, 80) + ": unknown key (expected rate, burst, connections)");
    }
    if (val.is_null()) continue;
    Status s;
    if (k == "rate") {
      if (!val.is_number()) return bad("limits.rate: must be a number (requests per second)");
      out->rate = val.get<double>();
    } else if (k == "burst") {
      s = decode_count(val, "limits.burst", kMaxTenantBurst, &out->burst);
    } else {
      s = decode_count(val, "limits.connections", kMaxTenantConnections, &out->connections);
    }
    if (!s) return s;
  }
  return validate_limits(*out);
}

// "tls":{"certificates":[{"cert_file":..,"key_file":..}]}: required in https mode, refused
// in the others.
Status decode_tls(const json& j, const std::string& where, ListenerSpec* out) {
  auto it = j.find("tls");
  const bool https = out->mode == Mode::Https;
  if (it == j.end() || it->is_null()) {
    if (https) return bad(where + ".tls: required in https mode (a certificate and its key)");
    return {};
  }
  if (!https) return bad(where + ".tls: only https listeners terminate TLS");
  auto certs = it->is_object() ? it->find("certificates") : it->end();
  if (!it->is_object() || certs == it->end() || !certs->is_array() || certs->empty()) {
    return bad(where + ".tls: must be {\"certificates\":[{\"cert_file\":..,\"key_file\":..}]}");
  }
  if (certs->size() > kMaxCertificates) {
    return bad(where + ".tls.certificates: at most " + std::to_string(kMaxCertificates));
  }
  for (size_t i = 0; i < certs->size(); ++i) {
    const json& cj = (*certs)[i];
    const std::string at = where + ".tls.certificates[" + std::to_string(i) + "]";
    if (!cj.is_object()) return bad(at + " must be an object");
    TlsCertificate cert;
    if (auto s = get_string(cj, "cert_file", kMaxPathLength, &cert.cert_file, true); !s) {
      return bad(at + ": " + s.error().message);
    }
    if (auto s = get_string(cj, "key_file", kMaxPathLength, &cert.key_file, true); !s) {
      return bad(at + ": " + s.error().message);
    }
    if (auto s = check_tls_file(cert.cert_file, at + ".cert_file"); !s) return s;
    if (auto s = check_tls_file(cert.key_file, at + ".key_file"); !s) return s;
    out->certificates.push_back(std::move(cert));
  }
  return {};
}

// "upstream_tls":{"ca_file":..,"server_name":..,"insecure_skip_verify":..} (tcp: refused).
Status decode_upstream_tls(const json& j, const std::string& where, ListenerSpec* out) {
  auto it = j.find("upstream_tls");
  if (it == j.end() || it->is_null()) return {};
  const std::string at = where + ".upstream_tls";
  if (!it->is_object()) return bad(at + ": must be an object");
  if (out->mode == Mode::Tcp) return bad(at + ": only http and https listeners speak TLS upstream");
  UpstreamTls& t = out->upstream_tls;
  t.enabled = true;
  if (auto s = get_string(*it, "ca_file", kMaxPathLength, &t.ca_file); !s) {
    return bad(at + ": " + s.error().message);
  }
  if (!t.ca_file.empty()) {
    if (auto s = check_tls_file(t.ca_file, at + ".ca_file"); !s) return s;
  }
  if (auto s = get_string(*it, "server_name", 253, &t.server_name); !s) {
    return bad(at + ": " + s.error().message);
  }
  if (!t.server_name.empty() && !valid_server_name(t.server_name)) {
    return bad(at + ".server_name: not a DNS name: \"" + t.server_name.substr(0, 80) + "\"");
  }
  if (auto v = it->find("insecure_skip_verify"); v != it->end() && !v->is_null()) {
    if (!v->is_boolean()) return bad(at + ".insecure_skip_verify: must be true or false");
    t.insecure_skip_verify = v->get<bool>();
  }
  return {};
}

Status decode_listener(const json& j, size_t index, ListenerSpec* out) {
  std::string where = "listeners[" + std::to_string(index) + "]";
  if (!j.is_object()) return bad(where + " must be an object");
  std::string mode = "http";
  std::string pp = "none";
  if (auto s = get_string(j, "listen", 256, &out->listen, true); !s) {
    return bad(where + ": " + s.error().message);
  }
  if (auto s = get_string(j, "upstream", kMaxPathLength, &out->upstream, true); !s) {
    return bad(where + ": " + s.error().message);
  }
  if (auto s = get_string(j, "mode", 16, &mode); !s) return bad(where + ": " + s.error().message);
  if (!parse_mode(mode, &out->mode)) {
    return bad(where + ": mode must be \"tcp\", \"http\" or \"https\", got \"" + mode + "\"");
  }
  if (auto s = get_string(j, "proxy_protocol", 16, &pp); !s) {
    return bad(where + ": " + s.error().message);
  }
  if (!parse_proxy_protocol(pp, &out->proxy_protocol)) {
    return bad(where + ".proxy_protocol: must be \"none\" or \"v2\", got \"" + pp + "\"");
  }
  if (out->proxy_protocol != ProxyProtocol::None && out->mode != Mode::Tcp) {
    return bad(where + ".proxy_protocol: only tcp listeners send a PROXY header");
  }
  auto listen = parse_address(out->listen, false);
  if (!listen) return bad(where + ".listen: " + listen.error().message);
  if (auto it = j.find("add_address"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return bad(where + ".add_address: must be true or false");
    out->add_address = it->get<bool>();
  }
  if (out->add_address) {
    if (auto ok = check_service_address(*listen); !ok) {
      return bad(where + ".add_address: " + ok.error().message);
    }
  }
  if (auto a = parse_address(out->upstream, true); !a) {
    return bad(where + ".upstream: " + a.error().message);
  }
  if (auto s = decode_tls(j, where, out); !s) return s;
  if (auto s = decode_upstream_tls(j, where, out); !s) return s;
  return {};
}

bool parse_op(std::string_view s, Op* op) {
  for (Op o : {Op::Add, Op::Del, Op::Check, Op::List, Op::Status, Op::Gc, Op::Handover}) {
    if (s == op_name(o)) {
      *op = o;
      return true;
    }
  }
  return false;
}

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::Add:
      return "add";
    case Op::Del:
      return "del";
    case Op::Check:
      return "check";
    case Op::List:
      return "list";
    case Op::Status:
      return "status";
    case Op::Gc:
      return "gc";
    case Op::Handover:
      return "handover";
  }
  return "?";
}

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::Tcp:
      return "tcp";
    case Mode::Http:
      return "http";
    case Mode::Https:
      return "https";
  }
  return "?";
}

Status check_tls_file(const std::string& path, const std::string& field) {
  if (path.empty() || path[0] != '/') {
    return bad(field + ": must be an absolute path, got \"" + path.substr(0, 80) + "\"");
  }
  if (path.size() > kMaxPathLength) {
    return bad(field + ": longer than " + std::to_string(kMaxPathLength) + " bytes");
  }
  if (path.find('\0') != std::string::npos) return bad(field + ": contains NUL");
  return {};
}

const char* proxy_protocol_name(ProxyProtocol p) {
  return p == ProxyProtocol::V2 ? "v2" : "none";
}

bool parse_proxy_protocol(std::string_view text, ProxyProtocol* out) {
  if (text == "none" || text.empty()) {
    *out = ProxyProtocol::None;
  } else if (text == "v2") {
    *out = ProxyProtocol::V2;
  } else {
    return false;
  }
  return true;
}

bool valid_header_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxHeaderNameLength) return false;
  for (char c : name) {
    bool ok = isalnum(static_cast<unsigned char>(c)) ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

bool parse_mode(std::string_view text, Mode* out) {
  if (text == "tcp") {
    *out = Mode::Tcp;
  } else if (text == "http") {
    *out = Mode::Http;
  } else if (text == "https") {
    *out = Mode::Https;
  } else {
    return false;
  }
  return true;
}

std::string AttachmentKey::display() const {
  if (manual()) return id;
  return network + "/" + id + "/" + ifname;
}

std::string encode_request(const Request& req) {
  json j = {{"version", kProtocolVersion}, {"op", op_name(req.op)}};
  if (!req.attachment.id.empty() || !req.attachment.network.empty() ||
      !req.attachment.ifname.empty()) {
    j["attachment"] = encode_attachment(req.attachment);
  }
  if (!req.netns_path.empty()) j["netns"] = req.netns_path;
  if (!req.listeners.empty()) {
    json ls = json::array();
    for (const auto& l : req.listeners) {
      json lj = {{"listen", l.listen}, {"upstream", l.upstream}, {"mode", mode_name(l.mode)}};
      if (l.proxy_protocol != ProxyProtocol::None) {
        lj["proxy_protocol"] = proxy_protocol_name(l.proxy_protocol);
      }
      if (l.add_address) lj["add_address"] = true;
      if (!l.certificates.empty()) lj["tls"] = tls_json(l.certificates);
      if (l.upstream_tls.enabled) lj["upstream_tls"] = upstream_tls_json(l.upstream_tls);
      ls.push_back(std::move(lj));
    }
    j["listeners"] = std::move(ls);
  }
  if (!req.labels.empty()) j["labels"] = req.labels;
  if (!req.headers.tenant_id.empty() || !req.headers.label_prefix.empty()) {
    json h = json::object();
    if (!req.headers.tenant_id.empty()) h["tenant_id"] = req.headers.tenant_id;
    if (!req.headers.label_prefix.empty()) h["label_prefix"] = req.headers.label_prefix;
    j["headers"] = std::move(h);
  }
  if (!req.limits.empty()) j["limits"] = limits_json(req.limits);
  if (req.op == Op::Gc) {
    json va = json::array();
    for (const auto& k : req.valid_attachments) va.push_back(encode_attachment(k));
    j["valid_attachments"] = std::move(va);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Request> decode_request(std::string_view text) {
  if (text.size() > kMaxMessageSize) return make_error(Code::kTooLarge, "message too large");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("request is not valid JSON");
  if (!j.is_object()) return bad("request must be a JSON object");

  auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer()) return bad("missing integer field \"version\"");
  if (v->get<long long>() != kProtocolVersion) {
    return make_error(Code::kUnsupportedVersion, "protocol version " + v->dump() +
                                                     " is not supported (this daemon speaks " +
                                                     std::to_string(kProtocolVersion) + ")");
  }
  Request req;
  std::string op;
  if (auto s = get_string(j, "op", 32, &op, true); !s) return s.error();
  if (!parse_op(op, &req.op)) return bad("unknown op \"" + op + "\"");

  bool needs_key = req.op == Op::Add || req.op == Op::Del || req.op == Op::Check;
  if (auto it = j.find("attachment"); it != j.end()) {
    if (auto s = decode_attachment(*it, &req.attachment, needs_key); !s) return s.error();
  } else if (needs_key || req.op == Op::Gc) {
    return bad("missing field \"attachment\"");
  }
  if (req.op == Op::Gc && req.attachment.network.empty()) {
    return bad("gc needs \"attachment.network\"");
  }
  if (auto s = get_string(j, "netns", kMaxPathLength, &req.netns_path); !s) return s.error();

  if (auto it = j.find("listeners"); it != j.end()) {
    if (!it->is_array()) return bad("\"listeners\" must be an array");
    if (it->size() > kMaxListeners) {
      return bad("too many listeners (max " + std::to_string(kMaxListeners) + ")");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      ListenerSpec spec;
      if (auto s = decode_listener((*it)[i], i, &spec); !s) return s.error();
      req.listeners.push_back(std::move(spec));
    }
  }
  if (req.op == Op::Add && req.listeners.empty()) return bad("add needs at least one listener");

  if (auto it = j.find("labels"); it != j.end()) {
    if (!it->is_object()) return bad("\"labels\" must be an object of strings");
    if (it->size() > kMaxLabels) {
      return bad("too many labels (max " + std::to_string(kMaxLabels) + ")");
    }
    for (const auto& [k, val] : it->items()) {
      if (k.empty() || k.size() > kMaxLabelKeyLength) {
        return bad("label name \"" + k.substr(0, 80) + "\" must be 1-" +
                   std::to_string(kMaxLabelKeyLength) + " characters");
      }
      for (char c : k) {
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
          return bad("label name \"" + k + "\" may contain only letters, digits, '-', '_', '.'");
        }
      }
      if (!val.is_string()) return bad("label \"" + k + "\" must be a string");
      const auto& s = val.get_ref<const std::string&>();
      if (s.size() > kMaxLabelValueLength) return bad("label \"" + k + "\" value is too long");
      for (char c : s) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          return bad("label \"" + k + "\" value contains a control character");
        }
      }
      req.labels[k] = s;
    }
  }

  if (auto it = j.find("headers"); it != j.end()) {
    if (!it->is_object()) return bad("\"headers\" must be an object");
    for (const auto& [k, val] : it->items()) {
      std::string* target = k == "tenant_id"      ? &req.headers.tenant_id
                            : k == "label_prefix" ? &req.headers.label_prefix
                                                  : nullptr;
      if (target == nullptr) return bad("headers." + k.substr(0, 80) + ": unknown key");
      if (!val.is_string()) return bad("headers." + k + " must be a string");
      *target = val.get<std::string>();
      if (!valid_header_name(*target)) {
        return bad("headers." + k + ": \"" + target->substr(0, 80) +
                   "\" is not a valid header name (1-64 token characters)");
      }
    }
  }

  if (auto it = j.find("limits"); it != j.end() && !it->is_null()) {
    if (auto s = decode_limits(*it, &req.limits); !s) return s.error();
  }

  if (auto it = j.find("valid_attachments"); it != j.end()) {
    if (req.op != Op::Gc) return bad("\"valid_attachments\" belongs to gc requests only");
    if (!it->is_array()) return bad("\"valid_attachments\" must be an array");
    if (it->size() > kMaxValidAttachments) return bad("too many valid_attachments");
    for (const auto& e : *it) {
      AttachmentKey k;
      if (auto s = decode_attachment(e, &k, true); !s) return s.error();
      k.network = req.attachment.network;
      req.valid_attachments.push_back(std::move(k));
    }
  }
  return req;
}

Status validate_limits(const TenantLimits& l) {
  if (l.rate && !(*l.rate >= 0 && *l.rate <= kMaxTenantRate)) {
    return bad("limits.rate: must be from 0 (no limit) to " +
               std::to_string(static_cast<long>(kMaxTenantRate)) + " requests per second");
  }
  if (l.burst && (*l.burst < 1 || *l.burst > kMaxTenantBurst)) {
    return bad("limits.burst: must be an integer from 1 to " + std::to_string(kMaxTenantBurst));
  }
  if (l.connections && (*l.connections < 1 || *l.connections > kMaxTenantConnections)) {
    return bad("limits.connections: must be an integer from 1 to " +
               std::to_string(kMaxTenantConnections));
  }
  return {};
}

json upstream_tls_json(const UpstreamTls& t) {
  json j = json::object();
  if (!t.ca_file.empty()) j["ca_file"] = t.ca_file;
  if (!t.server_name.empty()) j["server_name"] = t.server_name;
  if (t.insecure_skip_verify) j["insecure_skip_verify"] = true;
  return j;
}

bool strip_https_scheme(std::string* upstream) {
  static constexpr std::string_view kScheme = "https://";
  if (upstream->size() < kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), upstream->begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      })) {
    return false;
  }
  upstream->erase(0, kScheme.size());
  if (!upstream->empty() && upstream->back() == '/') upstream->pop_back();
  return true;
}

bool valid_server_name(std::string_view name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  char prev = 0;
  for (char c : name) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}

json tls_json(const std::vector<TlsCertificate>& certs) {
  json list = json::array();
  for (const auto& c : certs)
    list.push_back({{"cert_file", c.cert_file}, {"key_file", c.key_file}});
  return {{"certificates", std::move(list)}};
}

json limits_json(const TenantLimits& l) {
  json j = json::object();
  if (l.rate) j["rate"] = *l.rate;
  if (l.burst) j["burst"] = *l.burst;
  if (l.connections) j["connections"] = *l.connections;
  return j;
}

std::string encode_reply(const Reply& reply) {
  json j = {{"version", kProtocolVersion}, {"ok", reply.ok}};
  if (reply.ok) {
    j["data"] = reply.data;
  } else {
    j["error"] = {{"code", code_name(reply.error.code)}, {"message", reply.error.message}};
  }
  // Replies may echo client-supplied bytes (paths, ids); never fail on invalid UTF-8.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Reply> decode_reply(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("reply is not a JSON object");
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return bad("reply has no boolean \"ok\"");
  Reply r;
  r.ok = ok->get<bool>();
  if (r.ok) {
    if (auto d = j.find("data"); d != j.end()) r.data = *d;
    return r;
  }
  auto e = j.find("error");
  if (e == j.end() || !e->is_object()) return bad("error reply has no \"error\" object");
  std::string code;
  if (auto s = get_string(*e, "code", 256, &code); !s) return s.error();
  if (auto s = get_string(*e, "message", kMaxMessageSize, &r.error.message); !s) return s.error();
  r.error.code = code_from_name(code);
  // A code this program does not know (a newer daemon's) stays readable in the message.
  if (r.error.code == Code::kUnknown) r.error.message += " (code \"" + code + "\")";
  return r;
}

Reply ok_reply(nlohmann::json data) {
  Reply r;
  r.data = std::move(data);
  return r;
}

Reply error_reply(Error error) {
  Reply r;
  r.ok = false;
  r.error = std::move(error);
  return r;
}

}  // namespace nsproxy
