#include "forward/connection_budget.h"

#include <algorithm>

#include "forward/listener.h"
#include "forward/tenant.h"
#include "log.h"

namespace nsproxy {

size_t reclaimable(const Tenant& t) {
  size_t n = 0;
  for (size_t i = 0; i < t.shard_slots(); ++i) {
    if (const TenantShard* s = t.find_shard(i)) n += s->idle.size() + s->heads.size();
  }
  return n;
}

void ConnectionBudget::add_holder(Tenant& t) {
  if (t.in_holders) return;
  t.in_holders = true;
  t.holder_index = holders_.size();
  holders_.push_back(&t);
}

void ConnectionBudget::remove_holder(Tenant& t) {
  size_t i = t.holder_index;
  if (!t.in_holders || i >= holders_.size() || holders_[i] != &t) return;
  t.in_holders = false;
  holders_[i] = holders_.back();
  holders_[i]->holder_index = i;
  holders_.pop_back();
}

void ConnectionBudget::prune() {
  for (size_t i = 0; i < holders_.size();) {
    Tenant* t = holders_[i];
    if (t->connections.load() == 0) {
      remove_holder(*t);  // the last one moved to i
    } else {
      ++i;
    }
  }
}

void ConnectionBudget::hold(Tenant& t) {
  if (t.over_share) return;
  t.over_share = true;
  held_.push_back(&t);
  Listener::update_tenant(t);
  LOG_DEBUG_F(({{"tenant", t.id}}),
              "tenant %s: the connection budget is spent and it holds its share (%zu); not "
              "accepting",
              t.display.c_str(), t.connections.load());
}

void ConnectionBudget::release_held() {
  if (held_.empty()) return;
  std::vector<Tenant*> held;
  held.swap(held_);
  for (Tenant* t : held) {
    t->over_share = false;
    Listener::update_tenant(*t);
  }
}

void ConnectionBudget::forget(Tenant& t) {
  remove_holder(t);
  if (!t.over_share) return;
  t.over_share = false;
  held_.erase(std::remove(held_.begin(), held_.end(), &t), held_.end());
}

size_t ConnectionBudget::fair_share(const Tenant& t, size_t budget) {
  prune();
  size_t n = holders_.size() + (t.in_holders ? 0 : 1);
  // At least one: with more tenants than the budget, one without any connection still
  // gets a slot from the largest holder.
  return n == 0 ? budget : std::max<size_t>(1, budget / n);
}

Tenant* ConnectionBudget::donor_for(const Tenant& t, size_t budget) {
  size_t share = fair_share(t, budget);
  if (t.connections.load() >= share) return nullptr;
  // The largest holder above its share with something to give.
  Tenant* from = nullptr;
  size_t most = 0;
  for (Tenant* h : holders_) {
    size_t n = h->connections.load();
    // Connections already being closed for someone else (a worker has not got to them
    // yet) are not there to give twice.
    if (h == &t || n <= share || reclaimable(*h) <= h->reclaims_pending.load()) continue;
    if (from == nullptr || n > most) {
      from = h;
      most = n;
    }
  }
  return from;
}

}  // namespace nsproxy
