#include "forward/chunk_pool.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace nsproxy {

ChunkPool::~ChunkPool() {
  while (free_ != nullptr) {
    FreeChunk* c = free_;
    free_ = c->next;
    delete[] reinterpret_cast<char*>(c);
  }
}

char* ChunkPool::acquire() {
  ++in_use_;
  if (in_use_ > peak_) peak_ = in_use_;
  if (free_ != nullptr) {
    FreeChunk* c = free_;
    free_ = c->next;
    --free_count_;
    return reinterpret_cast<char*>(c);
  }
  return new char[kChunkSize];
}

size_t ChunkPool::keep() const {
  size_t k = peak_ > last_peak_ ? peak_ : last_peak_;
  k += k / 4;  // headroom: peaks vary from epoch to epoch
  return k > min_free_ ? k : min_free_;
}

void ChunkPool::release(char* chunk) {
  --in_use_;
  if (free_count_ < min_free_ || free_count_ + in_use_ < keep()) {
    free_ = new (chunk) FreeChunk{free_};
    ++free_count_;
  } else {
    delete[] chunk;
  }
  if (++releases_ >= kEpoch) end_epoch();
}

void ChunkPool::end_epoch() {
  last_peak_ = peak_;
  peak_ = in_use_;
  releases_ = 0;
  while (free_count_ > min_free_ && free_count_ + in_use_ > keep()) {
    FreeChunk* c = free_;
    free_ = c->next;
    --free_count_;
    delete[] reinterpret_cast<char*>(c);
  }
}

void Buffer::drop() {
  if (data_ != nullptr) pool_->release(data_);
  data_ = nullptr;
  start_ = end_ = 0;
}

void Buffer::compact() {
  if (start_ == 0) return;
  std::memmove(data_, data_ + start_, end_ - start_);
  end_ -= start_;
  start_ = 0;
}

ssize_t Buffer::read_from(int fd) {
  if (data_ == nullptr) data_ = pool_->acquire();
  if (end_ == ChunkPool::kChunkSize) compact();
  ssize_t n;
  do {
    n = ::read(fd, data_ + end_, ChunkPool::kChunkSize - end_);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    end_ += static_cast<size_t>(n);
  } else if (empty()) {
    int saved = errno;
    drop();
    errno = saved;
  }
  return n;
}

ssize_t Buffer::write_to(int fd) {
  if (empty()) return 0;
  ssize_t n;
  do {
    n = ::send(fd, data_ + start_, size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    start_ += static_cast<size_t>(n);
    if (empty()) drop();
  }
  return n;
}

size_t Buffer::append(const char* data, size_t len) {
  if (len == 0) return 0;
  if (data_ == nullptr) data_ = pool_->acquire();
  compact();
  size_t room = ChunkPool::kChunkSize - end_;
  size_t n = len < room ? len : room;
  std::memcpy(data_ + end_, data, n);
  end_ += n;
  return n;
}

}  // namespace nsproxy
