// The shipped unit's privileges suffice: nsproxyd run with exactly the capability bounding
// set and NoNewPrivileges of dist/systemd/nsproxyd.service.in (setpriv, as systemd would
// set them up) registers a tenant with a service address on a port below 1024, serves it,
// and removes the address again on DEL (README "Run under systemd", the unit's comments).
#include <linux/capability.h>
#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include "fixture.h"

namespace nspit {
namespace {

// The unit's capability set as the unit writes it, as setpriv takes it, and as /proc shows it.
constexpr const char* kUnitCapabilities =
    "CAP_SYS_ADMIN CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_CHOWN";
constexpr const char* kBoundingSet = "-all,+sys_admin,+net_admin,+net_bind_service,+chown";
constexpr uint64_t kCapabilityMask =
    (uint64_t{1} << CAP_SYS_ADMIN) | (uint64_t{1} << CAP_NET_ADMIN) |
    (uint64_t{1} << CAP_NET_BIND_SERVICE) | (uint64_t{1} << CAP_CHOWN);
constexpr const char* kService = "169.254.169.254:80";
constexpr const char* kGroup = "4242";  // --allow-gid: the socket is chown'ed (CAP_CHOWN)

// The value of the first "key=" line of a unit file, or "".
std::string unit_value(const std::string& unit, const std::string& key) {
  std::ifstream in(unit);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

// "Key:\tvalue" of /proc/PID/status, or "".
std::string proc_status(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  }
  return "";
}

class UnitCapabilitiesTest : public HttpTest {};

TEST_F(UnitCapabilitiesTest, TheUnitsCapabilitiesSufficeForAServiceAddressAndItsRemoval) {
  // What the shipped unit grants (the generated copy in the build directory).
  const std::string unit = std::string(NSPROXY_BUILD_DIR) + "/dist/nsproxyd.service";
  ASSERT_EQ(unit_value(unit, "CapabilityBoundingSet"), kUnitCapabilities)
      << unit << " changed its capabilities: update kBoundingSet and kCapabilityMask here";
  ASSERT_EQ(unit_value(unit, "NoNewPrivileges"), "yes") << unit;

  EchoServer upstream("http");
  ASSERT_TRUE(upstream.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path(),
           {"setpriv", std::string("--bounding-set=") + kBoundingSet, "--no-new-privs", "--"});
  d.set_extra_args({"--allow-gid", kGroup});
  ASSERT_TRUE(d.start());
  // setpriv execs nsproxyd: the pid is the daemon's, and it holds those four and no more.
  const std::string eff = proc_status(d.pid(), "CapEff");
  ASSERT_FALSE(eff.empty()) << "no CapEff for pid " << d.pid();
  EXPECT_EQ(std::stoull(eff, nullptr, 16), kCapabilityMask) << "CapEff " << eff;
  EXPECT_EQ(std::stoull(proc_status(d.pid(), "CapBnd"), nullptr, 16), kCapabilityMask);
  EXPECT_EQ(proc_status(d.pid(), "NoNewPrivs"), "1");
  EXPECT_NE(std::stoull(proc_status(::getpid(), "CapEff"), nullptr, 16), kCapabilityMask)
      << "the test itself runs with only these capabilities: nothing was reduced";
  struct stat st {};
  ASSERT_EQ(::stat(d.socket_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, 4242u) << "--allow-gid did not chown the control socket";

  // A service address nsproxy adds to lo (netlink: CAP_NET_ADMIN), port 80
  // (CAP_NET_BIND_SERVICE), inside the tenant's namespace (setns: CAP_SYS_ADMIN).
  auto lo = [&] { return run({"ip", "-n", ns.name(), "-o", "addr", "show", "dev", "lo"}).out; };
  ASSERT_EQ(lo().find("169.254.169.254"), std::string::npos) << lo();
  const std::string id = unique_name();
  nsproxy::ListenerSpec service{kService, upstream.address(), nsproxy::Mode::Http};
  service.add_address = true;
  ASSERT_TRUE(register_tenant(d, ns.path(), id, {.listeners = {service}})) << d.log();
  EXPECT_NE(lo().find(" 169.254.169.254/32 "), std::string::npos) << lo();
  auto c = HttpConn::open(ns.path(), kService);
  ASSERT_TRUE(c.ok()) << c.error() << "\n" << d.log();
  auto r = c.request(http_request("GET", "/metadata"));
  ASSERT_TRUE(r.ok()) << r.error().message << "\n" << d.log();
  EXPECT_EQ(r->status, 200) << r->describe();
  EXPECT_EQ(echo_headers(r->json(), "X-Tenant-Id"), std::vector<std::string>{id});
  c.close();

  // DEL: the address nsproxy added goes again (entering the namespace once more).
  nsproxy::Request del;
  del.op = nsproxy::Op::Del;
  del.attachment.id = id;
  auto deleted = d.call(del);
  ASSERT_TRUE(deleted.ok() && deleted->ok)
      << (deleted.ok() ? deleted->error.message : deleted.error().message) << "\n"
      << d.log();
  EXPECT_EQ(lo().find("169.254.169.254"), std::string::npos) << lo() << "\n" << d.log();
  EXPECT_FALSE(connect_in_netns(ns.path(), kService, 1000ms).ok())
      << "the service address still answers after DEL";
  EXPECT_EQ(d.log().find("nsproxyd error:"), std::string::npos) << d.log();
  EXPECT_EQ(d.log().find("nsproxyd warn:"), std::string::npos) << d.log();
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace nspit
