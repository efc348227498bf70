#include "file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "unique_fd.h"

namespace nsproxy {

Status write_all(int fd, const std::string& data, const std::string& path, Code code) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(code, "write " + path);
    }
    off += static_cast<size_t>(n);
  }
  return {};
}

Status fsync_dir(const std::string& dir, Code code) {
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) return errno_error(code, "open " + dir);
  if (::fsync(d.get()) < 0) return errno_error(code, "fsync " + dir);
  return {};
}

Result<std::string> read_file(const std::string& path, struct stat* st, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return errno_error(errno == ENOENT ? Code::kNotFound : Code::kIo, "open " + path);
  struct stat own {};
  if (st == nullptr) st = &own;
  if (::fstat(fd.get(), st) != 0) return errno_error(Code::kIo, "stat " + path);
  if (!S_ISREG(st->st_mode)) return make_error(Code::kIo, path + ": not a regular file");
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(Code::kIo, "read " + path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > max_bytes) {
      return make_error(Code::kIo, path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  return text;
}

}  // namespace nsproxy
