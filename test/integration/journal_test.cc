// The state journal: "every acknowledged ADD and DEL is appended to the journal before
// the reply (compacted when it grows past twice the live set plus 1,024 lines)", and the
// registrations come back at the next start (README, "Tenant isolation" / SIGTERM).
// With --fsync ("fdatasync every journal change", for a state directory on disk) every
// change is synced, as strace shows.
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cstdlib>
#include <fstream>

#include "fixture.h"

namespace nspit {
namespace {

struct JournalFile {
  size_t lines = 0;
  size_t lines_naming_churn = 0;
  ino_t inode = 0;
};

JournalFile read_journal(const std::string& path) {
  JournalFile j;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) j.inode = st.st_ino;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    ++j.lines;
    if (line.find("\"churn\"") != std::string::npos) ++j.lines_naming_churn;
  }
  return j;
}

class JournalTest : public IntegrationTest {};  // root, or a loud skip

// nsproxyd under strace, its fdatasync and fsync calls (with the files they sync) written
// to `trace`. setpriv --pdeathsig: should a test fail and SIGTERM strace (which would
// detach and leave the daemon running), the daemon gets SIGTERM too.
// LeakSanitizer cannot run under ptrace (it would end an ASan build's daemon with exit
// code 1 at its exit): the traced daemon runs without it. A release build ignores this.
Env traced_env() {
  const char* cur = std::getenv("ASAN_OPTIONS");
  std::string opts = cur && *cur ? std::string(cur) + ":" : std::string();
  return {{"ASAN_OPTIONS", opts + "detect_leaks=0"}};
}

std::vector<std::string> sync_trace_prefix(const std::string& trace) {
  return {"strace",  "-f",          "-y",   "-e", "trace=fdatasync,fsync", "-o", trace,
          "setpriv", "--pdeathsig", "TERM", "--"};
}

// The trace's completed fdatasync/fsync calls: all of them, and those on the journal.
struct SyncCalls {
  size_t all = 0;
  size_t journal = 0;
  std::string text;  // the trace, for messages
};

SyncCalls read_sync_calls(const std::string& trace) {
  SyncCalls c;
  std::ifstream in(trace);
  for (std::string line; std::getline(in, line);) {
    c.text += line + "\n";
    if (line.find("fdatasync(") == std::string::npos && line.find("fsync(") == std::string::npos)
      continue;
    ++c.all;
    if (line.find("/registrations.journal>") != std::string::npos) ++c.journal;
  }
  return c;
}

// The daemon's own pid (under a prefix, Daemon::pid() is the prefix's).
pid_t daemon_pid(const Daemon& d) {
  return static_cast<pid_t>(daemon_status(d).value("pid", 0));
}

bool on_tmpfs(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC;
}

