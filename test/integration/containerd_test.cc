// containerd as the node's runtime: Kubernetes nodes mostly run containerd, whose CRI
// plugin wires pods with go-cni from /etc/cni/net.d and /opt/cni/bin. Here `ctr run
// --cni` (the same go-cni, reading the same paths) runs containers of an image imported
// from an OCI archive, on a node whose primary network (bridge + host-local) got its
// nsproxy entry from `nsproxyctl cni install`, as the node agent installs it. What an
// operator would check:
//   - from inside the container, 127.0.0.1:8080 reaches the host upstream, which sees
//     containerd's id for the container, "<containerd namespace>-<container id>" (what
//     go-cni passes as CNI_CONTAINERID), and not the X-Tenant-Id the container forged;
//   - the registration is listed while the container runs and gone once `ctr run --rm`
//     returned (go-cni ran CNI DEL, without a netns path: the process had exited);
//   - the same container id in two containerd namespaces is two tenants.
//
// Isolation: everything runs on a ContainerdNode (containerd_node.h): a test network
// namespace, a private mount namespace, containerd state and cgroups of the test's own.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "containerd_node.h"
#include "fixture.h"
#include "text.h"

namespace nspit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kRefPlugins = "/usr/lib/cni";
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kImage = "localhost/nspit-tenant:latest";
constexpr const char* kSubnet = "10.213.12.0/24";
const std::vector<std::string> kNamespaces = {"default", "tenant-b"};

class ContainerdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxyctl", "nsproxy-echo"}));
    for (const char* p : {"bridge", "host-local"}) {
      ASSERT_TRUE(fs::exists(std::string(kRefPlugins) + "/" + p))
          << "reference CNI plugin missing: " << kRefPlugins << "/" << p
          << " (Debian package containernetworking-plugins)";
    }
    std::string why;
    ASSERT_TRUE(::access(kBusybox, X_OK) == 0 && is_static_elf(kBusybox, &why))
        << kBusybox << " must be a statically linked busybox (Debian package busybox-static) "
        << "to build the test image offline: " << (why.empty() ? "missing" : why);

    // The node's /opt/cni/bin and /etc/cni/net.d: the reference plugins and a primary
    // network, as a node's CNI (here bridge + host-local, containerd's own example
    // 10-containerd-net.conflist without portmap) leaves them.
    bin_dir_ = tmp_.file("node/opt/cni/bin");
    conf_dir_ = tmp_.file("node/etc/cni/net.d");
    fs::create_directories(bin_dir_);
    fs::create_directories(conf_dir_);
    for (const char* p : {"bridge", "host-local"}) {
      fs::copy_file(std::string(kRefPlugins) + "/" + p, bin_dir_ + "/" + p);
    }
    network_ = "containerd-net-" + short_token();
    json conflist = {
        {"cniVersion", "1.0.0"},
        {"name", network_},
        {"plugins", json::array({{{"type", "bridge"},
                                  {"bridge", "nspbr" + short_token()},
                                  {"isGateway", true},
                                  {"ipMasq", false},
                                  {"ipam",
                                   {{"type", "host-local"},
                                    {"ranges", json::array({json::array({{{"subnet", kSubnet}}})})},
                                    {"dataDir", tmp_.file("ipam")}}}}})}};
    tmp_.write("node/etc/cni/net.d/10-containerd-net.conflist", conflist.dump(2) + "\n");

    ASSERT_TRUE(node_.start(conf_dir_, bin_dir_));
    daemon_ = std::make_unique<Daemon>(tmp_.path(), node_.long_lived());
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http", node_.long_lived());
    ASSERT_TRUE(echo_->start());

    // The nsproxy entry, installed as the node agent installs it.
    const std::string entry =
        tmp_.write("plugin.json",
                   json({{"type", "nsproxy"},
                         {"socket", daemon_->socket_path()},
                         {"listeners", json::array({listener(kListen, echo_->address(), "http")})}})
                       .dump());
    auto install =
        run({binary("nsproxyctl"), "cni", "install", "--cni-conf-dir", conf_dir_, "--cni-bin-dir",
             bin_dir_, "--plugin-binary", binary("nsproxy"), "--plugin-config", entry});
    ASSERT_EQ(install.exit_code, 0) << install.describe();

    // A one-layer busybox image, packed as an OCI archive and imported in each namespace.
    const std::string rootfs = tmp_.file("rootfs");
    fs::create_directories(rootfs + "/bin");
    for (const char* d : {"proc", "sys", "dev", "tmp", "etc", "gate"}) {
      fs::create_directories(rootfs + "/" + d);
    }
    fs::copy_file(kBusybox, rootfs + "/bin/busybox");
    for (const char* applet : {"sh", "wget", "sleep", "test", "["}) {
      fs::create_symlink("busybox", rootfs + "/bin/" + applet);
    }
    const std::string archive = tmp_.file("tenant.oci.tar");
    auto packed = run(
        {std::string(NSPROXY_SOURCE_DIR) + "/test/tools/oci-archive.sh", rootfs, kImage, archive},
        60000ms);
    ASSERT_EQ(packed.exit_code, 0) << packed.describe();
    for (const auto& ns : kNamespaces) ASSERT_TRUE(node_.import(archive, ns));

    gate_dir_ = tmp_.file("gate");
    fs::create_directories(gate_dir_);
  }

  void TearDown() override {
    node_.remove_all_containers(kNamespaces, HasFailure());
    if (HasFailure())
      std::cerr << "--- containerd log ---\n" << detail::tail(node_.log()) << "\n---\n";
    echo_.reset();
    daemon_.reset();
    node_.release();
  }

  // `ctr run --rm --cni` in the foreground: calls 127.0.0.1:8080 with a forged identity
  // header, prints the upstream's answer (exits 1 if there is none), then waits until the test
  // creates gate/<name> (bounded: 60 s, then exit 1, so containers of a killed test end anyway).
  std::unique_ptr<Process> run_rm(const std::string& ns, const std::string& id,
                                  const std::string& gate, const std::string& path) {
    const std::string gate_file = "/gate/" + gate;
    const std::string script = std::string("wget -qO- --header 'X-Tenant-Id: forged' http://") +
                               kListen + path + " || exit 1; echo; i=0; while [ ! -e " + gate_file +
                               " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e " +
                               gate_file + " ]";
    auto p = std::make_unique<Process>(
        node_.ctr_argv({"run", "--rm", "--cni", "--snapshotter", "native", "--cgroup",
                        node_.cgroup_parent() + "/" + ns + "-" + id, "--mount",
                        "type=bind,src=" + gate_dir_ + ",dst=/gate,options=rbind:ro", kImage, id,
                        "sh", "-c", script},
                       ns));
    EXPECT_TRUE(p->started()) << p->start_error();
    return p;
  }

  // The upstream's answer the container printed (null, with a test failure, if none).
  json answer(Process& p) {
    auto line = p.wait_for_line("X-Tenant-Id", kContainerdTimeout);
    EXPECT_TRUE(line) << "no answer from the upstream inside the container: " << p.command_line()
                      << "\nstdout: " << p.out() << "\nstderr: " << p.err();
    if (!line) return json();
    json j = json::parse(*line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << *line;
    return j.is_discarded() ? json() : j;
  }

  void open_gate_and_wait(Process& p, const std::string& gate) {
    tmp_.write("gate/" + gate, "");
    auto code = p.wait(kContainerdTimeout);
    ASSERT_TRUE(code) << "ctr run --rm did not return: " << p.command_line();
    EXPECT_EQ(*code, 0) << "ctr run --rm: " << p.command_line() << "\nstderr: " << p.err();
  }

  bool container_exists(const std::string& ns, const std::string& id) {
    auto ls = node_.ctr({"containers", "list", "--quiet"}, ns);
    EXPECT_EQ(ls.exit_code, 0) << ls.describe();
    std::stringstream ids(ls.out);
    for (std::string line; std::getline(ids, line);) {
      if (line == id) return true;
    }
    return false;
  }

  void expect_registration(const json& reg, const std::string& tenant) {
    const json att = reg.value("attachment", json::object());
    EXPECT_EQ(att.value("network", ""), network_) << reg.dump(2);
    EXPECT_EQ(att.value("id", ""), tenant) << reg.dump(2);
    EXPECT_EQ(att.value("ifname", ""), "eth0") << reg.dump(2);
    const json listeners = reg.value("listeners", json::array());
    ASSERT_EQ(listeners.size(), 1u) << reg.dump(2);
    EXPECT_EQ(listeners[0].value("listen", ""), kListen) << reg.dump(2);
    EXPECT_TRUE(listeners[0].value("accepting", false)) << reg.dump(2);
  }

  TempDir tmp_;
  ContainerdNode node_{tmp_.path() + "/containerd"};
  std::string bin_dir_, conf_dir_, network_, gate_dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
};

