#include "control/file_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "log.h"

namespace nsproxy {

namespace {

// Creation, replacement, removal and rewriting of an entry, and the directory itself
// going (then IN_IGNORED follows and the watch is gone).
constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                           IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

FileWatch* owner(void* data) {
  return static_cast<FileWatch*>(data);
}
void readable_cb(struct ev_loop*, ev_io* w, int) {
  owner(w->data)->on_readable();
}
void settled_cb(struct ev_loop*, ev_timer* w, int) {
  owner(w->data)->on_settled();
}

// The directory holding path, and for a symlink (at any level) also the one holding
// its target.
void directories_of(const std::string& path, std::set<std::string>* out) {
  namespace fs = std::filesystem;
  fs::path p(path);
  if (p.has_parent_path()) out->insert(p.parent_path().lexically_normal().string());
  std::error_code ec;
  fs::path real = fs::canonical(p, ec);
  if (!ec && real.has_parent_path()) out->insert(real.parent_path().string());
}

}  // namespace

FileWatch::FileWatch(struct ev_loop* loop, ev_tstamp settle, std::function<void()> on_change)
    : loop_(loop), settle_(settle), on_change_(std::move(on_change)) {
  ev_init(&io_, readable_cb);
  ev_init(&settle_t_, settled_cb);
  io_.data = settle_t_.data = this;
}

FileWatch::~FileWatch() {
  ev_io_stop(loop_, &io_);
  ev_timer_stop(loop_, &settle_t_);
}

bool FileWatch::open() {
  if (fd_) return true;
  if (failed_) return false;
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    failed_ = true;
    LOG_WARN("inotify: %s; certificate files are read again on SIGHUP only", std::strerror(errno));
    return false;
  }
  fd_.reset(fd);
  ev_io_set(&io_, fd, EV_READ);
  ev_io_start(loop_, &io_);
  return true;
}

void FileWatch::watch(const std::vector<std::string>& files) {
  std::set<std::string> wanted;
  for (const auto& f : files) directories_of(f, &wanted);
  if (wanted.empty() && !fd_) return;
  if (!open()) return;
  for (auto it = wds_.begin(); it != wds_.end();) {
    if (wanted.count(it->first) != 0) {
      ++it;
      continue;
    }
    ::inotify_rm_watch(fd_.get(), it->second);
    dirs_.erase(it->second);
    it = wds_.erase(it);
  }
  std::erase_if(refused_, [&](const std::string& d) { return wanted.count(d) == 0; });
  for (const auto& dir : wanted) {
    if (wds_.count(dir) != 0) continue;
    int wd = ::inotify_add_watch(fd_.get(), dir.c_str(), kMask);
    if (wd < 0) {
      if (refused_.insert(dir).second) {
        LOG_WARN("inotify: cannot watch %s: %s; its files are read again on SIGHUP only",
                 dir.c_str(), std::strerror(errno));
      }
      continue;
    }
    refused_.erase(dir);
    // Two paths naming one directory (a bind mount, a symlinked directory) get the same wd.
    if (auto known = dirs_.find(wd); known != dirs_.end()) wds_.erase(known->second);
    wds_[dir] = wd;
    dirs_[wd] = dir;
    LOG_DEBUG("inotify: watching %s", dir.c_str());
  }
}

std::vector<std::string> FileWatch::directories() const {
  std::vector<std::string> out;
  for (const auto& [dir, wd] : wds_) out.push_back(dir);
  return out;
}

void FileWatch::on_readable() {
  alignas(struct inotify_event) char buf[8192];
  bool changed = false;
  for (;;) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) LOG_WARN("inotify: read: %s", std::strerror(errno));
      break;
    }
    if (n == 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_IGNORED) {
        // The directory went (or was unwatched): forget it; the next watch() call, after
        // the reload this triggers, watches whatever directory the files are in now.
        if (auto it = dirs_.find(ev->wd); it != dirs_.end()) {
          wds_.erase(it->second);
          dirs_.erase(it);
        }
      }
      changed = true;  // IN_Q_OVERFLOW too: something changed, what is unknown
    }
  }
  if (changed && !ev_is_active(&settle_t_)) {
    ev_timer_set(&settle_t_, settle_, 0.);
    ev_timer_start(loop_, &settle_t_);
  }
}

void FileWatch::on_settled() {
  on_change_();
}

}  // namespace nsproxy