TEST_F(JournalTest, ChurnIsCompactedAwayAndTheLiveRegistrationSurvivesARestart) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  TempDir tmp;
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns;
  ASSERT_TRUE(ns.ok()) << ns.error();
  auto d = std::make_unique<Daemon>(tmp.path());
  ASSERT_TRUE(d->start());
  const std::string journal = d->state_dir() + "/registrations.journal";

  nsproxy::ListenerSpec keep{"127.0.0.1:8080", echo.address(), nsproxy::Mode::Tcp};
  ASSERT_TRUE(register_tenant(*d, ns.path(), "keeper", {.listeners = {keep}}));
  const JournalFile start = read_journal(journal);
  ASSERT_EQ(start.lines, 1u) << "one ADD, one journal line";

  // One live registration: the journal may hold at most 2 * 1 + 1024 lines. 600 ADD/DEL
  // pairs of another registration are 1,200 changes, well past that.
  const size_t kCycles = 600;
  const size_t kBound = 2 * 1 + 1024;
  size_t most = 0;
  nsproxy::ListenerSpec churn_spec{"127.0.0.1:8081", echo.address(), nsproxy::Mode::Tcp};
  for (size_t i = 0; i < kCycles; ++i) {
    ASSERT_TRUE(register_tenant(*d, ns.path(), "churn", {.listeners = {churn_spec}}))
        << "cycle " << i;
    nsproxy::Request del;
    del.op = nsproxy::Op::Del;
    del.attachment.id = "churn";
    auto r = d->call(del);
    ASSERT_TRUE(r.ok() && r->ok) << "cycle " << i << ": "
                                 << (r.ok() ? r->error.message : r.error().message);
    if (i % 50 == 49) most = std::max(most, read_journal(journal).lines);
  }
  const JournalFile after = read_journal(journal);
  most = std::max(most, after.lines);
  EXPECT_LE(most, kBound) << "the journal grew past twice the live set plus 1,024 lines";
  EXPECT_LT(after.lines_naming_churn, 2 * kCycles)
      << "every ADD and DEL of the churned registration is still in the journal";
  EXPECT_NE(after.inode, start.inode) << "the journal was never rewritten (compacted)";

  // Only the keeper is live, and it is what a restart brings back.
  EXPECT_EQ(d->registrations_with_id("keeper").size(), 1u);
  EXPECT_TRUE(d->registrations_with_id("churn").empty());
  EXPECT_EQ(d->stop(), 0) << d->log();
  d = std::make_unique<Daemon>(tmp.path());
  ASSERT_TRUE(d->start());
  // The log line is written before the daemon serves; its stderr may reach us later.
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       d->log().find("restored 1 registration(s)") == std::string::npos &&
       std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(d->log().find("restored 1 registration(s)"), std::string::npos) << d->log();
  EXPECT_EQ(d->registrations_with_id("keeper").size(), 1u) << d->list().dump(2);
  EXPECT_TRUE(d->registrations_with_id("churn").empty()) << d->list().dump(2);
  auto got = roundtrip_in_netns(ns.path(), "127.0.0.1:8080", "kept");
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, "kept");
  auto gone = connect_in_netns(ns.path(), "127.0.0.1:8081");
  EXPECT_EQ(gone.err, ECONNREFUSED) << "the deleted registration came back: " << gone.message;
}

// A registration whose namespace vanished while no daemon ran is dropped at the next
// start, and the journal is compacted to what was restored: the start after that neither
// tries it again nor keeps its line.
TEST_F(JournalTest, ARegistrationDroppedAtRestoreLeavesTheJournal) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  TempDir tmp;
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns stays, goes;
  ASSERT_TRUE(stays.ok() && goes.ok()) << stays.error() << goes.error();
  auto d = std::make_unique<Daemon>(tmp.path());
  ASSERT_TRUE(d->start());
  const std::string journal = d->state_dir() + "/registrations.journal";
  nsproxy::ListenerSpec spec{"127.0.0.1:8080", echo.address(), nsproxy::Mode::Tcp};
  ASSERT_TRUE(register_tenant(*d, stays.path(), "stays", {.listeners = {spec}}));
  ASSERT_TRUE(register_tenant(*d, goes.path(), "vanishes", {.listeners = {spec}}));
  EXPECT_EQ(d->stop(), 0) << d->log();
  ASSERT_TRUE(goes.remove());

  d = std::make_unique<Daemon>(tmp.path());
  ASSERT_TRUE(d->start());
  EXPECT_EQ(d->registrations_with_id("stays").size(), 1u) << d->list().dump(2);
  EXPECT_TRUE(d->registrations_with_id("vanishes").empty()) << d->list().dump(2);
  std::ifstream in(journal);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("\"vanishes\""), std::string::npos)
      << "the dropped registration is still in the journal:\n"
      << text;
  EXPECT_NE(text.find("\"stays\""), std::string::npos) << text;
  EXPECT_EQ(d->stop(), 0) << d->log();
}

