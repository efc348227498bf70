// FileWatch: a change in the directory of a watched file (or of a symlink's target) runs
// the callback once, a settle time after the first change; a directory no longer asked
// for stops being watched; a directory that goes away is forgotten and watched again
// once it is asked for anew.
#include "control/file_watch.h"

#include <ev.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace nsproxy {
namespace {

namespace fs = std::filesystem;

class FileWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsproxy-file-watch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    loop_ = ev_loop_new(EVFLAG_AUTO);
    watch_ = std::make_unique<FileWatch>(loop_, 0.05, [this] { ++calls_; });
  }
  void TearDown() override {
    watch_.reset();
    ev_loop_destroy(loop_);
    fs::remove_all(dir_);
  }
  // Runs the loop for about `seconds`.
  void run_for(double seconds) {
    ev_timer t;
    ev_timer_init(
        &t, [](struct ev_loop* l, ev_timer*, int) { ev_break(l, EVBREAK_ONE); }, seconds, 0.);
    ev_timer_start(loop_, &t);
    ev_run(loop_, 0);
    ev_timer_stop(loop_, &t);
  }
  bool watches(const fs::path& d) const {
    auto dirs = watch_->directories();
    return std::find(dirs.begin(), dirs.end(), d.string()) != dirs.end();
  }

  fs::path dir_;
  struct ev_loop* loop_ = nullptr;
  std::unique_ptr<FileWatch> watch_;
  int calls_ = 0;
};

TEST_F(FileWatchTest, ChangesInTheDirectoryRunTheCallbackOnceAfterTheySettle) {
  fs::create_directories(dir_ / "tls");
  std::ofstream(dir_ / "tls" / "cert.pem") << "a";
  watch_->watch({(dir_ / "tls" / "cert.pem").string()});
  ASSERT_TRUE(watches(dir_ / "tls"));
  run_for(0.1);
  EXPECT_EQ(calls_, 0) << "nothing changed yet";

  std::ofstream(dir_ / "tls" / "cert.pem") << "b";
  std::ofstream(dir_ / "tls" / "key.pem") << "c";
  fs::rename(dir_ / "tls" / "key.pem", dir_ / "tls" / "cert.pem");
  run_for(0.3);
  EXPECT_EQ(calls_, 1) << "three changes within the settle time are one call";

  // Elsewhere: no call.
  std::ofstream(dir_ / "elsewhere") << "x";
  run_for(0.2);
  EXPECT_EQ(calls_, 1);
}

TEST_F(FileWatchTest, ASymlinksTargetDirectoryIsWatchedToo) {
  fs::create_directories(dir_ / "archive");
  fs::create_directories(dir_ / "live");
  std::ofstream(dir_ / "archive" / "cert1.pem") << "a";
  fs::create_symlink("../archive/cert1.pem", dir_ / "live" / "cert.pem");
  watch_->watch({(dir_ / "live" / "cert.pem").string()});
  EXPECT_TRUE(watches(dir_ / "live"));
  EXPECT_TRUE(watches(fs::canonical(dir_ / "archive")));
  std::ofstream(dir_ / "archive" / "cert1.pem") << "b";  // in place, through no symlink
  run_for(0.3);
  EXPECT_EQ(calls_, 1);
}

TEST_F(FileWatchTest, DirectoriesNoLongerAskedForAreDropped) {
  fs::create_directories(dir_ / "a");
  fs::create_directories(dir_ / "b");
  watch_->watch({(dir_ / "a" / "x.pem").string(), (dir_ / "b" / "y.pem").string()});
  ASSERT_TRUE(watches(dir_ / "a"));
  ASSERT_TRUE(watches(dir_ / "b"));
  watch_->watch({(dir_ / "b" / "y.pem").string()});
  EXPECT_FALSE(watches(dir_ / "a"));
  EXPECT_TRUE(watches(dir_ / "b"));
  run_for(0.2);  // the IN_IGNORED of a's watch
  calls_ = 0;
  std::ofstream(dir_ / "a" / "x.pem") << "a";
  run_for(0.2);
  EXPECT_EQ(calls_, 0) << "a is not watched any more";
  watch_->watch({});
  EXPECT_TRUE(watch_->directories().empty());
}

TEST_F(FileWatchTest, ADirectoryThatGoesIsForgottenAndWatchedAgainWhenItComesBack) {
  fs::create_directories(dir_ / "secret");
  const std::string file = (dir_ / "secret" / "tls.crt").string();
  watch_->watch({file});
  fs::remove_all(dir_ / "secret");
  run_for(0.3);
  EXPECT_EQ(calls_, 1);
  EXPECT_FALSE(watches(dir_ / "secret"));
  fs::create_directories(dir_ / "secret");
  watch_->watch({file});
  ASSERT_TRUE(watches(dir_ / "secret"));
  std::ofstream(file) << "new";
  run_for(0.3);
  EXPECT_EQ(calls_, 2);
}

}  // namespace
}  // namespace nsproxy
