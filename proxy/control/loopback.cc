#include "control/loopback.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/socket.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <string>

#include "unique_fd.h"

namespace nsproxy {
namespace {

struct SockDeleter {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};

struct AddrDeleter {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct NlAddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};

Error nl_error(const char* what, int err) {
  return make_error(Code::kLoopback, std::string(what) + ": " + nl_geterror(err));
}

Result<std::unique_ptr<nl_sock, SockDeleter>> connect_route(const std::string& what) {
  std::unique_ptr<nl_sock, SockDeleter> sock(nl_socket_alloc());
  if (!sock) return make_error(Code::kLoopback, what + ": out of memory");
  if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0) {
    return nl_error((what + ": netlink connect").c_str(), err);
  }
  return sock;
}

// An rtnl_addr for `addr` on lo as a host route (/32, /128).
Result<std::unique_ptr<rtnl_addr, AddrDeleter>> lo_host_address(const Address& addr,
                                                                const std::string& what) {
  const void* bytes = nullptr;
  size_t len = 0;
  unsigned prefix = 0;
  if (addr.family() == AF_INET) {
    bytes = &reinterpret_cast<const sockaddr_in*>(addr.sa())->sin_addr;
    len = 4;
    prefix = 32;
  } else if (addr.family() == AF_INET6) {
    bytes = &reinterpret_cast<const sockaddr_in6*>(addr.sa())->sin6_addr;
    len = 16;
    prefix = 128;
  } else {
    return make_error(Code::kLoopback, what + ": not an IP address");
  }
  std::unique_ptr<nl_addr, NlAddrDeleter> local(nl_addr_build(addr.family(), bytes, len));
  std::unique_ptr<rtnl_addr, AddrDeleter> a(rtnl_addr_alloc());
  if (!local || !a) return make_error(Code::kLoopback, what + ": out of memory");
  nl_addr_set_prefixlen(local.get(), static_cast<int>(prefix));
  rtnl_addr_set_ifindex(a.get(), 1);  // lo is always ifindex 1 in its namespace
  rtnl_addr_set_family(a.get(), addr.family());
  rtnl_addr_set_prefixlen(a.get(), static_cast<int>(prefix));
  if (int err = rtnl_addr_set_local(a.get(), local.get()); err < 0) {
    return nl_error(what.c_str(), err);
  }
  if (addr.family() == AF_INET6) rtnl_addr_set_flags(a.get(), IFA_F_NODAD);
  return a;
}

}  // namespace

Status ensure_loopback_up() {
  // A socket made here belongs to the current namespace: its interface ioctls act on
  // this namespace's lo. Two ioctls, no netlink socket: read the flags, set IFF_UP.
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return errno_error(Code::kLoopback, "bring lo up: socket");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) {
    return errno_error(Code::kLoopback, "bring lo up: read its flags");
  }
  if ((ifr.ifr_flags & IFF_UP) != 0) return {};
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return errno_error(Code::kLoopback, "bring lo up");
  return {};
}

Result<bool> add_loopback_address(const Address& addr) {
  const std::string what = "add " + address_ip(addr) + " to lo";
  auto sock = connect_route(what);
  if (!sock) return sock.error();
  auto a = lo_host_address(addr, what);
  if (!a) return a.error();
  int err = rtnl_addr_add(sock->get(), a->get(), NLM_F_EXCL);
  if (err == -NLE_EXIST) return false;
  if (err < 0) return nl_error(what.c_str(), err);
  return true;
}

Status remove_loopback_address(const Address& addr) {
  const std::string what = "remove " + address_ip(addr) + " from lo";
  auto sock = connect_route(what);
  if (!sock) return sock.error();
  auto a = lo_host_address(addr, what);
  if (!a) return a.error();
  int err = rtnl_addr_delete(sock->get(), a->get(), 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND) {
    return nl_error(what.c_str(), err);
  }
  return {};
}

}  // namespace nsproxy
