// The node agent image (deploy/container/) under podman, run the way the DaemonSet in
// deploy/kubernetes/ runs it: host network (of the test "node" H), only the capabilities
// it needs, the node's CNI bin and conf dirs and /run/nsproxy bind-mounted, /run/netns
// with slave propagation (Kubernetes' HostToContainer) so namespaces created after the
// agent started are visible in it. The image is the equivalent of Containerfile's, made
// offline (test/tools/agent-rootfs.sh + podman import): no registry is reachable here.
//
// What an operator would check:
//   - once ready (/readyz), the agent installed the nsproxy entry into the node's conflist
//     and the plugin into the bin dir;
//   - a CNI ADD through that conflist (libcni, as the kubelet's runtime) registers a
//     tenant namespace created after the agent started, and the tenant reaches the
//     upstream with its container id as identity (a forged header is dropped);
//   - a second agent started while load runs takes the listeners over: no tenant
//     connection is refused or fails, and stopping the old agent leaves the entry in
//     place (the rolling update of maxSurge 1);
//   - stopping the last agent removes the entry and the binary.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fixture.h"
#include "podman_node.h"

namespace nspit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kRefPlugins = "/usr/lib/cni";
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kImage = "localhost/nsproxy-agent-test";
constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kMetrics = "127.0.0.1:9464";  // H is the test's: the default is free
constexpr const char* kSubnet = "10.213.10.0/24";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> plugin_types(const std::string& path) {
  std::vector<std::string> types;
  json list = json::parse(slurp(path), nullptr, false);
  if (!list.is_object() || !list.contains("plugins")) return types;
  for (const auto& p : list["plugins"]) types.push_back(p.value("type", ""));
  return types;
}

class AgentPodmanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy", "nsproxyctl", "nsproxy-echo", "cnitool"}));
    std::string why;
    ASSERT_TRUE(::access(kBusybox, X_OK) == 0 && is_static_elf(kBusybox, &why))
        << kBusybox << " must be a statically linked busybox (Debian package busybox-static): "
        << (why.empty() ? "missing" : why);
    ASSERT_TRUE(node_.start());

    // The node's directories, as the DaemonSet's hostPath volumes see them.
    bin_dir_ = tmp_.file("node/opt/cni/bin");
    conf_dir_ = tmp_.file("node/etc/cni/net.d");
    run_dir_ = tmp_.file("node/run/nsproxy");
    for (const auto& d : {bin_dir_, conf_dir_, run_dir_}) fs::create_directories(d);
    fs::permissions(run_dir_, fs::perms::owner_all, fs::perm_options::replace);
    for (const char* p : {"bridge", "host-local"}) {
      fs::copy_file(std::string(kRefPlugins) + "/" + p, bin_dir_ + "/" + p);
    }
    network_ = "nspit-agent-" + short_token();
    json conflist = {
        {"cniVersion", "1.0.0"},
        {"name", network_},
        {"plugins", json::array({{{"type", "bridge"},
                                  {"bridge", "nspbr" + short_token()},
                                  {"isGateway", true},
                                  {"ipam",
                                   {{"type", "host-local"},
                                    {"ranges", json::array({json::array({{{"subnet", kSubnet}}})})},
                                    {"dataDir", tmp_.file("ipam")}}}}})}};
    original_conflist_ = conflist.dump(2) + "\n";
    primary_ = tmp_.write("node/etc/cni/net.d/10-bridge.conflist", original_conflist_);

    // Inside the node's mount namespace: /run/nsproxy is the node's directory (the plugin
    // finds the daemon at its default socket), /run/netns a shared mount point, as
    // `ip netns add` leaves it on a host.
    auto mounts = run_in_node("mkdir -p /run/nsproxy /run/netns && mount --bind '" + run_dir_ +
                              "' /run/nsproxy && mount --bind /run/netns /run/netns && "
                              "mount --make-shared /run/netns");
    ASSERT_EQ(mounts.exit_code, 0) << mounts.describe();

    echo_ = std::make_unique<EchoServer>("http", node_.long_lived());
    ASSERT_TRUE(echo_->start());
    plugin_config_ =
        tmp_.write("plugin.json",
                   json({{"type", "nsproxy"},
                         {"listeners", json::array({listener(kListen, echo_->address(), "http")})},
                         {"labels", {{"installed-by", "nsproxy-agent"}}}})
                       .dump());

    const std::string rootfs = tmp_.file("rootfs");
    auto laid = run({std::string(NSPROXY_SOURCE_DIR) + "/test/tools/agent-rootfs.sh",
                     NSPROXY_BUILD_DIR, rootfs},
                    120000ms);
    ASSERT_EQ(laid.exit_code, 0) << laid.describe();
    ASSERT_TRUE(node_.import_rootfs(
        rootfs, kImage,
        {"ENTRYPOINT [\"/usr/lib/nsproxy/nsproxy-agent\"]",
         "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}));
  }

  void TearDown() override {
    if (node_.running()) {
      auto rm = node_.remove_all_containers(HasFailure());
      EXPECT_EQ(rm.exit_code, 0) << "podman rm --all: " << rm.describe();
      for (const auto& ns : tenants_) run_in_node("ip netns del " + ns);
    }
    echo_.reset();
    node_.release();
  }

  ProcessResult run_in_node(const std::string& command, Millis timeout = 30000ms) const {
    std::vector<std::string> argv = node_.enter();
    argv.insert(argv.end(), {"sh", "-c", command});
    return run(argv, timeout);
  }

  // `podman run -d` of the agent as the DaemonSet runs it; returns the container name.
  std::string start_agent(const std::string& name) {
    auto r = node_.podman(
        {"run", "--detach", "--name", name, "--network", "host", "--cgroup-parent",
         node_.cgroup_parent(), "--cap-drop", "all", "--cap-add",
         "SYS_ADMIN,NET_ADMIN,NET_BIND_SERVICE,CHOWN", "--security-opt", "no-new-privileges",
         "--read-only", "--volume", bin_dir_ + ":/host/opt/cni/bin", "--volume",
         conf_dir_ + ":/host/etc/cni/net.d", "--volume", "/run/netns:/run/netns:rslave", "--volume",
         "/run/nsproxy:/run/nsproxy", "--volume", plugin_config_ + ":/etc/nsproxy/plugin.json:ro",
         "--env", std::string("NSPROXY_METRICS_LISTEN=") + kMetrics, "--env",
         "NSPROXYD_OPTS=--drain-timeout 20",
         // A sanitizer build's binaries: LeakSanitizer needs ptrace, which the agent
         // does not get.
         "--env", "ASAN_OPTIONS=detect_leaks=0", kImage});
    EXPECT_EQ(r.exit_code, 0) << "podman run: " << r.describe();
    return name;
  }

  // GET http://127.0.0.1:9464/readyz in H, as the kubelet's readiness probe.
  int readyz() const {
    auto conn = HttpConn::open(node_.host().path(), kMetrics, 1000ms);
    if (!conn.ok()) return 0;
    auto r = conn.request(http_request("GET", "/readyz", "Connection: close\r\n"), 2000ms);
    return r.ok() ? r->status : 0;
  }

  std::string instance() const {
    auto r =
        run({binary("nsproxyctl"), "--socket", run_dir_ + "/nsproxyd.sock", "status", "--json"});
    json j = json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("instance", "") : "";
  }

  std::string logs(const std::string& name) const {
    auto r = node_.podman({"logs", name});
    return r.out + r.err;
  }

  int exit_code_of(const std::string& name) const {
    auto r = node_.podman({"inspect", "--format", "{{.State.ExitCode}}", name});
    return r.exit_code == 0 ? std::atoi(r.out.c_str()) : -1;
  }

  // A tenant namespace made in the node after the agent started, as a runtime makes one.
  std::string add_tenant_namespace() {
    std::string name = "nspit-agent-" + short_token();
    auto r = run_in_node("ip netns add " + name);
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    tenants_.push_back(name);
    return name;
  }

  ProcessResult cnitool(const std::string& command, const std::string& container,
                        const std::string& netns) const {
    std::vector<std::string> argv = node_.enter();
    argv.insert(argv.end(), {binary("cnitool"), "--cni-path", bin_dir_, "--cache-dir",
                             tmp_.file("cni-cache"), "--container-id", container, "--ifname",
                             "eth0", command, conf_dir_, "/run/netns/" + netns});
    return run(argv, 30000ms);
  }

  json registrations() const {
    auto r = run({binary("nsproxyctl"), "--socket", run_dir_ + "/nsproxyd.sock", "list", "--json"});
    json j = json::parse(r.out, nullptr, false);
    return j.is_object() ? j.value("registrations", json::array()) : json::array();
  }

  // One request from inside the tenant on a new connection: the upstream's answer.
  nsproxy::Result<json> call_from(const std::string& netns, const std::string& path,
                                  const std::string& extra_headers = "") const {
    auto conn = HttpConn::open(node_.path_inside("/run/netns/" + netns), kListen, 3000ms);
    if (!conn.ok()) return nsproxy::make_error(nsproxy::Code::kIo, conn.error());
    auto r =
        conn.request(http_request("GET", path, extra_headers + "Connection: close\r\n"), 5000ms);
    if (!r.ok()) return r.error();
    if (r->status != 200) return nsproxy::make_error(nsproxy::Code::kIo, r->describe());
    return r->json();
  }

  TempDir tmp_;
  PodmanNode node_{tmp_.file("podman"), {kRefPlugins}};
  std::string bin_dir_, conf_dir_, run_dir_, primary_, original_conflist_, network_;
  std::string plugin_config_;
  std::unique_ptr<EchoServer> echo_;
  std::vector<std::string> tenants_;
};

TEST_F(AgentPodmanTest, InstallsServesTakesOverUnderLoadAndUninstalls) {
  // The first agent: ready, and the entry and the binary are in place.
  const std::string first = start_agent("nspit-agent-a-" + short_token());
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(wait_until([&] { return readyz() == 200; }, 30000ms)) << logs(first);
  ASSERT_TRUE(wait_until([&] { return plugin_types(primary_).size() == 2; }, 30000ms))
      << logs(first);
  EXPECT_EQ(plugin_types(primary_), (std::vector<std::string>{"bridge", "nsproxy"}));
  EXPECT_EQ(::access((bin_dir_ + "/nsproxy").c_str(), X_OK), 0) << "plugin binary not installed";
  const std::string first_instance = instance();
  EXPECT_EQ(first_instance.size(), 32u);

  // A tenant namespace created now is visible inside the agent (slave propagation).
  const std::string tenant = add_tenant_namespace();
  auto seen = node_.podman({"exec", first, "ls", "/run/netns/" + tenant});
  EXPECT_EQ(seen.exit_code, 0) << "a namespace made after start is not visible in the agent: "
                               << seen.describe();

  // CNI ADD through the installed conflist.
  const std::string container = "c" + short_token() + short_token();
  auto add = cnitool("add", container, tenant);
  ASSERT_EQ(add.exit_code, 0) << add.describe() << logs(first);
  json regs = registrations();
  ASSERT_EQ(regs.size(), 1u) << regs.dump(2);
  EXPECT_EQ(regs[0]["attachment"].value("id", ""), container);
  EXPECT_EQ(regs[0]["attachment"].value("network", ""), network_);
  auto answer = call_from(tenant, "/who-am-i", "X-Tenant-Id: somebody-else\r\n");
  ASSERT_TRUE(answer.ok()) << answer.error().message << logs(first);
  EXPECT_EQ(echo_headers(*answer, "X-Tenant-Id"), std::vector<std::string>{container})
      << answer->dump();
  EXPECT_EQ(echo_headers(*answer, "X-Tenant-Label-installed-by"),
            std::vector<std::string>{"nsproxy-agent"});

  // The rolling update: load from the tenant, a second agent, then the first one stops.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread load([&] {
    while (!stop) {
      auto got = call_from(tenant, "/load");
      if (got.ok() && echo_headers(*got, "X-Tenant-Id") == std::vector<std::string>{container}) {
        ++ok;
      } else if (failed++ == 0) {
        first_failure = got.ok() ? got->dump() : got.error().message;
      }
    }
  });
  EXPECT_TRUE(wait_until([&] { return ok >= 20 || failed > 0; }, 10000ms));
  const std::string second = start_agent("nspit-agent-b-" + short_token());
  EXPECT_TRUE(wait_until(
      [&] {
        std::string now = instance();
        return !now.empty() && now != first_instance;
      },
      30000ms))
      << logs(second);
  const int ok_at_switch = ok;
  EXPECT_TRUE(wait_until([&] { return readyz() == 200; }, 10000ms)) << logs(second);
  auto stopped = node_.podman({"stop", "--time", "40", first}, 60000ms);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.describe();
  EXPECT_TRUE(wait_until([&] { return ok >= ok_at_switch + 20 || failed > 0; }, 10000ms));
  stop = true;
  load.join();
  std::printf(
      "[ FIGURES  ] rolling update of the agent: %d tenant requests (%d after the "
      "switch), %d failed\n",
      ok.load(), ok.load() - ok_at_switch, failed.load());
  EXPECT_EQ(failed, 0) << "tenant requests failed across the rolling update; first: "
                       << first_failure << "\n--- first agent ---\n"
                       << logs(first) << "\n--- second agent ---\n"
                       << logs(second);
  EXPECT_GT(ok_at_switch, 0);
  EXPECT_GT(ok, ok_at_switch + 10) << "no request served after the switch";
  EXPECT_EQ(exit_code_of(first), 0) << logs(first);
  EXPECT_NE(logs(first).find("took over"), std::string::npos) << logs(first);
  EXPECT_EQ(plugin_types(primary_), (std::vector<std::string>{"bridge", "nsproxy"}))
      << "the old agent's exit must not remove the entry the new one serves";
  EXPECT_TRUE(fs::exists(bin_dir_ + "/nsproxy"));
  ASSERT_EQ(registrations().size(), 1u) << "the registration moved to the new agent";
  auto after = call_from(tenant, "/after-update");
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(echo_headers(*after, "X-Tenant-Id"), std::vector<std::string>{container});

  // The last agent goes: the node's configuration is as it was before.
  auto last = node_.podman({"stop", "--time", "40", second}, 60000ms);
  EXPECT_EQ(last.exit_code, 0) << last.describe();
  EXPECT_EQ(exit_code_of(second), 0) << logs(second);
  EXPECT_NE(logs(second).find("removing the nsproxy CNI entry"), std::string::npos) << logs(second);
  if (std::getenv("NSPIT_SHOW_AGENT_LOGS") != nullptr) {
    std::printf("--- first agent ---\n%s--- second agent ---\n%s", logs(first).c_str(),
                logs(second).c_str());
  }
  EXPECT_EQ(json::parse(slurp(primary_)), json::parse(original_conflist_));
  EXPECT_FALSE(fs::exists(bin_dir_ + "/nsproxy"));
  EXPECT_EQ(cnitool("del", container, tenant).exit_code, 0);
}

}  // namespace
}  // namespace nspit
