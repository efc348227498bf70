#include "podman_node.h"

#include <elf.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace nspit {

namespace fs = std::filesystem;

namespace {

// Runs as `sh -c` in the new private mount namespace (already inside H's network
// namespace). `mount -n` keeps libmount from creating /run/mount/utab on the machine
// before /run is replaced. Prints "ready", then only keeps the namespace alive.
constexpr const char* kHolderScript = R"(set -e
mount -n -t tmpfs -o mode=0755 nspit-run /run
mkdir /run/nspit-cgroup
mount -n --rbind /sys/fs/cgroup /run/nspit-cgroup
umount -n -l /sys
mount -n -t sysfs nspit-sysfs /sys
mount -n --move /run/nspit-cgroup /sys/fs/cgroup
rmdir /run/nspit-cgroup
mount -n -t tmpfs -o mode=0755 nspit-varlib /var/lib
mount -n -t tmpfs -o mode=1777 nspit-vartmp /var/tmp
echo ready
exec sleep 600
)";

}  // namespace

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  dirs += ":/usr/sbin:/sbin";
  std::stringstream ss(dirs);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string p = dir + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// True when the ELF file has no program interpreter (statically linked).
bool is_static_elf(const std::string& path, std::string* why) {
  std::ifstream f(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!f.read(reinterpret_cast<char*>(&eh), sizeof eh) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) {
    *why = "not a 64-bit ELF file";
    return false;
  }
  for (int i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    f.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) {
      *why = "truncated program headers";
      return false;
    }
    if (ph.p_type == PT_INTERP) {
      *why = "dynamically linked";
      return false;
    }
  }
  return true;
}

namespace {

// Every directory of the cgroup `name` (an absolute cgroup path such as "/nspit-1-2")
// in every mounted hierarchy (cgroup v1: /sys/fs/cgroup/<controller>/name, v2:
// /sys/fs/cgroup/name), deepest first.
// Only names made by this test ("/nspit-...") are looked at: an empty or other name would
// select the machine's own cgroups.
std::vector<fs::path> cgroup_dirs(const std::string& name) {
  std::vector<fs::path> roots;
  std::error_code ec;
  if (name.rfind("/nspit-", 0) != 0 || name.find("..") != std::string::npos) return {};
  fs::path rel = fs::path(name).relative_path();
  if (fs::is_directory(fs::path("/sys/fs/cgroup") / rel, ec)) {
    roots.push_back(fs::path("/sys/fs/cgroup") / rel);
  }
  for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    fs::path p = e.path() / rel;
    if (e.is_directory(ec) && fs::is_directory(p, ec)) roots.push_back(p);
  }
  std::vector<fs::path> dirs;
  for (const auto& root : roots) {
    dirs.push_back(root);
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) dirs.push_back(it->path());
    }
  }
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());
  });
  return dirs;
}

// Pids in any of those cgroups.
std::vector<pid_t> cgroup_pids(const std::vector<fs::path>& dirs) {
  std::vector<pid_t> pids;
  for (const auto& d : dirs) {
    std::ifstream f(d / "cgroup.procs");
    long pid;
    while (f >> pid) {
      if (std::find(pids.begin(), pids.end(), pid) == pids.end()) pids.push_back(pid);
    }
  }
  return pids;
}

}  // namespace

PodmanNode::PodmanNode(std::string dir, std::vector<std::string> cni_plugin_dirs)
    : dir_(std::move(dir)), cni_plugin_dirs_(std::move(cni_plugin_dirs)) {}

PodmanNode::~PodmanNode() {
  release();
}

::testing::AssertionResult PodmanNode::start() {
  if (::geteuid() != 0) {
    return ::testing::AssertionFailure() << "podman tests need root (podman as root, network "
                                            "and mount namespaces); they are never skipped";
  }
  std::string missing;
  for (const char* tool :
       {"podman", "runc", "conmon", "nsenter", "unshare", "setpriv", "mount", "umount", "tar"}) {
    if (find_in_path(tool).empty()) missing += std::string(" ") + tool;
  }
  if (!missing.empty()) {
    return ::testing::AssertionFailure()
           << "programs missing:" << missing
           << " (Debian packages podman, runc, conmon, util-linux, mount, tar; "
              "scripts/install-deps.sh installs them)";
  }
  cgroup_parent_ = "/" + unique_name() + "-podman";
  root_ = dir_ + "/storage";
  runroot_ = dir_ + "/run";
  podman_tmp_ = dir_ + "/podman-tmp";
  net_conf_ = dir_ + "/cni-conf";
  for (const auto& d : {root_, runroot_, podman_tmp_, net_conf_, dir_ + "/image-tmp"}) {
    fs::create_directories(d);
  }
  // H, and the holder of the private mount namespace inside it. setpriv --pdeathsig:
  // the holder dies with the test process even when that is killed.
  host_ = std::make_unique<Netns>();
  if (!host_->ok()) return ::testing::AssertionFailure() << host_->error();
  holder_ = std::make_unique<Process>(std::vector<std::string>{
      "nsenter", "--net=" + host_->path(), "unshare", "--mount", "--propagation", "private",
      "setpriv", "--pdeathsig", "KILL", "sh", "-c", kHolderScript});
  if (!holder_->started()) return ::testing::AssertionFailure() << holder_->start_error();
  if (!holder_->wait_for_line("ready", 10000ms)) {
    return ::testing::AssertionFailure()
           << "the mount namespace holder did not start: " << holder_->command_line()
           << "\nstderr: " << holder_->err();
  }
  // nsenter, unshare, setpriv and sh exec in turn: the pid is the holder's.
  enter_ = {"nsenter", "--target", std::to_string(holder_->pid()), "--mount", "--net"};
  write_configs();
  return ::testing::AssertionSuccess();
}

bool PodmanNode::running() const {
  return holder_ && holder_->running();
}

std::string PodmanNode::path_inside(const std::string& path) const {
  return "/proc/" + std::to_string(holder_ ? holder_->pid() : 0) + "/root" + path;
}

std::vector<std::string> PodmanNode::long_lived() const {
  std::vector<std::string> argv = enter_;
  argv.insert(argv.end(), {"setpriv", "--pdeathsig", "KILL"});
  return argv;
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
  std::vector<std::string> argv = enter_;
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

void PodmanNode::release() {
  if (released_) return;
  released_ = true;
  // conmon and container processes exit on their own after rm; whatever this node's
  // podman left in its cgroups anyway is killed (by pid), then the cgroups go.
  auto dirs = cgroup_parent_.empty() ? std::vector<fs::path>() : cgroup_dirs(cgroup_parent_);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!cgroup_pids(dirs).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  auto stray = cgroup_pids(dirs);
  EXPECT_TRUE(stray.empty()) << stray.size() << " process(es) left in cgroup " << cgroup_parent_
                             << " after podman rm; killing them";
  for (pid_t pid : stray) ::kill(pid, SIGKILL);
  holder_.reset();
  for (const auto& d : dirs) {
    bool removed = false;
    int err = 0;
    for (int i = 0; i < 100 && !removed; ++i) {
      removed = ::rmdir(d.c_str()) == 0 || (err = errno) == ENOENT;
      if (!removed) std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(removed) << "cannot remove cgroup " << d << ": " << std::strerror(err);
  }
  host_.reset();
}

}  // namespace nspit
