// nsproxyd under a supervisor that speaks systemd's protocols. PID 1 here is not systemd,
// so the tests play its part with the real protocols: a NOTIFY_SOCKET datagram socket of
// their own (READY=1, STATUS=, STOPPING=1, MAINPID=), listening control sockets passed
// with LISTEN_FDS/LISTEN_PID (by the test itself and by systemd's own
// systemd-socket-activate), and the --takeover --detach path of the unit's ExecReload.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using Clock = std::chrono::steady_clock;

// The supervisor's end of NOTIFY_SOCKET: a datagram socket bound in the test's temp dir.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      error_ = std::string("bind ") + path + ": " + std::strerror(errno);
      fd_.reset();
    }
  }
  bool ok() const { return static_cast<bool>(fd_); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

  // The first message (from now on, or already received but not yet consumed) holding a
  // line that starts with `prefix`; nullopt on timeout.
  std::optional<std::string> wait_for(std::string_view prefix, Millis timeout = 10000ms) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      for (size_t i = 0; i < pending_.size(); ++i) {
        if (has_line(pending_[i], prefix)) {
          std::string m = pending_[i];
          pending_.erase(pending_.begin(), pending_.begin() + static_cast<long>(i) + 1);
          return m;
        }
      }
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
      if (n > 0) {
        pending_.emplace_back(buf, static_cast<size_t>(n));
        all_.emplace_back(buf, static_cast<size_t>(n));
      }
    }
  }
  // Every message received so far, one per line, for assertion messages.
  std::string received() const {
    std::string s;
    for (const auto& m : all_) s += "[" + m + "] ";
    return s;
  }
  bool any_line(std::string_view prefix) const {
    for (const auto& m : all_) {
      if (has_line(m, prefix)) return true;
    }
    return false;
  }
  // Value of "KEY=value" in a message, or "".
  static std::string value(const std::string& msg, std::string_view key) {
    size_t pos = 0;
    while (pos < msg.size()) {
      size_t end = msg.find('\n', pos);
      if (end == std::string::npos) end = msg.size();
      std::string_view line(msg.data() + pos, end - pos);
      if (line.size() > key.size() && line.substr(0, key.size()) == key &&
          line[key.size()] == '=') {
        return std::string(line.substr(key.size() + 1));
      }
      pos = end + 1;
    }
    return "";
  }

 private:
  static bool has_line(const std::string& msg, std::string_view prefix) {
    size_t pos = 0;
    while (pos <= msg.size()) {
      if (msg.compare(pos, prefix.size(), prefix) == 0) return true;
      size_t nl = msg.find('\n', pos);
      if (nl == std::string::npos) return false;
      pos = nl + 1;
    }
    return false;
  }

  std::string path_;
  std::string error_;
  nsproxy::UniqueFd fd_;
  std::vector<std::string> pending_;
  std::vector<std::string> all_;
};

// A listening SOCK_SEQPACKET socket at path, as systemd's nsproxyd.socket creates it.
// Not close-on-exec: the daemon's wrapper shell passes it on as fd 3.
nsproxy::UniqueFd listening_control_socket(const std::string& path) {
  nsproxy::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 128) != 0) {
    ADD_FAILURE() << "control socket " << path << ": " << std::strerror(errno);
    fd.reset();
  }
  ::chmod(path.c_str(), 0600);
  return fd;
}

// Runs nsproxyd with `fd` as its fd 3 and LISTEN_FDS=1, LISTEN_PID=its own pid: exactly
// what systemd does for a service with a .socket unit.
std::vector<std::string> socket_activation_prefix(int fd) {
  std::string move_to_3 =
      fd == 3 ? "" : "exec 3<&" + std::to_string(fd) + " " + std::to_string(fd) + "<&-; ";
  return {"bash", "-c", move_to_3 + "export LISTEN_FDS=1 LISTEN_PID=$$; exec \"$@\"",
          "nsproxyd-under-test"};
}

