#include "forward/chunk_pool.h"

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

}  // namespace nsproxy
