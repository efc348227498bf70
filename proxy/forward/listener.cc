#include "forward/listener.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "forward/session.h"
#include "log.h"

namespace nsproxy {
namespace {

void accept_cb(struct ev_loop*, ev_io* w, int) {
  static_cast<Listener*>(w->data)->on_acceptable();
}

void pause_cb(struct ev_loop*, ev_timer* w, int) {
  static_cast<Listener*>(w->data)->on_pause_over();
}

}  // namespace

// The acceptor counted the connection in its tenant, the daemon and the worker when it
// accepted it; the session counts itself in the tenant's shard on its worker.
Session::Session(Listener* listener, Worker* worker)
    : listener_(listener), worker_(worker), shard_(&listener->tenant().shard(worker->index)) {
  listener_->add_session(this, *worker_);
  if (shard_->connections++ == 0) worker_->add_holder(*shard_);
}

Session::~Session() {
  listener_->remove_session(this, *worker_);
  unlink(this);
  if (--shard_->connections == 0) worker_->remove_holder(*shard_);
  worker_->connections.fetch_sub(1, std::memory_order_relaxed);
  worker_->acceptor->ended(listener_->tenant());
}

Tenant& Session::tenant() const {
  return listener_->tenant();
}

void Listener::update_tenant(Tenant& t) {
  for (Listener* l : t.listeners) {
    // Not one that is paused (out of fds; its timer restarts it) or handed over.
    if (!l->fd_ || ev_is_active(&l->pause_t_)) continue;
    set_active(l->acceptor_->loop(), &l->accept_w_, !t.holding());
  }
}

Listener::Listener(Acceptor* acceptor, UniqueFd fd, const ListenerSpec& spec,
                   std::shared_ptr<const Address> upstream, std::shared_ptr<Tenant> tenant,
                   SessionFactory make_session)
    : acceptor_(acceptor),
      fd_(std::move(fd)),
      spec_(&spec),
      upstream_(std::move(upstream)),
      tenant_(std::move(tenant)),
      make_session_(make_session) {
  ev_io_init(&accept_w_, accept_cb, fd_.get(), EV_READ);
  accept_w_.data = this;
  ev_timer_init(&pause_t_, pause_cb, kPauseSeconds, 0.);
  pause_t_.data = this;
  tenant_->listeners.push_back(this);
}

Listener::~Listener() {
  auto& ls = tenant_->listeners;
  ls.erase(std::remove(ls.begin(), ls.end(), this), ls.end());
  if (ls.empty()) acceptor_->forget(*tenant_);
  ev_io_stop(acceptor_->loop(), &accept_w_);
  ev_timer_stop(acceptor_->loop(), &pause_t_);
  fd_.reset();
  if (!on_worker_) return;  // never handed a connection over
  // Each worker closes its own sessions (they unlink themselves in their destructors).
  // Its inbox is first in, first out: a connection handed over before this is served
  // first, then closed here.
  for (Worker* w : acceptor_->workers()) {
    if (!on_worker_[w->index].handed) continue;  // never got a connection of this listener
    w->run_and_wait([this, w] {
      SessionList& mine = on_worker_[w->index].sessions;
      while (Session* s = mine.front()) delete s;
    });
  }
}

size_t Listener::connections() const {
  if (!on_worker_) return 0;
  size_t n = 0;
  for (size_t i = 0; i < acceptor_->workers().size(); ++i) n += on_worker_[i].sessions.size();
  return n;
}

void Listener::pause(const char* why, double seconds) {
  if (why != nullptr) {
    LOG_WARN_F(({{"tenant", tenant_->id}, {"listen", spec_->listen}, {"error", why}}),
               "tenant %s: accept on %s: %s; pausing accepts for %.0f ms", tenant_name().c_str(),
               spec_->listen.c_str(), why, seconds * 1000);
  }
  ev_io_stop(acceptor_->loop(), &accept_w_);
  ev_timer_stop(acceptor_->loop(), &pause_t_);
  ev_timer_set(&pause_t_, seconds, 0.);
  ev_timer_start(acceptor_->loop(), &pause_t_);
}

void Listener::stop_accepting() {
  ev_io_stop(acceptor_->loop(), &accept_w_);
  ev_timer_stop(acceptor_->loop(), &pause_t_);
  fd_.reset();
}

void Listener::start() {
  if (!tenant_->holding()) ev_io_start(acceptor_->loop(), &accept_w_);
}

void Listener::on_pause_over() {
  if (!tenant_->holding()) ev_io_start(acceptor_->loop(), &accept_w_);
}

void Listener::on_acceptable() {
  const ProxyConfig& cfg = acceptor_->config();
  if (acceptor_->take_out_of_fds()) {
    // A session ran out of fds for its upstream connection since the last accept (http
    // mode connects once the head is in): more connections would only fail the same way.
    pause("no file descriptor left for upstream connections");
    return;
  }
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    if (tenant_->connections.load() >= tenant_->max_connections) {
      // At its limit: the rest waits in the backlog until one of its connections ends.
      acceptor_->limit_reached(*tenant_);
      LOG_DEBUG_F(({{"tenant", tenant_->id}}), "tenant %s: at its connection limit; not accepting",
                  tenant_->display.c_str());
      return;
    }
    if (cfg.max_connections > 0 && acceptor_->connections() >= cfg.max_connections &&
        tenant_->connections.load() >=
            acceptor_->budget().fair_share(*tenant_, cfg.max_connections)) {
      // The daemon's budget is spent and this tenant holds its share: its excess waits
      // in the backlog too, until the daemon has room again.
      acceptor_->hold(*tenant_);
      return;
    }
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    int cfd = ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMFILE || errno == ENFILE) {
        // Out of fds: an idle keep-alive connection goes before anyone is refused.
        switch (acceptor_->reclaim_idle()) {
          case Acceptor::Reclaim::kDone:
            continue;
          case Acceptor::Reclaim::kPosted:
            pause(nullptr, kReclaimPauseSeconds);  // its worker closes it meanwhile
            return;
          case Acceptor::Reclaim::kNone:
            break;
        }
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pause(std::strerror(errno));
        return;
      }
      LOG_WARN("tenant %s: accept on %s: %s", tenant_name().c_str(), spec_->listen.c_str(),
               std::strerror(errno));
      return;
    }
    UniqueFd client(cfd);
    set_nodelay(cfd);
    ++tenant_->connections_total;
    // The daemon-wide budget (a tenant's own limit stops its listeners above). Spent: a
    // tenant below its fair share gets a slot reclaimed from the largest holder.
    bool over_limit = cfg.max_connections > 0 && acceptor_->connections() >= cfg.max_connections &&
                      !acceptor_->reclaim_for(*tenant_);
    if (over_limit && spec_->mode == Mode::Tcp) {
      ++tenant_->refused_at_accept;
      LOG_WARN_F(
          ({{"tenant", tenant_->id}, {"listen", spec_->listen}, {"error", "connection limit"}}),
          "tenant %s: daemon connection limit reached; refusing a connection on %s",
          tenant_name().c_str(), spec_->listen.c_str());
      continue;  // closes it
    }
    if (!on_worker_) on_worker_ = std::make_unique<OnWorker[]>(acceptor_->workers().size());
    acceptor_->accepted(*tenant_);
    Worker* w = acceptor_->pick();
    on_worker_[w->index].handed = true;
    w->hand_over(this, std::move(client), peer, over_limit);
    if (acceptor_->take_out_of_fds()) {
      pause("no file descriptor left for upstream connections");
      return;
    }
  }
}

void Listener::serve(Worker* w, UniqueFd fd, const sockaddr_storage& peer, bool over_limit) {
  std::unique_ptr<Session> s = make_session_(this, w, std::move(fd), peer, over_limit);
  if (s->start()) s.release();  // the session owns itself from here on
}

void Listener::log_upstream_problem(const char* what, int err) const {
  LOG_INFO_F(({{"tenant", tenant_->id},
               {"listen", spec_->listen},
               {"upstream", upstream_->text},
               {"error", std::strerror(err)}}),
             "tenant %s: %s %s: %s", tenant_->display.c_str(), what, upstream_->text.c_str(),
             std::strerror(err));
}

void Session::report_upstream_failure(const char* what, int err) {
  shard_->stats.upstream_failed(upstream_error_of(err));
  listener_->log_upstream_problem(what, err);
}

}  // namespace nsproxy
