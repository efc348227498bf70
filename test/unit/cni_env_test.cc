#include "cni_env.h"

#include <gtest/gtest.h>

#include <string>

#include "control_protocol.h"

namespace nsproxy::cni {
namespace {

EnvMap full_env(const std::string& command) {
  return {{"CNI_COMMAND", command},
          {"CNI_CONTAINERID", "abc123"},
          {"CNI_NETNS", "/run/netns/x"},
          {"CNI_IFNAME", "eth0"},
          {"CNI_PATH", "/opt/cni/bin"}};
}

void expect_env_error(const CniResult<CniEnv>& r, const std::string& needle) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, code::kInvalidEnvironment);
  EXPECT_NE(r.error().msg.find(needle), std::string::npos) << r.error().msg;
}

TEST(CniEnv, ParsesEveryCommand) {
  for (auto [text, cmd] : {std::pair{"ADD", Command::Add},
                           {"DEL", Command::Del},
                           {"CHECK", Command::Check},
                           {"STATUS", Command::Status},
                           {"GC", Command::Gc},
                           {"VERSION", Command::Version}}) {
    auto r = parse_command({{"CNI_COMMAND", text}});
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_EQ(*r, cmd);
    EXPECT_STREQ(command_name(cmd), text);
  }
}

TEST(CniEnv, MissingOrUnknownCommandIsCode4) {
  auto missing = parse_command({});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, code::kInvalidEnvironment);
  EXPECT_NE(missing.error().msg.find("CNI_COMMAND"), std::string::npos);

  for (const char* bad : {"", "add", "UPDATE"}) {
    auto r = parse_command({{"CNI_COMMAND", bad}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, code::kInvalidEnvironment);
    EXPECT_NE(r.error().msg.find("CNI_COMMAND"), std::string::npos) << r.error().msg;
  }
}

TEST(CniEnv, AddAndCheckNeedFourVariables) {
  for (Command c : {Command::Add, Command::Check}) {
    ASSERT_TRUE(read_env(c, full_env(command_name(c))).ok());
    for (const char* var : {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}) {
      EnvMap env = full_env(command_name(c));
      env.erase(var);
      expect_env_error(read_env(c, env), var);
      env[var] = "";  // empty counts as missing, as in libcni
      expect_env_error(read_env(c, env), var);
    }
  }
}

TEST(CniEnv, AllMissingVariablesAreNamedTogether) {
  auto r = read_env(Command::Add, {{"CNI_COMMAND", "ADD"}, {"CNI_IFNAME", "eth0"}});
  expect_env_error(r, "CNI_CONTAINERID");
  expect_env_error(r, "CNI_NETNS");
  expect_env_error(r, "CNI_PATH");
  EXPECT_EQ(r.error().msg.find("CNI_IFNAME"), std::string::npos) << r.error().msg;
}

TEST(CniEnv, DelDoesNotNeedNetns) {
  EnvMap env = full_env("DEL");
  env.erase("CNI_NETNS");
  auto r = read_env(Command::Del, env);
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->container_id, "abc123");
  EXPECT_EQ(r->ifname, "eth0");
  for (const char* var : {"CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"}) {
    EnvMap e = env;
    e.erase(var);
    expect_env_error(read_env(Command::Del, e), var);
  }
}

TEST(CniEnv, GcNeedsPathStatusNeedsNothing) {
  EXPECT_TRUE(read_env(Command::Status, {{"CNI_COMMAND", "STATUS"}}).ok());
  expect_env_error(read_env(Command::Gc, {{"CNI_COMMAND", "GC"}}), "CNI_PATH");
  EXPECT_TRUE(read_env(Command::Gc, {{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}}).ok());
}

TEST(CniEnv, ValidatesContainerId) {
  for (const char* bad : {"-abc", "_abc", "a b", "a/b", "abc;", ".abc"}) {
    EnvMap env = full_env("ADD");
    env["CNI_CONTAINERID"] = bad;
    expect_env_error(read_env(Command::Add, env), "CNI_CONTAINERID");
  }
  EnvMap env = full_env("ADD");
  env["CNI_CONTAINERID"] = std::string(kMaxIdLength + 1, 'a');
  expect_env_error(read_env(Command::Add, env), "CNI_CONTAINERID");
  env["CNI_CONTAINERID"] = "Abc-1.2_3";
  EXPECT_TRUE(read_env(Command::Add, env).ok());
  EXPECT_TRUE(valid_container_id(std::string(kMaxIdLength, 'a')));
}

