// OneTenantTest: the set-up most http tests share: an nsproxyd (with the test's extra
// flags), an nsproxy-echo upstream, and one scratch namespace registered as one tenant
// with one listener on kTenantListen (http mode unless the fixture says tcp).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bases.h"
#include "control_protocol.h"
#include "daemon.h"
#include "http_client.h"
#include "namespaces.h"
#include "programs.h"

namespace nspit {

inline constexpr const char* kTenantListen = "127.0.0.1:8080";

class OneTenantTest : public HttpTest {
 protected:
  // id_prefix: the tenant's id is id_prefix + a unique token; labels: its pod labels.
  explicit OneTenantTest(std::string id_prefix, std::map<std::string, std::string> labels = {},
                         nsproxy::Mode mode = nsproxy::Mode::Http)
      : id_prefix_(std::move(id_prefix)), labels_(std::move(labels)), mode_(mode) {}

  // The daemon with `flags`, an echo upstream in `echo_mode`, the tenant registered.
  // A failure is fatal to the test (check HasFatalFailure() after it in a helper).
  void start(std::vector<std::string> flags = {}, const std::string& echo_mode = "http");
  // A connection from inside the tenant's namespace to `listen` (non-fatal on failure).
  HttpConn conn(const std::string& listen = kTenantListen);

  Netns ns_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
  std::string id_;

 private:
  std::string id_prefix_;
  std::map<std::string, std::string> labels_;
  nsproxy::Mode mode_;
};

}  // namespace nspit