TEST_F(JournalTest, WithFsyncEveryAddIsSyncedAndSurvivesKillNine) {
  ASSERT_TRUE(binaries_exist({"nsproxyd", "nsproxy-echo"}));
  ASSERT_EQ(run({"strace", "-V"}).exit_code, 0) << "strace is needed (scripts/install-deps.sh)";
  // A state directory on disk, as --fsync is meant for (not /tmp, which may be a tmpfs).
  TempDir with_fsync("/var/tmp");
  TempDir without_fsync("/var/tmp");
  ASSERT_FALSE(on_tmpfs(with_fsync.path())) << with_fsync.path() << " is on a tmpfs";
  EchoServer echo("echo");
  ASSERT_TRUE(echo.start());
  Netns ns, other;
  ASSERT_TRUE(ns.ok() && other.ok()) << ns.error() << other.error();
  constexpr int kTenants = 5;
  auto spec = [&](int i) {
    return TenantOptions{.listen = "127.0.0.1:" + std::to_string(8080 + i),
                         .upstream = echo.address(),
                         .mode = nsproxy::Mode::Tcp};
  };

  // --fsync: ADDs, then kill -9.
  const std::string synced_trace = with_fsync.file("sync.strace");
  {
    Daemon d(with_fsync.path(), sync_trace_prefix(synced_trace));
    d.set_env(traced_env());
    d.set_extra_args({"--fsync"});
    ASSERT_TRUE(d.start(10000ms));
    for (int i = 0; i < kTenants; ++i) {
      ASSERT_TRUE(register_tenant(d, ns.path(), "synced-" + std::to_string(i), spec(i)));
    }
    pid_t pid = daemon_pid(d);
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ASSERT_TRUE(d.process()->wait(5000ms).has_value()) << "strace did not end with its tracee";
    d.stop();  // reaps; a killed daemon's exit code is not checked
  }
  SyncCalls synced = read_sync_calls(synced_trace);
  EXPECT_GE(synced.journal, static_cast<size_t>(kTenants))
      << "fewer journal syncs than acknowledged ADDs:\n"
      << synced.text;

  // Every acknowledged registration comes back from the disk and serves.
  {
    Daemon d(with_fsync.path());
    d.set_extra_args({"--fsync"});
    ASSERT_TRUE(d.start());
    EXPECT_EQ(d.list().size(), static_cast<size_t>(kTenants)) << d.list().dump(2);
    for (int i = 0; i < kTenants; ++i) {
      EXPECT_EQ(d.registrations_with_id("synced-" + std::to_string(i)).size(), 1u);
      auto got = roundtrip_in_netns(ns.path(), spec(i).listen, "restored " + std::to_string(i));
      ASSERT_TRUE(got.ok()) << i << ": " << got.error().message;
      EXPECT_EQ(*got, "restored " + std::to_string(i));
    }
    EXPECT_EQ(d.stop(), 0) << d.log();
  }

  // Without --fsync the same ADDs sync nothing.
  const std::string unsynced_trace = without_fsync.file("sync.strace");
  {
    Daemon d(without_fsync.path(), sync_trace_prefix(unsynced_trace));
    d.set_env(traced_env());
    ASSERT_TRUE(d.start(10000ms));
    for (int i = 0; i < kTenants; ++i) {
      ASSERT_TRUE(register_tenant(d, other.path(), "unsynced-" + std::to_string(i), spec(i)));
    }
    pid_t pid = daemon_pid(d);
    ASSERT_GT(pid, 0);
    ASSERT_EQ(::kill(pid, SIGTERM), 0);  // strace exits with its tracee's code
    auto code = d.process()->wait(5000ms);
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 0) << d.log();
    d.stop();
  }
  SyncCalls unsynced = read_sync_calls(unsynced_trace);
  EXPECT_EQ(unsynced.all, 0u) << "syncs without --fsync:\n" << unsynced.text;
  // The trace did run: it names the daemon's exit.
  EXPECT_NE(unsynced.text.find("+++ exited with 0 +++"), std::string::npos) << unsynced.text;
}

}  // namespace
}  // namespace nspit
