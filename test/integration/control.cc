#include "control.h"

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

}  // namespace nspit
