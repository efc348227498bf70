// Network namespace handles: open by path, verify the fd is a network namespace,
// identify it by (st_dev, st_ino).
#pragma once

#include <sys/types.h>

#include <string>

#include "error.h"
#include "unique_fd.h"

namespace nsproxy {

struct NetnsId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const NetnsId&) const = default;
};

// Opens path O_RDONLY|O_CLOEXEC and checks it is a network namespace.
// Codes: "netns_not_found" (ENOENT), "not_netns", "netns_open_failed".
Result<UniqueFd> open_netns(const std::string& path);

// Identity of an open namespace fd; fails with "not_netns" unless NS_GET_NSTYPE says
// CLONE_NEWNET.
Result<NetnsId> netns_identity(int fd);

}  // namespace nsproxy
