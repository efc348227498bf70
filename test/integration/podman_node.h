// A podman of the test's own, as a node's container runtime, on a TestNode (test_node.h:
// a test network namespace H and a private mount namespace, so that nothing touches the
// machine's interfaces or podman state): podman 4 (CNI network backend, runc).
// podman_test.cc (containers on an nsproxy CNI chain) and agent_podman_test.cc (the node
// agent image) run on it.
//
//   - podman gets a temporary --root/--runroot/--tmpdir, --storage-driver vfs (no overlay
//     mounts), --network-config-dir, --cgroup-manager cgroupfs, --events-backend file,
//     and CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files of its own (network_backend
//     "cni", the given cni_plugin_dirs, lock_type "file" so no lock segment in /dev/shm).
//     conmon passes CONTAINERS_CONF on to the cleanup process it starts when a container
//     exits, so that one finds the plugins too.
//   - Containers go under cgroup_parent() (--cgroup-parent).
//   - Images are built offline (import_rootfs): no registry is reachable.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_node.h"

namespace nspit {

inline constexpr Millis kPodmanTimeout = 30000ms;

class PodmanNode : public TestNode {
 public:
  // Everything under dir (a test's TempDir). cni_plugin_dirs: where podman's CNI backend
  // looks for plugins.
  PodmanNode(std::string dir, std::vector<std::string> cni_plugin_dirs);

  // Checks the tools, makes the node's namespaces and podman's configuration. Fails with
  // what is missing (the Debian package to install).
  ::testing::AssertionResult start();
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

 private:
  void write_configs();

  std::string dir_;
  std::vector<std::string> cni_plugin_dirs_;
  std::string root_, runroot_, podman_tmp_, net_conf_;
  std::string containers_conf_, storage_conf_;
};

}  // namespace nspit
