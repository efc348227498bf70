// A podman of the test's own, as a node's container runtime: podman 4 (CNI network
// backend, runc) whose every process runs in a test "host" network namespace H and in a
// private mount namespace, so that nothing touches the machine's interfaces or podman
// state. podman_test.cc (containers on an nsproxy CNI chain) and agent_podman_test.cc (the
// node agent image) run on it.
//
// Isolation:
//   - H holds the bridges, the daemons and the upstreams of the test.
//   - The private mount namespace is kept alive by a holder process and entered with
//     nsenter (enter()). It mounts fresh tmpfs over /run, /var/lib and /var/tmp, so what
//     podman and libcni write to fixed paths (the container netns bind mounts in
//     /run/netns, libcni's cache in /var/lib/cni, runc's state in /run/runc, the blob
//     info cache) never reaches the machine and vanishes with the namespace, also after a
//     crash. /sys is remounted to describe H (as `ip netns exec` does) with the machine's
//     cgroup mounts moved back under it. podman could not simply run under `ip netns
//     exec`: every call would get a new mount namespace (the netns bind mount made by
//     `podman run` would be invisible to `podman rm`), and its fresh /sys has no cgroup
//     mounts.
//   - podman gets a temporary --root/--runroot/--tmpdir, --storage-driver vfs (no overlay
//     mounts), --network-config-dir, --cgroup-manager cgroupfs, --events-backend file,
//     and CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files of its own (network_backend
//     "cni", the given cni_plugin_dirs, lock_type "file" so no lock segment in /dev/shm).
//     conmon passes CONTAINERS_CONF on to the cleanup process it starts when a container
//     exits, so that one finds the plugins too.
//   - Cgroups are the one thing shared with the machine: containers go under a unique
//     cgroup_parent(), whose leftover processes are killed and directories removed by
//     release().
//   - Images are built offline (import_rootfs): no registry is reachable.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "namespaces.h"
#include "processes.h"
#include "scratch.h"

namespace nspit {

inline constexpr Millis kPodmanTimeout = 30000ms;

// The program's path in PATH (plus /usr/sbin and /sbin), or "".
std::string find_in_path(const std::string& name);
// True when the ELF file has no program interpreter (statically linked); *why otherwise.
bool is_static_elf(const std::string& path, std::string* why);

class PodmanNode {
 public:
  // Everything under dir (a test's TempDir). cni_plugin_dirs: where podman's CNI backend
  // looks for plugins.
  PodmanNode(std::string dir, std::vector<std::string> cni_plugin_dirs);
  ~PodmanNode();
  PodmanNode(const PodmanNode&) = delete;
  PodmanNode& operator=(const PodmanNode&) = delete;

  // Checks the tools, makes H, the holder and podman's configuration. Fails with what is
  // missing (the Debian package to install).
  ::testing::AssertionResult start();
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
  const std::string& network_config_dir() const { return net_conf_; }

  std::vector<std::string> podman_argv(const std::vector<std::string>& args) const;
  Env podman_env() const;
  ProcessResult podman(const std::vector<std::string>& args, Millis timeout = kPodmanTimeout) const;

  // tar of rootfs, `podman import` as image with the given --change instructions.
  ::testing::AssertionResult import_rootfs(const std::string& rootfs, const std::string& image,
                                           const std::vector<std::string>& changes = {}) const;

  // `podman rm --all --force --time 0` (CNI DEL for each); prints `podman ps -a` first when
  // show is true (a failed test).
  ProcessResult remove_all_containers(bool show);
  // Kills what is left in cgroup_parent() (failing the test when something was), then the
  // holder, the cgroups and H. Call after stopping the processes started in long_lived().
  void release();

 private:
  void write_configs();

  std::string dir_;
  std::vector<std::string> cni_plugin_dirs_;
  std::string cgroup_parent_;
  std::string root_, runroot_, podman_tmp_, net_conf_;
  std::string containers_conf_, storage_conf_;
  std::unique_ptr<Netns> host_;
  std::unique_ptr<Process> holder_;
  std::vector<std::string> enter_;
  bool released_ = false;
};

}  // namespace nspit
