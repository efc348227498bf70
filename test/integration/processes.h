// Running programs: a child process with its stdin fed and its stdout and stderr captured
// (Process), a program run to completion with a deadline (run), and what a process uses.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "wait.h"

namespace nspit {

// Environment changes applied on top of the test's own environment.
// A value of std::nullopt removes the variable.
using Env = std::map<std::string, std::optional<std::string>>;

struct ProcessResult {
  int exit_code = -1;  // exit status; 128+signal when killed; -1 if it never ran
  bool timed_out = false;
  std::string out;
  std::string err;
  Millis elapsed{0};
  std::string describe() const;  // exit code, stdout and stderr, for assertion messages
};

// A child process with stdin fed from a string and stdout/stderr captured.
// The destructor stops it (SIGTERM, then SIGKILL) and reaps it.
class Process {
 public:
  Process(std::vector<std::string> argv, const Env& env = {}, std::string stdin_data = "");
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& start_error() const { return start_error_; }
  pid_t pid() const { return pid_; }
  std::string command_line() const;

  // Waits until a stdout line contains `needle`; returns that whole line.
  // Returns nullopt on timeout or when the process closed stdout first.
  std::optional<std::string> wait_for_line(std::string_view needle, Millis timeout);
  // Waits for exit, and (the first time, at most 1 s more) for the end of its output;
  // returns the exit code (128+signal if killed by one), nullopt on timeout.
  std::optional<int> wait(Millis timeout);
  bool running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal).
  int stop(Millis grace = 5000ms);
  // Sends a signal to this process only.
  void signal(int sig);

  // Waits until the child's stdout and stderr reached EOF.
  bool wait_output_closed(Millis timeout);

  std::string out() const;
  std::string err() const;

 private:
  void io_loop(int in_fd, int out_fd, int err_fd);
  bool reap(bool block);

  std::vector<std::string> argv_;
  std::string stdin_data_;
  pid_t pid_ = -1;
  std::string start_error_;
  std::optional<int> exit_code_;
  bool output_waited_ = false;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;
  std::string err_;
  bool out_closed_ = false;
  bool err_closed_ = false;
  bool stop_io_ = false;
  std::thread io_;
};

// Runs a program to completion, killing it at the deadline. Never hangs.
ProcessResult run(const std::vector<std::string>& argv, Millis timeout = 10000ms,
                  const Env& env = {}, const std::string& stdin_data = "");
// Runs `sh -c command`.
ProcessResult run_shell(const std::string& command, Millis timeout = 10000ms);

// Resident set size (VmRSS of /proc/PID/status) in KiB, or -1 when unreadable.
long rss_kib(pid_t pid);

}  // namespace nspit
