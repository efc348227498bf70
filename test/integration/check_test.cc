// CNI CHECK through the real plugin, as README's command table has it: "the registration
// exists, with the same namespace, every listener accepting | 100 with the daemon's
// reason, 11 unreachable". The daemon's reason is the CNI error's msg, its error code
// the details (nsproxy(8): not_found, netns_mismatch, ...).
#include "fixture.h"
#include "plugin_fixture.h"

namespace nspit {
namespace {

using nlohmann::json;
constexpr const char* kListen = "127.0.0.1:8080";

std::string details(const PluginResult& r) {
  return r.json.is_object() ? r.json.value("details", "") : "";
}

class CheckTest : public PluginFixture {
 protected:
  json config() const { return echo_config(kListen); }
  PluginResult cni(const std::string& command, const std::string& netns_path,
                   const json& cfg) const {
    return PluginFixture::cni(command, cfg, netns_path);
  }
};

TEST_F(CheckTest, ANamespaceOtherThanTheRegisteredOneIsCode100NetnsMismatch) {
  ASSERT_EQ(cni("ADD", ns_->path(), config()).exit_code, 0);
  Netns other;
  ASSERT_TRUE(other.ok()) << other.error();

  auto wrong = cni("CHECK", other.path(), config());
  EXPECT_EQ(wrong.exit_code, 1) << wrong.describe();
  EXPECT_EQ(wrong.cni_code(), 100) << wrong.describe();
  EXPECT_EQ(details(wrong), "netns_mismatch") << wrong.describe();
  // The reason names both namespaces.
  EXPECT_NE(wrong.msg().find(ns_->path()), std::string::npos) << wrong.describe();
  EXPECT_NE(wrong.msg().find(other.path()), std::string::npos) << wrong.describe();

  auto right = cni("CHECK", ns_->path(), config());
  EXPECT_EQ(right.exit_code, 0) << right.describe();
  EXPECT_EQ(right.out, "") << "CHECK prints nothing on success: " << right.describe();
}

TEST_F(CheckTest, AnUnknownRegistrationIsCode100NotFound) {
  auto r = cni("CHECK", ns_->path(), config());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 100) << r.describe();
  EXPECT_EQ(details(r), "not_found") << r.describe();
  EXPECT_NE(r.msg().find(container_), std::string::npos) << r.describe();
}

// A tenant at its connection limit holds new connections in its backlog: its listener
// is serving (a wait, not a refusal), so CHECK passes.
TEST_F(CheckTest, ATenantAtItsConnectionLimitStillChecksOk) {
  json cfg = config();
  cfg["listeners"][0]["mode"] = "tcp";
  cfg["limits"] = {{"connections", 1}};
  ASSERT_EQ(cni("ADD", ns_->path(), cfg).exit_code, 0);
  auto first = connect_in_netns(ns_->path(), kListen);
  ASSERT_TRUE(first.ok()) << first.message;
  HttpConn held(std::move(first.fd));
  ASSERT_TRUE(held.send("x").ok());
  ASSERT_TRUE(held.read_exact(1, 5000ms).ok()) << "the first connection was not served";
  // The second one waits in the backlog: nothing comes back.
  auto second = connect_in_netns(ns_->path(), kListen);
  ASSERT_TRUE(second.ok()) << second.message;
  HttpConn waiting(std::move(second.fd));
  ASSERT_TRUE(waiting.send("y").ok());
  ASSERT_FALSE(waiting.read_exact(1, 300ms).ok()) << "the tenant was not at its limit";

  auto r = cni("CHECK", ns_->path(), cfg);
  EXPECT_EQ(r.exit_code, 0) << r.describe();

  // Ending the first connection lets the waiting one in.
  held.close();
  auto echoed = waiting.read_exact(1, 5000ms);
  ASSERT_TRUE(echoed.ok()) << echoed.error().message;
  EXPECT_EQ(*echoed, "y");
}

TEST_F(CheckTest, AnUnreachableDaemonIsCode11NamingTheSocket) {
  ASSERT_EQ(cni("ADD", ns_->path(), config()).exit_code, 0);
  ASSERT_EQ(daemon_->stop(), 0) << daemon_->log();
  auto r = cni("CHECK", ns_->path(), config());
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_EQ(r.cni_code(), 11) << r.describe();
  EXPECT_NE(r.msg().find(daemon_->socket_path()), std::string::npos) << r.describe();
}

}  // namespace
}  // namespace nspit
