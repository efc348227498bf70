#include "loopback.h"

#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>

#include <memory>
#include <string>

namespace nsproxy {
namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};

Error nl_error(const char* what, int err) {
  return make_error("loopback", std::string(what) + ": " + nl_geterror(err));
}

}  // namespace

Status ensure_loopback_up() {
  // The netlink socket belongs to the namespace current at creation: the caller's.
  std::unique_ptr<nl_sock, SockDeleter> sock(nl_socket_alloc());
  if (!sock) return make_error("loopback", "bring lo up: out of memory");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) {
    return nl_error("bring lo up: netlink connect", err);
  }
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(sock.get(), 0, "lo", &raw); err < 0) {
    return nl_error("bring lo up: get lo", err);
  }
  std::unique_ptr<rtnl_link, LinkDeleter> link(raw);
  if (rtnl_link_get_flags(link.get()) & IFF_UP) return {};
  std::unique_ptr<rtnl_link, LinkDeleter> change(rtnl_link_alloc());
  if (!change) return make_error("loopback", "bring lo up: out of memory");
  rtnl_link_set_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0); err < 0) {
    return nl_error("bring lo up", err);
  }
  return {};
}

}  // namespace nsproxy
