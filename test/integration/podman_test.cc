// End to end with a real container runtime: podman 4 (CNI network backend, runc) runs
// busybox containers on a CNI network whose conflist chains bridge + host-local and then
// the nsproxy plugin. What a user would check:
//   - from inside the container, 127.0.0.1:8080 reaches the host upstream, which sees
//     X-Tenant-Id = podman's full container id (two containers with the same listen
//     address each get their own id);
//   - `nsproxyctl list --json` shows the registration while the container runs, and it
//     is gone once podman removed the container (podman ran CNI DEL): after
//     `podman run --rm` returns, after `podman rm -f`, and after a detached `--rm`
//     container exits on its own (conmon's cleanup process).
//
// Isolation: everything runs on a PodmanNode (podman_node.h): a test network namespace,
// a private mount namespace, podman state and cgroups of the test's own.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixture.h"
#include "podman_node.h"

namespace nspit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kListen = "127.0.0.1:8080";
constexpr const char* kRefPlugins = "/usr/lib/cni";
constexpr const char* kBusybox = "/bin/busybox";
constexpr const char* kImage = "localhost/nsproxy-busybox";
constexpr const char* kSubnet = "10.213.8.0/24";

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

bool is_container_id(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) {
           return std::isdigit(c) || (c >= 'a' && c <= 'f');
         });
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class PodmanTest : public ::testing::Test {
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
    ASSERT_TRUE(node_.start());

    network_ = unique_name() + "-net";
    bridge_ = "nspbr" + short_token();
    gate_dir_ = tmp_.file("gate");
    fs::create_directories(gate_dir_);
    daemon_ = std::make_unique<Daemon>(tmp_.path(), node_.long_lived());
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http", node_.long_lived());
    ASSERT_TRUE(echo_->start());

    write_conflist();
    ASSERT_NO_FATAL_FAILURE(import_image());
  }

  void TearDown() override {
    if (node_.running()) {
      // Removing the containers runs CNI DEL for each (nsproxy unregisters).
      auto rm = node_.remove_all_containers(HasFailure());
      EXPECT_EQ(rm.exit_code, 0) << "podman rm --all: " << rm.describe();
      if (daemon_ && daemon_->running() && rm.exit_code == 0) {
        auto left = daemon_->list();
        EXPECT_TRUE(left.empty()) << "registrations left after podman rm --all:\n" << left.dump(2);
      }
    }
    echo_.reset();
    daemon_.reset();
    node_.release();
  }

  void write_conflist() {
    json conflist = {
        {"cniVersion", "1.0.0"},
        {"name", network_},
        {"plugins", json::array({{{"type", "bridge"},
                                  {"bridge", bridge_},
                                  {"isGateway", true},
                                  {"ipMasq", false},
                                  {"ipam",
                                   {{"type", "host-local"},
                                    {"ranges", json::array({json::array({{{"subnet", kSubnet}}})})},
                                    {"dataDir", tmp_.file("ipam")}}}},
                                 {{"type", "nsproxy"},
                                  {"socket", daemon_->socket_path()},
                                  {"listeners",
                                   json::array({listener(kListen, echo_->address(), "http")})}}})}};
    std::ofstream(node_.network_config_dir() + "/" + network_ + ".conflist") << conflist.dump(2);
  }

  // A one-file image: /bin/busybox and its applets as symlinks, imported offline.
  void import_image() {
    std::string rootfs = tmp_.file("rootfs");
    fs::create_directories(rootfs + "/bin");
    fs::copy_file(kBusybox, rootfs + "/bin/busybox");
    for (const char* applet : {"sh", "wget", "sleep", "cat", "test", "["}) {
      fs::create_symlink("busybox", rootfs + "/bin/" + applet);
    }
    ASSERT_TRUE(node_.import_rootfs(rootfs, kImage));
  }

  // The container's command: wait until the test creates gate/<name>, then exit 0.
  // Bounded (60 s, then exit 1), so containers of a test that was killed end anyway.
  std::string wait_for_gate(const std::string& name) const {
    const std::string gate = "/gate/" + name;
    return "i=0; while [ ! -e " + gate +
           " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
           "[ -e " +
           gate + " ]";
  }

  // `podman run -d --rm` of a container that runs until its gate opens; returns its id.
  std::string run_detached(const std::string& name) {
    auto r = podman({"run", "--detach", "--rm", "--name", name, "--network", network_,
                     "--cgroup-parent", node_.cgroup_parent(), "--volume", gate_dir_ + ":/gate",
                     kImage, "sh", "-c", wait_for_gate(name)});
    EXPECT_EQ(r.exit_code, 0) << "podman run -d: " << r.describe();
    std::string id = trim(r.out);
    if (auto nl = id.rfind('\n'); nl != std::string::npos) id = id.substr(nl + 1);
    EXPECT_TRUE(is_container_id(id)) << "podman run -d printed no container id: " << r.describe();
    return id;
  }

  // `nsproxyctl --socket S list --json`, as an operator would run it.
  json ctl_list() {
    auto r = run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "list", "--json"});
    EXPECT_EQ(r.exit_code, 0) << "nsproxyctl list --json: " << r.describe();
    json j = json::parse(r.out, nullptr, false);
    if (j.is_discarded() || !j.contains("registrations") || !j["registrations"].is_array()) {
      ADD_FAILURE() << "nsproxyctl list --json printed no registrations array: " << r.describe();
      return json::array();
    }
    return j["registrations"];
  }

  std::vector<json> ctl_registrations(const std::string& id) {
    std::vector<json> out;
    for (const auto& reg : ctl_list()) {
      if (reg.contains("attachment") && reg["attachment"].value("id", "") == id) out.push_back(reg);
    }
    return out;
  }

  // Polls until `id` has no registration (bounded); returns the registrations left.
  std::vector<json> wait_unregistered(const std::string& id, Millis timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto regs = ctl_registrations(id);
      if (regs.empty() || std::chrono::steady_clock::now() >= deadline) return regs;
      std::this_thread::sleep_for(100ms);
    }
  }

  // `podman exec ID wget -qO- http://127.0.0.1:8080/PATH` for each (id, path) at the
  // same time: the upstream's JSON answers, in order (null where there was none).
  std::vector<json> wget_inside(const std::vector<std::pair<std::string, std::string>>& calls) {
    std::vector<std::unique_ptr<Process>> procs;
    for (const auto& [id, path] : calls) {
      procs.push_back(std::make_unique<Process>(
          podman_argv({"exec", id, "wget", "-qO-", std::string("http://") + kListen + path}),
          podman_env()));
    }
    std::vector<json> out;
    for (size_t i = 0; i < procs.size(); ++i) {
      auto& p = *procs[i];
      auto code = p.wait(kPodmanTimeout);
      p.wait_output_closed(1000ms);
      EXPECT_EQ(code, std::optional<int>(0))
          << "wget inside " << calls[i].first << ": " << p.command_line() << "\nstdout: " << p.out()
          << "\nstderr: " << p.err();
      json j = json::parse(p.out(), nullptr, false);
      EXPECT_FALSE(j.is_discarded()) << "the upstream's answer is not JSON: " << p.out();
      out.push_back(j.is_discarded() ? json() : j);
    }
    return out;
  }

  bool container_exists(const std::string& id) {
    auto r = podman({"ps", "--all", "--quiet", "--no-trunc", "--filter", "id=" + id});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return r.out.find(id) != std::string::npos;
  }

  void expect_registration(const json& reg, const std::string& id) {
    const json att = reg.value("attachment", json::object());
    EXPECT_EQ(att.value("network", ""), network_) << reg.dump(2);
    EXPECT_EQ(att.value("id", ""), id) << reg.dump(2);
    EXPECT_EQ(att.value("ifname", ""), "eth0") << reg.dump(2);
    const json listeners = reg.value("listeners", json::array());
    ASSERT_EQ(listeners.size(), 1u) << reg.dump(2);
    EXPECT_EQ(listeners[0].value("listen", ""), kListen) << reg.dump(2);
    EXPECT_EQ(listeners[0].value("upstream", ""), echo_->address()) << reg.dump(2);
    EXPECT_EQ(listeners[0].value("mode", ""), "http") << reg.dump(2);
    EXPECT_TRUE(listeners[0].value("accepting", false)) << reg.dump(2);
  }

  // Helpers with the node's podman.
  ProcessResult podman(const std::vector<std::string>& args, Millis timeout = kPodmanTimeout) {
    return node_.podman(args, timeout);
  }
  std::vector<std::string> podman_argv(const std::vector<std::string>& args) const {
    return node_.podman_argv(args);
  }
  Env podman_env() const { return node_.podman_env(); }

  TempDir tmp_;
  PodmanNode node_{tmp_.path(), {NSPROXY_BUILD_DIR, kRefPlugins}};
  std::string network_, bridge_, gate_dir_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
};

