#include "netns.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

namespace nsproxy {

Result<UniqueFd> open_netns(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    return errno_error(err == ENOENT ? Code::kNetnsNotFound : Code::kNetnsOpenFailed,
                       "open netns " + path, err);
  }
  auto id = netns_identity(fd.get());
  if (!id) return make_error(id.error().code, path + ": " + id.error().message);
  return fd;
}

Result<UniqueFd> netns_of_socket(int sock) {
  UniqueFd fd(::ioctl(sock, SIOCGSKNS));  // the kernel opens it O_CLOEXEC
  if (!fd) return errno_error(Code::kNetnsOpenFailed, "namespace of socket (SIOCGSKNS)");
  return fd;
}

Result<NetnsId> netns_identity(int fd) {
  int type = ::ioctl(fd, NS_GET_NSTYPE);
  if (type < 0) {
    return errno_error(Code::kNotNetns, "not a namespace file (NS_GET_NSTYPE)");
  }
  if (type != CLONE_NEWNET) return make_error(Code::kNotNetns, "not a network namespace");
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(Code::kNetnsOpenFailed, "fstat netns");
  return NetnsId{st.st_dev, st.st_ino};
}

}  // namespace nsproxy
