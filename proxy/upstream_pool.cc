#include "upstream_pool.h"

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
  for (auto& [key, list] : idle_) {
    for (auto& idle : list) {
      ev_io_stop(loop_, &idle->read_w);
      ev_timer_stop(loop_, &idle->timer);
    }
  }
}

UniqueFd UpstreamPool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return UniqueFd();
  // Most recently parked first: the least likely to have been closed by the upstream.
  std::unique_ptr<Idle> idle = std::move(it->second.back());
  it->second.pop_back();
  if (it->second.empty()) idle_.erase(it);
  ev_io_stop(loop_, &idle->read_w);
  ev_timer_stop(loop_, &idle->timer);
  --idle_count_;
  ++reused_;
  return std::move(idle->fd);
}

void UpstreamPool::put(const std::string& key, UniqueFd fd) {
  if (idle_max_ == 0) return;  // closes fd
  auto& list = idle_[key];
  if (list.size() >= idle_max_) drop(list.front().get());  // evict the oldest
  auto& same = idle_[key];  // drop() may have erased the entry
  auto idle = std::make_unique<Idle>();
  idle->pool = this;
  idle->key = key;
  idle->fd = std::move(fd);
  ev_io_init(&idle->read_w, idle_event_cb, idle->fd.get(), EV_READ);
  idle->read_w.data = idle.get();
  ev_timer_init(&idle->timer, idle_timer_cb, idle_timeout_, 0.);
  idle->timer.data = idle.get();
  ev_io_start(loop_, &idle->read_w);
  ev_timer_start(loop_, &idle->timer);
  Idle* raw = idle.get();
  same.push_back(std::move(idle));
  raw->self = std::prev(same.end());
  ++idle_count_;
}

void UpstreamPool::drop(Idle* idle) {
  ev_io_stop(loop_, &idle->read_w);
  ev_timer_stop(loop_, &idle->timer);
  auto it = idle_.find(idle->key);
  --idle_count_;
  it->second.erase(idle->self);  // destroys idle, closes its fd
  if (it->second.empty()) idle_.erase(it);
}

}  // namespace nsproxy