// `podman run --rm` in the foreground: the container calls 127.0.0.1:8080 and prints
// the upstream's answer, then waits for a gate file from the test (a bind-mounted dir),
// so the registration can be looked at while it runs. When the gate opens it exits 0
// and podman removes it: the registration is gone when `podman run` returns.
TEST_F(PodmanTest, RunRmReachesUpstreamWithContainerIdThenUnregisters) {
  const std::string name = unique_name();
  const std::string cidfile = tmp_.file("cid");
  const std::string script =
      std::string("wget -qO- http://") + kListen + "/from-podman && echo && " + wait_for_gate(name);
  Process run_rm(podman_argv({"run", "--rm", "--cidfile", cidfile, "--name", name, "--network",
                              network_, "--cgroup-parent", node_.cgroup_parent(), "--volume",
                              gate_dir_ + ":/gate", kImage, "sh", "-c", script}),
                 podman_env());
  ASSERT_TRUE(run_rm.started()) << run_rm.start_error();
  auto line = run_rm.wait_for_line("X-Tenant-Id", kPodmanTimeout);
  ASSERT_TRUE(line) << "no answer from the upstream inside the container\nstdout: " << run_rm.out()
                    << "\nstderr: " << run_rm.err();

  const std::string id = trim(read_file(cidfile));
  ASSERT_TRUE(is_container_id(id)) << "cidfile " << cidfile << ": '" << id << "'";
  json echo = json::parse(*line, nullptr, false);
  ASSERT_FALSE(echo.is_discarded()) << *line;
  EXPECT_EQ(echo.value("path", ""), "/from-podman") << *line;
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{id})
      << "the upstream must see podman's full container id\n"
      << *line;
  // podman passes the container name as K8S_POD_NAME in CNI_ARGS.
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Label-pod-name"), std::vector<std::string>{name}) << *line;

  // While it runs: registered under podman's network name, container id and eth0.
  auto regs = ctl_registrations(id);
  ASSERT_EQ(regs.size(), 1u) << ctl_list().dump(2);
  expect_registration(regs[0], id);
  EXPECT_EQ(regs[0].value("labels", json::object()).value("pod-name", ""), name) << regs[0].dump(2);

  // Open the gate: the container exits 0 and `podman run --rm` removes it (CNI DEL).
  tmp_.write("gate/" + name, "");
  auto code = run_rm.wait(kPodmanTimeout);
  ASSERT_TRUE(code) << "podman run --rm did not return";
  EXPECT_EQ(*code, 0) << "stderr: " << run_rm.err();
  EXPECT_FALSE(container_exists(id)) << "podman run --rm left the container";
  EXPECT_TRUE(ctl_registrations(id).empty())
      << "registration still listed after podman removed the container:\n"
      << ctl_list().dump(2);
}

