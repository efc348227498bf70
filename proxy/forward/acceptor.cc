#include "forward/acceptor.h"

#include <algorithm>
#include <memory>

#include "forward/listener.h"
#include "forward/tenant.h"
#include "forward/worker.h"

namespace nsproxy {
namespace {

void wake_cb(struct ev_loop*, ev_async* w, int) {
  static_cast<Acceptor*>(w->data)->on_wake();
}

}  // namespace

Acceptor::Acceptor(struct ev_loop* loop, const ProxyConfig* config) : loop_(loop), config_(config) {
  ev_async_init(&wake_w_, wake_cb);
  wake_w_.data = this;
  ev_async_start(loop_, &wake_w_);
  ev_unref(loop_);  // a loop with nothing else to do may return, as without it
}

Acceptor::~Acceptor() {
  ev_ref(loop_);
  ev_async_stop(loop_, &wake_w_);
}

void Acceptor::add_worker(Worker* w) {
  w->index = workers_.size();
  w->acceptor = this;
  workers_.push_back(w);
}

size_t Acceptor::threads() const {
  return static_cast<size_t>(
      std::count_if(workers_.begin(), workers_.end(), [](Worker* w) { return w->threaded(); }));
}

Worker* Acceptor::pick() {
  const size_t n = workers_.size();
  if (n == 1) return workers_[0];
  Worker* best = nullptr;
  uint64_t least = 0;
  for (size_t i = 0; i < n; ++i) {
    Worker* w = workers_[(next_ + i) % n];
    uint64_t c = w->connections.load(std::memory_order_relaxed);
    if (best == nullptr || c < least) {
      best = w;
      least = c;
    }
  }
  next_ = (next_ + 1) % n;
  return best;
}

void Acceptor::accepted(Tenant& t) {
  if (t.connections.fetch_add(1) == 0) budget_.add_holder(t);
  connections_.fetch_add(1);
  ++connections_total_;
}

void Acceptor::ended(Tenant& t) {
  // Sequentially consistent, as the flags are set in limit_reached and hold: either this
  // thread sees the flag, or the main thread sees the lower count after setting it.
  size_t left = t.connections.fetch_sub(1) - 1;
  uint64_t all = connections_.fetch_sub(1) - 1;
  if ((t.at_limit.load() && left < t.max_connections) ||
      (held_.load() && config_->max_connections > 0 && all < config_->max_connections)) {
    wake();
  }
}

void Acceptor::limit_reached(Tenant& t) {
  if (!t.at_limit.exchange(true)) limited_.push_back(&t);
  Listener::update_tenant(t);
  if (t.connections.load() < t.max_connections) wake();  // one ended meanwhile
}

void Acceptor::hold(Tenant& t) {
  budget_.hold(t);
  held_.store(true);
  if (connections_.load() < config_->max_connections) wake();
}

void Acceptor::forget(Tenant& t) {
  budget_.forget(t);
  t.at_limit.store(false);
  limited_.erase(std::remove(limited_.begin(), limited_.end(), &t), limited_.end());
}

void Acceptor::wake() {
  ev_async_send(loop_, &wake_w_);
}

void Acceptor::on_wake() {
  for (size_t i = 0; i < limited_.size();) {
    Tenant* t = limited_[i];
    if (t->connections.load() < t->max_connections) {
      limited_[i] = limited_.back();
      limited_.pop_back();
      t->at_limit.store(false);
      Listener::update_tenant(*t);
    } else {
      ++i;
    }
  }
  if (config_->max_connections > 0 && connections_.load() < config_->max_connections) {
    budget_.release_held();  // room again: they may try
  }
  held_.store(budget_.holding());
}

bool Acceptor::reclaim_for(Tenant& t) {
  const size_t budget = config_->max_connections;
  Tenant* from = budget_.donor_for(t, budget);
  if (from == nullptr) return false;
  // On a worker where it has an idle connection, else one with an incomplete head.
  Worker* on = worker_holding(*from, true);
  if (on == nullptr) on = worker_holding(*from, false);
  if (on == nullptr) return false;
  std::string why = "(over its fair share of " + std::to_string(budget_.fair_share(t, budget)) +
                    ") for tenant " + t.display + ", below it";
  // Counted until the worker has closed it: the lists this thread reads do not change
  // before then, and a burst of accepts must not count the same connection twice.
  from->reclaims_pending.fetch_add(1);
  // The tenant stays alive until the worker has run this (a registration can go meanwhile).
  on->post([on, donor = from->shared_from_this(), why] {
    on->reclaim_for_other(*donor, why);
    donor->reclaims_pending.fetch_sub(1);
  });
  return true;
}

Worker* Acceptor::worker_holding(const Tenant& t, bool idle) const {
  for (Worker* w : workers_) {
    const TenantShard* s = t.find_shard(w->index);
    // size(), not empty(): another thread's list (only its size is safe to read here).
    if (s != nullptr && (idle ? s->idle.size() : s->heads.size()) != 0) return w;
  }
  return nullptr;
}

Acceptor::Reclaim Acceptor::reclaim_idle() {
  for (Tenant* h : budget_.holder_list()) {
    Worker* w = worker_holding(*h, true);
    if (w == nullptr) continue;
    if (!w->threaded()) return w->reclaim_idle() ? Reclaim::kDone : Reclaim::kNone;
    w->post([w] { w->reclaim_idle(); });
    return Reclaim::kPosted;
  }
  return Reclaim::kNone;
}

}  // namespace nsproxy