// The daemon's stderr arrives through a reader thread: wait (bounded) for a line.
bool log_has(const Daemon& d, const std::string& needle, Millis timeout = 3000ms) {
  auto deadline = Clock::now() + timeout;
  while (d.log().find(needle) == std::string::npos) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool wait_gone(pid_t pid, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (!process_gone(pid)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// One request from inside the namespace through the tenant's http listener.
nsproxy::Result<HttpResponse> get_from(const Netns& ns, const std::string& path = "/") {
  auto c = HttpConn::open(ns.path(), "127.0.0.1:8080");
  if (!c.ok()) return nsproxy::make_error(nsproxy::Code::kUnreachable, c.error());
  return c.request(http_request("GET", path));
}

class SystemdTest : public HttpTest {};

// READY=1 must wait for the restore. Restoring one registration is too quick to tell a
// READY=1 sent before it from one sent after; kRestored of them take long enough, and the
// test connects to every restored listener the moment READY=1 arrives, the last restored
// (registrations are restored in id order) first.
TEST_F(SystemdTest, ReadyIsSentOnlyOnceRestoredRegistrationsServe) {
  constexpr int kRestored = 200;
  constexpr int kFirstPort = 31000;
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  auto id = [](int i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "restored-%03d", i);  // id order is restore order
    return std::string(buf);
  };
  auto listen = [&](int i) { return "127.0.0.1:" + std::to_string(kFirstPort + i); };
  {
    Daemon first(tmp_.path());
    ASSERT_TRUE(first.start());
    for (int i = 0; i < kRestored; ++i) {
      ASSERT_TRUE(register_tenant(first, ns.path(), id(i),
                                  {.listen = listen(i), .upstream = upstream.address()}));
    }
    ASSERT_EQ(first.stop(), 0);
  }
  // Sockets inside the tenant namespace, made beforehand: at READY=1 only connects remain.
  std::vector<nsproxy::UniqueFd> clients;
  for (int i = 0; i < kRestored; ++i) {
    auto fd = socket_in_netns(ns.path(), AF_INET, SOCK_STREAM);
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    clients.push_back(std::move(*fd));
  }

  NotifySocket notify(tmp_.file("notify.sock"));
  ASSERT_TRUE(notify.ok()) << notify.error();
  Daemon d(tmp_.path());  // for its paths: started here without polling its socket
  Process p({binary("nsproxyd"), "--socket", d.socket_path(), "--state-dir", d.state_dir()},
            {{"NOTIFY_SOCKET", notify.path()}});
  ASSERT_TRUE(p.started()) << p.start_error();
  auto ready = notify.wait_for("READY=1");
  ASSERT_TRUE(ready.has_value()) << "no READY=1 within 10 s; got " << notify.received() << "\n"
                                 << p.err();
  // At READY=1 every restored tenant's listener accepts.
  std::vector<std::string> refused;
  for (int i = kRestored - 1; i >= 0; --i) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(kFirstPort + i));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(clients[i].get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      refused.push_back(id(i) + ": " + std::strerror(errno));
    }
  }
  EXPECT_TRUE(refused.empty()) << refused.size() << " of " << kRestored
                               << " restored listeners did not accept at READY=1, e.g. "
                               << refused.front() << "\n"
                               << p.err();
  // ...and serves: a request on the first and the last restored listener.
  for (int i : {0, kRestored - 1}) {
    auto c = HttpConn::open(ns.path(), listen(i));
    ASSERT_TRUE(c.ok()) << c.error();
    auto r = c.request(http_request("GET", "/"));
    ASSERT_TRUE(r.ok()) << r.error().message << "\n" << p.err();
    EXPECT_EQ(r->status, 200) << r->describe();
    EXPECT_EQ(echo_headers(r->json(), "X-Tenant-Id"), std::vector<std::string>{id(i)});
  }
  nsproxy::Request status;
  status.op = nsproxy::Op::Status;
  auto reply = nsproxy::call_daemon(d.socket_path(), status, -1, 2000ms);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_EQ(reply->data.value("registrations", 0), kRestored) << reply->data.dump();
  // The daemon names itself as the main process, and its STATUS= line, sent before
  // READY=1, counts every restored registration.
  EXPECT_EQ(NotifySocket::value(*ready, "MAINPID"), std::to_string(p.pid())) << *ready;
  const std::string full = "STATUS=" + std::to_string(kRestored) + " registrations, " +
                           std::to_string(kRestored) + " listeners";
  EXPECT_TRUE(notify.any_line(full)) << notify.received();
  const std::string restored_line = "restored " + std::to_string(kRestored) + " registration";
  for (auto deadline = Clock::now() + 3s;
       p.err().find(restored_line) == std::string::npos && Clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);  // stderr arrives through a reader thread
  }
  EXPECT_NE(p.err().find(restored_line), std::string::npos) << p.err();
  EXPECT_FALSE(notify.any_line("STOPPING=1")) << notify.received();

  // A new registration shows in STATUS= within the status interval.
  Netns ns2;
  ASSERT_TRUE(ns2.ok()) << ns2.error();
  ASSERT_TRUE(register_tenant(d, ns2.path(), "second", {.upstream = upstream.address()}));
  EXPECT_TRUE(notify.wait_for("STATUS=" + std::to_string(kRestored + 1) + " registrations", 5000ms)
                  .has_value())
      << notify.received();

  p.signal(SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 5000ms).has_value()) << notify.received();
  auto code = p.wait(5000ms);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << p.err();
}