// Two containers at once on the same network, both with 127.0.0.1:8080: each reaches
// the upstream under its own id. `podman rm -f` of one unregisters it only (CNI DEL from
// the rm command); the other stays registered and served. (TearDown's `podman rm --all`
// then removes it and checks that no registration is left.)
TEST_F(PodmanTest, TwoContainersSameListenAddressEachGetTheirOwnId) {
  const std::string name1 = unique_name(), name2 = unique_name();
  const std::string id1 = run_detached(name1);
  ASSERT_FALSE(HasFailure());
  const std::string id2 = run_detached(name2);
  ASSERT_FALSE(HasFailure());
  ASSERT_NE(id1, id2);

  auto regs1 = ctl_registrations(id1), regs2 = ctl_registrations(id2);
  ASSERT_EQ(regs1.size(), 1u) << ctl_list().dump(2);
  ASSERT_EQ(regs2.size(), 1u) << ctl_list().dump(2);
  expect_registration(regs1[0], id1);
  expect_registration(regs2[0], id2);
  EXPECT_NE(regs1[0].value("netns", ""), regs2[0].value("netns", ""));

  // The bridge plugin ran first in the chain: each container has its own address.
  auto ips = podman({"inspect", "--format",
                     "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", id1, id2});
  ASSERT_EQ(ips.exit_code, 0) << ips.describe();
  std::stringstream lines(ips.out);
  std::string ip1, ip2;
  std::getline(lines, ip1);
  std::getline(lines, ip2);
  EXPECT_EQ(ip1.rfind("10.213.8.", 0), 0u) << ips.describe();
  EXPECT_EQ(ip2.rfind("10.213.8.", 0), 0u) << ips.describe();
  EXPECT_NE(ip1, ip2) << ips.describe();

  // Both call 127.0.0.1:8080 at the same time.
  auto answers = wget_inside({{id1, "/one"}, {id2, "/two"}});
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].value("path", ""), "/one") << answers[0].dump();
  EXPECT_EQ(answers[1].value("path", ""), "/two") << answers[1].dump();
  EXPECT_EQ(echo_headers(answers[0], "X-Tenant-Id"), std::vector<std::string>{id1})
      << answers[0].dump();
  EXPECT_EQ(echo_headers(answers[1], "X-Tenant-Id"), std::vector<std::string>{id2})
      << answers[1].dump();
  EXPECT_EQ(echo_headers(answers[0], "X-Tenant-Label-pod-name"), std::vector<std::string>{name1});
  EXPECT_EQ(echo_headers(answers[1], "X-Tenant-Label-pod-name"), std::vector<std::string>{name2});

  // podman rm -f: only that container's registration goes.
  auto rm = podman({"rm", "--force", "--time", "0", id1});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_TRUE(ctl_registrations(id1).empty()) << ctl_list().dump(2);
  ASSERT_EQ(ctl_registrations(id2).size(), 1u) << ctl_list().dump(2);
  auto again = wget_inside({{id2, "/still-there"}});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(echo_headers(again[0], "X-Tenant-Id"), std::vector<std::string>{id2})
      << again[0].dump();
}

// A detached `--rm` container that exits on its own: conmon starts `podman container
// cleanup --rm`, which removes it and runs CNI DEL with the same configuration (conmon
// passes CONTAINERS_CONF along, so the cleanup finds the plugin in the build dir).
TEST_F(PodmanTest, DetachedRmContainerUnregistersWhenItExits) {
  const std::string name = unique_name();
  const std::string id = run_detached(name);
  ASSERT_FALSE(HasFailure());
  auto regs = ctl_registrations(id);
  ASSERT_EQ(regs.size(), 1u) << ctl_list().dump(2);
  expect_registration(regs[0], id);

  tmp_.write("gate/" + name, "");
  auto left = wait_unregistered(id, 15000ms);
  EXPECT_TRUE(left.empty()) << "registration still listed 15 s after a --rm container exited:\n"
                            << ctl_list().dump(2);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (container_exists(id) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(container_exists(id)) << "the --rm container was not removed after it exited";
}

}  // namespace
}  // namespace nspit
