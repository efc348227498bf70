#include "cni_install.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>

#include "atomic_file.h"
#include "cni_conf_dir.h"
#include "cni_conflist.h"
#include "unique_fd.h"

namespace nsproxy::cni_install {
namespace {

using Clock = std::chrono::steady_clock;

std::string skipped_text(const std::vector<std::string>& skipped) {
  if (skipped.empty()) return "";
  std::string s = " (skipped: ";
  for (size_t i = 0; i < skipped.size(); ++i) s += (i ? "; " : "") + skipped[i];
  return s + ")";
}

FileOwner owner_of(const ConfFile& f) {
  return FileOwner{f.st.st_mode & 07777, f.st.st_uid, f.st.st_gid};
}

// A converted configuration's new name must not be someone else's file: only a
// conflist we converted from this same file may be replaced.
Status check_conversion_target(const DirScan& scan, const ConfFile& primary,
                               const std::string& target, const std::string& conf_dir) {
  for (const auto& f : scan.valid) {
    if (f.name != target) continue;
    auto from = f.doc.find(kConvertedKey);
    if (from != f.doc.end() && from->is_object() && from->value("file", "") == primary.name) {
      return {};
    }
    break;
  }
  struct stat st {};
  if (::lstat((conf_dir + "/" + target).c_str(), &st) != 0) return {};
  return make_error(Code::kIo, "cannot convert " + primary.name + " to a conflist: " + target +
                                   " already exists in " + conf_dir +
                                   " and was not made by nsproxyctl; move one of them away");
}

// An inotify descriptor watching dir for `mask`.
Result<UniqueFd> watch_dir(const std::string& dir, uint32_t mask) {
  UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!fd) return errno_error(Code::kIo, "inotify_init1");
  if (::inotify_add_watch(fd.get(), dir.c_str(), mask | IN_ONLYDIR) < 0) {
    return errno_error(Code::kIo, "cannot watch " + dir);
  }
  return fd;
}

// Reads every pending event; true when one names a file `wanted` says matters, or the
// directory itself went away (*gone).
bool drain_events(int fd, const std::function<bool(const std::string&)>& wanted, bool* gone) {
  alignas(struct inotify_event) char buf[16384];
  bool any = false;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return any;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<struct inotify_event*>(p);
      if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) *gone = true;
      if (e->mask & IN_Q_OVERFLOW) any = true;
      if (e->len > 0 && wanted(e->name)) any = true;
      p += sizeof(struct inotify_event) + e->len;
    }
  }
}

}  // namespace

Result<InstallOutcome> install_once(const InstallOptions& options) {
  auto scan = scan_conf_dir(options.conf_dir);
  if (!scan) return scan.error();
  const ConfFile* primary = scan->primary();
  if (primary == nullptr) {
    return make_error(Code::kNotFound, "no valid CNI configuration (.conf, .conflist, .json) in " +
                                           options.conf_dir + skipped_text(scan->skipped));
  }
  if (Status s = validate_entry_for(options.entry, *primary); !s) return s.error();
  Installed installed = with_entry(*primary, options.entry);
  if (installed.converted) {
    if (Status s = check_conversion_target(*scan, *primary, installed.name, options.conf_dir); !s) {
      return s.error();
    }
  }

  InstallOutcome out;
  out.skipped = scan->skipped;
  out.file = options.conf_dir + "/" + installed.name;
  out.network = installed.doc.value("name", "");
  for (const auto& p : installed.doc["plugins"]) out.plugins.push_back(p.value("type", ""));
  if (installed.converted) out.converted_from = primary->name;

  // The binary first: from the moment the conflist names nsproxy, a runtime may exec it.
  if (Status s =
          copy_atomically(options.plugin_binary, options.bin_dir, kBinaryName, &out.binary_written);
      !s) {
    return s.error();
  }
  if (!installed.converted && installed.doc == primary->doc) return out;  // already there
  if (Status s = write_atomically(options.conf_dir, installed.name, conf_text(installed.doc),
                                  owner_of(*primary));
      !s) {
    return s.error();
  }
  out.conf_written = true;
  // The single configuration goes after its conflist is in place; until then it sorts
  // first and the runtime keeps using it as it was.
  if (installed.converted) {
    if (Status s = remove_durably(options.conf_dir, primary->name); !s) return s.error();
  }
  return out;
}