TEST_F(SystemdTest, AnAddSentWhileNoDaemonRunsCompletesOnceThePassedSocketIsServed) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string sock = tmp_.file("nsproxyd.sock");
  nsproxy::UniqueFd listening = listening_control_socket(sock);
  ASSERT_TRUE(listening);

  // A daemon serves the passed socket, then stops (a restart): the socket and its file
  // stay, as systemd keeps them.
  {
    Daemon first(tmp_.path(), socket_activation_prefix(listening.get()));
    ASSERT_TRUE(first.start());
    EXPECT_TRUE(log_has(first, "passed by socket activation")) << first.log();
    ASSERT_EQ(first.stop(), 0);
  }
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0) << "the daemon removed the socket file systemd owns";

  // ADD while no daemon runs: it waits in the backlog instead of failing with code 11.
  nlohmann::json conf =
      plugin_config("sdnet", sock,
                    nlohmann::json::array({listener("127.0.0.1:8080", upstream.address(), "http")}),
                    /*timeout_ms=*/15000);
  Env env = cni_env("ADD", "ctr-activated", ns.path());
  std::vector<std::string> argv = {binary("nsproxy")};
  Process plugin(argv, env, conf.dump());
  ASSERT_TRUE(plugin.started()) << plugin.start_error();
  std::this_thread::sleep_for(700ms);
  EXPECT_TRUE(plugin.running()) << "the ADD did not wait for the daemon: " << plugin.out()
                                << plugin.err();

  Daemon second(tmp_.path(), socket_activation_prefix(listening.get()));
  ASSERT_TRUE(second.start());
  auto code = plugin.wait(15000ms);
  ASSERT_TRUE(code.has_value()) << "the ADD did not finish once the daemon served";
  EXPECT_EQ(*code, 0) << plugin.out() << plugin.err();
  auto r = get_from(ns);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(echo_headers(r->json(), "X-Tenant-Id"), std::vector<std::string>{"ctr-activated"});
}

// systemctl reload with nsproxyd.socket enabled: the daemon that took over a passed
// socket must not remove its file when it stops either (systemd still holds the socket;
// without the file every ADD would fail with code 11 until the socket unit restarts).
TEST_F(SystemdTest, ATakenOverPassedSocketKeepsItsFileWhenTheNewDaemonStops) {
  const std::string sock = tmp_.file("nsproxyd.sock");
  nsproxy::UniqueFd listening = listening_control_socket(sock);
  ASSERT_TRUE(listening);
  Daemon old_daemon(tmp_.path(), socket_activation_prefix(listening.get()));
  ASSERT_TRUE(old_daemon.start());
  Daemon new_daemon(tmp_.path());
  new_daemon.set_extra_args({"--takeover"});
  ASSERT_TRUE(new_daemon.start());
  auto code = old_daemon.process()->wait(10000ms);
  ASSERT_TRUE(code.has_value()) << old_daemon.log();
  EXPECT_EQ(*code, 0);
  old_daemon.stop();
  ASSERT_EQ(new_daemon.stop(), 0);
  struct stat st {};
  EXPECT_EQ(::stat(sock.c_str(), &st), 0) << "the socket file systemd owns was removed";
  // And the socket still works: the next daemon it is passed to serves it.
  Daemon next(tmp_.path(), socket_activation_prefix(listening.get()));
  ASSERT_TRUE(next.start());
}

