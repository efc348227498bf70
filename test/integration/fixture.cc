#include "fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "address.h"

extern char** environ;

namespace nspit {
namespace {

using Clock = std::chrono::steady_clock;
using nsproxy::Error;
using nsproxy::make_error;
using nsproxy::Result;
using nsproxy::Status;
using nsproxy::UniqueFd;

// Writes to a peer that went away must return EPIPE, not kill the test binary.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

std::atomic<int> g_counter{0};

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

std::string tail(const std::string& s, size_t n = 6000) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Names and paths

std::string unique_name() {
  return "nspit-" + std::to_string(::getpid()) + "-" + std::to_string(++g_counter);
}

std::string short_token() {
  static const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string pid;
  for (int p = ::getpid() % 1000000; p > 0; p /= 36) pid.insert(pid.begin(), digits[p % 36]);
  return pid + "x" + std::to_string(++g_counter);
}

std::string binary(std::string_view name) {
  return std::string(NSPROXY_BUILD_DIR) + "/" + std::string(name);
}

::testing::AssertionResult binaries_exist(const std::vector<std::string>& names) {
  std::string missing;
  for (const auto& n : names) {
    if (::access(binary(n).c_str(), X_OK) != 0) missing += " " + binary(n);
  }
  if (missing.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "programs not built:" << missing;
}

// ---------------------------------------------------------------------------------------
// Processes

std::string ProcessResult::describe() const {
  std::string s = "exit code " + std::to_string(exit_code);
  if (timed_out) s += " (timed out, killed)";
  s += ", " + std::to_string(elapsed.count()) + " ms\n--- stdout ---\n" + tail(out) +
       "\n--- stderr ---\n" + tail(err);
  return s;
}

Process::Process(std::vector<std::string> argv, const Env& env, std::string stdin_data)
    : argv_(std::move(argv)), stdin_data_(std::move(stdin_data)) {
  // Everything the child needs is prepared before fork: no allocation after it.
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) {
    if (v) {
      vars[k] = *v;
    } else {
      vars.erase(k);
    }
  }
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : vars) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (auto& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  if (argv_.empty()) {
    start_error_ = "empty argv";
    return;
  }

  int in[2], out[2], err[2], exec_err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0 ||
      ::pipe2(exec_err, O_CLOEXEC) != 0) {
    start_error_ = "pipe2: " + errno_text(errno);
    return;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    start_error_ = "fork: " + errno_text(errno);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1], exec_err[0], exec_err[1]}) {
      ::close(fd);
    }
    return;
  }
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvpe(args[0], args.data(), envp.data());
    int e = errno;
    (void)!::write(exec_err[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::close(exec_err[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_err[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(exec_err[0]);
  pid_ = pid;
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    start_error_ = "exec " + argv_[0] + ": " + errno_text(child_errno);
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    reap(true);
    pid_ = -1;
    return;
  }
  for (int fd : {in[1], out[0], err[0]}) ::fcntl(fd, F_SETFL, O_NONBLOCK);
  io_ = std::thread([this, a = in[1], b = out[0], c = err[0]] { io_loop(a, b, c); });
}

Process::~Process() {
  if (started() && !exit_code_) stop(2000ms);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_io_ = true;
  }
  if (io_.joinable()) io_.join();
}

std::string Process::command_line() const {
  std::string s;
  for (const auto& a : argv_) s += (s.empty() ? "" : " ") + a;
  return s;
}

void Process::io_loop(int in_fd, int out_fd, int err_fd) {
  size_t written = 0;
  if (stdin_data_.empty()) {
    ::close(in_fd);
    in_fd = -1;
  }
  char buf[16384];
  for (;;) {
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping = stop_io_;
    }
    pollfd fds[3] = {{in_fd, POLLOUT, 0}, {out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    if (out_fd < 0 && err_fd < 0) break;
    ::poll(fds, 3, stopping ? 0 : 50);
    if (in_fd >= 0 && fds[0].revents) {
      ssize_t n = ::write(in_fd, stdin_data_.data() + written, stdin_data_.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data_.size()) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
    bool progressed = false;
    for (int i : {1, 2}) {
      int& fd = i == 1 ? out_fd : err_fd;
      if (fd < 0 || !fds[i].revents) continue;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (n > 0) {
        (i == 1 ? out_ : err_).append(buf, static_cast<size_t>(n));
        progressed = true;
      } else {
        ::close(fd);
        fd = -1;
        (i == 1 ? out_closed_ : err_closed_) = true;
      }
      cv_.notify_all();
    }
    if (stopping && !progressed) break;
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) ::close(fd);
  }
  std::lock_guard<std::mutex> lock(mu_);
  out_closed_ = err_closed_ = true;
  cv_.notify_all();
}

bool Process::reap(bool block) {
  if (exit_code_) return true;
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return true;
}

std::optional<std::string> Process::wait_for_line(std::string_view needle, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    size_t start = 0;
    for (size_t nl; (nl = out_.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string line = out_.substr(start, nl - start);
      if (line.find(needle) != std::string::npos) return line;
    }
    if (out_closed_) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
      return std::nullopt;
    }
  }
}

std::optional<int> Process::wait(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (reap(false)) return exit_code_;
    if (!started() || Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(2ms);
  }
}

bool Process::running() {
  return started() && !reap(false);
}

int Process::stop(Millis grace) {
  if (!started()) return -1;
  if (!reap(false)) {
    ::kill(pid_, SIGTERM);
    if (!wait(grace)) {
      ::kill(pid_, SIGKILL);
      reap(true);
    }
  }
  return *exit_code_;
}

void Process::signal(int sig) {
  if (started() && !reap(false)) ::kill(pid_, sig);
}

bool Process::wait_output_closed(Millis timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return out_closed_ && err_closed_; });
}

