// Scratch network namespaces: a named netns (`ip netns add`) per test object, removed
// again in its destructor, and running commands inside it.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "netns.h"
#include "processes.h"

namespace nspit {

// A named network namespace (`ip netns add`), deleted in the destructor.
// `lo` is brought up unless lo_up is false.
class Netns {
 public:
  explicit Netns(bool lo_up = true);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // (st_dev, st_ino) of the namespace as the daemon should report it.
  nsproxy::NetnsId identity() const;
  // `ip netns exec NAME sh -c command`.
  ProcessResult exec(const std::string& command, Millis timeout = 10000ms) const;
  // Adds an interface with an address, up: a dummy, or where the kernel has no dummy
  // driver, one end of a veth pair whose peer ("<ifname>p") also stays inside.
  ::testing::AssertionResult add_interface(const std::string& ifname,
                                           const std::string& cidr) const;
  // `ip netns del` now (the destructor then does nothing).
  ::testing::AssertionResult remove();
  // Prefix to run a program inside: {"ip", "netns", "exec", NAME}.
  std::vector<std::string> exec_prefix() const { return {"ip", "netns", "exec", name_}; }

 private:
  std::string name_;
  std::string error_;
  bool removed_ = false;
};

}  // namespace nspit
