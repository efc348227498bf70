#include "programs.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <iostream>

#include "address.h"
#include "sockets.h"
#include "text.h"
#include "unique_fd.h"

namespace nspit {

using detail::Clock;
using detail::tail;
using nsproxy::UniqueFd;

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

}  // namespace nspit
