#include "forward/worker.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <string>

#include "forward/acceptor.h"
#include "forward/listener.h"
#include "forward/session.h"
#include "forward/tenant.h"
#include "log.h"

namespace nsproxy {
namespace {

void inbox_cb(struct ev_loop*, ev_async* w, int) {
  static_cast<Worker*>(w->data)->on_inbox();
}

// Closes s, the oldest of its kind of its tenant on this worker, to make room: `why`.
void reclaim(Session* s, Reclaim kind, const std::string& why) {
  Tenant& owner = s->tenant();
  TenantShard& shard = s->shard();
  shard.stats.reclaim(kind);
  // Counted always, logged at most once a second per tenant and worker (as refusals are).
  double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (shard.reclaim_log.allow(now)) {
    size_t quiet = shard.reclaim_log.suppressed;
    shard.reclaim_log.suppressed = 0;
    LOG_INFO_F(
        ({{"tenant", owner.id}, {"reclaimed", reclaim_label(kind)}}),
        "tenant %s: closed its oldest %s connection of %zu %s%s", owner.display.c_str(),
        kind == Reclaim::Idle ? "idle keep-alive" : "incomplete-head", owner.connections.load(),
        why.c_str(),
        quiet == 0
            ? ""
            : (" (" + std::to_string(quiet) + " more in the last second not logged)").c_str());
  }
  delete s;  // unlinks from its tenant's lists and the counts
}

}  // namespace

Worker::~Worker() {
  stop();
}

void Worker::start() {
  ev_async_init(&inbox_w_, inbox_cb);
  inbox_w_.data = this;
  ev_async_start(loop, &inbox_w_);
  threaded_ = true;
  thread_ = std::thread([this] {
    // Signals are the main loop's (its ev_signal watchers).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    // "nsproxyd-w<index>" in top -H, ps -L and /proc/PID/task/*/comm.
    pthread_setname_np(pthread_self(), ("nsproxyd-w" + std::to_string(index)).c_str());
    ev_run(loop, 0);
  });
  thread_id_ = thread_.get_id();
}

void Worker::request_stop() {
  if (threaded_ && thread_.joinable()) post([this] { ev_break(loop, EVBREAK_ALL); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::drain() {
  if (!threaded_ || thread_.joinable()) return;
  ev_async_stop(loop, &inbox_w_);
  threaded_ = false;
  // What was handed over or posted after the break: run here, in the main thread, like
  // everything the worker holds from now on.
  on_inbox();
}

void Worker::stop() {
  request_stop();
  join();
  drain();
}

bool Worker::in_own_thread() const {
  return std::this_thread::get_id() == thread_id_;
}

void Worker::push(Message m) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    wake = inbox_.empty();  // else a wake-up is on its way and the batch is not taken yet
    inbox_.push_back(std::move(m));
  }
  if (wake) ev_async_send(loop, &inbox_w_);
}

void Worker::hand_over(Listener* listener, UniqueFd fd, const sockaddr_storage& peer,
                       bool over_limit) {
  connections.fetch_add(1, std::memory_order_relaxed);  // counted from here: pick() sees it
  if (!threaded()) {
    listener->serve(this, std::move(fd), peer, over_limit);
    return;
  }
  Message m;
  m.listener = listener;
  m.fd = fd.release();
  m.over_limit = over_limit;
  m.peer = peer;
  push(std::move(m));
}

void Worker::post(std::function<void()> task) {
  if (!threaded() || in_own_thread()) {
    task();
    return;
  }
  Message m;
  m.task = std::move(task);
  push(std::move(m));
}

void Worker::run_and_wait(const std::function<void()>& task) {
  if (!threaded() || in_own_thread()) {
    task();
    return;
  }
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  post([&] {
    task();
    std::lock_guard<std::mutex> lock(m);
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(m);
  cv.wait(lock, [&] { return done; });
}

void Worker::on_inbox() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    taken_.swap(inbox_);
  }
  for (Message& m : taken_) {
    if (m.listener != nullptr) {
      m.listener->serve(this, UniqueFd(m.fd), m.peer, m.over_limit);
    } else if (m.task) {
      m.task();
    }
  }
  taken_.clear();
}

void Worker::add_holder(TenantShard& s) {
  s.holder_index = holders_.size();
  holders_.push_back(&s);
}

void Worker::remove_holder(TenantShard& s) {
  size_t i = s.holder_index;
  if (i >= holders_.size() || holders_[i] != &s) return;
  holders_[i] = holders_.back();
  holders_[i]->holder_index = i;
  holders_.pop_back();
}

bool Worker::reclaim_idle() {
  Session* oldest = nullptr;
  for (TenantShard* s : holders_) {
    Session* first = s->idle.front();
    if (first != nullptr && (oldest == nullptr || first->listed_at < oldest->listed_at)) {
      oldest = first;
    }
  }
  if (oldest == nullptr) return false;
  reclaim(oldest, Reclaim::Idle, "(out of file descriptors)");
  return true;
}

bool Worker::reclaim_for_other(Tenant& t, const std::string& why) {
  TenantShard* s = t.find_shard(index);
  if (s == nullptr) return false;
  if (Session* idle = s->idle.front()) {
    reclaim(idle, Reclaim::Idle, why);
    return true;
  }
  if (Session* head = s->heads.front()) {
    reclaim(head, Reclaim::Head, why);
    return true;
  }
  return false;
}

int Worker::stream_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reclaim_idle()) {
    fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  return fd;
}

void Worker::offer_slots(Tenant& t) {
  TenantShard* s = t.find_shard(index);
  if (s == nullptr) return;
  while (!s->waiting.empty() && t.try_take_slot()) {
    Session* next = s->waiting.pop_front();
    t.in_line.fetch_sub(1);
    next->grant_slot();
  }
}

}  // namespace nsproxy
