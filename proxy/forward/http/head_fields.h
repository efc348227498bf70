// What a session keeps of one message head while it is parsed: the start-line text (the
// request URL or the response reason) and every header's name and value. http-parser
// hands them over in pieces (a name or value may span reads); they are stored back to
// back in one block, so each stays contiguous: a chunk from the ChunkPool, or, for a head
// that outgrows it, a heap block twice the size. The block is taken at the first piece
// and given back by release(): a connection between requests holds none, and a request
// in steady state costs no heap allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "forward/chunk_pool.h"

namespace nsproxy {

class HeadFields {
 public:
  explicit HeadFields(ChunkPool* pool) : pool_(pool) {}
  ~HeadFields() { release(); }
  HeadFields(const HeadFields&) = delete;
  HeadFields& operator=(const HeadFields&) = delete;

  void clear();    // forgets the contents, keeps the block
  void release();  // forgets the contents, gives the block back

  // More of the start-line text; only before the first header.
  void add_start(const char* at, size_t len);
  // A piece of a header name: starts a new header unless it continues the last name.
  void add_name(const char* at, size_t len);
  // A piece of the last header's value (may be empty). false when there is no header.
  bool add_value(const char* at, size_t len);

  std::string_view start() const { return {block_ == nullptr ? "" : block_, start_len_}; }
  size_t size() const { return count_; }
  std::string_view name(size_t i) const;
  std::string_view value(size_t i) const;
  bool holds_block() const { return block_ != nullptr; }

  // for (auto [name, value] : fields)
  struct iterator {
    const HeadFields* fields;
    size_t i;
    std::pair<std::string_view, std::string_view> operator*() const {
      return {fields->name(i), fields->value(i)};
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    bool operator!=(const iterator& o) const { return i != o.i; }
  };
  iterator begin() const { return {this, 0}; }
  iterator end() const { return {this, count_}; }

 private:
  struct Field {  // records grow down from the block's end
    uint32_t off;
    uint32_t name_len;
    uint32_t value_len;
  };
  Field* field(size_t i) const { return reinterpret_cast<Field*>(block_ + cap_) - (i + 1); }
  void append_text(const char* at, size_t len, size_t new_fields);

  ChunkPool* pool_;
  char* block_ = nullptr;
  size_t cap_ = 0;
  bool pooled_ = false;  // block_ is a pool chunk (else new[]'d)
  size_t text_len_ = 0;
  size_t start_len_ = 0;
  size_t count_ = 0;
  bool last_was_value_ = false;
};

}  // namespace nsproxy
