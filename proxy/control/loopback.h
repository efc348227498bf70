// The loopback interface of the CURRENT network namespace: bring it up (interface
// ioctls on a socket of the namespace), add and remove service addresses (libnl). A
// fresh namespace has `lo` down; listeners on 127.0.0.1 would bind but never work.
#pragma once

#include "address.h"
#include "error.h"

namespace nsproxy {

// Returns ok when lo is up (already, or after this call): SIOCGIFFLAGS, and SIOCSIFFLAGS
// when it was down. (The netlink round trips this replaced kept the loop thread in the
// tenant's namespace for 90-290 us per ADD, docs/benchmarks.md.) Errors: code "loopback".
Status ensure_loopback_up();

// Adds the IP of `addr` to lo of the CURRENT namespace as a host address (/32 or /128,
// IPv6 without duplicate address detection, so it can be bound at once). Returns true
// when this call added it, false when lo already had it. Errors: code "loopback".
Result<bool> add_loopback_address(const Address& addr);
// Removes it again; an address that is already gone is fine.
Status remove_loopback_address(const Address& addr);

}  // namespace nsproxy
