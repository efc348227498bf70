#include "forward/byte_queue.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <new>

namespace nsproxy {

// Lives at the start of a pool chunk; the payload follows it.
struct ByteQueue::Chunk {
  Chunk* next = nullptr;
  uint32_t begin = 0;  // first unconsumed byte of the payload
  uint32_t end = 0;    // one past the last written byte
  char* data() { return reinterpret_cast<char*>(this) + kHeader; }
  const char* data() const { return reinterpret_cast<const char*>(this) + kHeader; }
  static constexpr size_t kHeader = ChunkPool::kChunkSize - kChunkData;
};

size_t ByteQueue::chunks() const {
  size_t n = 0;
  for (const Chunk* c = head_; c != nullptr; c = c->next) ++n;
  return n;
}

ByteQueue::Chunk* ByteQueue::grow() {
  static_assert(sizeof(Chunk) <= Chunk::kHeader, "chunk header must fit its reserved space");
  Chunk* c = new (pool_->acquire()) Chunk;
  if (tail_ != nullptr) {
    tail_->next = c;
  } else {
    head_ = c;
  }
  tail_ = c;
  return c;
}

void ByteQueue::append(const char* p, size_t n) {
  size_ += n;
  while (n > 0) {
    Chunk* c = tail_;
    if (c == nullptr || c->end == kChunkData) c = grow();
    size_t room = kChunkData - c->end;
    size_t k = n < room ? n : room;
    std::memcpy(c->data() + c->end, p, k);
    c->end += static_cast<uint32_t>(k);
    p += k;
    n -= k;
  }
}

void ByteQueue::append_decimal(uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  append(buf, static_cast<size_t>(r.ptr - buf));
}

void ByteQueue::append_hex(uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v, 16);
  append(buf, static_cast<size_t>(r.ptr - buf));
}

void ByteQueue::splice(ByteQueue& other) {
  assert(other.pool_ == pool_);
  if (other.head_ == nullptr) return;
  if (tail_ != nullptr) {
    tail_->next = other.head_;
  } else {
    head_ = other.head_;
  }
  tail_ = other.tail_;
  size_ += other.size_;
  other.head_ = other.tail_ = nullptr;
  other.size_ = 0;
}

std::string_view ByteQueue::front() const {
  if (head_ == nullptr) return {};
  return std::string_view(head_->data() + head_->begin, head_->end - head_->begin);
}

void ByteQueue::consume(size_t n) {
  assert(n <= size_);
  size_ -= n;
  while (n > 0) {
    Chunk* c = head_;
    size_t avail = c->end - c->begin;
    if (n < avail) {
      c->begin += static_cast<uint32_t>(n);
      return;
    }
    n -= avail;
    head_ = c->next;
    if (head_ == nullptr) tail_ = nullptr;
    c->~Chunk();
    pool_->release(reinterpret_cast<char*>(c));
  }
}

void ByteQueue::clear() {
  while (head_ != nullptr) {
    Chunk* c = head_;
    head_ = c->next;
    c->~Chunk();
    pool_->release(reinterpret_cast<char*>(c));
  }
  tail_ = nullptr;
  size_ = 0;
}

std::pair<char*, size_t> ByteQueue::tail_room() {
  Chunk* c = tail_;
  if (c == nullptr || c->end == kChunkData) c = grow();
  return {c->data() + c->end, kChunkData - c->end};
}

void ByteQueue::commit(size_t n) {
  assert(tail_ != nullptr && tail_->end + n <= kChunkData);
  tail_->end += static_cast<uint32_t>(n);
  size_ += n;
}

void ByteQueue::trim() {
  if (tail_ == nullptr || tail_->end != tail_->begin) return;
  Chunk* prev = nullptr;
  if (head_ != tail_) {
    for (prev = head_; prev->next != tail_;) prev = prev->next;
  }
  Chunk* c = tail_;
  tail_ = prev;
  if (prev != nullptr) {
    prev->next = nullptr;
  } else {
    head_ = nullptr;
  }
  c->~Chunk();
  pool_->release(reinterpret_cast<char*>(c));
}

ssize_t ByteQueue::write_to(int fd) {
  if (empty()) return 0;
  constexpr int kMaxIov = 16;
  iovec iov[kMaxIov];
  int count = 0;
  for (Chunk* c = head_; c != nullptr && count < kMaxIov; c = c->next) {
    if (c->end == c->begin) continue;
    iov[count].iov_base = c->data() + c->begin;
    iov[count].iov_len = c->end - c->begin;
    ++count;
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n > 0) consume(static_cast<size_t>(n));
  return n;
}

}  // namespace nsproxy
