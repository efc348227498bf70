#include "one_tenant.h"

#include "control.h"
#include "scratch.h"

namespace nspit {

void OneTenantTest::start(std::vector<std::string> flags, const std::string& echo_mode) {
  daemon_ = std::make_unique<Daemon>(tmp_.path());
  daemon_->set_extra_args(std::move(flags));
  ASSERT_TRUE(daemon_->start());
  echo_ = std::make_unique<EchoServer>(echo_mode);
  ASSERT_TRUE(echo_->start());
  ASSERT_TRUE(ns_.ok()) << ns_.error();
  id_ = id_prefix_ + short_token();
  ASSERT_TRUE(register_tenant(*daemon_, ns_.path(), id_,
                              {.upstream = echo_->address(), .mode = mode_, .labels = labels_}));
}

HttpConn OneTenantTest::conn(const std::string& listen) {
  auto c = HttpConn::open(ns_.path(), listen);
  EXPECT_TRUE(c.ok()) << c.error();
  return c;
}

}  // namespace nspit
