// Fixed-size memory chunks for connection buffers, recycled through a free list.
// A connection holds a chunk only while it has data in flight, so idle connections
// cost no buffer memory.
//
// The free list follows the load, so that steady traffic never touches the heap: it
// keeps at least `min_free` chunks, and more while the traffic needs them: as many as
// bring the chunks the pool owns (in use plus free) up to the most that were in use at
// once in this epoch or the last one, plus a quarter for the variation between epochs
// (an epoch ends every kEpoch releases). After a
// busy period the surplus is freed within two epochs of lighter traffic; with no
// traffic at all, the free list keeps what the last busy period needed.
#pragma once

#include <cstddef>

namespace nsproxy {

class ChunkPool {
 public:
  static constexpr size_t kChunkSize = 16 * 1024;
  static constexpr size_t kEpoch = 16384;  // releases between two re-sizings

  explicit ChunkPool(size_t min_free = 64) : min_free_(min_free) {}
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  char* acquire();
  void release(char* chunk);

  size_t in_use() const { return in_use_; }
  size_t free_chunks() const { return free_count_; }

 private:
  struct FreeChunk {  // a free chunk's first bytes link the free list
    FreeChunk* next;
  };
  size_t keep() const;  // chunks owned (in use + free) worth keeping now
  void end_epoch();

  FreeChunk* free_ = nullptr;
  size_t free_count_ = 0;
  size_t min_free_;
  size_t in_use_ = 0;
  size_t peak_ = 0;       // most chunks in use at once in this epoch
  size_t last_peak_ = 0;  // the same, in the previous epoch
  size_t releases_ = 0;   // in this epoch
};

}  // namespace nsproxy