TEST_F(ContainerdTest, CtrRunCniReachesUpstreamAsNamespacedIdThenUnregisters) {
  const std::string id = "web-" + short_token();
  const std::string tenant = "default-" + id;
  auto p = run_rm("default", id, id, "/from-containerd");
  json echo = answer(*p);
  ASSERT_FALSE(echo.is_null());
  EXPECT_EQ(echo.value("path", ""), "/from-containerd") << echo.dump();
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{tenant})
      << "the upstream must see containerd's id for the container, and only that\n"
      << echo.dump();

  auto regs = daemon_->registrations_with_id(tenant);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  expect_registration(regs[0], tenant);

  ASSERT_NO_FATAL_FAILURE(open_gate_and_wait(*p, id));
  EXPECT_FALSE(container_exists("default", id)) << "ctr run --rm left the container";
  EXPECT_TRUE(daemon_->registrations_with_id(tenant).empty())
      << "registration still listed after ctr run --rm returned:\n"
      << daemon_->list().dump(2);
  EXPECT_TRUE(daemon_->list().empty()) << daemon_->list().dump(2);
}

// Two containerd namespaces (as two Kubernetes runtimes' or a CRI's "k8s.io" next to
// another client's) each run a container named alike at the same time: two tenants.
TEST_F(ContainerdTest, SameContainerIdInTwoNamespacesIsTwoTenants) {
  const std::string id = "app-" + short_token();
  auto a = run_rm("default", id, "a", "/a");
  auto b = run_rm("tenant-b", id, "b", "/b");
  json echo_a = answer(*a), echo_b = answer(*b);
  ASSERT_FALSE(echo_a.is_null());
  ASSERT_FALSE(echo_b.is_null());
  EXPECT_EQ(echo_headers(echo_a, "X-Tenant-Id"), std::vector<std::string>{"default-" + id})
      << echo_a.dump();
  EXPECT_EQ(echo_headers(echo_b, "X-Tenant-Id"), std::vector<std::string>{"tenant-b-" + id})
      << echo_b.dump();
  EXPECT_EQ(daemon_->list().size(), 2u) << daemon_->list().dump(2);

  // The first one's --rm unregisters it only.
  ASSERT_NO_FATAL_FAILURE(open_gate_and_wait(*a, "a"));
  EXPECT_TRUE(daemon_->registrations_with_id("default-" + id).empty()) << daemon_->list().dump(2);
  ASSERT_EQ(daemon_->registrations_with_id("tenant-b-" + id).size(), 1u) << daemon_->list().dump(2);
  ASSERT_NO_FATAL_FAILURE(open_gate_and_wait(*b, "b"));
  EXPECT_TRUE(daemon_->list().empty()) << daemon_->list().dump(2);
}

}  // namespace
}  // namespace nspit
