// Replacing a file so that a reader (a container runtime loading its CNI configuration,
// or exec'ing a plugin) sees either the old file or the new one, never a part of it:
// write a temporary in the same directory, fsync, rename over the target, fsync the
// directory. Temporaries are named ".NAME.PID.tmp": no runtime loads a ".tmp" file.
#pragma once

#include <sys/types.h>

#include <string>

#include "error.h"

namespace nsproxy::cni_install {

struct FileOwner {
  mode_t mode = 0644;                  // permission bits only
  uid_t uid = static_cast<uid_t>(-1);  // -1: whoever creates it
  gid_t gid = static_cast<gid_t>(-1);
};

// Puts `contents` at dir/name atomically, with owner.mode (whatever the umask) and, when
// given, its owner and group (an installer running as root keeps a file's owner).
Status write_atomically(const std::string& dir, const std::string& name,
                        const std::string& contents, const FileOwner& owner);

// Copies the regular file `from` to dir/name atomically with mode 0755, unless dir/name
// already has the same bytes and mode; *changed says whether it wrote.
Status copy_atomically(const std::string& from, const std::string& dir, const std::string& name,
                       bool* changed);

// Removes dir/name and makes the removal durable; succeeds when it was not there.
Status remove_durably(const std::string& dir, const std::string& name);

}  // namespace nsproxy::cni_install
