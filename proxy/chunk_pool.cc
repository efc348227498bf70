#include "chunk_pool.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace nsproxy {

ChunkPool::~ChunkPool() {
  for (char* c : free_) delete[] c;
}

char* ChunkPool::acquire() {
  ++in_use_;
  if (!free_.empty()) {
    char* c = free_.back();
    free_.pop_back();
    return c;
  }
  return new char[kChunkSize];
}

void ChunkPool::release(char* chunk) {
  --in_use_;
  if (free_.size() < max_free_) {
    free_.push_back(chunk);
  } else {
    delete[] chunk;
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
