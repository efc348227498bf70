// Notices that files were replaced or rewritten, in the main loop: inotify on the
// directories that hold them, and for a symlink also on the directory of its target. The
// directories, not the files, because the usual ways to renew a certificate replace the
// file rather than write into it: a rename over it, certbot's symlink swap in live/, the
// kubelet's "..data" symlink swap in a secret volume (a watch on the old inode would
// never fire again).
//
// Any change in a watched directory arms a timer; when it fires (settle seconds after the
// first change, so a certificate and its key written one after the other are usually
// seen together), on_change runs once for everything that came meanwhile. It only learns
// that something may have changed: the caller compares what it cares about (TlsServer
// compares each file's inode, size and modification time).
//
// When inotify is not available (its limits), that is logged once and nothing is watched.
#pragma once

#include <ev.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "unique_fd.h"

namespace nsproxy {

class FileWatch {
 public:
  FileWatch(struct ev_loop* loop, ev_tstamp settle, std::function<void()> on_change);
  ~FileWatch();
  FileWatch(const FileWatch&) = delete;
  FileWatch& operator=(const FileWatch&) = delete;

  // Watches the directories of these files (and of their symlinks' targets), and no
  // others: a directory no longer needed loses its watch. A directory that cannot be
  // watched (missing, inotify's limit) is logged when it is first asked for.
  void watch(const std::vector<std::string>& files);
  // The directories watched now, for tests and logs.
  std::vector<std::string> directories() const;

  // For the libev callbacks.
  void on_readable();
  void on_settled();

 private:
  bool open();

  struct ev_loop* loop_;
  ev_tstamp settle_;
  std::function<void()> on_change_;
  UniqueFd fd_;
  bool failed_ = false;  // inotify_init1 failed (logged once)
  ev_io io_;
  ev_timer settle_t_;
  std::map<std::string, int> wds_;  // directory -> watch descriptor
  std::unordered_map<int, std::string> dirs_;
  std::set<std::string> refused_;  // directories that could not be watched (logged)
};

}  // namespace nsproxy
