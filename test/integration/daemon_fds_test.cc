// What a tenant costs the daemon in file descriptors, and the limit it runs under: one fd
// per listener (the listening socket keeps its namespace alive, so the daemon holds no
// namespace fd), and nsproxyd raising RLIMIT_NOFILE as far as it may at start.
#include <linux/capability.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

// The targets of a process's open fds (readlink of /proc/PID/fd/*).
std::vector<std::string> fd_targets(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code rec;
    auto target = std::filesystem::read_symlink(e.path(), rec);
    if (!rec) out.push_back(target.string());
  }
  return out;
}

// The number of fds of pid once no control connection of a finished call is still open
// (the daemon closes it when it sees the client's end): the same count 200 ms apart.
size_t settled_fd_count(pid_t pid) {
  size_t last = fd_targets(pid).size();
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(200ms);
    size_t now = fd_targets(pid).size();
    if (now == last) return now;
    last = now;
  }
  return last;
}

size_t count_naming(const std::vector<std::string>& targets, const std::string& what) {
  size_t n = 0;
  for (const auto& t : targets) n += t == what ? 1 : 0;
  return n;
}

// Soft and hard "Max open files" of /proc/PID/limits ({0, 0} when unreadable).
std::pair<unsigned long long, unsigned long long> nofile_limits(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream f(line.substr(std::string("Max open files").size()));
    unsigned long long soft = 0, hard = 0;
    f >> soft >> hard;
    return {soft, hard};
  }
  return {0, 0};
}

bool have_cap_sys_resource() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    unsigned long long eff = std::stoull(line.substr(7), nullptr, 16);
    return (eff >> CAP_SYS_RESOURCE) & 1;
  }
  return false;
}

unsigned long long read_nr_open() {
  std::ifstream in("/proc/sys/fs/nr_open");
  unsigned long long v = 0;
  in >> v;
  return v;
}

std::string ns_link(const nsproxy::NetnsId& id) {
  return "net:[" + std::to_string(static_cast<unsigned long long>(id.ino)) + "]";
}

TEST_F(LifecycleTest, ATenantCostsOneFdPerListenerAndTheDaemonHoldsNoNamespaceFd) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  const size_t before = settled_fd_count(d.pid());
  std::string id = unique_name();
  ASSERT_TRUE(
      register_tenant(d, ns.path(), id,
                      {.listeners = {{"127.0.0.1:8080", echo.address(), nsproxy::Mode::Tcp},
                                     {"127.0.0.1:8081", echo.address(), nsproxy::Mode::Tcp}}}));
  EXPECT_EQ(settled_fd_count(d.pid()), before + 2) << "two listeners should cost two fds";
  auto during = fd_targets(d.pid());
  EXPECT_EQ(count_naming(during, ns_link(ns.identity())), 0u)
      << "the daemon holds an fd of the tenant's namespace";
  // The namespace is alive and served through both listeners nonetheless.
  for (const char* listen : {"127.0.0.1:8080", "127.0.0.1:8081"}) {
    auto got = roundtrip_in_netns(ns.path(), listen, "hello", 2000ms);
    ASSERT_TRUE(got.ok()) << listen << ": " << got.error().message << "\n" << d.log();
    EXPECT_EQ(*got, "hello") << listen;
  }

  nsproxy::Request del;
  del.op = nsproxy::Op::Del;
  del.attachment.id = id;
  auto r = d.call(del);
  ASSERT_TRUE(r.ok() && r->ok) << (r.ok() ? r->error.message : r.error().message);
  EXPECT_EQ(settled_fd_count(d.pid()), before) << "fds after DEL vs before ADD";
}

// At a limit of L fds the daemon registers about L tenants of one listener, not L / 2,
// and the first one that does not fit gets an answer naming the limit.
TEST_F(LifecycleTest, TenantsFillTheFdLimitOneFdEach) {
  const int kLimit = 64;
  Daemon d(tmp_.path(),
           {"prlimit", "--nofile=" + std::to_string(kLimit) + ":" + std::to_string(kLimit)});
  ASSERT_TRUE(d.start());
  const size_t base = settled_fd_count(d.pid());
  std::vector<std::unique_ptr<Netns>> tenants;
  int registered = 0;
  std::string refusal;
  for (int i = 0; i < kLimit; ++i) {
    tenants.push_back(std::make_unique<Netns>());
    ASSERT_TRUE(tenants.back()->ok()) << tenants.back()->error();
    std::optional<nsproxy::Reply> reply;
    auto ok = register_tenant(d, tenants.back()->path(), unique_name(), {.upstream = "127.0.0.1:9"},
                              &reply);
    if (!ok) {
      refusal = reply ? reply->error.message : std::string(ok.message());
      break;
    }
    ++registered;
  }
  // An ADD needs two fds for a moment (the namespace it received, the new socket).
  EXPECT_GE(registered, kLimit - static_cast<int>(base) - 2) << "base fds " << base << "\n"
                                                             << d.log().substr(0, 4000);
  EXPECT_NE(refusal.find("file descriptors"), std::string::npos) << refusal;
  // The daemon goes on serving the control socket.
  auto status = d.call(status_request());
  ASSERT_TRUE(status.ok() && status->ok) << d.log().substr(0, 4000);
  EXPECT_EQ(status->data.value("registrations", -1), registered);
}

TEST_F(DaemonTest, RaisesItsFdLimitAsFarAsItMayAtStart) {
  rlimit own{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
  ASSERT_GT(own.rlim_max, 256u);
  // Started with a low soft limit, as many service managers and shells hand it out.
  Daemon d(tmp_.path(), {"prlimit", "--nofile=256:" + std::to_string(own.rlim_max)});
  ASSERT_TRUE(d.start());
  auto [soft, hard] = nofile_limits(d.pid());
  EXPECT_EQ(soft, hard) << "the soft limit was not raised to the hard one";
  if (have_cap_sys_resource()) {
    // As root with CAP_SYS_RESOURCE: above the inherited hard limit, up to fs.nr_open.
    EXPECT_EQ(hard, read_nr_open());
  } else {
    EXPECT_EQ(hard, static_cast<unsigned long long>(own.rlim_max));
  }
  EXPECT_NE(d.log().find("file descriptor limit " + std::to_string(soft)), std::string::npos)
      << d.log();
}

}  // namespace
}  // namespace nspit
