// One registration: a tenant's namespace (kept alive by its listening sockets, which live
// in it; identified by st_dev/st_ino), the add request it came from, its tenant state and
// its listeners. Owned by the Registry, one per attachment key.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "forward/listener.h"
#include "forward/tenant.h"
#include "netns.h"
#include "unique_fd.h"

namespace nsproxy {

struct Registration {
  Request request;  // the add request, as persisted: attachment, namespace path, listeners
  NetnsId netns_id;
  // IPs nsproxy added to the namespace's lo for listeners with add_address: removed when
  // the registration goes, or handed to another registration of the same namespace that
  // also asked for them. IPs lo already had are not ours and stay.
  std::vector<std::string> added_addresses;
  int64_t created_at = 0;
  std::shared_ptr<Tenant> tenant;  // shared by its listeners: identity, counters
  std::vector<std::unique_ptr<Listener>> listeners;

  const AttachmentKey& key() const { return request.attachment; }
  const std::string& netns_path() const { return request.netns_path; }
  const std::vector<ListenerSpec>& specs() const { return request.listeners; }
  const std::map<std::string, std::string>& labels() const { return request.labels; }
  const IdentityHeaders& headers() const { return request.headers; }  // empty: defaults

  nlohmann::json to_json() const;
  // A new fd of the namespace, from its first listener that is still open (one fd per
  // listener is all a tenant costs; the namespace needs none of its own). Fails once
  // every listener was handed over.
  Result<UniqueFd> netns_fd() const;
};

// {"network", "id", "ifname"}: how replies name an attachment.
nlohmann::json attachment_json(const AttachmentKey& key);

// The map's key: the registration's own attachment key (request.attachment), not a copy
// of it; a Registration never moves (it is held by unique_ptr) and keeps its request.
struct KeyRef {
  const AttachmentKey* key;
  const AttachmentKey& operator*() const { return *key; }
  const AttachmentKey* operator->() const { return key; }
};
struct KeyRefLess {
  using is_transparent = void;  // find(const AttachmentKey&) without building a KeyRef
  bool operator()(KeyRef a, KeyRef b) const { return *a.key < *b.key; }
  bool operator()(KeyRef a, const AttachmentKey& b) const { return *a.key < b; }
  bool operator()(const AttachmentKey& a, KeyRef b) const { return a < *b.key; }
};

// Every registration, by attachment key (the Registry's map).
using Registrations = std::map<KeyRef, std::unique_ptr<Registration>, KeyRefLess>;

}  // namespace nsproxy