TEST_F(SystemdTest, SystemdSocketActivateStartsTheDaemonOnTheFirstAdd) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  const std::string sock = tmp_.file("nsproxyd.sock");
  // systemd's own tool: listens, and on the first connection execs the daemon with
  // LISTEN_FDS=1 and LISTEN_PID set.
  Daemon d(tmp_.path(), {"systemd-socket-activate", "--seqpacket", "-l", sock});
  ASSERT_TRUE(d.start(10000ms));
  EXPECT_TRUE(log_has(d, "passed by socket activation")) << d.log();
  auto add = run_plugin(
      cni_env("ADD", "ctr-sd", ns.path()),
      plugin_config("sdnet", sock,
                    nlohmann::json::array({listener("127.0.0.1:8080", upstream.address(), "http")}))
          .dump());
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto r = get_from(ns);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200) << r->describe();
}

TEST_F(SystemdTest, APassedSocketOfTheWrongKindIsRefusedWithAClearError) {
  const std::string sock = tmp_.file("nsproxyd.sock");
  // A stream socket where the daemon expects a seqpacket one (a wrong .socket unit).
  nsproxy::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd.get(), 8), 0);
  auto prefix = socket_activation_prefix(fd.get());
  std::vector<std::string> argv = prefix;
  argv.insert(argv.end(),
              {binary("nsproxyd"), "--socket", sock, "--state-dir", tmp_.file("state")});
  auto r = run(argv, 10000ms);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("is not a listening AF_UNIX SOCK_SEQPACKET socket bound to " + sock),
            std::string::npos)
      << r.describe();
}

TEST_F(SystemdTest, ReloadTakesOverDetachedAndAnnouncesTheNewMainPid) {
  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  NotifySocket notify(tmp_.file("notify.sock"));
  ASSERT_TRUE(notify.ok()) << notify.error();

  Daemon old_daemon(tmp_.path());
  old_daemon.set_env({{"NOTIFY_SOCKET", notify.path()}});
  ASSERT_TRUE(old_daemon.start());
  auto first_ready = notify.wait_for("READY=1");
  ASSERT_TRUE(first_ready.has_value()) << notify.received();
  EXPECT_EQ(NotifySocket::value(*first_ready, "MAINPID"), std::to_string(old_daemon.pid()));
  ASSERT_TRUE(register_tenant(old_daemon, ns.path(), "t-reload", {.upstream = upstream.address()}));

  // What the unit's ExecReload runs. It returns once the new daemon serves.
  auto reload = run({binary("nsproxyd"), "--takeover", "--detach", "--socket",
                     old_daemon.socket_path(), "--state-dir", old_daemon.state_dir()},
                    20000ms, {{"NOTIFY_SOCKET", notify.path()}});
  ASSERT_EQ(reload.exit_code, 0) << reload.describe();
  auto ready = notify.wait_for("READY=1", 5000ms);
  ASSERT_TRUE(ready.has_value()) << notify.received();
  std::string pid_text = NotifySocket::value(*ready, "MAINPID");
  ASSERT_FALSE(pid_text.empty()) << *ready;
  pid_t new_pid = static_cast<pid_t>(std::stol(pid_text));
  EXPECT_NE(new_pid, old_daemon.pid());
  EXPECT_FALSE(process_gone(new_pid)) << "the announced main pid does not run";

  // The new daemon serves the tenant; the old one drained and exited 0 without telling
  // systemd it stops (it is no longer the main process).
  auto r = get_from(ns);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(echo_headers(r->json(), "X-Tenant-Id"), std::vector<std::string>{"t-reload"});
  auto code = old_daemon.process()->wait(10000ms);
  ASSERT_TRUE(code.has_value()) << "the old daemon did not exit after the handover";
  EXPECT_EQ(*code, 0) << old_daemon.log();
  old_daemon.stop();
  EXPECT_FALSE(notify.any_line("STOPPING=1")) << notify.received();

  ::kill(new_pid, SIGTERM);
  EXPECT_TRUE(notify.wait_for("STOPPING=1", 5000ms).has_value()) << notify.received();
  EXPECT_TRUE(wait_gone(new_pid, 5000ms)) << "the detached daemon did not stop on SIGTERM";
}

TEST_F(SystemdTest, DetachReportsAChildThatCouldNotStart) {
  Daemon running(tmp_.path());
  ASSERT_TRUE(running.start());
  // Without --takeover a second daemon on the same socket is refused; --detach must say
  // so with a non-zero exit, not report success.
  auto r = run({binary("nsproxyd"), "--detach", "--socket", running.socket_path(), "--state-dir",
                tmp_.file("other-state")},
               10000ms);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("another nsproxyd is already serving on"), std::string::npos)
      << r.describe();
}

}  // namespace
}  // namespace nspit
