// Fixed-size memory chunks for connection buffers, recycled through a free list.
// A connection holds a chunk only while it has data in flight, so idle connections
// cost no buffer memory.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <vector>

namespace nsproxy {

class ChunkPool {
 public:
  static constexpr size_t kChunkSize = 16 * 1024;

  explicit ChunkPool(size_t max_free = 64) : max_free_(max_free) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  char* acquire();
  void release(char* chunk);

  size_t in_use() const { return in_use_; }

 private:
  std::vector<char*> free_;
  size_t max_free_;
  size_t in_use_ = 0;
};

// A byte queue of at most one chunk. Reads from and writes to non-blocking sockets.
// Move-only; gives its chunk back to the pool whenever it becomes empty.
class Buffer {
 public:
  explicit Buffer(ChunkPool* pool) : pool_(pool) {}
  ~Buffer() { drop(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  size_t size() const { return end_ - start_; }
  bool empty() const { return size() == 0; }
  bool full() const { return data_ != nullptr && end_ == ChunkPool::kChunkSize && start_ == 0; }
  bool has_room() const { return data_ == nullptr || end_ < ChunkPool::kChunkSize || start_ > 0; }

  // Reads once from fd into free space. Returns bytes read (> 0), 0 on end of stream,
  // -1 with errno set on error (EAGAIN: nothing to read now).
  ssize_t read_from(int fd);
  // Writes pending bytes once to fd. Returns bytes written, -1 with errno on error.
  ssize_t write_to(int fd);
  // Appends up to len bytes; returns how many fit.
  size_t append(const char* data, size_t len);

  void drop();

 private:
  void compact();

  ChunkPool* pool_;
  char* data_ = nullptr;
  size_t start_ = 0;
  size_t end_ = 0;
};

}  // namespace nsproxy
