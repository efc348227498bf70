// Service addresses: IPs nsproxy adds to a namespace's lo for listeners with add_address
// (a metadata address such as 169.254.169.254). A registration owns the IPs it added.
// When it goes, each IP passes to another registration of the same namespace that asked
// for it too (its heir), or is removed from lo. IPs lo already had are never nsproxy's.
// These functions decide; the Registry applies (journal, netlink).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "address.h"
#include "control/netns_listen.h"
#include "control/registration.h"

namespace nsproxy {

// The IPs a registration owns once its listeners are made: those listen_all() added now,
// plus those a restored registration had added before (prior) and still asks for.
std::vector<std::string> owned_addresses(const std::vector<Address>& added_now,
                                         const std::vector<ListenTarget>& targets,
                                         const std::vector<std::string>& prior);

// What becomes of the IPs `reg` owns when it goes.
struct AddressRelease {
  std::vector<std::pair<Registration*, std::string>> inherited;  // heir, IP
  std::vector<Address> remove;                                   // from lo
};
AddressRelease plan_release(const Registration& reg, const Registrations& all);

}  // namespace nsproxy
