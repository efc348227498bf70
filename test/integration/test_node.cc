#include "test_node.h"

#include <elf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace nspit {

namespace fs = std::filesystem;

namespace {

// Runs as `sh -c` in the new private mount namespace (already inside H's network
// namespace). `mount -n` keeps libmount from creating /run/mount/utab on the machine
// before /run is replaced. start_namespaces() appends the caller's mounts, then prints "ready"
// and only keeps the namespace alive.
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

TestNode::TestNode(std::string kind) : cgroup_parent_("/" + unique_name() + "-" + kind) {}

TestNode::~TestNode() {
  release();
}

::testing::AssertionResult TestNode::start_namespaces(const std::string& extra_mounts) {
  if (::geteuid() != 0) {
    return ::testing::AssertionFailure() << "container runtime tests need root (network and "
                                            "mount namespaces); they are never skipped";
  }
  std::string missing;
  for (const char* tool : {"nsenter", "unshare", "setpriv", "mount", "umount"}) {
    if (find_in_path(tool).empty()) missing += std::string(" ") + tool;
  }
  if (!missing.empty()) {
    return ::testing::AssertionFailure()
           << "programs missing:" << missing << " (Debian packages util-linux, mount)";
  }
  // H, and the holder of the private mount namespace inside it. setpriv --pdeathsig:
  // the holder dies with the test process even when that is killed.
  host_ = std::make_unique<Netns>();
  if (!host_->ok()) return ::testing::AssertionFailure() << host_->error();
  std::string script = std::string(kHolderScript) + extra_mounts + "\necho ready\nexec sleep 600\n";
  holder_ = std::make_unique<Process>(std::vector<std::string>{
      "nsenter", "--net=" + host_->path(), "unshare", "--mount", "--propagation", "private",
      "setpriv", "--pdeathsig", "KILL", "sh", "-c", script});
  if (!holder_->started()) return ::testing::AssertionFailure() << holder_->start_error();
  if (!holder_->wait_for_line("ready", 10000ms)) {
    return ::testing::AssertionFailure()
           << "the mount namespace holder did not start: " << holder_->command_line()
           << "\nstderr: " << holder_->err();
  }
  // nsenter, unshare, setpriv and sh exec in turn: the pid is the holder's.
  enter_ = {"nsenter", "--target", std::to_string(holder_->pid()), "--mount", "--net"};
  return ::testing::AssertionSuccess();
}

bool TestNode::running() const {
  return holder_ && holder_->running();
}

std::string TestNode::path_inside(const std::string& path) const {
  return "/proc/" + std::to_string(holder_ ? holder_->pid() : 0) + "/root" + path;
}

std::vector<std::string> TestNode::long_lived() const {
  std::vector<std::string> argv = enter_;
  argv.insert(argv.end(), {"setpriv", "--pdeathsig", "KILL"});
  return argv;
}

::testing::AssertionResult TestNode::track(pid_t pid) const {
  std::error_code ec;
  fs::path root = fs::exists("/sys/fs/cgroup/cgroup.controllers", ec)
                      ? fs::path("/sys/fs/cgroup")
                      : fs::path("/sys/fs/cgroup/pids");
  fs::path dir = root / fs::path(cgroup_parent_).relative_path() / "tracked";
  fs::create_directories(dir, ec);
  if (ec)
    return ::testing::AssertionFailure() << "cannot create cgroup " << dir << ": " << ec.message();
  std::ofstream procs(dir / "cgroup.procs");
  procs << pid << std::flush;
  if (!procs) return ::testing::AssertionFailure() << "cannot move pid " << pid << " into " << dir;
  return ::testing::AssertionSuccess();
}

void TestNode::release() {
  if (released_) return;
  released_ = true;
  // Containers' processes exit on their own once removed; whatever the runtime left in
  // its cgroups anyway is killed (by pid), then the cgroups go.
  auto dirs = cgroup_dirs(cgroup_parent_);
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!cgroup_pids(dirs).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  auto stray = cgroup_pids(dirs);
  EXPECT_TRUE(stray.empty()) << stray.size() << " process(es) left in cgroup " << cgroup_parent_
                             << " after the containers were removed; killing them";
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