std::string Process::out() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_;
}

std::string Process::err() const {
  std::lock_guard<std::mutex> lock(mu_);
  return err_;
}

ProcessResult run(const std::vector<std::string>& argv, Millis timeout, const Env& env,
                  const std::string& stdin_data) {
  ProcessResult r;
  auto t0 = Clock::now();
  Process p(argv, env, stdin_data);
  if (!p.started()) {
    r.err = p.start_error();
    return r;
  }
  auto code = p.wait(timeout);
  r.elapsed = std::chrono::duration_cast<Millis>(Clock::now() - t0);
  if (!code) {
    r.timed_out = true;
    code = p.stop(200ms);
  }
  r.exit_code = *code;
  // Output is complete once the pipes report EOF (bounded, in case a grandchild
  // still holds them).
  p.wait_output_closed(1000ms);
  r.out = p.out();
  r.err = p.err();
  return r;
}

ProcessResult run_shell(const std::string& command, Millis timeout) {
  return run({"sh", "-c", command}, timeout);
}

// ---------------------------------------------------------------------------------------
// Files and namespaces

TempDir::TempDir() {
  std::string tmpl = "/tmp/nspit-" + std::to_string(::getpid()) + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << errno_text(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write(std::string_view name, std::string_view content) const {
  std::string p = file(name);
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << content;
  if (!f) ADD_FAILURE() << "cannot write " << p;
  return p;
}

Netns::Netns(bool lo_up) : name_(unique_name()) {
  auto r = run({"ip", "netns", "add", name_});
  if (r.exit_code != 0) {
    error_ = "ip netns add " + name_ + ": " + r.describe();
    removed_ = true;
    return;
  }
  if (lo_up) {
    auto up = run({"ip", "-n", name_, "link", "set", "lo", "up"});
    if (up.exit_code != 0) error_ = "ip link set lo up in " + name_ + ": " + up.describe();
  }
}

Netns::~Netns() {
  if (!removed_) {
    auto r = run({"ip", "netns", "del", name_});
    if (r.exit_code != 0) ADD_FAILURE() << "ip netns del " << name_ << ": " << r.describe();
  }
}

nsproxy::NetnsId Netns::identity() const {
  auto fd = nsproxy::open_netns(path());
  if (!fd) {
    ADD_FAILURE() << "open_netns " << path() << ": " << fd.error().message;
    return {};
  }
  auto id = nsproxy::netns_identity(fd->get());
  if (!id) {
    ADD_FAILURE() << "netns_identity " << path() << ": " << id.error().message;
    return {};
  }
  return *id;
}

ProcessResult Netns::exec(const std::string& command, Millis timeout) const {
  return run({"ip", "netns", "exec", name_, "sh", "-c", command}, timeout);
}

::testing::AssertionResult Netns::add_interface(const std::string& ifname,
                                                const std::string& cidr) const {
  if (run({"ip", "-n", name_, "link", "add", ifname, "type", "dummy"}).exit_code != 0) {
    auto veth = run(
        {"ip", "-n", name_, "link", "add", ifname, "type", "veth", "peer", "name", ifname + "p"});
    if (veth.exit_code != 0) {
      return ::testing::AssertionFailure()
             << "neither a dummy nor a veth interface could be created in " << name_ << ": "
             << veth.describe();
    }
    run({"ip", "-n", name_, "link", "set", ifname + "p", "up"});
  }
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"ip", "-n", name_, "addr", "add", cidr, "dev", ifname},
           {"ip", "-n", name_, "link", "set", ifname, "up"}}) {
    auto r = run(argv);
    if (r.exit_code != 0) {
      std::string cmd;
      for (const auto& a : argv) cmd += a + " ";
      return ::testing::AssertionFailure() << cmd << ": " << r.describe();
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Netns::remove() {
  if (removed_) return ::testing::AssertionSuccess();
  auto r = run({"ip", "netns", "del", name_});
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure() << "ip netns del " << name_ << ": " << r.describe();
  }
  removed_ = true;
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------
// Programs under test

Daemon::Daemon(std::string dir, std::vector<std::string> prefix)
    : dir_(std::move(dir)),
      prefix_(std::move(prefix)),
      socket_(dir_ + "/nsproxyd.sock"),
      state_dir_(dir_ + "/state") {
  ::mkdir(state_dir_.c_str(), 0700);
}

Daemon::~Daemon() {
  if (::testing::Test::HasFailure() && process_) {
    std::cerr << "--- nsproxyd log (" << socket_ << ") ---\n" << tail(log()) << "\n---\n";
  }
  if (running()) {
    int code = stop();
    EXPECT_EQ(code, 0) << "nsproxyd did not exit 0 on SIGTERM (socket " << socket_ << ")\n"
                       << tail(log());
  }
}

::testing::AssertionResult Daemon::start(Millis timeout) {
  std::vector<std::string> argv = prefix_;
  argv.insert(argv.end(), {binary("nsproxyd"), "--socket", socket_, "--state-dir", state_dir_,
                           "--log-level", "debug"});
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  process_ = std::make_unique<Process>(argv, env_);
  stopped_ = false;
  if (!process_->started()) {
    return ::testing::AssertionFailure() << "cannot start nsproxyd: " << process_->start_error();
  }
  auto deadline = Clock::now() + timeout;
  std::string last;
  for (;;) {
    if (!process_->running()) {
      stopped_ = true;
      return ::testing::AssertionFailure() << "nsproxyd exited with " << process_->stop()
                                           << " before answering on " << socket_ << "\n"
                                           << tail(process_->err());
    }
    nsproxy::Request req;
    req.op = nsproxy::Op::Status;
    auto reply = nsproxy::call_daemon(socket_, req, -1, 200ms);
    if (reply && reply->ok) return ::testing::AssertionSuccess();
    last = reply ? std::string(nsproxy::code_name(reply->error.code)) + ": " + reply->error.message
                 : std::string(nsproxy::code_name(reply.error().code)) + ": " + reply.error().message;
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(20ms);
  }
  return ::testing::AssertionFailure()
         << "nsproxyd did not answer status on " << socket_ << " within " << timeout.count()
         << " ms (last: " << last << ")\n"
         << tail(process_->err());
}

int Daemon::stop() {
  if (!process_ || !process_->started()) return -1;
  stopped_ = true;
  return process_->stop(5000ms);
}

nsproxy::Result<nsproxy::Reply> Daemon::call(const nsproxy::Request& req, int netns_fd,
                                             Millis timeout) const {
  return nsproxy::call_daemon(socket_, req, netns_fd, timeout);
}

nlohmann::json Daemon::list() const {
  nsproxy::Request req;
  req.op = nsproxy::Op::List;
  // Generous: a list of 1,000 registrations from an ASan daemon on a loaded machine took
  // over 3 s; the bound is only there so that a hung daemon fails the test.
  auto reply = call(req, -1, 30000ms);
  if (!reply) {
    ADD_FAILURE() << "list: " << reply.error().code << ": " << reply.error().message;
    return nlohmann::json::array();
  }
  if (!reply->ok) {
    ADD_FAILURE() << "list: " << reply->error.code << ": " << reply->error.message;
    return nlohmann::json::array();
  }
  auto it = reply->data.find("registrations");
  if (it == reply->data.end() || !it->is_array()) {
    ADD_FAILURE() << "list reply without a registrations array: " << reply->data.dump();
    return nlohmann::json::array();
  }
  return *it;
}

std::vector<nlohmann::json> Daemon::registrations_with_id(const std::string& id) const {
  std::vector<nlohmann::json> out;
  for (const auto& r : list()) {
    if (r.contains("attachment") && r["attachment"].value("id", "") == id) out.push_back(r);
  }
  return out;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

bool wait_until(const std::function<bool()>& condition, Millis timeout, Millis every) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(every);
  }
}

nlohmann::json daemon_status(const Daemon& d) {
  nsproxy::Request req;
  req.op = nsproxy::Op::Status;
  auto r = d.call(req);
  if (!r.ok() || !r->ok) {
    ADD_FAILURE() << "status call failed: " << (r.ok() ? r->error.message : r.error().message);
    return nlohmann::json::object();
  }
  return r->data;
}

EchoServer::EchoServer(std::string mode, std::vector<std::string> prefix, std::string listen,
                       std::string name)
    : argv_(std::move(prefix)) {
  argv_.insert(argv_.end(), {binary("nsproxy-echo"), "--listen", listen, "--mode", mode});
  if (!name.empty()) argv_.insert(argv_.end(), {"--name", name});
}

::testing::AssertionResult EchoServer::start(Millis timeout) {
  process_ = std::make_unique<Process>(argv_);
  if (!process_->started()) {
    return ::testing::AssertionFailure()
           << "cannot start nsproxy-echo: " << process_->start_error();
  }
  auto line = process_->wait_for_line("listening on ", timeout);
  if (!line) {
    return ::testing::AssertionFailure()
           << "nsproxy-echo printed no \"listening on\" line within " << timeout.count()
           << " ms\nstdout: " << process_->out() << "\nstderr: " << process_->err();
  }
  auto pos = line->find("listening on ");
  address_ = line->substr(pos + std::strlen("listening on "));
  while (!address_.empty() && std::isspace(static_cast<unsigned char>(address_.back()))) {
    address_.pop_back();
  }
  if (!nsproxy::parse_address(address_, false)) {
    return ::testing::AssertionFailure() << "nsproxy-echo printed an unparsable address: " << *line;
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------
// Sockets inside namespaces

Result<UniqueFd> socket_in_netns(const std::string& netns_path, int domain, int type) {
  Result<UniqueFd> result = make_error(nsproxy::Code::kInternal, "not run");
  std::thread t([&] {
    auto ns = nsproxy::open_netns(netns_path);
    if (!ns) {
      result = ns.error();
      return;
    }
    if (::setns(ns->get(), CLONE_NEWNET) != 0) {
      result = nsproxy::errno_error(nsproxy::Code::kNotNetns, "setns " + netns_path);
      return;
    }
    int fd = ::socket(domain, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      result = nsproxy::errno_error(nsproxy::Code::kSocket, "socket in " + netns_path);
      return;
    }
    result = UniqueFd(fd);
    // The thread ends here, in the tenant namespace; nothing else ever runs on it.
  });
  t.join();
  return result;
}

Connection connect_in_netns(const std::string& netns_path, const std::string& address,
                            Millis timeout) {
  Connection c;
  auto addr = nsproxy::parse_address(address, false);
  if (!addr) {
    c.err = EINVAL;
    c.message = addr.error().message;
    return c;
  }
  auto sock = socket_in_netns(netns_path, addr->family(), SOCK_STREAM | SOCK_NONBLOCK);
  if (!sock) {
    c.err = EINVAL;
    c.message = sock.error().message;
    return c;
  }
  int fd = sock->get();
  if (::connect(fd, addr->sa(), addr->length) != 0) {
    if (errno != EINPROGRESS) {
      c.err = errno;
      c.message = "connect " + address + " in " + netns_path + ": " + errno_text(c.err);
      return c;
    }
    pollfd p{fd, POLLOUT, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r <= 0) {
      c.err = ETIMEDOUT;
      c.message = "connect " + address + " in " + netns_path + ": timed out";
      return c;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      c.err = err;
      c.message = "connect " + address + " in " + netns_path + ": " + errno_text(err);
      return c;
    }
  }
  c.fd = std::move(*sock);
  return c;
}

Result<UniqueFd> listen_in_netns(const std::string& netns_path, const std::string& address) {
  auto addr = nsproxy::parse_address(address, false);
  if (!addr) return addr.error();
  auto sock = socket_in_netns(netns_path, addr->family(), SOCK_STREAM);
  if (!sock) return sock.error();
  if (::bind(sock->get(), addr->sa(), addr->length) != 0) {
    return nsproxy::errno_error(nsproxy::Code::kSocket, "bind " + address + " in " + netns_path);
  }
  if (::listen(sock->get(), 16) != 0) {
    return nsproxy::errno_error(nsproxy::Code::kSocket, "listen " + address + " in " + netns_path);
  }
  return std::move(*sock);
}

Status send_all(int fd, std::string_view data, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return nsproxy::errno_error(nsproxy::Code::kIo, "send");
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout, "send timed out after " + std::to_string(sent) + " of " +
                                       std::to_string(data.size()) + " bytes");
    }
  }
  return {};
}

