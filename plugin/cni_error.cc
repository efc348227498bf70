#include "cni_error.h"

#include <nlohmann/json.hpp>

namespace nsproxy::cni {

std::string error_json(const CniError& error, std::string_view cni_version) {
  nlohmann::ordered_json j;
  j["cniVersion"] = std::string(cni_version);
  j["code"] = error.code;
  j["msg"] = error.msg;
  if (!error.details.empty()) j["details"] = error.details;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace nsproxy::cni
