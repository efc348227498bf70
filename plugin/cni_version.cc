#include "cni_version.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace nsproxy::cni {
namespace {

long index_of(std::string_view version) {
  const auto& all = supported_versions();
  auto it = std::find(all.begin(), all.end(), version);
  return it == all.end() ? -1 : static_cast<long>(it - all.begin());
}

}  // namespace

const std::vector<std::string>& supported_versions() {
  static const std::vector<std::string> kVersions = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
  return kVersions;
}

bool is_supported_version(std::string_view version) {
  return index_of(version) >= 0;
}

bool version_at_least(std::string_view a, std::string_view b) {
  return index_of(a) >= index_of(b);
}

std::string version_json(std::string_view cni_version) {
  nlohmann::ordered_json j;
  j["cniVersion"] = is_supported_version(cni_version) ? std::string(cni_version) : kLatestVersion;
  j["supportedVersions"] = supported_versions();
  return j.dump();
}

}  // namespace nsproxy::cni