Result<std::string> recv_until_eof(int fd, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      got.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return got;
    if (errno != EAGAIN && errno != EINTR) {
      return nsproxy::errno_error(nsproxy::Code::kIo, "recv after " + std::to_string(got.size()) + " bytes");
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout, "no EOF within " + std::to_string(timeout.count()) +
                                       " ms; received " + std::to_string(got.size()) +
                                       " bytes: " + tail(got, 200));
    }
  }
}

Result<std::string> exchange(int fd, std::string_view payload, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t sent = 0;
  bool shut = false;
  std::string got;
  char buf[65536];
  for (;;) {
    if (!shut && sent == payload.size()) {
      if (::shutdown(fd, SHUT_WR) != 0) return nsproxy::errno_error(nsproxy::Code::kIo, "shutdown");
      shut = true;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (shut ? 0 : POLLOUT)), 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0) {
      return make_error(nsproxy::Code::kTimeout, "exchange timed out after " + std::to_string(timeout.count()) +
                                       " ms: sent " + std::to_string(sent) + " of " +
                                       std::to_string(payload.size()) + ", received " +
                                       std::to_string(got.size()));
    }
    if (!shut && (p.revents & POLLOUT)) {
      ssize_t n =
          ::send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return nsproxy::errno_error(nsproxy::Code::kIo, "send after " + std::to_string(sent) + " bytes");
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
      } else if (n == 0) {
        if (!shut) {
          return make_error(nsproxy::Code::kIo, "peer closed after we sent " + std::to_string(sent) +
                                             " of " + std::to_string(payload.size()) +
                                             " bytes; received " + std::to_string(got.size()));
        }
        return got;
      } else if (errno != EAGAIN && errno != EINTR) {
        return nsproxy::errno_error(nsproxy::Code::kIo, "recv after " + std::to_string(got.size()) +
                                                " bytes (sent " + std::to_string(sent) + ")");
      }
    }
  }
}

