#include "forward/http/head_fields.h"

#include <cstring>

namespace nsproxy {

void HeadFields::clear() {
  text_len_ = start_len_ = count_ = 0;
  last_was_value_ = false;
}

void HeadFields::release() {
  clear();
  if (block_ == nullptr) return;
  if (pooled_) {
    pool_->release(block_);
  } else {
    delete[] block_;
  }
  block_ = nullptr;
  cap_ = 0;
}

// Appends len bytes of text, making room for `new_fields` more records first.
void HeadFields::append_text(const char* at, size_t len, size_t new_fields) {
  size_t need = text_len_ + len + (count_ + new_fields) * sizeof(Field);
  if (need > cap_) {
    size_t cap = cap_ == 0 ? ChunkPool::kChunkSize : cap_;
    while (cap < need) cap *= 2;
    char* block;
    bool pooled = cap == ChunkPool::kChunkSize;
    block = pooled ? pool_->acquire() : new char[cap];
    if (block_ != nullptr) {
      std::memcpy(block, block_, text_len_);
      std::memcpy(block + cap - count_ * sizeof(Field), block_ + cap_ - count_ * sizeof(Field),
                  count_ * sizeof(Field));
      if (pooled_) {
        pool_->release(block_);
      } else {
        delete[] block_;
      }
    }
    block_ = block;
    cap_ = cap;
    pooled_ = pooled;
  }
  if (len > 0) std::memcpy(block_ + text_len_, at, len);
  text_len_ += len;
}

void HeadFields::add_start(const char* at, size_t len) {
  append_text(at, len, 0);
  start_len_ += len;
}

void HeadFields::add_name(const char* at, size_t len) {
  if (count_ == 0 || last_was_value_) {
    append_text(at, len, 1);
    *field(count_) = Field{static_cast<uint32_t>(text_len_ - len), static_cast<uint32_t>(len), 0};
    ++count_;
  } else {
    append_text(at, len, 0);
    field(count_ - 1)->name_len += static_cast<uint32_t>(len);
  }
  last_was_value_ = false;
}

bool HeadFields::add_value(const char* at, size_t len) {
  if (count_ == 0) return false;
  append_text(at, len, 0);
  field(count_ - 1)->value_len += static_cast<uint32_t>(len);
  last_was_value_ = true;
  return true;
}

std::string_view HeadFields::name(size_t i) const {
  const Field* f = field(i);
  return {block_ + f->off, f->name_len};
}

std::string_view HeadFields::value(size_t i) const {
  const Field* f = field(i);
  return {block_ + f->off + f->name_len, f->value_len};
}

}  // namespace nsproxy
