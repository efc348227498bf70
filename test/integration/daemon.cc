#include "daemon.h"

#include <sys/stat.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "programs.h"
#include "text.h"

namespace nspit {

using detail::Clock;
using detail::tail;

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
  // NSPROXY_TEST_WORKERS=N runs every daemon with --workers N (the suite's default is the
  // daemon's: one per CPU); a test's own --workers comes after it and wins.
  if (const char* w = std::getenv("NSPROXY_TEST_WORKERS"); w != nullptr && *w != '\0') {
    argv.insert(argv.end(), {"--workers", w});
  }
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
    last = reply
               ? std::string(nsproxy::code_name(reply->error.code)) + ": " + reply->error.message
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

}  // namespace nspit