Result<std::string> roundtrip_in_netns(const std::string& netns_path, const std::string& address,
                                       std::string_view payload, Millis timeout) {
  auto c = connect_in_netns(netns_path, address);
  if (!c.ok()) return make_error(nsproxy::Code::kUnreachable, c.message);
  return exchange(c.fd.get(), payload, timeout);
}

// ---------------------------------------------------------------------------------------
// HTTP clients and upstreams

namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

std::string printable(std::string_view s, size_t max = 400) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch < 32 || ch > 126) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", ch);
      out += b;
    } else {
      out += static_cast<char>(ch);
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequal(k, name)) return v;
  }
  return std::nullopt;
}

std::vector<std::string> HttpResponse::all(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (iequal(k, name)) out.push_back(v);
  }
  return out;
}

nlohmann::json HttpResponse::json() const {
  auto j = nlohmann::json::parse(body, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

std::string HttpResponse::describe(size_t body_bytes) const {
  return printable(head, 4000) + " | body (" + std::to_string(body.size()) +
         " bytes): " + printable(body, body_bytes);
}

HttpConn HttpConn::open(const std::string& netns_path, const std::string& address, Millis timeout) {
  auto c = connect_in_netns(netns_path, address, timeout);
  HttpConn h;
  if (!c.ok()) {
    h.error_ = c.message;
    return h;
  }
  h.fd_ = std::move(c.fd);
  return h;
}

Status HttpConn::send(std::string_view data, Millis timeout) {
  if (!fd_) return make_error(nsproxy::Code::kIo, "send on a closed connection");
  return send_all(fd_.get(), data, timeout);
}

Status HttpConn::fill(Clock::time_point deadline) {
  if (!fd_) return make_error(nsproxy::Code::kIo, "read on a closed connection");
  if (eof_) return make_error(nsproxy::Code::kEof, "connection closed by the peer");
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      buf_.append(buf, static_cast<size_t>(n));
      return {};
    }
    if (n == 0) {
      eof_ = true;
      return make_error(nsproxy::Code::kEof, "connection closed by the peer");
    }
    if (errno == ECONNRESET) {
      eof_ = true;
      return make_error(nsproxy::Code::kEof, "connection reset by the peer");
    }
    if (errno != EAGAIN && errno != EINTR) return nsproxy::errno_error(nsproxy::Code::kIo, "recv");
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) == 0) {
      return make_error(nsproxy::Code::kTimeout, "timed out waiting for bytes");
    }
  }
}

