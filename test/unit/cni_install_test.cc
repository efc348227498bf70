// The CNI installer (nsproxyctl cni install/uninstall) on copies of real clusters'
// configuration directories (cni_confs/), garbage files, and a directory that changes
// under a watching installer. The read-only directory and the command line are
// exercised with the real binary in test/integration/cni_install_cli_test.cc.
#include "cni_install.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cni_conf_dir.h"
#include "cni_conflist.h"
#include "unique_fd.h"

namespace nsproxy::cni_install {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using namespace std::chrono_literals;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const std::string& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
}

ordered_json parse(const std::string& path) {
  return ordered_json::parse(read(path));
}

std::vector<std::string> plugin_types(const ordered_json& conflist) {
  std::vector<std::string> types;
  for (const auto& p : conflist["plugins"]) types.push_back(p.value("type", ""));
  return types;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

const char* kEntry = R"({"type":"nsproxy","listeners":[{"listen":"169.254.169.254:80",
  "upstream":"127.0.0.1:8080","addAddress":true}],"labels":{"cluster":"test"}})";

// A node: a CNI conf dir, a bin dir, and a plugin binary to install from.
class CniInstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsproxy-cni-install-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    conf_dir_ = root_ + "/net.d";
    bin_dir_ = root_ + "/bin";
    fs::create_directories(conf_dir_);
    fs::create_directories(bin_dir_);
    write(root_ + "/plugin", "#!/bin/sh\necho the nsproxy plugin\n", 0700);
    options_.conf_dir = conf_dir_;
    options_.bin_dir = bin_dir_;
    options_.plugin_binary = root_ + "/plugin";
    auto entry = entry_from_text(kEntry);
    ASSERT_TRUE(entry) << entry.error().message;
    options_.entry = *entry;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Copies cni_confs/<name>/* into the conf dir, keeping each file's mode as given.
  void copy_confs(const std::string& name, mode_t mode = 0644) {
    for (const auto& e : fs::directory_iterator(std::string(NSPROXY_CNI_CONFS_DIR) + "/" + name)) {
      std::string to = conf_dir_ + "/" + e.path().filename().string();
      write(to, read(e.path()), mode);
    }
  }
  std::string conf(const std::string& name) const { return conf_dir_ + "/" + name; }
  std::string binary() const { return bin_dir_ + "/nsproxy"; }

  std::string root_, conf_dir_, bin_dir_;
  InstallOptions options_;
};

struct RealWorld {
  const char* dir;
  const char* file;
  std::vector<std::string> plugins;  // the original plugin types, in order
};

class RealWorldConflistTest : public CniInstallTest,
                              public ::testing::WithParamInterface<RealWorld> {};

// The field's rules on each real conflist: nsproxy appended once after the original
// plugins, which stay exactly as they were (every key, in order); the file keeps its mode;
// installing twice writes nothing; uninstall gives the original document back.
TEST_P(RealWorldConflistTest, InstallTwiceThenUninstall) {
  const RealWorld& w = GetParam();
  copy_confs(w.dir, 0640);
  const std::string path = conf(w.file);
  const ordered_json original = parse(path);
  const std::vector<std::string> others_before = files_in(conf_dir_);

  auto r = install(options_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->file, path);
  EXPECT_TRUE(r->conf_written);
  EXPECT_TRUE(r->binary_written);
  EXPECT_EQ(r->network, original["name"]);

  ordered_json installed = parse(path);
  std::vector<std::string> want = w.plugins;
  want.push_back("nsproxy");
  EXPECT_EQ(plugin_types(installed), want);
  EXPECT_EQ(r->plugins, want);
  for (size_t i = 0; i < w.plugins.size(); ++i) {
    EXPECT_EQ(installed["plugins"][i], original["plugins"][i]) << "plugin " << i;
  }
  EXPECT_EQ(installed["plugins"].back(), *entry_from_text(kEntry));
  // Every other top-level key as it was, in the same order.
  ordered_json rest_before = original, rest_after = installed;
  rest_before.erase("plugins");
  rest_after.erase("plugins");
  EXPECT_EQ(rest_after, rest_before);
  EXPECT_EQ(stat_of(path).st_mode & 07777, 0640u);
  EXPECT_EQ(files_in(conf_dir_), others_before) << "no file added or left behind";
  EXPECT_EQ(read(binary()), read(options_.plugin_binary));
  EXPECT_EQ(stat_of(binary()).st_mode & 07777, 0755u);

  // Twice: nothing written (same inode, same modification time).
  const struct stat before = stat_of(path);
  const struct stat bin_before = stat_of(binary());
  auto again = install(options_);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(again->conf_written);
  EXPECT_FALSE(again->binary_written);
  const struct stat after = stat_of(path);
  EXPECT_EQ(after.st_ino, before.st_ino);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
  EXPECT_EQ(stat_of(binary()).st_ino, bin_before.st_ino);

  auto u = uninstall(conf_dir_, bin_dir_);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->restored, std::vector<std::string>{std::string(w.file) + ": nsproxy entry removed"});
  EXPECT_TRUE(u->binary_removed);
  EXPECT_EQ(parse(path), original);  // ordered_json: same keys in the same order
  EXPECT_EQ(plugin_types(parse(path)), w.plugins);
  EXPECT_EQ(stat_of(path).st_mode & 07777, 0640u);
  EXPECT_FALSE(fs::exists(binary()));
  EXPECT_EQ(files_in(conf_dir_), others_before);
}

INSTANTIATE_TEST_SUITE_P(
    Clusters, RealWorldConflistTest,
    ::testing::Values(
        RealWorld{"calico", "10-calico.conflist", {"calico", "portmap", "bandwidth"}},
        RealWorld{"flannel", "10-flannel.conflist", {"flannel", "portmap"}},
        RealWorld{"k3s-flannel", "10-flannel.conflist", {"flannel", "portmap", "bandwidth"}},
        RealWorld{"cilium-chained", "05-cilium.conflist", {"calico", "portmap", "cilium-cni"}},
        RealWorld{"aws-vpc-cni", "10-aws.conflist", {"aws-cni", "egress-cni", "portmap"}}),
    [](const ::testing::TestParamInfo<RealWorld>& param) {
      std::string name = param.param.dir;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// A directory with only .conf files (the CNI README's example): the first becomes a
// conflist of the same stem, the .conf goes, the other file is untouched; uninstall puts
// the .conf back byte for byte, mode included, and removes the conflist.
TEST_F(CniInstallTest, OnlyConfFilesConvertedAndRestoredExactly) {
  copy_confs("bridge", 0600);
  const std::string mynet = read(conf("10-mynet.conf"));
  const std::string loopback = read(conf("99-loopback.conf"));

  auto r = install(options_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->converted_from, "10-mynet.conf");
  EXPECT_EQ(files_in(conf_dir_),
            (std::vector<std::string>{"10-mynet.conflist", "99-loopback.conf"}));
  ordered_json list = parse(conf("10-mynet.conflist"));
  EXPECT_EQ(list["name"], "mynet");
  EXPECT_EQ(list["cniVersion"], "0.4.0");
  EXPECT_EQ(plugin_types(list), (std::vector<std::string>{"bridge", "nsproxy"}));
  EXPECT_EQ(list["plugins"][0], ordered_json::parse(mynet));
  EXPECT_EQ(stat_of(conf("10-mynet.conflist")).st_mode & 07777, 0600u);
  EXPECT_EQ(read(conf("99-loopback.conf")), loopback);
  // The primary network is now the conflist.
  auto scan = scan_conf_dir(conf_dir_);
  ASSERT_TRUE(scan);
  EXPECT_EQ(scan->primary()->name, "10-mynet.conflist");

  auto again = install(options_);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(again->conf_written);

  auto u = uninstall(conf_dir_, bin_dir_);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(files_in(conf_dir_), (std::vector<std::string>{"10-mynet.conf", "99-loopback.conf"}));
  EXPECT_EQ(read(conf("10-mynet.conf")), mynet);
  EXPECT_EQ(stat_of(conf("10-mynet.conf")).st_mode & 07777, 0600u);
  EXPECT_EQ(read(conf("99-loopback.conf")), loopback);
}

// An nsproxy entry from an older install (in the middle: someone appended after it) is
// replaced by the new one at the end, never kept beside it.
TEST_F(CniInstallTest, OlderEntryReplacedNeverDuplicated) {
  write(conf("10-flannel.conflist"), R"({"name":"cbr0","cniVersion":"0.3.1","plugins":[
    {"type":"flannel","delegate":{"isDefaultGateway":true}},
    {"type":"nsproxy","listeners":[{"listen":"169.254.169.254:80","upstream":"127.0.0.1:9"}]},
    {"type":"portmap","capabilities":{"portMappings":true}},
    {"type":"nsproxy","listeners":[{"listen":"10.0.0.1:80","upstream":"127.0.0.1:9"}]}]})");
  auto r = install(options_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->conf_written);
  ordered_json list = parse(conf("10-flannel.conflist"));
  EXPECT_EQ(plugin_types(list), (std::vector<std::string>{"flannel", "portmap", "nsproxy"}));
  EXPECT_EQ(list["plugins"][2], *entry_from_text(kEntry));

  auto u = uninstall(conf_dir_, bin_dir_);
  ASSERT_TRUE(u);
  EXPECT_EQ(plugin_types(parse(conf("10-flannel.conflist"))),
            (std::vector<std::string>{"flannel", "portmap"}));
}

// Files a runtime would not load come first in lexical order: each is skipped with its
// reason and left as it was; the first valid file is the one installed into; the other
// valid file after it is not touched.
TEST_F(CniInstallTest, GarbageSkippedFirstValidChosenOthersUntouched) {
  const std::vector<std::pair<std::string, std::string>> garbage = {
      {"00-empty.conf", ""},
      {"01-blank.conflist", " \n\t\n"},
      {"02-truncated.conflist", R"({"name":"x","cniVersion":"0.3.1","plugins":[{"type":)"},
      {"03-array.json", "[1,2,3]"},
      {"04-no-plugins.conflist", R"({"name":"x","cniVersion":"0.3.1","plugins":[]})"},
      {"05-no-type.conf", R"({"name":"x","cniVersion":"0.3.1","bridge":"cni0"})"},
      {"06-plugin-not-object.conflist",
       R"({"name":"x","cniVersion":"0.3.1","plugins":["bridge"]})"},
      {"07-binary.conf", std::string("\x7f"
                                     "ELF\x02\x01\x01\0\0\0",
                                     10)},
  };
  for (const auto& [name, text] : garbage) write(conf(name), text);
  fs::create_directory(conf("08-a-directory.conf"));
  copy_confs("flannel");  // 10-flannel.conflist
  write(conf("20-second.conflist"),
        R"({"name":"second","cniVersion":"0.4.0","plugins":[{"type":"bridge"}]})");
  write(conf("README"), "not a candidate: no CNI extension\n");

  auto r = install(options_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->file, conf("10-flannel.conflist"));
  ASSERT_EQ(r->skipped.size(), garbage.size() + 1);
  EXPECT_EQ(r->skipped[0], "00-empty.conf: empty");
  EXPECT_EQ(r->skipped[2], "02-truncated.conflist: not JSON");
  EXPECT_EQ(r->skipped[3], "03-array.json: not a JSON object");
  EXPECT_EQ(r->skipped[4], "04-no-plugins.conflist: \"plugins\" is not a non-empty array");
  EXPECT_EQ(r->skipped[5], "05-no-type.conf: no \"type\"");
  EXPECT_EQ(r->skipped[6], "06-plugin-not-object.conflist: plugins[0]: not a JSON object");
  EXPECT_NE(r->skipped[8].find("08-a-directory.conf: "), std::string::npos);
  for (const auto& [name, text] : garbage) EXPECT_EQ(read(conf(name)), text) << name;
  EXPECT_EQ(plugin_types(parse(conf("20-second.conflist"))), std::vector<std::string>{"bridge"});
  EXPECT_EQ(plugin_types(parse(conf("10-flannel.conflist"))),
            (std::vector<std::string>{"flannel", "portmap", "nsproxy"}));
}

// Two candidates: only the first in lexical order is the node's network.
TEST_F(CniInstallTest, TwoCandidatesOnlyTheFirstChanges) {
  copy_confs("calico");  // 10-calico.conflist
  write(conf("20-flannel.conflist"),
        read(std::string(NSPROXY_CNI_CONFS_DIR) + "/flannel/10-flannel.conflist"));
  const std::string second = read(conf("20-flannel.conflist"));
  auto r = install(options_);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->file, conf("10-calico.conflist"));
  EXPECT_EQ(read(conf("20-flannel.conflist")), second);
}

// No configuration yet: without --wait an error at once; with --wait one that names the
// wait; a configuration written while waiting is installed into.
TEST_F(CniInstallTest, WaitsForAPrimaryConfiguration) {
  write(conf("00-garbage.conf"), "{");
  auto none = install(options_);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kNotFound);
  EXPECT_NE(none.error().message.find("no valid CNI configuration"), std::string::npos);
  EXPECT_NE(none.error().message.find("00-garbage.conf: not JSON"), std::string::npos);
  EXPECT_FALSE(fs::exists(binary())) << "nothing installed without a network";

  options_.wait = 300ms;
  auto start = std::chrono::steady_clock::now();
  auto timed_out = install(options_);
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(timed_out.error().code, Code::kTimeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);

  options_.wait = 30s;
  std::thread primary_cni([this] {
    std::this_thread::sleep_for(200ms);
    // As a primary CNI writes its file: a temporary, then a rename.
    write(conf(".10-flannel.tmp"),
          read(std::string(NSPROXY_CNI_CONFS_DIR) + "/flannel/10-flannel.conflist"));
    ::rename(conf(".10-flannel.tmp").c_str(), conf("10-flannel.conflist").c_str());
  });
  auto r = install(options_);
  primary_cni.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(plugin_types(parse(conf("10-flannel.conflist"))),
            (std::vector<std::string>{"flannel", "portmap", "nsproxy"}));
}

// A network whose cniVersion the plugin cannot chain in, and entries the plugin would
// refuse at every ADD: errors, and nothing is written or copied.
TEST_F(CniInstallTest, RefusesWhatTheRuntimeWouldFailOn) {
  write(conf("10-old.conf"), R"({"cniVersion":"0.2.0","name":"old","type":"bridge"})");
  auto r = install(options_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("10-old.conf: cniVersion \"0.2.0\""), std::string::npos)
      << r.error().message;
  EXPECT_EQ(files_in(conf_dir_), std::vector<std::string>{"10-old.conf"});
  EXPECT_FALSE(fs::exists(binary()));

  fs::remove(conf("10-old.conf"));
  copy_confs("flannel");
  const std::string flannel = read(conf("10-flannel.conflist"));
  options_.entry =
      *entry_from_text(R"({"listeners":[{"listen":"nowhere","upstream":"127.0.0.1:1"}]})");
  auto bad = install(options_);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("would fail every ADD in network \"cbr0\""), std::string::npos)
      << bad.error().message;
  EXPECT_NE(bad.error().message.find("listeners[0].listen"), std::string::npos)
      << bad.error().message;
  EXPECT_EQ(read(conf("10-flannel.conflist")), flannel);
  EXPECT_FALSE(fs::exists(binary()));
}

TEST(CniEntryTest, EntryFromText) {
  auto typed = entry_from_text(R"({"listeners":[],"labels":{}})");
  ASSERT_TRUE(typed);
  EXPECT_EQ(typed->begin().key(), "type") << "type added first";
  EXPECT_EQ((*typed)["type"], "nsproxy");
  struct Bad {
    const char* text;
    const char* says;
  };
  for (const Bad& b :
       {Bad{"", "not JSON"}, Bad{"{", "not JSON"}, Bad{"[]", "expected a JSON object"},
        Bad{R"({"type":"bridge"})", "\"type\" is \"bridge\""},
        Bad{R"({"type":7})", "\"type\" is 7"},
        Bad{R"({"cniVersion":"1.0.0","type":"nsproxy"})", "\"cniVersion\" belongs"},
        Bad{R"({"name":"net","plugins":[]})", "\"name\" belongs"}}) {
    auto r = entry_from_text(b.text);
    ASSERT_FALSE(r) << b.text;
    EXPECT_NE(r.error().message.find(b.says), std::string::npos)
        << b.text << ": " << r.error().message;
  }
}

// The converted name is taken by a file nsproxyctl did not make: refused, nothing lost.
TEST_F(CniInstallTest, ConversionNeverOverwritesAForeignConflist) {
  copy_confs("bridge");
  write(conf("10-mynet.conflist"),
        R"({"name":"other","cniVersion":"0.4.0","plugins":[{"type":"ptp"}]})");
  auto r = install(options_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("10-mynet.conflist already exists"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(plugin_types(parse(conf("10-mynet.conflist"))), std::vector<std::string>{"ptp"});
  EXPECT_TRUE(fs::exists(conf("10-mynet.conf")));
}

// Entries in several files (the primary changed since an earlier install) all go, and
// uninstalling where nothing is installed succeeds without touching anything.
TEST_F(CniInstallTest, UninstallCleansEveryFileAndIsIdempotent) {
  copy_confs("flannel");
  ASSERT_TRUE(install(options_));
  write(conf("05-calico.conflist"),
        read(std::string(NSPROXY_CNI_CONFS_DIR) + "/calico/10-calico.conflist"));
  ASSERT_TRUE(install(options_));  // now into 05-calico
  EXPECT_EQ(plugin_types(parse(conf("05-calico.conflist"))).back(), "nsproxy");
  auto u = uninstall(conf_dir_, bin_dir_);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->restored.size(), 2u);
  EXPECT_EQ(plugin_types(parse(conf("05-calico.conflist"))),
            (std::vector<std::string>{"calico", "portmap", "bandwidth"}));
  EXPECT_EQ(plugin_types(parse(conf("10-flannel.conflist"))),
            (std::vector<std::string>{"flannel", "portmap"}));
  const struct stat before = stat_of(conf("10-flannel.conflist"));
  auto again = uninstall(conf_dir_, bin_dir_);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->restored.empty());
  EXPECT_FALSE(again->binary_removed);
  EXPECT_EQ(stat_of(conf("10-flannel.conflist")).st_ino, before.st_ino);
}

// --watch: the primary CNI rewrites its file without our entry (as calico-node and
// flannel do at start) and the binary is deleted; both come back. When nothing changed,
// nothing is written: after repairing, the file stays as it is (no write loop on our own
// events).
TEST_F(CniInstallTest, WatchPutsBackWhatWasRemovedAndIdlesOtherwise) {
  copy_confs("calico");
  const std::string original = read(conf("10-calico.conflist"));
  ASSERT_TRUE(install(options_));
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::atomic<int> repairs{0};
  std::atomic<int> failures{0};
  Status watched;
  std::thread watcher([&] {
    watched = watch(options_, stop.get(), [&](const Result<InstallOutcome>& r) {
      if (r) {
        repairs += (r->conf_written ? 1 : 0) + (r->binary_written ? 1 : 0);
      } else {
        ++failures;
      }
    });
  });
  auto wait_for = [](const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    return done();
  };
  std::this_thread::sleep_for(100ms);  // the watch is set up

  // The primary CNI writes its own file again, atomically, without nsproxy.
  write(conf(".calico.tmp"), original);
  ::rename(conf(".calico.tmp").c_str(), conf("10-calico.conflist").c_str());
  EXPECT_TRUE(wait_for(
      [&] { return plugin_types(parse(conf("10-calico.conflist"))).back() == "nsproxy"; }));
  // And in place, truncate and write (some agents do).
  write(conf("10-calico.conflist"), original);
  EXPECT_TRUE(wait_for(
      [&] { return plugin_types(parse(conf("10-calico.conflist"))).back() == "nsproxy"; }));
  fs::remove(binary());
  EXPECT_TRUE(wait_for([&] { return fs::exists(binary()); }));
  EXPECT_TRUE(wait_for([&] { return repairs.load() >= 3; })) << repairs.load();

  // Quiet: our own writes do not set off more writes.
  std::this_thread::sleep_for(300ms);
  const int settled = repairs.load();
  const struct stat before = stat_of(conf("10-calico.conflist"));
  // A change that is not ours to repair (an unrelated file) writes nothing either.
  write(conf("99-unrelated.conf.bak"), "x");
  write(conf("calico-kubeconfig"), "rotated token\n");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(repairs.load(), settled);
  EXPECT_EQ(stat_of(conf("10-calico.conflist")).st_ino, before.st_ino);
  EXPECT_EQ(failures.load(), 0);

  uint64_t one = 1;
  ASSERT_EQ(::write(stop.get(), &one, sizeof one), 8);
  watcher.join();
  EXPECT_TRUE(watched) << watched.error().message;
  EXPECT_EQ(plugin_types(parse(conf("10-calico.conflist"))).back(), "nsproxy")
      << "stopping the watch leaves the entry installed";
}

}  // namespace
}  // namespace nsproxy::cni_install
