#include "control.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "netns.h"

namespace nspit {

::testing::AssertionResult register_tenant(const Daemon& d, const std::string& netns_path,
                                           const std::string& id, const TenantOptions& tenant,
                                           std::optional<nsproxy::Reply>* reply) {
  auto fd = nsproxy::open_netns(netns_path);
  if (!fd) return ::testing::AssertionFailure() << fd.error().message;
  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.attachment.id = id;
  if (!tenant.network.empty()) {
    req.attachment.network = tenant.network;
    req.attachment.ifname = tenant.ifname;
  }
  req.netns_path = netns_path;
  req.listeners = tenant.listeners;
  if (req.listeners.empty()) req.listeners = {{tenant.listen, tenant.upstream, tenant.mode}};
  req.labels = tenant.labels;
  req.limits = tenant.limits;
  auto r = d.call(req, fd->get());
  if (!r) {
    return ::testing::AssertionFailure()
           << "add " << id << ": " << r.error().code << ": " << r.error().message;
  }
  if (reply) *reply = *r;
  if (!r->ok) {
    return ::testing::AssertionFailure()
           << "add " << id << " refused: " << r->error.code << ": " << r->error.message;
  }
  return ::testing::AssertionSuccess();
}

nsproxy::Request status_request() {
  nsproxy::Request req;
  req.op = nsproxy::Op::Status;
  return req;
}

nsproxy::UniqueFd connect_control(const std::string& path) {
  nsproxy::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    fd.reset();
  }
  return fd;
}

}  // namespace nspit