Result<HttpResponse> HttpConn::read_head(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
    auto st = fill(deadline);
    if (!st.ok()) {
      return make_error(st.error().code,
                        st.error().message + " before a complete response head; got " +
                            std::to_string(buf_.size()) + " bytes: \"" + printable(buf_) + "\"");
    }
  }
  HttpResponse r;
  r.head = buf_.substr(0, end + 4);
  buf_.erase(0, end + 4);
  std::string_view head(r.head);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  // "HTTP/1.1 200 OK"
  size_t sp1 = status_line.find(' ');
  if (sp1 == std::string_view::npos || status_line.substr(0, 5) != "HTTP/") {
    return make_error(nsproxy::Code::kProtocol, "bad status line: \"" + printable(status_line) + "\"");
  }
  r.version = std::string(status_line.substr(0, sp1));
  size_t sp2 = status_line.find(' ', sp1 + 1);
  std::string code(status_line.substr(
      sp1 + 1, sp2 == std::string_view::npos ? std::string_view::npos : sp2 - sp1 - 1));
  if (code.size() != 3 || !std::isdigit(static_cast<unsigned char>(code[0])) ||
      !std::isdigit(static_cast<unsigned char>(code[1])) ||
      !std::isdigit(static_cast<unsigned char>(code[2]))) {
    return make_error(nsproxy::Code::kProtocol, "bad status code in \"" + printable(status_line) + "\"");
  }
  r.status = std::stoi(code);
  if (sp2 != std::string_view::npos) r.reason = std::string(status_line.substr(sp2 + 1));
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == pos) break;
    std::string_view line = head.substr(pos, e - pos);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line[colon - 1] == ' ') {
      return make_error(nsproxy::Code::kProtocol, "bad header line: \"" + printable(line) + "\"");
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), trim(line.substr(colon + 1)));
    pos = e + 2;
  }
  return r;
}