Result<InstallOutcome> install(const InstallOptions& options) {
  // Watch before the first look, so a file written in between is not missed.
  auto events = watch_dir(options.conf_dir, IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO);
  if (!events) return events.error();
  const auto deadline = Clock::now() + options.wait;
  for (;;) {
    auto r = install_once(options);
    if (r || r.error().code != Code::kNotFound) return r;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      if (options.wait.count() == 0) return r;
      return make_error(Code::kTimeout, r.error().message + " after waiting " +
                                            std::to_string(options.wait.count() / 1000) + " s");
    }
    struct pollfd p = {events->get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return errno_error(Code::kIo, "poll");
    bool gone = false;
    drain_events(events->get(), is_candidate_name, &gone);
    if (gone) return make_error(Code::kIo, options.conf_dir + " was removed while waiting");
  }
}

Status watch(const InstallOptions& options, int stop_fd,
             const std::function<void(const Result<InstallOutcome>&)>& report) {
  const uint32_t kChanges = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                            IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
  auto conf = watch_dir(options.conf_dir, kChanges);
  if (!conf) return conf.error();
  auto bin = watch_dir(options.bin_dir, kChanges);
  if (!bin) return bin.error();
  auto is_binary = [](const std::string& name) { return name == kBinaryName; };
  // A change between the caller's install and the watches above raised no event: look
  // once now that they are in place (an install with nothing to do writes nothing).
  if (auto r = install_once(options); !r || r->conf_written || r->binary_written) report(r);
  for (;;) {
    struct pollfd p[3] = {{stop_fd, POLLIN, 0}, {conf->get(), POLLIN, 0}, {bin->get(), POLLIN, 0}};
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return errno_error(Code::kIo, "poll");
    }
    if (p[0].revents) return {};
    bool gone = false;
    bool changed = drain_events(conf->get(), is_candidate_name, &gone);
    changed = drain_events(bin->get(), is_binary, &gone) || changed;
    if (gone) return make_error(Code::kIo, "a watched directory was removed or moved");
    if (!changed) continue;
    // Writers replace files in a few steps (temporary, rename, removal of the old
    // name): let them finish before looking, so one change is one look.
    ::poll(nullptr, 0, 50);
    drain_events(conf->get(), is_candidate_name, &gone);
    drain_events(bin->get(), is_binary, &gone);
    auto r = install_once(options);
    if (!r || r->conf_written || r->binary_written) report(r);
  }
}

Result<UninstallOutcome> uninstall(const std::string& conf_dir, const std::string& bin_dir) {
  auto scan = scan_conf_dir(conf_dir);
  if (!scan) return scan.error();
  UninstallOutcome out;
  std::string failed;
  for (const auto& f : scan->valid) {
    if (!has_entry(f)) continue;
    Restored r = without_entry(f);
    Status s;
    if (!r.name.empty()) s = write_atomically(conf_dir, r.name, r.text, owner_of(f));
    if (s && r.remove_f) s = remove_durably(conf_dir, f.name);
    if (!s) {
      failed += (failed.empty() ? "" : "; ") + s.error().message;
      continue;
    }
    if (r.name.empty()) {
      out.restored.push_back(f.name + ": removed (it held only nsproxy entries)");
    } else if (r.name != f.name) {
      out.restored.push_back(r.name + ": restored as it was before install (" + f.name +
                             " removed)");
    } else {
      out.restored.push_back(f.name + ": nsproxy entry removed");
    }
  }
  if (!failed.empty()) {
    return make_error(Code::kIo, failed + "; the plugin binary stays in " + bin_dir +
                                     " while a configuration still names it");
  }
  struct stat st {};
  if (::lstat((bin_dir + "/" + kBinaryName).c_str(), &st) == 0) {
    if (Status s = remove_durably(bin_dir, kBinaryName); !s) return s.error();
    out.binary_removed = true;
  }
  return out;
}

}  // namespace nsproxy::cni_install
