#include "forward/byte_pump.h"

#include <cassert>

namespace nsproxy {

ssize_t BytePump::pull(Connection* from, ByteQueue* into, bool* eof) {
  ssize_t n = from->read_into(into);
  if (n == Connection::kEof) {
    *eof = true;
    return 0;
  }
  return n;
}

bool BytePump::update(bool upstream_ready) {
  if (upstream_ready && client_eof_ && to_upstream_->empty() && !upstream_shut_) {
    upstream_->shutdown_write();
    upstream_shut_ = true;
  }
  if (upstream_eof_ && to_client_->empty() && !client_shut_) {
    client_->shutdown_write();
    client_shut_ = true;
  }
  if (upstream_shut_ && client_shut_) return false;  // both directions finished
  assert(*client_);
  client_->want_read(!client_eof_ && to_upstream_->size() < high_water_);
  client_->want_write(!to_client_->empty());
  if (upstream_ready) {
    assert(*upstream_);
    upstream_->want_read(!upstream_eof_ && to_client_->size() < high_water_);
    upstream_->want_write(!to_upstream_->empty());
  }
  return true;
}

}  // namespace nsproxy
