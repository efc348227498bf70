// Concurrent registration: 200 CNI plugins adding at once, then 100 deleting while 100
// more add; nothing is lost, nothing deleted survives, and the survivors serve.
#include <cerrno>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fixture.h"

namespace nspit {
namespace {

using nlohmann::json;

TEST_F(LifecycleTest, StormOf200ConcurrentPluginAddsAndDelsLosesNothing) {
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  Daemon d(tmp_.path());
  ASSERT_TRUE(d.start());
  const std::string network = unique_name();
  auto config_for = [&](int i) {
    json listeners =
        json::array({listener("127.0.0.1:" + std::to_string(20000 + i), echo.address(), "tcp")});
    return plugin_config(network, d.socket_path(), listeners, 20000).dump();
  };
  auto cid = [](int i) { return "storm" + std::to_string(i); };
  // Runs every (command, i) at once and waits for all of them.
  auto storm = [&](const std::vector<std::pair<std::string, int>>& jobs) {
    std::vector<std::unique_ptr<Process>> procs;
    for (const auto& [command, i] : jobs) {
      procs.push_back(std::make_unique<Process>(std::vector<std::string>{binary("nsproxy")},
                                                cni_env(command, cid(i), ns.path()),
                                                config_for(i)));
      ASSERT_TRUE(procs.back()->started()) << procs.back()->start_error();
    }
    for (size_t k = 0; k < procs.size(); ++k) {
      auto code = procs[k]->wait(60000ms);
      ASSERT_TRUE(code.has_value()) << jobs[k].first << " " << jobs[k].second << " hung";
      EXPECT_EQ(*code, 0) << jobs[k].first << " " << cid(jobs[k].second) << ": " << procs[k]->out()
                          << procs[k]->err();
    }
  };
  auto registered_ids = [&]() {
    std::multiset<std::string> ids;
    for (const auto& r : d.list()) ids.insert(r["attachment"].value("id", ""));
    return ids;
  };

  std::vector<std::pair<std::string, int>> adds;
  for (int i = 0; i < 200; ++i) adds.emplace_back("ADD", i);
  storm(adds);
  auto ids = registered_ids();
  EXPECT_EQ(ids.size(), 200u);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(ids.count(cid(i)), 1u) << cid(i);

  // 100 DELs of existing ones and 100 new ADDs, all at once.
  std::vector<std::pair<std::string, int>> mixed;
  for (int i = 0; i < 100; ++i) {
    mixed.emplace_back("DEL", i);
    mixed.emplace_back("ADD", 200 + i);
  }
  storm(mixed);
  ids = registered_ids();
  EXPECT_EQ(ids.size(), 200u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ids.count(cid(i)), 0u) << cid(i) << " survived DEL";
  for (int i = 100; i < 300; ++i) EXPECT_EQ(ids.count(cid(i)), 1u) << cid(i);

  for (int i : {100, 199, 250, 299}) {
    auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:" + std::to_string(20000 + i), "x");
    ASSERT_TRUE(got.ok()) << i << ": " << got.error().message;
    EXPECT_EQ(*got, "x");
  }
  auto gone = connect_in_netns(ns.path(), "127.0.0.1:20000");
  EXPECT_EQ(gone.err, ECONNREFUSED) << gone.message;
}

}  // namespace
}  // namespace nspit
