#include "forward/upstream_pool.h"

#include <iterator>

namespace nsproxy {

namespace {

void idle_event_cb(struct ev_loop*, ev_io* w, int) {
  auto* idle = static_cast<UpstreamPool::Idle*>(w->data);
  idle->pool->drop(idle);  // closed by the upstream, or unsolicited bytes: unusable
}

void idle_timer_cb(struct ev_loop*, ev_timer* w, int) {
  auto* idle = static_cast<UpstreamPool::Idle*>(w->data);
  idle->pool->drop(idle);
}

}  // namespace

UpstreamPool::~UpstreamPool() {
  for (auto& [key, bucket] : buckets_) {
    while (bucket.oldest != nullptr) {
      Idle* idle = bucket.oldest;
      unlink(idle);
      delete idle;
    }
  }
  while (spare_ != nullptr) {
    Idle* idle = spare_;
    spare_ = idle->next;
    delete idle;
  }
}

void UpstreamPool::unlink(Idle* idle) {
  ev_timer_stop(loop_, &idle->timer);
  Bucket* b = idle->bucket;
  (idle->prev != nullptr ? idle->prev->next : b->oldest) = idle->next;
  (idle->next != nullptr ? idle->next->prev : b->newest) = idle->prev;
  idle->prev = idle->next = nullptr;
  idle->bucket = nullptr;
  --b->count;
  --idle_count_;
  idle->conn.reset();
}

void UpstreamPool::recycle(Idle* idle) {
  if (spare_count_ >= kMaxSpareIdle) {
    delete idle;
    return;
  }
  idle->next = spare_;
  spare_ = idle;
  ++spare_count_;
}

void UpstreamPool::sweep_empty_buckets() {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    it = it->second.count == 0 ? buckets_.erase(it) : std::next(it);
  }
  empty_buckets_ = 0;
}

std::unique_ptr<Connection> UpstreamPool::take(const std::string& key) {
  auto it = buckets_.find(key);
  if (it == buckets_.end() || it->second.count == 0) return nullptr;
  // Most recently parked first: the least likely to have been closed by the upstream.
  Idle* idle = it->second.newest;
  std::unique_ptr<Connection> conn = std::move(idle->conn);
  unlink(idle);
  recycle(idle);
  ++reused_;
  // The entry stays for the connection's return; too many empty ones are swept.
  if (it->second.count == 0 && ++empty_buckets_ > kMaxEmptyBuckets) sweep_empty_buckets();
  return conn;
}

void UpstreamPool::put(const std::string& key, std::unique_ptr<Connection> conn) {
  if (idle_max_ == 0) return;  // closes it
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket* b = &it->second;
  if (inserted) {
    b->key = &it->first;
  } else if (b->count == 0 && empty_buckets_ > 0) {
    --empty_buckets_;
  }
  if (b->count >= idle_max_) {  // evict the oldest
    Idle* old = b->oldest;
    unlink(old);
    recycle(old);
  }
  Idle* idle = spare_;
  if (idle != nullptr) {
    spare_ = idle->next;
    --spare_count_;
    idle->next = nullptr;
  } else {
    idle = new Idle;
  }
  idle->pool = this;
  idle->bucket = b;
  idle->conn = std::move(conn);
  idle->conn->rebind(idle, idle_event_cb, nullptr);
  idle->conn->want_write(false);
  idle->conn->want_read(true);  // on already after a response: no system call
  ev_timer_init(&idle->timer, idle_timer_cb, idle_timeout_, 0.);
  idle->timer.data = idle;
  ev_timer_start(loop_, &idle->timer);
  idle->prev = b->newest;
  (b->newest != nullptr ? b->newest->next : b->oldest) = idle;
  b->newest = idle;
  ++b->count;
  ++idle_count_;
}

void UpstreamPool::drop(Idle* idle) {
  Bucket* b = idle->bucket;
  unlink(idle);
  recycle(idle);
  if (b->count == 0) buckets_.erase(buckets_.find(*b->key));
}

}  // namespace nsproxy
