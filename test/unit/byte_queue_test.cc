// ByteQueue (chunk-chained byte FIFO), HeadFields (parsed head storage) and the
// ChunkPool they draw from: contents survive chunk boundaries, memory goes back to the
// pool as soon as it is drained, steady-state reuse never allocates, and the pool's free
// list follows the load.
#include "forward/byte_queue.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "forward/chunk_pool.h"
#include "forward/http/head_fields.h"

namespace nsproxy {
namespace {

std::string drain(ByteQueue* q) {
  std::string out;
  while (!q->empty()) {
    std::string_view f = q->front();
    EXPECT_FALSE(f.empty());
    out.append(f);
    q->consume(f.size());
  }
  return out;
}

std::string pattern(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(ByteQueue, EmptyHoldsNoChunk) {
  ChunkPool pool;
  ByteQueue q(&pool);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(q.front().empty());
  EXPECT_EQ(q.chunks(), 0u);
  q.append("", 0);
  EXPECT_EQ(q.chunks(), 0u);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ByteQueue, FifoAcrossChunkBoundaries) {
  ChunkPool pool;
  ByteQueue q(&pool);
  std::string data = pattern(3 * ByteQueue::kChunkData + 123);
  // Appended in uneven pieces that straddle chunk ends.
  for (size_t i = 0; i < data.size();) {
    size_t n = std::min<size_t>(data.size() - i, 1 + (i * 7919) % 5000);
    q.append(data.data() + i, n);
    i += n;
  }
  EXPECT_EQ(q.size(), data.size());
  EXPECT_EQ(q.chunks(), 4u);
  EXPECT_EQ(pool.in_use(), 4u);
  EXPECT_EQ(q.front().size(), ByteQueue::kChunkData);
  EXPECT_EQ(drain(&q), data);
  EXPECT_EQ(q.chunks(), 0u);
  EXPECT_EQ(pool.in_use(), 0u) << "a drained queue gives every chunk back";
}

TEST(ByteQueue, PartialConsumeKeepsOrder) {
  ChunkPool pool;
  ByteQueue q(&pool);
  std::string data = pattern(ByteQueue::kChunkData * 2 + 10, 7);
  q.append(data);
  std::string got;
  size_t step = 1000;
  while (!q.empty()) {
    std::string_view f = q.front();
    size_t n = std::min(step, f.size());
    got.append(f.substr(0, n));
    q.consume(n);
    EXPECT_EQ(q.size(), data.size() - got.size());
  }
  EXPECT_EQ(got, data);
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ByteQueue, ConsumeSpanningChunks) {
  ChunkPool pool;
  ByteQueue q(&pool);
  std::string data = pattern(ByteQueue::kChunkData * 3, 3);
  q.append(data);
  q.consume(ByteQueue::kChunkData + 5);
  EXPECT_EQ(q.chunks(), 2u);
  EXPECT_EQ(pool.in_use(), 2u);
  EXPECT_EQ(drain(&q), data.substr(ByteQueue::kChunkData + 5));
}

TEST(ByteQueue, NumbersAndChars) {
  ChunkPool pool;
  ByteQueue q(&pool);
  q.append_decimal(0);
  q.push_back(' ');
  q.append_decimal(18446744073709551615ull);
  q.push_back(' ');
  q.append_hex(0x4000);
  q.push_back(' ');
  q.append_hex(0);
  q.append(std::string_view("\r\n"));
  EXPECT_EQ(drain(&q), "0 18446744073709551615 4000 0\r\n");
}

TEST(ByteQueue, SpliceMovesChunksWithoutCopying) {
  ChunkPool pool;
  ByteQueue a(&pool), b(&pool);
  std::string x = pattern(100, 1), y = pattern(ByteQueue::kChunkData + 50, 2);
  a.append(x);
  b.append(y);
  const char* first_of_b = b.front().data();
  a.splice(b);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.chunks(), 0u);
  EXPECT_EQ(a.size(), x.size() + y.size());
  EXPECT_EQ(pool.in_use(), 3u);
  a.consume(x.size());
  EXPECT_EQ(a.front().data(), first_of_b) << "spliced bytes stay where they were";
  a.append("tail");
  EXPECT_EQ(drain(&a), y + "tail");
  // Into an empty queue, and from an empty one.
  ByteQueue c(&pool), d(&pool);
  d.append("abc");
  c.splice(d);
  c.splice(d);
  EXPECT_EQ(drain(&c), "abc");
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ByteQueue, ClearAndDestructorGiveChunksBack) {
  ChunkPool pool;
  {
    ByteQueue q(&pool);
    q.append(pattern(ByteQueue::kChunkData * 2));
    EXPECT_EQ(pool.in_use(), 2u);
    q.clear();
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(pool.in_use(), 0u);
    q.append("again");
    EXPECT_EQ(pool.in_use(), 1u);
  }
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ByteQueue, SteadyStateReusesPooledChunks) {
  ChunkPool pool(8);
  ByteQueue q(&pool);
  q.append(pattern(3000));
  char* first = const_cast<char*>(q.front().data());
  q.clear();
  EXPECT_EQ(pool.free_chunks(), 1u);
  for (int i = 0; i < 1000; ++i) {
    q.append(pattern(500, static_cast<uint32_t>(i)));
    EXPECT_EQ(pool.free_chunks(), 0u) << "the free chunk is reused";
    q.consume(q.size());
    EXPECT_EQ(pool.free_chunks(), 1u);
  }
  q.append("x");
  EXPECT_EQ(q.front().data(), first) << "the same chunk every time";
}

TEST(ByteQueue, WriteToSocketInOrder) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  ChunkPool pool;
  ByteQueue q(&pool);
  std::string data = pattern(ByteQueue::kChunkData * 5 + 77, 9);
  q.append(data);
  std::string got;
  char buf[65536];
  while (got.size() < data.size()) {
    ssize_t w = q.write_to(sv[0]);
    ASSERT_TRUE(w >= 0 || errno == EAGAIN) << std::strerror(errno);
    ssize_t r;
    while ((r = ::read(sv[1], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(r));
  }
  EXPECT_EQ(got, data);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.write_to(sv[0]), 0) << "nothing to write";
  EXPECT_EQ(pool.in_use(), 0u);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(ByteQueue, WriteToBrokenSocketReportsError) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  ::close(sv[1]);
  ChunkPool pool;
  ByteQueue q(&pool);
  q.append("hello");
  EXPECT_EQ(q.write_to(sv[0]), -1);  // EPIPE, and no SIGPIPE
  EXPECT_EQ(errno, EPIPE);
  EXPECT_EQ(q.size(), 5u);
  ::close(sv[0]);
}

// ---- ChunkPool ---------------------------------------------------------------------------

TEST(ChunkPool, FreeListGrowsToThePeakOfTheLoad) {
  ChunkPool pool(4);
  std::vector<char*> held;
  for (int i = 0; i < 100; ++i) held.push_back(pool.acquire());
  EXPECT_EQ(pool.in_use(), 100u);
  std::set<char*> first(held.begin(), held.end());
  for (char* c : held) pool.release(c);
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(pool.free_chunks(), 100u) << "all 100 are kept: the load needed them";
  // The same load again is served from the free list only.
  for (int round = 0; round < 3; ++round) {
    held.clear();
    for (int i = 0; i < 100; ++i) {
      held.push_back(pool.acquire());
      EXPECT_TRUE(first.count(held.back())) << "a new chunk was allocated";
    }
    EXPECT_EQ(pool.free_chunks(), 0u);
    for (char* c : held) pool.release(c);
  }
}

TEST(ChunkPool, SurplusFreedAfterTwoLighterEpochs) {
  ChunkPool pool(4);
  std::vector<char*> held;
  for (int i = 0; i < 100; ++i) held.push_back(pool.acquire());
  for (char* c : held) pool.release(c);
  EXPECT_EQ(pool.free_chunks(), 100u);
  // Light traffic: one chunk at a time, for two epochs.
  for (size_t i = 0; i < ChunkPool::kEpoch; ++i) pool.release(pool.acquire());
  EXPECT_GE(pool.free_chunks(), 99u) << "the last epoch's peak still counts";
  for (size_t i = 0; i < ChunkPool::kEpoch; ++i) pool.release(pool.acquire());
  EXPECT_EQ(pool.free_chunks(), 4u) << "trimmed to min_free";
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(ChunkPool, KeepsMinFreeAlways) {
  ChunkPool pool(8);
  char* a = pool.acquire();
  char* b = pool.acquire();
  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.free_chunks(), 2u);
  EXPECT_EQ(pool.acquire(), b) << "last released, first reused";
  EXPECT_EQ(pool.acquire(), a);
  pool.release(a);
  pool.release(b);
}

// ---- HeadFields --------------------------------------------------------------------------

TEST(HeadFields, PiecesJoinIntoFields) {
  ChunkPool pool;
  HeadFields h(&pool);
  EXPECT_FALSE(h.holds_block());
  EXPECT_EQ(h.start(), "");
  EXPECT_FALSE(h.add_value("x", 1)) << "a value before any name";
  h.add_start("/pa", 3);
  h.add_start("th?q=1", 6);
  h.add_name("Ho", 2);
  h.add_name("st", 2);
  EXPECT_TRUE(h.add_value("exa", 3));
  EXPECT_TRUE(h.add_value("mple", 4));
  h.add_name("X-Empty", 7);
  EXPECT_TRUE(h.add_value("", 0));
  h.add_name("Accept", 6);  // a name right after an empty value is a new field
  EXPECT_TRUE(h.add_value("*/*", 3));
  EXPECT_TRUE(h.holds_block());
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(h.start(), "/path?q=1");
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h.name(0), "Host");
  EXPECT_EQ(h.value(0), "example");
  EXPECT_EQ(h.name(1), "X-Empty");
  EXPECT_EQ(h.value(1), "");
  EXPECT_EQ(h.name(2), "Accept");
  EXPECT_EQ(h.value(2), "*/*");
  std::string joined;
  for (auto [n, v] : h) joined += std::string(n) + "=" + std::string(v) + ";";
  EXPECT_EQ(joined, "Host=example;X-Empty=;Accept=*/*;");
}

TEST(HeadFields, ClearKeepsBlockReleaseGivesItBack) {
  ChunkPool pool;
  HeadFields h(&pool);
  h.add_start("/", 1);
  h.add_name("A", 1);
  h.add_value("b", 1);
  h.clear();
  EXPECT_EQ(h.size(), 0u);
  EXPECT_EQ(h.start(), "");
  EXPECT_TRUE(h.holds_block());
  h.add_name("C", 1);
  h.add_value("d", 1);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h.name(0), "C");
  h.release();
  EXPECT_FALSE(h.holds_block());
  EXPECT_EQ(pool.in_use(), 0u);
  EXPECT_EQ(h.size(), 0u);
}

