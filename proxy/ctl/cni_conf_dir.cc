#include "cni_conf_dir.h"

#include <dirent.h>

#include <algorithm>

#include "file_io.h"

namespace nsproxy::cni_install {
namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const std::string x = suffix;
  return s.size() > x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::optional<std::string> why_invalid_plugin(const nlohmann::ordered_json& conf) {
  if (!conf.is_object()) return "not a JSON object";
  auto type = conf.find("type");
  if (type == conf.end()) return "no \"type\"";
  if (!type->is_string() || type->get<std::string>().empty()) return "\"type\" is not a name";
  return std::nullopt;
}

}  // namespace

bool is_candidate_name(const std::string& name) {
  return ends_with(name, ".conf") || ends_with(name, ".conflist") || ends_with(name, ".json");
}

std::optional<std::string> why_invalid(const nlohmann::ordered_json& doc, bool is_list) {
  if (!doc.is_object()) return "not a JSON object";
  for (const char* key : {"name", "cniVersion"}) {
    auto it = doc.find(key);
    if (it != doc.end() && !it->is_string()) return std::string("\"") + key + "\" is not a string";
  }
  if (!is_list) return why_invalid_plugin(doc);
  if (!doc.contains("name")) return "no \"name\"";
  auto plugins = doc.find("plugins");
  if (plugins == doc.end()) return "no \"plugins\"";
  if (!plugins->is_array() || plugins->empty()) return "\"plugins\" is not a non-empty array";
  for (size_t i = 0; i < plugins->size(); ++i) {
    if (auto why = why_invalid_plugin((*plugins)[i])) {
      return "plugins[" + std::to_string(i) + "]: " + *why;
    }
  }
  return std::nullopt;
}

Result<DirScan> scan_conf_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return errno_error(Code::kIo, "cannot read the CNI configuration directory " + dir);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    // Only the extensions decide, as in libcni (a hidden "..conf" is loaded too). Our
    // own temporaries end in ".tmp": no runtime loads them half-written.
    if (is_candidate_name(name)) names.push_back(std::move(name));
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());

  DirScan scan;
  for (const auto& name : names) {
    ConfFile f;
    f.name = name;
    f.path = dir + "/" + name;
    f.is_list = ends_with(name, ".conflist");
    auto text = read_file(f.path, &f.st);
    if (!text) {
      if (text.error().code == Code::kNotFound) continue;  // removed since the listing
      scan.skipped.push_back(name + ": " + text.error().message);
      continue;
    }
    f.text = std::move(*text);
    if (f.text.find_first_not_of(" \t\r\n") == std::string::npos) {
      scan.skipped.push_back(name + ": empty");
      continue;
    }
    f.doc = nlohmann::ordered_json::parse(f.text, nullptr, /*allow_exceptions=*/false);
    if (f.doc.is_discarded()) {
      scan.skipped.push_back(name + ": not JSON");
      continue;
    }
    if (auto why = why_invalid(f.doc, f.is_list)) {
      scan.skipped.push_back(name + ": " + *why);
      continue;
    }
    scan.valid.push_back(std::move(f));
  }
  return scan;
}

}  // namespace nsproxy::cni_install
