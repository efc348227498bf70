// A containerd of the test's own, as a Kubernetes node's runtime, on a TestNode
// (test_node.h: a test network namespace H and a private mount namespace): Debian's
// containerd 1.6 with runc, without systemd.
//
//   - Its root, state, socket and config.toml are in the test's directory; the CRI plugin
//     is disabled (no kubelet here); images and containers use the "native" snapshotter
//     (directory copies: no overlay mounts).
//   - `ctr run --cni` wires containers with go-cni, the library the CRI plugin uses, which
//     reads the fixed paths /etc/cni/net.d and /opt/cni/bin. In the node's mount
//     namespace those are bind mounts of the test's conf and bin directories (/opt is a
//     tmpfs there, /etc/cni/net.d the machine's directory, shipped by podman, as a mount
//     point).
//   - containerd is moved into a cgroup under cgroup_parent() before it forks, so its
//     shims are found and killed by release() if they outlive their containers.
//   - Images come from OCI archives made offline (test/tools/oci-archive.sh).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "test_node.h"

namespace nspit {

inline constexpr Millis kContainerdTimeout = 30000ms;

class ContainerdNode : public TestNode {
 public:
  // Everything under dir (a test's TempDir).
  explicit ContainerdNode(std::string dir);
  ~ContainerdNode() override;

  // Checks the tools, makes the node's namespaces with cni_conf_dir and cni_bin_dir at
  // /etc/cni/net.d and /opt/cni/bin, starts containerd and waits until it answers.
  ::testing::AssertionResult start(const std::string& cni_conf_dir, const std::string& cni_bin_dir);

  // enter() + ctr --address SOCKET [--namespace NS] args...
  std::vector<std::string> ctr_argv(const std::vector<std::string>& args,
                                    const std::string& ns = "default") const;
  ProcessResult ctr(const std::vector<std::string>& args, const std::string& ns = "default",
                    Millis timeout = kContainerdTimeout) const;

  // `ctr images import` of an OCI archive into containerd namespace ns.
  ::testing::AssertionResult import(const std::string& archive, const std::string& ns) const;

  // Kills and deletes every container left in the given containerd namespaces (printing
  // them first when show is true: a failed test). `ctr run --rm` leaves none.
  void remove_all_containers(const std::vector<std::string>& namespaces, bool show);
  std::string log() const;
  // Stops containerd (SIGTERM), then TestNode::release().
  void release();

 private:
  std::string dir_;
  std::string socket_;
  std::unique_ptr<Process> containerd_;
};

}  // namespace nspit
