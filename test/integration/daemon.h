// The daemon under test: nsproxyd started on a control socket and a state dir of the
// test's own (Daemon), its log, and requests to it (call, list, status).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control_client.h"
#include "control_protocol.h"
#include "error.h"
#include "processes.h"

namespace nspit {

// nsproxyd on a socket in its own temp dir. Call start(); the destructor stops it with
// SIGTERM and records a test failure unless it exited 0.
class Daemon {
 public:
  // dir: holds the socket and the state dir. prefix: e.g. Netns::exec_prefix().
  explicit Daemon(std::string dir, std::vector<std::string> prefix = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Extra nsproxyd flags for the next start(), e.g. {"--response-timeout", "1"}.
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  // Environment changes for the next start(), on top of the test's own environment.
  void set_env(Env env) { env_ = std::move(env); }
  // Spawns nsproxyd and waits (bounded) until a status call answers.
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  // SIGTERM and wait; returns the exit code.
  int stop();
  bool running() const { return process_ && process_->started() && !stopped_; }
  const std::string& socket_path() const { return socket_; }
  const std::string& state_dir() const { return state_dir_; }
  Process* process() { return process_.get(); }
  // The daemon's pid (-1 before start). Started without a prefix, it is nsproxyd itself.
  pid_t pid() const { return process_ && process_->started() ? process_->pid() : -1; }
  std::string log() const { return process_ ? process_->err() : std::string(); }

  nsproxy::Result<nsproxy::Reply> call(const nsproxy::Request& req, int netns_fd = -1,
                                       Millis timeout = 3000ms) const;
  // The "registrations" array of a list reply (empty array on any failure, with a
  // non-fatal test failure).
  nlohmann::json list() const;
  // Registrations whose attachment id is `id`.
  std::vector<nlohmann::json> registrations_with_id(const std::string& id) const;

 private:
  std::string dir_;
  std::vector<std::string> prefix_;
  std::string socket_;
  std::string state_dir_;
  std::vector<std::string> extra_args_;
  Env env_;
  std::unique_ptr<Process> process_;
  bool stopped_ = false;
};

// The daemon's status reply data (an empty object, with a non-fatal test failure, when
// the call fails).
nlohmann::json daemon_status(const Daemon& d);

}  // namespace nspit
