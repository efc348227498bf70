#include "control.h"

#include "netns.h"

namespace nspit {

::testing::AssertionResult register_listeners(const Daemon& d, const Netns& ns,
                                              const std::string& id,
                                              const std::vector<nsproxy::ListenerSpec>& listeners,
                                              const std::map<std::string, std::string>& labels,
                                              const nsproxy::IdentityHeaders& headers,
                                              const nsproxy::TenantLimits& limits) {
  auto fd = nsproxy::open_netns(ns.path());
  if (!fd) return ::testing::AssertionFailure() << fd.error().message;
  nsproxy::Request req;
  req.op = nsproxy::Op::Add;
  req.attachment.id = id;
  req.netns_path = ns.path();
  req.listeners = listeners;
  req.labels = labels;
  req.headers = headers;
  req.limits = limits;
  auto reply = d.call(req, fd->get());
  if (!reply) {
    return ::testing::AssertionFailure()
           << "add " << id << ": " << reply.error().code << ": " << reply.error().message;
  }
  if (!reply->ok) {
    return ::testing::AssertionFailure()
           << "add " << id << " refused: " << reply->error.code << ": " << reply->error.message;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult register_http(const Daemon& d, const Netns& ns, const std::string& id,
                                         const std::string& upstream,
                                         const std::map<std::string, std::string>& labels,
                                         const nsproxy::IdentityHeaders& headers,
                                         const std::string& listen,
                                         const nsproxy::TenantLimits& limits) {
  nsproxy::ListenerSpec spec;
  spec.listen = listen;
  spec.upstream = upstream;
  spec.mode = nsproxy::Mode::Http;
  return register_listeners(d, ns, id, {spec}, labels, headers, limits);
}

}  // namespace nspit