Result<std::string> HttpConn::read_exact(size_t n, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (buf_.size() < n) {
    auto st = fill(deadline);
    if (!st.ok()) {
      return make_error(st.error().code, st.error().message + " after " +
                                             std::to_string(buf_.size()) + " of " +
                                             std::to_string(n) + " bytes");
    }
  }
  std::string out = buf_.substr(0, n);
  buf_.erase(0, n);
  return out;
}

Result<HttpResponse> HttpConn::read_response(Millis timeout, bool head_request) {
  auto deadline = Clock::now() + timeout;
  auto head = read_head(timeout);
  if (!head) return head.error();
  HttpResponse r = std::move(*head);
  if (head_request || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
    return r;
  }
  auto te = r.header("Transfer-Encoding");
  if (te && te->size() >= 7 && iequal(te->substr(te->size() - 7), "chunked")) {
    r.chunked = true;
    for (;;) {
      size_t e;
      while ((e = buf_.find("\r\n")) == std::string::npos) {
        auto st = fill(deadline);
        if (!st.ok()) {
          return make_error(st.error().code, st.error().message + " in a chunk size line after " +
                                                 std::to_string(r.body.size()) + " body bytes; " +
                                                 r.describe());
        }
      }
      std::string line = buf_.substr(0, e);
      buf_.erase(0, e + 2);
      size_t semi = line.find(';');
      std::string hex = trim(line.substr(0, semi));
      char* endp = nullptr;
      unsigned long long size = std::strtoull(hex.c_str(), &endp, 16);
      if (hex.empty() || *endp != '\0') {
        return make_error(nsproxy::Code::kProtocol, "bad chunk size line \"" + printable(line) + "\" after " +
                                              std::to_string(r.body.size()) + " body bytes");
      }
      if (size == 0) {
        // Trailers, then an empty line.
        for (;;) {
          while ((e = buf_.find("\r\n")) == std::string::npos) {
            auto st = fill(deadline);
            if (!st.ok()) return make_error(st.error().code, st.error().message + " in trailers");
          }
          bool empty = e == 0;
          buf_.erase(0, e + 2);
          if (empty) break;
        }
        return r;
      }
      auto data = read_exact(static_cast<size_t>(size) + 2, Millis(remaining_ms(deadline)));
      if (!data) {
        return make_error(data.error().code, data.error().message + " in a chunk after " +
                                                 std::to_string(r.body.size()) + " body bytes");
      }
      if (data->compare(size, 2, "\r\n") != 0) {
        return make_error(nsproxy::Code::kProtocol, "chunk not followed by CRLF after " +
                                              std::to_string(r.body.size()) + " body bytes");
      }
      r.body.append(*data, 0, static_cast<size_t>(size));
    }
  }
  auto cl = r.header("Content-Length");
  if (cl) {
    char* endp = nullptr;
    unsigned long long n = std::strtoull(cl->c_str(), &endp, 10);
    if (cl->empty() || *endp != '\0') {
      return make_error(nsproxy::Code::kProtocol, "bad Content-Length: " + r.describe());
    }
    auto data = read_exact(static_cast<size_t>(n), Millis(remaining_ms(deadline)));
    if (!data) {
      return make_error(data.error().code,
                        data.error().message + " of the body; head: " + printable(r.head));
    }
    r.body = std::move(*data);
    return r;
  }
  // Delimited by the close of the connection.
  r.until_eof = true;
  for (;;) {
    auto st = fill(deadline);
    if (!st.ok()) {
      if (st.error().code == nsproxy::Code::kEof) break;
      return make_error(st.error().code, st.error().message + " reading a body delimited by EOF");
    }
  }
  r.body = std::move(buf_);
  buf_.clear();
  return r;
}

Result<HttpResponse> HttpConn::request(std::string_view raw, Millis timeout, bool head_request) {
  auto st = send(raw, timeout);
  if (!st.ok()) return st.error();
  return read_response(timeout, head_request);
}

Result<std::string> HttpConn::wait_closed(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto st = fill(deadline);
    if (!st.ok()) {
      if (st.error().code == nsproxy::Code::kEof) {
        std::string out = std::move(buf_);
        buf_.clear();
        return out;
      }
      return make_error(st.error().code, "the connection stayed open for " +
                                             std::to_string(timeout.count()) + " ms; received \"" +
                                             printable(buf_) + "\"");
    }
  }
}

