// Which version of a set of files was read: what stat() says of each (device, inode, size,
// modification time), taken just before reading them, so that a change made while they
// were being read still shows next time. For the TLS files nsproxyd reads again when they
// change (control/file_watch.h): a reload is due when the files differ from the ones
// read last, and not when they are the ones a reload last failed on (a broken file is
// reported once, not at every change beside it). Main thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "error.h"

namespace nsproxy {

class FileStamps {
 public:
  struct Stamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  // Of each file, in order; a file that cannot be stat'ed gets the default (no file has it).
  static std::vector<Stamp> of(const std::vector<std::string>& files);

  // The files stamped `taken` were read, or failed to be.
  void loaded(std::vector<Stamp> taken) {
    loaded_ = std::move(taken);
    failed_.clear();
  }
  void failed(std::vector<Stamp> taken) { failed_ = std::move(taken); }
  // Stamps the files, reads them with read() (a Result) and hands what it made to use();
  // the stamps are then the loaded ones, or on failure the failed ones.
  template <class Read, class Use>
  Status read(const std::vector<std::string>& files, Read read, Use use) {
    std::vector<Stamp> taken = of(files);  // before reading: a later change shows
    auto made = read();
    if (!made) {
      failed(std::move(taken));
      return made.error();
    }
    use(std::move(*made));
    loaded(std::move(taken));
    return {};
  }
  // The files now are neither the ones read last nor the ones that failed last.
  bool changed(const std::vector<std::string>& files) const {
    std::vector<Stamp> now = of(files);
    return now != loaded_ && now != failed_;
  }

 private:
  std::vector<Stamp> loaded_;
  std::vector<Stamp> failed_;
};

}  // namespace nsproxy
