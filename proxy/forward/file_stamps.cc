#include "forward/file_stamps.h"

#include <sys/stat.h>

namespace nsproxy {

std::vector<FileStamps::Stamp> FileStamps::of(const std::vector<std::string>& files) {
  std::vector<Stamp> out;
  out.reserve(files.size());
  for (const auto& f : files) {
    Stamp s;
    struct stat st;
    if (::stat(f.c_str(), &st) == 0) {
      s = {st.st_dev, st.st_ino, st.st_size,
           int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace nsproxy
