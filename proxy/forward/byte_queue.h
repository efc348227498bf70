// A FIFO of bytes for a connection's input or output: a chain of fixed chunks taken from
// the worker's ChunkPool. A chunk goes back to the pool as soon as its last byte is
// consumed, so an idle connection holds no buffer memory, and in steady state (the
// pool's free list refilled by the chunks just given back) a request costs no heap
// allocation.
//
// Writers bound it themselves: sessions stop reading input while the queue towards the
// other side is above their high-water mark, so it never holds more than about one mark
// plus one read. Not copyable; splice() hands chunks over to another queue without
// copying bytes (both queues must use the same pool).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "forward/chunk_pool.h"

namespace nsproxy {

class ByteQueue {
 public:
  explicit ByteQueue(ChunkPool* pool) : pool_(pool) {}
  ~ByteQueue() { clear(); }
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Chunks held (for tests and accounting).
  size_t chunks() const;

  void append(const char* p, size_t n);
  void append(std::string_view s) { append(s.data(), s.size()); }
  void push_back(char c) { append(&c, 1); }
  // Decimal digits of v, and the hexadecimal digits (lowercase) of v.
  void append_decimal(uint64_t v);
  void append_hex(uint64_t v);
  // Moves every byte of `other` to the end of this queue; `other` is left empty.
  void splice(ByteQueue& other);

  // The first contiguous run of queued bytes (empty when the queue is). Together with
  // consume() this walks the whole queue, one chunk at a time.
  std::string_view front() const;
  // Drops the first n bytes (n <= size()).
  void consume(size_t n);
  // Drops everything and gives every chunk back.
  void clear();

  // Free space at the tail for a read straight into the queue (a fresh chunk when the
  // tail has none): write at most `second` bytes at `first`, then commit() how many.
  std::pair<char*, size_t> tail_room();
  void commit(size_t n);
  // Gives back a tail chunk that tail_room() took but nothing was committed to.
  void trim();

  // Sends once (up to the first 16 chunks in one sendmsg); returns bytes written,
  // 0 when empty, or -1 with errno (EAGAIN when the socket is full).
  ssize_t write_to(int fd);

  // Bytes of payload per chunk.
  static constexpr size_t kChunkData = ChunkPool::kChunkSize - 16;

 private:
  struct Chunk;
  Chunk* grow();  // a new empty chunk at the tail

  ChunkPool* pool_;
  Chunk* head_ = nullptr;
  Chunk* tail_ = nullptr;
  size_t size_ = 0;
};

}  // namespace nsproxy
