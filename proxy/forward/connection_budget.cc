#include "forward/connection_budget.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>

#include "forward/listener.h"
#include "forward/session.h"
#include "forward/tenant.h"
#include "log.h"

namespace nsproxy {
namespace {

// Closes s (the oldest of its kind in its tenant) to make room for someone: `why`.
void reclaim(Session* s, Tenant& owner, Reclaim kind, const std::string& why) {
  owner.stats.reclaim(kind);
  // Counted always, logged at most once a second per tenant (as refusals are).
  double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (owner.reclaim_log.allow(now)) {
    size_t quiet = owner.reclaim_log.suppressed;
    owner.reclaim_log.suppressed = 0;
    LOG_INFO_F(
        ({{"tenant", owner.id}, {"reclaimed", reclaim_label(kind)}}),
        "tenant %s: closed its oldest %s connection of %zu %s%s", owner.display.c_str(),
        kind == Reclaim::Idle ? "idle keep-alive" : "incomplete-head", owner.connections,
        why.c_str(),
        quiet == 0
            ? ""
            : (" (" + std::to_string(quiet) + " more in the last second not logged)").c_str());
  }
  delete s;  // unlinks from its tenant's lists and the budget
}

}  // namespace

void ConnectionBudget::add_holder(Tenant& t) {
  t.holder_index = holders_.size();
  holders_.push_back(&t);
}

void ConnectionBudget::remove_holder(Tenant& t) {
  size_t i = t.holder_index;
  if (i >= holders_.size() || holders_[i] != &t) return;
  holders_[i] = holders_.back();
  holders_[i]->holder_index = i;
  holders_.pop_back();
}

void ConnectionBudget::hold(Tenant& t) {
  if (t.over_share) return;
  t.over_share = true;
  held_.push_back(&t);
  Listener::update_tenant(t);
  LOG_DEBUG_F(({{"tenant", t.id}}),
              "tenant %s: the connection budget is spent and it holds its share (%zu); not "
              "accepting",
              t.display.c_str(), t.connections);
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
  if (!t.over_share) return;
  t.over_share = false;
  held_.erase(std::remove(held_.begin(), held_.end(), &t), held_.end());
}

size_t ConnectionBudget::fair_share(const Tenant& t, size_t budget) const {
  size_t n = holders_.size() + (t.connections == 0 ? 1 : 0);
  // At least one: with more tenants than the budget, one without any connection still
  // gets a slot from the largest holder.
  return n == 0 ? budget : std::max<size_t>(1, budget / n);
}

bool ConnectionBudget::reclaim_for(const Tenant& t, size_t budget) {
  size_t share = fair_share(t, budget);
  if (t.connections >= share) return false;
  // The largest holder above its share with something to give, idle before heads.
  Tenant* from = nullptr;
  for (Tenant* h : holders_) {
    if (h == &t || h->connections <= share) continue;
    if (h->idle.empty() && h->heads.empty()) continue;
    if (from == nullptr || h->connections > from->connections) from = h;
  }
  if (from == nullptr) return false;
  std::string why = "(over its fair share of " + std::to_string(share) + ") for tenant " +
                    t.display + ", below it";
  if (!from->idle.empty()) {
    reclaim(from->idle.front(), *from, Reclaim::Idle, why.c_str());
  } else {
    reclaim(from->heads.front(), *from, Reclaim::Head, why.c_str());
  }
  return true;
}

bool ConnectionBudget::reclaim_idle() {
  Session* oldest = nullptr;
  Tenant* owner = nullptr;
  for (Tenant* h : holders_) {
    Session* s = h->idle.front();
    if (s != nullptr && (oldest == nullptr || s->listed_at < oldest->listed_at)) {
      oldest = s;
      owner = h;
    }
  }
  if (oldest == nullptr) return false;
  reclaim(oldest, *owner, Reclaim::Idle, "(out of file descriptors)");
  return true;
}

int ConnectionBudget::stream_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reclaim_idle()) {
    fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  return fd;
}

}  // namespace nsproxy
