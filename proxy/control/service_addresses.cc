#include "control/service_addresses.h"

#include <algorithm>

namespace nsproxy {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Whether a listener of reg asked for ip on lo.
bool asks_for(const Registration& reg, const std::string& ip) {
  for (const auto& spec : reg.specs()) {
    auto a = parse_address(spec.listen, false);
    if (spec.add_address && a && address_ip(*a) == ip) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> owned_addresses(const std::vector<Address>& added_now,
                                         const std::vector<ListenTarget>& targets,
                                         const std::vector<std::string>& prior) {
  std::vector<std::string> owned;
  for (const Address& a : added_now) owned.push_back(address_ip(a));
  for (const ListenTarget& t : targets) {
    std::string ip = address_ip(t.addr);
    if (t.add_address && contains(prior, ip) && !contains(owned, ip)) owned.push_back(ip);
  }
  return owned;
}

AddressRelease plan_release(const Registration& reg, const Registrations& all) {
  AddressRelease plan;
  for (const std::string& ip : reg.added_addresses) {
    Registration* heir = nullptr;
    for (const auto& [key, other] : all) {
      if (other.get() == &reg || !(other->netns_id == reg.netns_id)) continue;
      if (asks_for(*other, ip)) {
        heir = other.get();
        break;
      }
    }
    if (heir != nullptr) {
      plan.inherited.emplace_back(heir, ip);
      continue;
    }
    for (const auto& spec : reg.specs()) {
      auto a = parse_address(spec.listen, false);
      if (a && address_ip(*a) == ip) {
        plan.remove.push_back(std::move(*a));
        break;
      }
    }
  }
  return plan;
}

}  // namespace nsproxy
