// The programs the tests run: where the ones this project builds are (binary), and
// wrappers for the upstreams they talk to: nsproxy-echo (EchoServer) and Debian's nginx.
// nsproxyd itself has daemon.h.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "processes.h"

namespace nspit {

// Path of a program built by this project: NSPROXY_BUILD_DIR/name.
std::string binary(std::string_view name);
// Fails with the missing paths listed.
::testing::AssertionResult binaries_exist(const std::vector<std::string>& names);

// nsproxy-echo listening on `listen` (default 127.0.0.1:0): after start(), address() is
// the resolved "ip:port" it printed.
class EchoServer {
 public:
  explicit EchoServer(std::string mode = "echo", std::vector<std::string> prefix = {},
                      std::string listen = "127.0.0.1:0", std::string name = "");
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  const std::string& address() const { return address_; }
  Process* process() { return process_.get(); }

 private:
  std::vector<std::string> argv_;
  std::string address_;
  std::unique_ptr<Process> process_;
};

// nginx from Debian in the foreground on 127.0.0.1:<free port>, everything under `dir`;
// `server_body` is inserted into the server block (locations). The root is dir/www.
class Nginx {
 public:
  Nginx(std::string dir, std::string server_body);
  ~Nginx();
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  const std::string& address() const { return address_; }
  std::string root() const { return dir_ + "/www"; }
  std::string log() const;

 private:
  std::string dir_;
  std::string server_body_;
  std::string address_;
  std::unique_ptr<Process> process_;
};

}  // namespace nspit