RawUpstream::RawUpstream(Handler handler) : handler_(std::move(handler)) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, 64) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return;
  }
  listen_fd_ = fd;
  address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  accept_thread_ = std::thread([this] {
    for (;;) {
      pollfd p{listen_fd_, POLLIN, 0};
      ::poll(&p, 1, 50);
      if (stopping_) return;
      if (!(p.revents & POLLIN)) continue;
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++accepted_;
      std::lock_guard<std::mutex> lock(mu_);
      conn_fds_.push_back(c);
      threads_.emplace_back([this, c] { handler_(c); });
    }
  });
}

RawUpstream::~RawUpstream() {
  stopping_ = true;
  if (accept_thread_.joinable()) accept_thread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int c : conn_fds_) ::shutdown(c, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  for (int c : conn_fds_) ::close(c);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

std::optional<std::string> read_head_blocking(int fd, std::string* rest, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  std::string got;
  char buf[16384];
  for (;;) {
    size_t end = got.find("\r\n\r\n");
    if (end != std::string::npos) {
      if (rest) *rest = got.substr(end + 4);
      return got.substr(0, end + 4);
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    got.append(buf, static_cast<size_t>(n));
  }
}

bool write_all_blocking(int fd, std::string_view data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

// ---------------------------------------------------------------------------------------
// The CNI plugin

std::string PluginResult::describe() const {
  std::string s = "exit code " + std::to_string(exit_code);
  if (timed_out) s += " (timed out, killed)";
  return s + ", " + std::to_string(elapsed.count()) + " ms\n--- stdout ---\n" + tail(out) +
         "\n--- stderr ---\n" + tail(err);
}

int PluginResult::cni_code() const {
  if (json.is_object() && json.contains("code") && json["code"].is_number_integer()) {
    return json["code"].get<int>();
  }
  return -1;
}

std::string PluginResult::msg() const {
  std::string s;
  if (json.is_object()) {
    if (json.contains("msg") && json["msg"].is_string()) s += json["msg"].get<std::string>();
    if (json.contains("details") && json["details"].is_string()) {
      s += " " + json["details"].get<std::string>();
    }
  }
  return s;
}

Env cni_env(const std::string& command, const std::string& container_id,
            const std::string& netns_path, const Env& extra) {
  Env env = {{"CNI_COMMAND", command},     {"CNI_CONTAINERID", container_id},
             {"CNI_NETNS", netns_path},    {"CNI_IFNAME", "eth0"},
             {"CNI_PATH", "/usr/lib/cni"}, {"CNI_ARGS", std::nullopt}};
  for (const auto& [k, v] : extra) env[k] = v;
  return env;
}

PluginResult run_plugin(const Env& env, const std::string& stdin_config, Millis timeout) {
  auto r = run({binary("nsproxy")}, timeout, env, stdin_config);
  PluginResult p;
  p.exit_code = r.exit_code;
  p.out = r.out;
  p.err = r.err;
  p.elapsed = r.elapsed;
  p.timed_out = r.timed_out;
  p.json = nlohmann::json::parse(r.out, nullptr, false);
  if (p.json.is_discarded()) p.json = nullptr;
  return p;
}

nlohmann::json listener(const std::string& listen, const std::string& upstream,
                        const std::string& mode) {
  return {{"listen", listen}, {"upstream", upstream}, {"mode", mode}};
}

nlohmann::json plugin_config(const std::string& network, const std::string& socket,
                             const nlohmann::json& listeners, int timeout_ms,
                             const std::string& cni_version) {
  return {{"cniVersion", cni_version}, {"name", network},         {"type", "nsproxy"},
          {"socket", socket},          {"timeoutMs", timeout_ms}, {"listeners", listeners}};
}

// ---------------------------------------------------------------------------------------

::testing::AssertionResult register_listeners(const Daemon& d, const Netns& ns,
                                              const std::string& id,
                                              const std::vector<nsproxy::ListenerSpec>& listeners,
                                              const std::map<std::string, std::string>& labels,
                                              const nsproxy::IdentityHeaders& headers,
                                              const nsproxy::TenantLimits& limits) {
  auto fd = nsproxy::open_netns(ns.path());
  if (!fd) return ::testing::AssertionFailure() << fd.error().message;
  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.attachment.id = id;
  req.netns_path = ns.path();
  req.listeners = listeners;
  req.labels = labels;
  req.headers = headers;
  req.limits = limits;
  auto reply = d.call(req, fd->get());
  if (!reply) {
    return ::testing::AssertionFailure()
           << "add " << id << ": " << reply.error().code << ": " << reply.error().message;
  }
  if (!reply->ok) {
    return ::testing::AssertionFailure()
           << "add " << id << " refused: " << reply->error.code << ": " << reply->error.message;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult register_http(const Daemon& d, const Netns& ns, const std::string& id,
                                         const std::string& upstream,
                                         const std::map<std::string, std::string>& labels,
                                         const nsproxy::IdentityHeaders& headers,
                                         const std::string& listen,
                                         const nsproxy::TenantLimits& limits) {
  nsproxy::ListenerSpec spec;
  spec.listen = listen;
  spec.upstream = upstream;
  spec.mode = nsproxy::Mode::Http;
  return register_listeners(d, ns, id, {spec}, labels, headers, limits);
}

std::string http_request(const std::string& method, const std::string& path,
                         const std::string& extra_headers, const std::string& body) {
  return method + " " + path + " HTTP/1.1\r\nHost: tenant.test\r\n" + extra_headers + "\r\n" + body;
}

std::vector<std::string> echo_headers(const nlohmann::json& echo, std::string_view name) {
  std::vector<std::string> out;
  if (!echo.is_object() || !echo.contains("headers") || !echo["headers"].is_array()) return out;
  for (const auto& h : echo["headers"]) {
    if (h.is_array() && h.size() == 2 && iequal(h[0].get<std::string>(), name)) {
      out.push_back(h[1].get<std::string>());
    }
  }
  return out;
}

std::vector<std::string> echo_headers_with_prefix(const nlohmann::json& echo,
                                                  std::string_view prefix) {
  std::vector<std::string> out;
  if (!echo.is_object() || !echo.contains("headers") || !echo["headers"].is_array()) return out;
  for (const auto& h : echo["headers"]) {
    if (!h.is_array() || h.size() != 2) continue;
    auto k = h[0].get<std::string>();
    if (k.size() >= prefix.size() && iequal(std::string_view(k).substr(0, prefix.size()), prefix)) {
      out.push_back(k + ": " + h[1].get<std::string>());
    }
  }
  return out;
}

void HttpTest::SetUp() {
  IntegrationTest::SetUp();
  if (IsSkipped()) return;
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
}

Nginx::Nginx(std::string dir, std::string server_body)
    : dir_(std::move(dir)), server_body_(std::move(server_body)) {
  ::mkdir((dir_ + "/www").c_str(), 0755);
  ::mkdir((dir_ + "/tmp").c_str(), 0755);
}

Nginx::~Nginx() {
  if (::testing::Test::HasFailure() && process_) {
    std::cerr << "--- nginx log ---\n" << tail(process_->err()) << "\n---\n";
  }
}

std::string Nginx::log() const {
  return process_ ? process_->err() : std::string();
}

::testing::AssertionResult Nginx::start(Millis timeout) {
  const char* nginx = "/usr/sbin/nginx";
  if (::access(nginx, X_OK) != 0) {
    return ::testing::AssertionFailure() << nginx << " is missing (install the nginx package)";
  }
  std::string last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    int port = free_port();
    address_ = "127.0.0.1:" + std::to_string(port);
    std::string t = dir_ + "/tmp";
    std::string conf =
        "daemon off;\nmaster_process off;\nworker_processes 1;\n"
        "error_log stderr warn;\npid " +
        dir_ +
        "/nginx.pid;\n"
        "events { worker_connections 256; }\n"
        "http {\n  access_log off;\n"
        "  client_body_temp_path " +
        t +
        "/body;\n"
        "  proxy_temp_path " +
        t +
        "/proxy;\n"
        "  fastcgi_temp_path " +
        t +
        "/fastcgi;\n"
        "  uwsgi_temp_path " +
        t +
        "/uwsgi;\n"
        "  scgi_temp_path " +
        t +
        "/scgi;\n"
        "  default_type application/octet-stream;\n"
        "  server {\n    listen " +
        address_ + ";\n    root " + dir_ + "/www;\n" + server_body_ + "\n  }\n}\n";
    std::ofstream(dir_ + "/nginx.conf") << conf;
    process_ = std::make_unique<Process>(
        std::vector<std::string>{nginx, "-p", dir_, "-c", dir_ + "/nginx.conf"});
    if (!process_->started()) {
      return ::testing::AssertionFailure() << "cannot start nginx: " << process_->start_error();
    }
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline && process_->running()) {
      auto fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<uint16_t>(port));
      if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
        return ::testing::AssertionSuccess();
      }
      std::this_thread::sleep_for(20ms);
    }
    last = process_->err();
    process_->stop(2000ms);
    if (last.find("Address already in use") == std::string::npos) break;
  }
  return ::testing::AssertionFailure() << "nginx did not start on " << address_ << ":\n" << last;
}

void IntegrationTest::SetUp() {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "\n\n*** SKIPPED: integration tests need root (network namespaces). ***\n"
                    "*** Run them as root; CI must not skip them. ***\n";
  }
}

}  // namespace nspit
