#include "containerd_node.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "text.h"

namespace nspit {

namespace fs = std::filesystem;

namespace {

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

ContainerdNode::ContainerdNode(std::string dir) : TestNode("containerd"), dir_(std::move(dir)) {}

ContainerdNode::~ContainerdNode() {
  release();
}

::testing::AssertionResult ContainerdNode::start(const std::string& cni_conf_dir,
                                                 const std::string& cni_bin_dir) {
  std::string missing;
  for (const char* tool : {"containerd", "ctr", "containerd-shim-runc-v2", "runc"}) {
    if (find_in_path(tool).empty()) missing += std::string(" ") + tool;
  }
  if (!missing.empty()) {
    return ::testing::AssertionFailure()
           << "programs missing:" << missing
           << " (Debian packages containerd, runc; scripts/install-deps.sh installs them)";
  }
  if (!fs::is_directory("/etc/cni/net.d")) {
    return ::testing::AssertionFailure()
           << "/etc/cni/net.d is missing: the test mounts its conf dir there in a private "
              "mount namespace (the directory comes with the Debian package podman)";
  }
  const std::string root = dir_ + "/root", state = dir_ + "/state";
  fs::create_directories(root);
  fs::create_directories(state);
  socket_ = dir_ + "/containerd.sock";
  const std::string config = dir_ + "/config.toml";
  std::ofstream(config)
      << "version = 2\n"
      << "root = \"" << root << "\"\n"
      << "state = \"" << state << "\"\n"
      << "disabled_plugins = [\"io.containerd.grpc.v1.cri\", "
         "\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", "
         "\"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\"]\n"
      << "[grpc]\n  address = \"" << socket_ << "\"\n"
      << "[ttrpc]\n  address = \"" << socket_ << ".ttrpc\"\n";

  auto started = start_namespaces(
      "mount -n -t tmpfs -o mode=0755 nspit-opt /opt\n"
      "mkdir -p /opt/cni/bin\n"
      "mount -n --bind " +
      quoted(cni_bin_dir) +
      " /opt/cni/bin\n"
      "mount -n --bind " +
      quoted(cni_conf_dir) + " /etc/cni/net.d\n");
  if (!started) return started;

  std::vector<std::string> argv = long_lived();
  argv.insert(argv.end(), {"containerd", "--config", config});
  containerd_ = std::make_unique<Process>(argv);
  if (!containerd_->started()) return ::testing::AssertionFailure() << containerd_->start_error();
  // nsenter and setpriv exec in turn: the pid is containerd's, which has not forked a
  // shim yet (no container exists).
  if (auto tracked = track(containerd_->pid()); !tracked) return tracked;

  auto deadline = std::chrono::steady_clock::now() + 15s;
  for (;;) {
    auto v = run(ctr_argv({"version"}), 5000ms);
    if (v.exit_code == 0) break;
    if (!containerd_->running() || std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure() << "containerd did not answer on " << socket_ << ": "
                                           << v.describe() << "\ncontainerd log:\n"
                                           << detail::tail(log());
    }
    std::this_thread::sleep_for(100ms);
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> ContainerdNode::ctr_argv(const std::vector<std::string>& args,
                                                  const std::string& ns) const {
  std::vector<std::string> argv = enter();
  argv.insert(argv.end(), {"ctr", "--address", socket_, "--namespace", ns});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ProcessResult ContainerdNode::ctr(const std::vector<std::string>& args, const std::string& ns,
                                  Millis timeout) const {
  return run(ctr_argv(args, ns), timeout);
}

::testing::AssertionResult ContainerdNode::import(const std::string& archive,
                                                  const std::string& ns) const {
  auto r = ctr({"images", "import", "--snapshotter", "native", archive}, ns, 120000ms);
  if (r.exit_code != 0)
    return ::testing::AssertionFailure() << "ctr images import: " << r.describe();
  return ::testing::AssertionSuccess();
}

void ContainerdNode::remove_all_containers(const std::vector<std::string>& namespaces, bool show) {
  if (!containerd_ || !containerd_->running()) return;
  for (const auto& ns : namespaces) {
    auto ls = ctr({"containers", "list", "--quiet"}, ns);
    std::stringstream ids(ls.out);
    std::string id;
    while (std::getline(ids, id)) {
      if (id.empty()) continue;
      if (show) std::cerr << "containerd namespace " << ns << ": container " << id << " left\n";
      ctr({"tasks", "kill", "--signal", "SIGKILL", id}, ns);
      ctr({"tasks", "delete", "--force", id}, ns);
      auto rm = ctr({"containers", "delete", id}, ns);
      EXPECT_EQ(rm.exit_code, 0) << "ctr containers delete " << id << ": " << rm.describe();
    }
  }
}

std::string ContainerdNode::log() const {
  return containerd_ ? containerd_->err() : std::string();
}

void ContainerdNode::release() {
  if (containerd_) {
    if (containerd_->running()) {
      int code = containerd_->stop();
      // containerd exits on SIGTERM with 0; anything else is shown.
      if (code != 0)
        std::cerr << "containerd exited " << code << "; log:\n" << detail::tail(log()) << "\n";
    }
    containerd_.reset();
  }
  TestNode::release();
}

}  // namespace nspit
