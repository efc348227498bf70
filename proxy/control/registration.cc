#include "control/registration.h"

#include "forward/proxy_protocol.h"

namespace nsproxy {
using nlohmann::json;

json attachment_json(const AttachmentKey& k) {
  return {{"network", k.network}, {"id", k.id}, {"ifname", k.ifname}};
}

json Registration::to_json() const {
  json ls = json::array();
  const auto& specs = request.listeners;
  for (size_t i = 0; i < specs.size(); ++i) {
    const Listener* l = i < listeners.size() ? listeners[i].get() : nullptr;
    json lj = {{"listen", specs[i].listen},
               {"upstream", specs[i].upstream},
               {"mode", mode_name(specs[i].mode)},
               {"accepting", l != nullptr && l->accepting()},
               {"connections", l != nullptr ? l->connections() : 0}};
    if (specs[i].mode == Mode::Tcp)
      lj["proxy_protocol"] = proxy_protocol_name(specs[i].proxy_protocol);
    if (specs[i].add_address) lj["add_address"] = true;
    if (!specs[i].certificates.empty()) lj["tls"] = tls_json(specs[i].certificates);
    if (specs[i].upstream_tls.enabled)
      lj["upstream_tls"] = upstream_tls_json(specs[i].upstream_tls);
    ls.push_back(std::move(lj));
  }
  json h = json::object();
  if (!listeners.empty()) {
    const Tenant& t = listeners.front()->tenant();
    h = {{"tenant_id", t.tenant_header}, {"label_prefix", t.label_header_prefix}};
  }
  return {{"attachment", attachment_json(key())},
          {"headers", h},
          {"netns", netns_path()},
          {"netns_dev", static_cast<uint64_t>(netns_id.dev)},
          {"netns_inode", static_cast<uint64_t>(netns_id.ino)},
          {"labels", labels()},
          {"created_at", created_at},
          {"added_addresses", added_addresses},
          {"listeners", ls},
          {"limits", tenant ? json{{"rate", tenant->rate.rate()},
                                   {"burst", tenant->rate.enabled() ? tenant->rate.burst() : 0},
                                   {"connections", tenant->max_connections},
                                   {"in_flight", tenant->max_in_flight}}
                            : json::object()},
          {"connections", tenant ? tenant->connections.load() : 0},
          {"stats", tenant ? tenant->total_stats().to_json() : json::object()}};
}

Result<UniqueFd> Registration::netns_fd() const {
  for (const auto& l : listeners) {
    if (l->fd() >= 0) return netns_of_socket(l->fd());
  }
  return make_error(Code::kNetnsOpenFailed, "no open listener left in " + netns_path());
}

}  // namespace nsproxy
