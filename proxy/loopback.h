// Brings the loopback interface of the CURRENT network namespace up, with libnl.
// A fresh namespace has `lo` down; listeners on 127.0.0.1 would bind but never work.
#pragma once

#include "error.h"

namespace nsproxy {

// Returns ok when lo is up (already, or after this call). Errors: code "loopback".
Status ensure_loopback_up();

}  // namespace nsproxy
