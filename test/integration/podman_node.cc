#include "podman_node.h"

#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

namespace nspit {

namespace fs = std::filesystem;

PodmanNode::PodmanNode(std::string dir, std::vector<std::string> cni_plugin_dirs)
    : TestNode("podman"), dir_(std::move(dir)), cni_plugin_dirs_(std::move(cni_plugin_dirs)) {}

::testing::AssertionResult PodmanNode::start() {
  std::string missing;
  for (const char* tool : {"podman", "runc", "conmon", "tar"}) {
    if (find_in_path(tool).empty()) missing += std::string(" ") + tool;
  }
  if (!missing.empty()) {
    return ::testing::AssertionFailure()
           << "programs missing:" << missing
           << " (Debian packages podman, runc, conmon, tar; scripts/install-deps.sh installs them)";
  }
  root_ = dir_ + "/storage";
  runroot_ = dir_ + "/run";
  podman_tmp_ = dir_ + "/podman-tmp";
  net_conf_ = dir_ + "/cni-conf";
  for (const auto& d : {root_, runroot_, podman_tmp_, net_conf_, dir_ + "/image-tmp"}) {
    fs::create_directories(d);
  }
  if (auto started = start_namespaces(); !started) return started;
  write_configs();
  return ::testing::AssertionSuccess();
}

void PodmanNode::write_configs() {
  // podman asks for nofile and nproc 1048576 by default; above the hard limit that
  // needs CAP_SYS_RESOURCE, which root lacks in some sandboxes. Stay below both the
  // test's hard limits and the one podman itself runs with.
  auto limit = [](int resource) {
    struct rlimit rl {};
    ::getrlimit(resource, &rl);
    return std::to_string(std::min<rlim_t>(rl.rlim_max, 4096));
  };
  std::string nofile = limit(RLIMIT_NOFILE), nproc = limit(RLIMIT_NPROC);
  auto q = [](const std::string& v) { return "\"" + v + "\""; };
  std::string conf;
  conf += "[containers]\n";
  conf += "default_ulimits = [" + q("nofile=" + nofile + ":" + nofile) + ", " +
          q("nproc=" + nproc + ":" + nproc) + "]\n";
  conf += "[network]\n";
  conf += "network_backend = \"cni\"\n";
  std::string dirs;
  for (const auto& d : cni_plugin_dirs_) dirs += (dirs.empty() ? "" : ", ") + q(d);
  conf += "cni_plugin_dirs = [" + dirs + "]\n";
  conf += "network_config_dir = " + q(net_conf_) + "\n";
  conf += "[engine]\n";
  conf += "cgroup_manager = \"cgroupfs\"\n";
  conf += "events_logger = \"file\"\n";
  conf += "lock_type = \"file\"\n";
  conf += "runtime = \"runc\"\n";
  conf += "tmp_dir = " + q(podman_tmp_) + "\n";
  conf += "image_copy_tmp_dir = " + q(dir_ + "/image-tmp") + "\n";
  containers_conf_ = dir_ + "/containers.conf";
  std::ofstream(containers_conf_) << conf;
  storage_conf_ = dir_ + "/storage.conf";
  std::ofstream(storage_conf_) << "[storage]\ndriver = \"vfs\"\ngraphroot = " + q(root_) +
                                      "\nrunroot = " + q(runroot_) + "\n";
}

std::vector<std::string> PodmanNode::podman_argv(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = enter();
  argv.insert(argv.end(), {"podman", "--root", root_, "--runroot", runroot_, "--tmpdir",
                           podman_tmp_, "--storage-driver", "vfs", "--network-config-dir",
                           net_conf_, "--cgroup-manager", "cgroupfs", "--events-backend", "file"});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

Env PodmanNode::podman_env() const {
  return {{"CONTAINERS_CONF", containers_conf_}, {"CONTAINERS_STORAGE_CONF", storage_conf_},
          {"CONTAINER_HOST", std::nullopt},      {"CONTAINER_CONNECTION", std::nullopt},
          {"XDG_RUNTIME_DIR", std::nullopt},     {"TMPDIR", podman_tmp_}};
}

ProcessResult PodmanNode::podman(const std::vector<std::string>& args, Millis timeout) const {
  return run(podman_argv(args), timeout, podman_env());
}

::testing::AssertionResult PodmanNode::import_rootfs(
    const std::string& rootfs, const std::string& image,
    const std::vector<std::string>& changes) const {
  std::string tar = rootfs + ".tar";
  auto t = run({"tar", "-C", rootfs, "-cf", tar, "."}, 60000ms);
  if (t.exit_code != 0) return ::testing::AssertionFailure() << "tar: " << t.describe();
  std::vector<std::string> args = {"import"};
  for (const auto& c : changes) args.insert(args.end(), {"--change", c});
  args.insert(args.end(), {tar, image});
  auto imp = podman(args, 120000ms);
  fs::remove(tar);
  if (imp.exit_code != 0)
    return ::testing::AssertionFailure() << "podman import: " << imp.describe();
  return ::testing::AssertionSuccess();
}

ProcessResult PodmanNode::remove_all_containers(bool show) {
  if (show) {
    auto ps = podman({"ps", "-a"});
    std::cerr << "--- podman ps -a ---\n" << ps.out << ps.err << "\n---\n";
  }
  return podman({"rm", "--all", "--force", "--time", "0"}, 60000ms);
}

}  // namespace nspit