TEST(CniEnv, ValidatesInterfaceName) {
  for (const char* bad : {".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "abcdefghijklmnop"}) {
    EnvMap env = full_env("DEL");
    env["CNI_IFNAME"] = bad;
    expect_env_error(read_env(Command::Del, env), "CNI_IFNAME");
    EXPECT_FALSE(interface_name_problem(bad).empty()) << bad;
  }
  EXPECT_TRUE(interface_name_problem("abcdefghijklmno").empty());  // 15 is the limit
  EXPECT_TRUE(interface_name_problem("net1").empty());
}

TEST(CniArgs, EmptyIsFine) {
  auto r = parse_cni_args("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->labels.empty());
  EXPECT_FALSE(r->ignore_unknown);
}

TEST(CniArgs, DerivesPodLabels) {
  auto r = parse_cni_args(
      "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=1234-abcd;"
      "K8S_POD_INFRA_CONTAINER_ID=infra1;");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->labels.size(), 3u);
  EXPECT_EQ(r->labels.at("pod-namespace"), "default");
  EXPECT_EQ(r->labels.at("pod-name"), "web-0");
  EXPECT_EQ(r->labels.at("pod-uid"), "1234-abcd");
  EXPECT_EQ(r->infra_container_id, "infra1");
}

TEST(CniArgs, UnknownKeyFailsUnlessIgnored) {
  auto r = parse_cni_args("FOO=bar;K8S_POD_NAME=p");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, code::kInvalidEnvironment);
  EXPECT_NE(r.error().msg.find("FOO"), std::string::npos) << r.error().msg;

  for (const char* on : {"1", "true", "TRUE", "True"}) {
    // IgnoreUnknown counts wherever it appears in the list.
    auto ok = parse_cni_args(std::string("FOO=bar;K8S_POD_NAME=p;IgnoreUnknown=") + on);
    ASSERT_TRUE(ok.ok()) << on << ": " << ok.error().msg;
    EXPECT_TRUE(ok->ignore_unknown);
    EXPECT_EQ(ok->labels.at("pod-name"), "p");
    EXPECT_EQ(ok->labels.count("FOO"), 0u);
  }
  EXPECT_FALSE(parse_cni_args("FOO=bar;IgnoreUnknown=0").ok());
  EXPECT_FALSE(parse_cni_args("FOO=bar;IgnoreUnknown=false").ok());
  EXPECT_FALSE(parse_cni_args("IgnoreUnknown=maybe").ok());
}

TEST(CniArgs, MalformedPairsAreCode4) {
  for (const char* bad : {"K8S_POD_NAME", "=value", "K8S_POD_NAME=a;broken", "IgnoreUnknown=1;x"}) {
    auto r = parse_cni_args(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, code::kInvalidEnvironment) << bad;
    EXPECT_NE(r.error().msg.find("CNI_ARGS"), std::string::npos) << r.error().msg;
  }
}

TEST(CniArgs, ValueMayContainEqualsAndBeEmpty) {
  auto r = parse_cni_args("K8S_POD_NAME=a=b;K8S_POD_NAMESPACE=");
  ASSERT_TRUE(r.ok()) << r.error().msg;
  EXPECT_EQ(r->labels.at("pod-name"), "a=b");
  EXPECT_EQ(r->labels.at("pod-namespace"), "");
}

TEST(CniArgs, LabelValuesAreBounded) {
  EXPECT_FALSE(parse_cni_args("K8S_POD_NAME=a\x01"
                              "b")
                   .ok());
  EXPECT_FALSE(parse_cni_args("K8S_POD_NAME=" + std::string(kMaxLabelValueLength + 1, 'x')).ok());
  EXPECT_TRUE(parse_cni_args("K8S_POD_NAME=" + std::string(kMaxLabelValueLength, 'x')).ok());
}

// Found by fuzz_cni_config: 387 bytes, 326 of them not UTF-8, passed the 1024-byte limit
// here and became 1039 bytes (U+FFFD each) in the request, which the daemon refused.
TEST(CniArgs, LabelValuesMustBeUtf8) {
  for (const char* bad : {"\xff",
                          "a\x80"
                          "b",
                          "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"}) {
    auto r = parse_cni_args(std::string("K8S_POD_NAME=") + bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, code::kInvalidEnvironment);
    EXPECT_NE(r.error().msg.find("UTF-8"), std::string::npos) << r.error().msg;
  }
  for (const char* good : {"caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "plain-pod"}) {
    auto r = parse_cni_args(std::string("K8S_POD_NAME=") + good);
    ASSERT_TRUE(r.ok()) << good << ": " << r.error().msg;
    EXPECT_EQ(r->labels.at("pod-name"), good);
  }
  EXPECT_FALSE(parse_cni_args("K8S_POD_NAME=" + std::string(387, '\xff')).ok());
}

}  // namespace
}  // namespace nsproxy::cni
