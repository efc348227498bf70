#include "namespaces.h"

#include "scratch.h"

namespace nspit {

Netns::Netns(bool lo_up) : name_(unique_name()) {
  auto r = run({"ip", "netns", "add", name_});
  if (r.exit_code != 0) {
    error_ = "ip netns add " + name_ + ": " + r.describe();
    removed_ = true;
    return;
  }
  if (lo_up) {
    auto up = run({"ip", "-n", name_, "link", "set", "lo", "up"});
    if (up.exit_code != 0) error_ = "ip link set lo up in " + name_ + ": " + up.describe();
  }
}

Netns::~Netns() {
  if (!removed_) {
    auto r = run({"ip", "netns", "del", name_});
    if (r.exit_code != 0) ADD_FAILURE() << "ip netns del " << name_ << ": " << r.describe();
  }
}

nsproxy::NetnsId Netns::identity() const {
  auto fd = nsproxy::open_netns(path());
  if (!fd) {
    ADD_FAILURE() << "open_netns " << path() << ": " << fd.error().message;
    return {};
  }
  auto id = nsproxy::netns_identity(fd->get());
  if (!id) {
    ADD_FAILURE() << "netns_identity " << path() << ": " << id.error().message;
    return {};
  }
  return *id;
}

ProcessResult Netns::exec(const std::string& command, Millis timeout) const {
  return run({"ip", "netns", "exec", name_, "sh", "-c", command}, timeout);
}

::testing::AssertionResult Netns::add_interface(const std::string& ifname,
                                                const std::string& cidr) const {
  if (run({"ip", "-n", name_, "link", "add", ifname, "type", "dummy"}).exit_code != 0) {
    auto veth = run(
        {"ip", "-n", name_, "link", "add", ifname, "type", "veth", "peer", "name", ifname + "p"});
    if (veth.exit_code != 0) {
      return ::testing::AssertionFailure()
             << "neither a dummy nor a veth interface could be created in " << name_ << ": "
             << veth.describe();
    }
    run({"ip", "-n", name_, "link", "set", ifname + "p", "up"});
  }
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {"ip", "-n", name_, "addr", "add", cidr, "dev", ifname},
           {"ip", "-n", name_, "link", "set", ifname, "up"}}) {
    auto r = run(argv);
    if (r.exit_code != 0) {
      std::string cmd;
      for (const auto& a : argv) cmd += a + " ";
      return ::testing::AssertionFailure() << cmd << ": " << r.describe();
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult Netns::remove() {
  if (removed_) return ::testing::AssertionSuccess();
  auto r = run({"ip", "netns", "del", name_});
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure() << "ip netns del " << name_ << ": " << r.describe();
  }
  removed_ = true;
  return ::testing::AssertionSuccess();
}

}  // namespace nspit
