#include "cni_conflist.h"

#include "cni_config.h"
#include "cni_version.h"

namespace nsproxy::cni_install {
namespace {

using nlohmann::ordered_json;

bool is_nsproxy(const ordered_json& plugin) {
  auto type = plugin.find("type");
  return type != plugin.end() && type->is_string() && *type == kPluginType;
}

ordered_json plugins_without_nsproxy(const ordered_json& plugins) {
  ordered_json out = ordered_json::array();
  for (const auto& p : plugins) {
    if (!is_nsproxy(p)) out.push_back(p);
  }
  return out;
}

std::string stem(const std::string& name) {
  return name.substr(0, name.rfind('.'));
}

// The original single configuration recorded at conversion, when it is one we could
// have written: a plain file name of a single configuration, and its text.
std::optional<std::pair<std::string, std::string>> converted_from(const ordered_json& doc) {
  auto it = doc.find(kConvertedKey);
  if (it == doc.end() || !it->is_object()) return std::nullopt;
  auto file = it->find("file");
  auto content = it->find("content");
  if (file == it->end() || content == it->end() || !file->is_string() || !content->is_string()) {
    return std::nullopt;
  }
  const std::string name = *file;
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      !is_candidate_name(name) || name.size() > 255) {
    return std::nullopt;
  }
  return std::make_pair(name, content->get<std::string>());
}

}  // namespace

std::string conf_text(const ordered_json& doc) {
  return doc.dump(2) + "\n";
}

Result<ordered_json> entry_from_text(const std::string& text) {
  ordered_json entry = ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (entry.is_discarded()) return make_error(Code::kBadRequest, "not JSON");
  if (!entry.is_object()) {
    return make_error(Code::kBadRequest,
                      "expected a JSON object (the nsproxy entry of a conflist)");
  }
  for (const char* key : {"cniVersion", "name", "plugins"}) {
    if (entry.contains(key)) {
      return make_error(Code::kBadRequest,
                        std::string("\"") + key +
                            "\" belongs to the conflist, not to its nsproxy entry: give the "
                            "entry alone, e.g. {\"type\":\"nsproxy\",\"listeners\":[...]}");
    }
  }
  auto type = entry.find("type");
  if (type == entry.end()) {
    // "type" first, as in every conflist.
    ordered_json with_type = {{"type", kPluginType}};
    for (auto& [k, v] : entry.items()) with_type[k] = v;
    return with_type;
  }
  if (!type->is_string() || *type != kPluginType) {
    return make_error(Code::kBadRequest,
                      "\"type\" is " + type->dump() + ": this installs the \"nsproxy\" plugin");
  }
  return entry;
}

Status validate_entry_for(const ordered_json& entry, const ConfFile& f) {
  const std::string version = f.doc.value("cniVersion", std::string());
  if (!cni::is_supported_version(version) || !cni::version_at_least(version, "0.3.0")) {
    std::string supported;
    for (const auto& v : cni::supported_versions())
      supported += (supported.empty() ? "" : ", ") + v;
    return make_error(Code::kBadRequest, f.name + ": cniVersion \"" + version +
                                             "\": the nsproxy plugin runs in chains of version " +
                                             supported);
  }
  // What libcni hands the plugin: its entry with the network's name and cniVersion.
  ordered_json conf = entry;
  conf["cniVersion"] = version;
  conf["name"] = f.doc.value("name", std::string());
  auto parsed = cni::parse_decoded_config(conf, cni::Command::Add);
  if (!parsed) {
    const auto& e = parsed.error();
    return make_error(Code::kBadRequest, "the nsproxy entry would fail every ADD in network \"" +
                                             conf["name"].get<std::string>() + "\" (" + f.name +
                                             "): " + e.msg +
                                             (e.details.empty() ? "" : " (" + e.details + ")"));
  }
  return {};
}

bool has_entry(const ConfFile& f) {
  if (!f.is_list) return false;
  for (const auto& p : f.doc["plugins"]) {
    if (is_nsproxy(p)) return true;
  }
  return false;
}

Installed with_entry(const ConfFile& f, const ordered_json& entry) {
  Installed out;
  if (f.is_list) {
    out.name = f.name;
    out.doc = f.doc;
    out.doc["plugins"] = plugins_without_nsproxy(f.doc["plugins"]);
  } else {
    // libcni's ConfListFromConf: name, cniVersion, then the configuration as it is.
    out.name = stem(f.name) + ".conflist";
    out.converted = true;
    if (f.doc.contains("name")) out.doc["name"] = f.doc["name"];
    if (f.doc.contains("cniVersion")) out.doc["cniVersion"] = f.doc["cniVersion"];
    out.doc["plugins"] = ordered_json::array({f.doc});
    out.doc[kConvertedKey] = {{"file", f.name}, {"content", f.text}};
  }
  out.doc["plugins"].push_back(entry);
  return out;
}

Restored without_entry(const ConfFile& f) {
  Restored out;
  ordered_json rest = plugins_without_nsproxy(f.doc["plugins"]);
  if (auto original = converted_from(f.doc)) {
    ordered_json was = ordered_json::parse(original->second, nullptr, false);
    if (!was.is_discarded() && rest.size() == 1 && rest[0] == was) {
      out.name = original->first;
      out.text = original->second;
      out.remove_f = original->first != f.name;
      return out;
    }
  }
  if (rest.empty()) {
    out.remove_f = true;
    return out;
  }
  ordered_json doc = f.doc;
  doc.erase(kConvertedKey);
  doc["plugins"] = std::move(rest);
  out.name = f.name;
  out.text = conf_text(doc);
  return out;
}

}  // namespace nsproxy::cni_install
