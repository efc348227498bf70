// The edits the installer makes to a runtime's CNI configuration, as pure functions of
// the document read: append the nsproxy entry to the primary network, or take it out
// again leaving the other plugins exactly as they were.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cni_conf_dir.h"
#include "error.h"

namespace nsproxy::cni_install {

inline constexpr const char* kPluginType = "nsproxy";
// A top-level key of a conflist that was a single-plugin .conf/.json before install:
// {"file": "10-bridge.conf", "content": "<its bytes>"}, so uninstall puts that file back
// as it was. libcni ignores top-level keys it does not know and never passes them to a
// plugin.
inline constexpr const char* kConvertedKey = "nsproxyConvertedFrom";

// The entry as given by --plugin-config, checked: a JSON object whose "type" is
// "nsproxy" (added when missing), without the conflist's own keys ("cniVersion", "name",
// "plugins"). Its fields are checked by validate_entry_for.
Result<nlohmann::ordered_json> entry_from_text(const std::string& text);

// Whether the plugin, called through `f`'s network, would accept the entry: the
// network's cniVersion is one the plugin speaks (0.3.0 or later: a chain needs 0.3.0),
// and the entry passes the plugin's own check of an ADD configuration (listeners,
// labels, limits, socket...). A bad entry must fail here, not in every pod's ADD.
Status validate_entry_for(const nlohmann::ordered_json& entry, const ConfFile& f);

// How `f` must look with the entry installed, and under which name.
struct Installed {
  std::string name;  // f.name, or "X.conflist" for a converted "X.conf"/"X.json"
  nlohmann::ordered_json doc;
  bool converted = false;  // a single configuration turned into a conflist
};
// f's plugins without any nsproxy entry, followed by `entry`. A single configuration
// becomes a conflist as libcni's ConfListFromConf makes one (its name and cniVersion, the
// whole configuration as the first plugin) and records the original under kConvertedKey.
Installed with_entry(const ConfFile& f, const nlohmann::ordered_json& entry);

// True when f holds an nsproxy entry.
bool has_entry(const ConfFile& f);

// How to undo installation in `f`, a conflist holding an nsproxy entry.
struct Restored {
  // The file to write: the original single configuration (name, its exact bytes) for a
  // converted conflist whose other plugin is unchanged; otherwise f itself without the
  // nsproxy entries and without kConvertedKey. Empty name: remove f only (it held
  // nothing but nsproxy entries, so no network is left in it).
  std::string name;
  std::string text;
  bool remove_f = false;  // f.name goes too (the converted conflist)
};
Restored without_entry(const ConfFile& f);

// The text we write for a document: two-space indented JSON and a newline.
std::string conf_text(const nlohmann::ordered_json& doc);

}  // namespace nsproxy::cni_install
