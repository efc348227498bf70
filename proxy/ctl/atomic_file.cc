#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "file_io.h"
#include "unique_fd.h"

namespace nsproxy::cni_install {
namespace {

std::string temp_name(const std::string& name) {
  return "." + name + "." + std::to_string(::getpid()) + ".tmp";
}

}  // namespace

Status write_atomically(const std::string& dir, const std::string& name,
                        const std::string& contents, const FileOwner& owner) {
  const std::string tmp = dir + "/" + temp_name(name);
  const std::string path = dir + "/" + name;
  ::unlink(tmp.c_str());  // a temporary a killed run of ours left behind
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return errno_error(Code::kIo, "cannot write in " + dir + ": create " + tmp);
  Status s = write_all(fd.get(), contents, tmp);
  if (s && ::fchmod(fd.get(), owner.mode & 07777) != 0) s = errno_error(Code::kIo, "chmod " + tmp);
  if (s && (owner.uid != static_cast<uid_t>(-1) || owner.gid != static_cast<gid_t>(-1)) &&
      ::fchown(fd.get(), owner.uid, owner.gid) != 0) {
    s = errno_error(Code::kIo, "chown " + tmp);
  }
  if (s && ::fsync(fd.get()) != 0) s = errno_error(Code::kIo, "fsync " + tmp);
  if (s && ::rename(tmp.c_str(), path.c_str()) != 0)
    s = errno_error(Code::kIo, "rename to " + path);
  if (!s) {
    ::unlink(tmp.c_str());
    return s;
  }
  return fsync_dir(dir);
}

Status copy_atomically(const std::string& from, const std::string& dir, const std::string& name,
                       bool* changed) {
  *changed = false;
  struct stat st {};
  auto bytes = read_file(from, &st, size_t{1} << 30);
  if (!bytes) return bytes.error();
  struct stat old_st {};
  auto old = read_file(dir + "/" + name, &old_st, size_t{1} << 30);
  if (old && *old == *bytes && (old_st.st_mode & 07777) == 0755) return {};
  // Owned by root when we are root (a binary the runtime execs as root must not be
  // writable by anyone else); otherwise by the caller (tests, a bin dir they own).
  FileOwner owner{0755};
  if (::geteuid() == 0) owner.uid = owner.gid = 0;
  if (Status s = write_atomically(dir, name, *bytes, owner); !s) return s;
  *changed = true;
  return {};
}

Status remove_durably(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return {};
    return errno_error(Code::kIo, "remove " + path);
  }
  return fsync_dir(dir);
}

}  // namespace nsproxy::cni_install
