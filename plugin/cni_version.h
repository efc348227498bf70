// CNI spec versions this plugin speaks, and which commands each version allows.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nsproxy::cni {

inline constexpr const char* kLatestVersion = "1.1.0";

// Oldest first.
const std::vector<std::string>& supported_versions();
bool is_supported_version(std::string_view version);

// a >= b, both supported versions (compared by their position in the list).
bool version_at_least(std::string_view a, std::string_view b);

// {"cniVersion":V,"supportedVersions":[...]}; V is the given version when it is
// supported, else kLatestVersion.
std::string version_json(std::string_view cni_version);

}  // namespace nsproxy::cni
