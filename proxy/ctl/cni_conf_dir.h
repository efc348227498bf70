// A CNI configuration directory (/etc/cni/net.d) as a container runtime reads it: the
// network a node uses is the first valid .conf, .conflist or .json file in lexical order
// (libcni's ConfFiles, sorted, as containerd's go-cni, CRI-O and the kubelet load it).
// Invalid and empty files are skipped, as istio-cni and Multus skip them: a runtime that
// stops at one would not start pods at all, which no installer can fix.
#pragma once

#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "error.h"

namespace nsproxy::cni_install {

// One configuration file, as read.
struct ConfFile {
  std::string name;            // "10-calico.conflist"
  std::string path;            // dir + "/" + name
  bool is_list = false;        // .conflist; .conf and .json hold one plugin's configuration
  std::string text;            // the bytes read
  nlohmann::ordered_json doc;  // parsed; key order kept, so a rewrite changes only our part
  struct stat st {};           // mode, owner and identity of the file read
};

// Why a runtime would not load this document, or nothing when it would (libcni's
// ConfListFromBytes and ConfFromBytes): a JSON object; a conflist needs a string "name"
// and a non-empty "plugins" array of objects, each with a string "type"; a single
// configuration needs a "type"; "cniVersion" and "name", when present, are strings.
std::optional<std::string> why_invalid(const nlohmann::ordered_json& doc, bool is_list);

struct DirScan {
  std::vector<ConfFile> valid;       // lexical order; valid.front() is the primary
  std::vector<std::string> skipped;  // "NAME: reason", one per candidate file skipped
  const ConfFile* primary() const { return valid.empty() ? nullptr : &valid.front(); }
};

// Reads every candidate file of dir. Fails only when the directory cannot be listed.
Result<DirScan> scan_conf_dir(const std::string& dir);

// "NAME.conf" -> true for the three extensions runtimes load.
bool is_candidate_name(const std::string& name);

}  // namespace nsproxy::cni_install
