// The state journal: "every acknowledged ADD and DEL is appended to the journal before
// the reply (compacted when it grows past twice the live set plus 1,024 lines)", and the
// registrations come back at the next start (README, "Tenant isolation" / SIGTERM).
#include <sys/stat.h>

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

}  // namespace
}  // namespace nspit
