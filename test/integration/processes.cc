#include "processes.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "text.h"

extern char** environ;

namespace nspit {

using detail::Clock;
using detail::tail;

namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

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
    if (reap(false)) {
      // The io thread may not have read the last of the output yet: a caller reading
      // out() right after would miss it (an abuse test once parsed a cut-off report).
      // Bounded, once, in case a grandchild still holds the pipes.
      if (!output_waited_) {
        output_waited_ = true;
        wait_output_closed(1000ms);
      }
      return exit_code_;
    }
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

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

}  // namespace nspit