TEST(HeadFields, LargeHeadMovesToHeapAndBack) {
  ChunkPool pool;
  HeadFields h(&pool);
  std::string url = "/" + std::string(5000, 'u');
  h.add_start(url.data(), url.size());
  std::string big(40000, 'v');
  std::vector<std::pair<std::string, std::string>> want;
  for (int i = 0; i < 300; ++i) {
    std::string n = "X-Header-" + std::to_string(i);
    std::string v = (i == 150) ? big : std::string(static_cast<size_t>(i % 50), 'a' + i % 26);
    // In two pieces each, as across reads.
    h.add_name(n.data(), 3);
    h.add_name(n.data() + 3, n.size() - 3);
    h.add_value(v.data(), v.size() / 2);
    h.add_value(v.data() + v.size() / 2, v.size() - v.size() / 2);
    want.emplace_back(n, v);
  }
  EXPECT_EQ(pool.in_use(), 0u) << "outgrew its chunk: the chunk went back";
  EXPECT_EQ(h.start(), url);
  ASSERT_EQ(h.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(h.name(i), want[i].first) << i;
    EXPECT_EQ(h.value(i), want[i].second) << i;
  }
  h.release();
  EXPECT_FALSE(h.holds_block());
  h.add_name("A", 1);
  EXPECT_EQ(pool.in_use(), 1u) << "a small head takes a chunk again";
}

TEST(HeadFields, DestructorGivesBlockBack) {
  ChunkPool pool;
  {
    HeadFields h(&pool);
    h.add_start("/x", 2);
    EXPECT_EQ(pool.in_use(), 1u);
  }
  EXPECT_EQ(pool.in_use(), 0u);
}

}  // namespace
}  // namespace nsproxy
