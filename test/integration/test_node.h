// A test "node": what a container runtime under test runs in so that nothing it does
// reaches the machine. PodmanNode (podman_node.h) and ContainerdNode
// (containerd_node.h) build on it.
//
//   - A test network namespace H holds the bridges, the daemons and the upstreams.
//   - A private mount namespace, kept alive by a holder process and entered with nsenter
//     (enter()), mounts fresh tmpfs over /run, /var/lib and /var/tmp, so what runtimes and
//     libcni write to fixed paths (netns bind mounts in /run/netns, libcni's cache in
//     /var/lib/cni, runc's state in /run/runc) never reaches the machine and vanishes with
//     the namespace, also after a crash. /sys is remounted to describe H (as `ip netns
//     exec` does) with the machine's cgroup mounts moved back under it. A runtime could
//     not simply run under `ip netns exec`: every call would get a new mount namespace
//     (a netns bind mount made by one call would be invisible to the next), and its fresh
//     /sys has no cgroup mounts. Callers add mounts of their own (extra_mounts).
//   - Cgroups are the one thing shared with the machine: containers go under a unique
//     cgroup_parent(), whose leftover processes are killed and directories removed by
//     release().
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "namespaces.h"
#include "processes.h"
#include "scratch.h"

namespace nspit {

// The program's path in PATH (plus /usr/sbin and /sbin), or "".
std::string find_in_path(const std::string& name);
// True when the ELF file has no program interpreter (statically linked); *why otherwise.
bool is_static_elf(const std::string& path, std::string* why);

class TestNode {
 public:
  // kind names the cgroup parent ("/nspit-...-<kind>").
  explicit TestNode(std::string kind);
  virtual ~TestNode();
  TestNode(const TestNode&) = delete;
  TestNode& operator=(const TestNode&) = delete;

  // Makes H and the holder; extra_mounts: sh commands run in the new mount namespace
  // after the standard mounts (mount -n ...). Fails with what is missing.
  ::testing::AssertionResult start_namespaces(const std::string& extra_mounts = "");
  bool running() const;

  const Netns& host() const { return *host_; }
  // nsenter into the holder's mount and network namespaces: prefix of a short command.
  const std::vector<std::string>& enter() const { return enter_; }
  // enter() plus setpriv --pdeathsig KILL: prefix of a process that must not outlive the
  // test (a daemon, an upstream).
  std::vector<std::string> long_lived() const;
  // A path of the private mount namespace (e.g. a netns under its /run/netns) as the
  // test process can open it: /proc/<holder>/root/<path>.
  std::string path_inside(const std::string& path) const;
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  // Moves pid (a runtime's daemon, before it forks anything) into a cgroup under
  // cgroup_parent(), so that release() finds what it leaves behind (e.g. containerd's
  // shims). Uses the cgroup v2 hierarchy, or v1's pids.
  ::testing::AssertionResult track(pid_t pid) const;

  // Kills what is left in cgroup_parent() (failing the test when something was), then the
  // holder, the cgroups and H. Call after stopping the processes started in long_lived().
  void release();

 private:
  std::string cgroup_parent_;
  std::unique_ptr<Netns> host_;
  std::unique_ptr<Process> holder_;
  std::vector<std::string> enter_;
  bool released_ = false;
};

}  // namespace nspit
