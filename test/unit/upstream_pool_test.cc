// UpstreamPool: idle upstream connections per address, newest first, capped, dropped
// when the upstream closes them or they idle too long; records recycled; a connection
// keeps its read watcher active while parked and when taken back.
#include "forward/upstream_pool.h"

#include <ev.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "forward/connection.h"
#include "unique_fd.h"

namespace nsproxy {
namespace {

struct Pair {
  UniqueFd ours;    // what the pool holds
  UniqueFd theirs;  // the "upstream" end
};

Pair make_pair_fds() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Pair p;
  p.ours.reset(sv[0]);
  p.theirs.reset(sv[1]);
  return p;
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

void never_called(struct ev_loop*, ev_io*, int) {
  ADD_FAILURE() << "a session callback ran for a parked connection";
}

class UpstreamPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { loop_ = ev_loop_new(EVFLAG_AUTO); }
  void TearDown() override { ev_loop_destroy(loop_); }
  void spin() {
    for (int i = 0; i < 5; ++i) ev_run(loop_, EVRUN_NOWAIT);
  }
  // A session's upstream connection after a response: reading, nothing to write.
  std::unique_ptr<Connection> conn(UniqueFd fd) {
    auto c = std::make_unique<Connection>(loop_, nullptr, never_called, never_called);
    c->attach(std::move(fd));
    c->want_read(true);
    return c;
  }
  struct ev_loop* loop_ = nullptr;
};

TEST_F(UpstreamPoolTest, TakesNewestFirstPerKey) {
  UpstreamPool pool(loop_, 8, 30);
  EXPECT_FALSE(pool.take("a"));
  std::vector<Pair> pairs;
  for (int i = 0; i < 3; ++i) pairs.push_back(make_pair_fds());
  std::vector<int> fds;
  for (auto& p : pairs) fds.push_back(p.ours.get());
  pool.put("a", conn(std::move(pairs[0].ours)));
  pool.put("a", conn(std::move(pairs[1].ours)));
  pool.put("b", conn(std::move(pairs[2].ours)));
  EXPECT_EQ(pool.idle(), 3u);
  std::unique_ptr<Connection> x = pool.take("a");
  EXPECT_EQ(x->fd(), fds[1]) << "most recently parked first";
  std::unique_ptr<Connection> y = pool.take("a");
  EXPECT_EQ(y->fd(), fds[0]);
  EXPECT_FALSE(pool.take("a"));
  std::unique_ptr<Connection> z = pool.take("b");
  EXPECT_EQ(z->fd(), fds[2]);
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_EQ(pool.reused(), 3u);
  // Back in again after being taken (the entry for "a" stayed).
  pool.put("a", std::move(x));
  EXPECT_EQ(pool.take("a")->fd(), fds[1]);
}

TEST_F(UpstreamPoolTest, EvictsTheOldestBeyondIdleMax) {
  UpstreamPool pool(loop_, 2, 30);
  std::vector<Pair> pairs;
  for (int i = 0; i < 3; ++i) pairs.push_back(make_pair_fds());
  int middle = pairs[1].ours.get();
  int newest = pairs[2].ours.get();
  for (auto& p : pairs) pool.put("k", conn(std::move(p.ours)));
  EXPECT_EQ(pool.idle(), 2u);
  char c;
  EXPECT_EQ(::read(pairs[0].theirs.get(), &c, 1), 0) << "the evicted connection was closed";
  EXPECT_EQ(pool.take("k")->fd(), newest);
  EXPECT_EQ(pool.take("k")->fd(), middle);
}

TEST_F(UpstreamPoolTest, DropsWhenTheUpstreamCloses) {
  UpstreamPool pool(loop_, 8, 30);
  Pair a = make_pair_fds(), b = make_pair_fds();
  int kept = b.ours.get();
  pool.put("k", conn(std::move(a.ours)));
  pool.put("k", conn(std::move(b.ours)));
  a.theirs.reset();  // the upstream closes one idle connection
  spin();
  EXPECT_EQ(pool.idle(), 1u);
  EXPECT_EQ(pool.take("k")->fd(), kept);
  // And the last one of a key: the entry goes, a later put creates it again.
  Pair c = make_pair_fds();
  pool.put("j", conn(std::move(c.ours)));
  ASSERT_EQ(::write(c.theirs.get(), "x", 1), 1);  // unsolicited bytes: unusable too
  spin();
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_FALSE(pool.take("j"));
  Pair d = make_pair_fds();
  int dfd = d.ours.get();
  pool.put("j", conn(std::move(d.ours)));
  EXPECT_EQ(pool.take("j")->fd(), dfd);
}

TEST_F(UpstreamPoolTest, IdleTimeoutCloses) {
  UpstreamPool pool(loop_, 8, 0.02);
  Pair a = make_pair_fds();
  pool.put("k", conn(std::move(a.ours)));
  EXPECT_EQ(pool.idle(), 1u);
  ev_run(loop_, EVRUN_ONCE);  // the timer fires
  spin();
  EXPECT_EQ(pool.idle(), 0u);
  char c;
  EXPECT_EQ(::read(a.theirs.get(), &c, 1), 0);
}

TEST_F(UpstreamPoolTest, NoPoolingWithIdleMaxZero) {
  UpstreamPool pool(loop_, 0, 30);
  Pair a = make_pair_fds();
  pool.put("k", conn(std::move(a.ours)));
  EXPECT_EQ(pool.idle(), 0u);
  char c;
  EXPECT_EQ(::read(a.theirs.get(), &c, 1), 0) << "closed right away";
}

TEST_F(UpstreamPoolTest, ManyKeysTakenEmptyAreSwept) {
  UpstreamPool pool(loop_, 4, 30);
  // Park and take on 500 distinct upstreams: their entries do not pile up forever (no
  // observable size; this runs the sweep path under the sanitizers).
  for (int i = 0; i < 500; ++i) {
    Pair p = make_pair_fds();
    std::string key = "unix:/run/upstream-" + std::to_string(i);
    pool.put(key, conn(std::move(p.ours)));
    EXPECT_TRUE(pool.take(key));
  }
  EXPECT_EQ(pool.idle(), 0u);
  EXPECT_EQ(pool.reused(), 500u);
}

// What saves the epoll_ctl per request: parking and taking back never stops the read
// watcher, and the upstream closing a parked connection reaches the pool, not the
// session that parked it.
TEST_F(UpstreamPoolTest, AParkedConnectionKeepsItsReadWatcherAndAnswersToThePool) {
  UpstreamPool pool(loop_, 8, 30);
  Pair a = make_pair_fds();
  std::unique_ptr<Connection> c = conn(std::move(a.ours));
  Connection* raw = c.get();
  pool.put("k", std::move(c));
  EXPECT_TRUE(raw->read_armed());
  EXPECT_FALSE(raw->write_armed());
  std::unique_ptr<Connection> back = pool.take("k");
  ASSERT_EQ(back.get(), raw) << "the same object, watchers and all";
  EXPECT_TRUE(back->read_armed());
  pool.put("k", std::move(back));
  a.theirs.reset();  // the upstream closes it while parked: the pool drops it
  spin();
  EXPECT_EQ(pool.idle(), 0u);
}

TEST_F(UpstreamPoolTest, DestructorClosesParkedConnections) {
  Pair a = make_pair_fds();
  int fd = a.ours.get();
  {
    UpstreamPool pool(loop_, 8, 30);
    pool.put("k", conn(std::move(a.ours)));
    EXPECT_TRUE(is_open(fd));
  }
  char c;
  EXPECT_EQ(::read(a.theirs.get(), &c, 1), 0);
  EXPECT_EQ(ev_pending_count(loop_), 0u);
}

}  // namespace
}  // namespace nsproxy
