// Requests to nsproxyd's control socket: registering a tenant (the one helper every test
// uses for that), a status request, and a raw connection for tests that send their own
// bytes. Daemon::call (daemon.h) sends any request.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "daemon.h"
#include "unique_fd.h"

namespace nspit {

// What a tenant is registered with. By default one http listener on 127.0.0.1:8080;
// with designated initializers: {.upstream = echo.address(), .mode = nsproxy::Mode::Tcp}.
struct TenantOptions {
  // The one listener (unless `listeners` is set).
  std::string listen{"127.0.0.1:8080"};
  std::string upstream{};
  nsproxy::Mode mode{nsproxy::Mode::Http};
  // Several listeners instead of the one above.
  std::vector<nsproxy::ListenerSpec> listeners{};
  std::map<std::string, std::string> labels{};
  nsproxy::TenantLimits limits{};  // overrides of the daemon's per-tenant defaults
  // Set: a CNI attachment (network, id, ifname); empty: a manual registration (id only).
  std::string network{};
  std::string ifname{"eth0"};
};

// Registers the namespace at `netns_path` as tenant `id`: an add request carrying the
// namespace's fd. Succeeds when the daemon acknowledged it; fails with the transport
// error or the daemon's code and message. `reply`, when given, receives the daemon's
// reply (also a refusal; it stays empty when no reply arrived).
::testing::AssertionResult register_tenant(const Daemon& d, const std::string& netns_path,
                                           const std::string& id, const TenantOptions& tenant = {},
                                           std::optional<nsproxy::Reply>* reply = nullptr);

// A status request, for Daemon::call.
nsproxy::Request status_request();

// A connected SOCK_SEQPACKET socket to the control socket at `path` (empty, with a
// non-fatal test failure, when the connect fails), for tests that send their own bytes.
nsproxy::UniqueFd connect_control(const std::string& path);

}  // namespace nspit
