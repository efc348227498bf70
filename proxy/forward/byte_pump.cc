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

BytePump::State BytePump::update(bool upstream_ready, size_t* to_client_sent) {
  assert(*client_);
  ssize_t n = client_->flush(to_client_);
  if (n == Connection::kError) return State::kClientWriteFailed;
  if (to_client_sent != nullptr) *to_client_sent = static_cast<size_t>(n);
  if (upstream_ready) {
    assert(*upstream_);
    if (upstream_->flush(to_upstream_) == Connection::kError) return State::kUpstreamWriteFailed;
  }
  if (upstream_ready && client_eof_ && to_upstream_->empty() && !upstream_shut_) {
    upstream_->shutdown_write();
    upstream_shut_ = true;
  }
  if (upstream_eof_ && to_client_->empty() && !client_shut_) {
    client_->shutdown_write();
    client_shut_ = true;
  }
  if (upstream_shut_ && client_shut_) return State::kDone;  // both directions finished
  client_->want_read(!client_eof_ && to_upstream_->size() < high_water_);
  if (upstream_ready) {
    upstream_->want_read(!upstream_eof_ && to_client_->size() < high_water_);
  }
  return State::kOpen;
}

}  // namespace nsproxy
