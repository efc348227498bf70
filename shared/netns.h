// Network namespace handles: open by path or from a socket, verify the fd is a network
// namespace, identify it by (st_dev, st_ino).
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

// The network namespace a socket lives in (ioctl SIOCGSKNS), as a new O_CLOEXEC fd. A
// listening socket keeps its namespace alive, so a registration needs no namespace fd of
// its own: it asks one of its listeners when it must enter the namespace again.
// Code: "netns_open_failed".
Result<UniqueFd> netns_of_socket(int sock);

// Identity of an open namespace fd; fails with "not_netns" unless NS_GET_NSTYPE says
// CLONE_NEWNET.
Result<NetnsId> netns_identity(int fd);

}  // namespace nsproxy
