// `nsproxyctl cni install` and `nsproxyctl cni uninstall`: put the nsproxy plugin into a
// node's CNI configuration the way istio-cni and Cilium's agents do, and take it out again.
//
// Install appends one nsproxy entry to the primary network (cni_conf_dir.h), converting a
// single .conf/.json into a conflist, and copies the plugin binary into the bin dir; both
// atomically, the binary first (a conflist never names a binary that is not there yet).
// Uninstall undoes it in the other order.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "error.h"

namespace nsproxy::cni_install {

inline constexpr const char* kBinaryName = "nsproxy";

struct InstallOptions {
  std::string conf_dir;
  std::string bin_dir;
  std::string plugin_binary;          // the file copied to bin_dir/nsproxy
  nlohmann::ordered_json entry;       // from entry_from_text
  std::chrono::milliseconds wait{0};  // how long to wait for a primary configuration
};

struct InstallOutcome {
  std::string file;                  // the conflist that holds the entry now
  std::string network;               // its "name"
  std::vector<std::string> plugins;  // its plugin types, nsproxy last
  std::string converted_from;        // the single configuration it replaced, or ""
  bool conf_written = false;         // false: the entry was already there, as given
  bool binary_written = false;       // false: the same binary was already there
  std::vector<std::string> skipped;  // invalid candidate files passed over
};

// One installation, now: fails (kNotFound) when the directory holds no valid
// configuration.
Result<InstallOutcome> install_once(const InstallOptions& options);

// install_once, but without a primary configuration waits for one (inotify) up to
// options.wait, then fails with kTimeout naming what was skipped.
Result<InstallOutcome> install(const InstallOptions& options);

// After install: on every change in conf_dir (or of the binary) installs again, which
// writes only when the entry or the binary went missing or changed; `report` hears each
// repair and each failure (a directory without a valid configuration for a while: the
// watch goes on and installs into the next one). Returns when stop_fd becomes readable (a signalfd,
// an eventfd) or on an error watching the directory.
Status watch(const InstallOptions& options, int stop_fd,
             const std::function<void(const Result<InstallOutcome>&)>& report);

struct UninstallOutcome {
  // One line per file changed: "10-calico.conflist: nsproxy entry removed".
  std::vector<std::string> restored;
  bool binary_removed = false;
};

// Removes every nsproxy entry from conf_dir (restoring converted files), then the binary;
// leaves the binary when an entry could not be removed, so that no conflist ever names a
// plugin that is gone.
Result<UninstallOutcome> uninstall(const std::string& conf_dir, const std::string& bin_dir);

}  // namespace nsproxy::cni_install
