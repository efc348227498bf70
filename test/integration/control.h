// Registering tenants with nsproxyd through its control socket. Daemon::call
// (daemon.h) sends any other request.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "daemon.h"
#include "namespaces.h"

namespace nspit {

// Registers `ns` for manual id `id` with the listeners given, through the control client.
::testing::AssertionResult register_listeners(const Daemon& d, const Netns& ns,
                                              const std::string& id,
                                              const std::vector<nsproxy::ListenerSpec>& listeners,
                                              const std::map<std::string, std::string>& labels = {},
                                              const nsproxy::IdentityHeaders& headers = {},
                                              const nsproxy::TenantLimits& limits = {});
// One http listener `listen` -> `upstream`.
::testing::AssertionResult register_http(const Daemon& d, const Netns& ns, const std::string& id,
                                         const std::string& upstream,
                                         const std::map<std::string, std::string>& labels = {},
                                         const nsproxy::IdentityHeaders& headers = {},
                                         const std::string& listen = "127.0.0.1:8080",
                                         const nsproxy::TenantLimits& limits = {});

}  // namespace nspit
