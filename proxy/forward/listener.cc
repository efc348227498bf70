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

Session::Session(Listener* listener) : listener_(listener) {
  listener_->add_session(this);
  if (listener_->tenant().connections++ == 0)
    listener_->worker()->budget.add_holder(listener_->tenant());
  ++listener_->worker()->connections;
  ++listener_->worker()->connections_total;
}

Session::~Session() {
  listener_->remove_session(this);
  unlink(this);
  Tenant& t = listener_->tenant();
  if (--t.connections == 0) listener_->worker()->budget.remove_holder(t);
  --listener_->worker()->connections;
  if (t.at_limit && t.connections < t.max_connections) {
    t.at_limit = false;
    Listener::update_tenant(t);
  }
  const ProxyConfig& cfg = *listener_->worker()->config;
  if (cfg.max_connections > 0 && listener_->worker()->connections < cfg.max_connections) {
    listener_->worker()->budget.release_held();  // room again: they may try
  }
}

void Listener::update_tenant(Tenant& t) {
  for (Listener* l : t.listeners) {
    // Not one that is paused (out of fds; its timer restarts it) or handed over.
    if (!l->fd_ || ev_is_active(&l->pause_t_)) continue;
    set_active(l->worker_->loop, &l->accept_w_, !t.holding());
  }
}

Listener::Listener(Worker* worker, UniqueFd fd, const ListenerSpec& spec,
                   std::shared_ptr<const Address> upstream, std::shared_ptr<Tenant> tenant,
                   SessionFactory make_session)
    : worker_(worker),
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
  if (ls.empty()) worker_->budget.forget(*tenant_);
  ev_io_stop(worker_->loop, &accept_w_);
  ev_timer_stop(worker_->loop, &pause_t_);
  fd_.reset();
  // Sessions unlink themselves in their destructors.
  while (Session* s = sessions_.front()) delete s;
}

void Listener::pause(const char* why) {
  LOG_WARN_F(({{"tenant", tenant_->id}, {"listen", spec_->listen}, {"error", why}}),
             "tenant %s: accept on %s: %s; pausing accepts for %.0f ms", tenant_name().c_str(),
             spec_->listen.c_str(), why, kPauseSeconds * 1000);
  ev_io_stop(worker_->loop, &accept_w_);
  ev_timer_stop(worker_->loop, &pause_t_);
  ev_timer_set(&pause_t_, kPauseSeconds, 0.);
  ev_timer_start(worker_->loop, &pause_t_);
}

void Listener::stop_accepting() {
  ev_io_stop(worker_->loop, &accept_w_);
  ev_timer_stop(worker_->loop, &pause_t_);
  fd_.reset();
}

void Listener::start() {
  if (!tenant_->holding()) ev_io_start(worker_->loop, &accept_w_);
}

void Listener::on_pause_over() {
  if (!tenant_->holding()) ev_io_start(worker_->loop, &accept_w_);
}

void Listener::on_acceptable() {
  const ProxyConfig& cfg = *worker_->config;
  if (worker_->out_of_fds) {
    // A session ran out of fds for its upstream connection since the last accept (http
    // mode connects once the head is in): more connections would only fail the same way.
    worker_->out_of_fds = false;
    pause("no file descriptor left for upstream connections");
    return;
  }
  for (int i = 0; i < kAcceptsPerWakeup; ++i) {
    if (tenant_->connections >= tenant_->max_connections) {
      // At its limit: the rest waits in the backlog until one of its connections ends.
      tenant_->at_limit = true;
      update_tenant(*tenant_);
      LOG_DEBUG_F(({{"tenant", tenant_->id}}), "tenant %s: at its connection limit; not accepting",
                  tenant_->display.c_str());
      return;
    }
    if (cfg.max_connections > 0 && worker_->connections >= cfg.max_connections &&
        tenant_->connections >= worker_->budget.fair_share(*tenant_, cfg.max_connections)) {
      // The daemon's budget is spent and this tenant holds its share: its excess waits
      // in the backlog too, until the daemon has room again.
      worker_->budget.hold(*tenant_);
      return;
    }
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof peer;
    int cfd = ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &peer_len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // Out of fds: an idle keep-alive connection goes before anyone is refused.
      if ((errno == EMFILE || errno == ENFILE) && worker_->budget.reclaim_idle()) continue;
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
    ++tenant_->stats.connections_total;
    // The daemon-wide budget (a tenant's own limit stops its listeners above). Spent: a
    // tenant below its fair share gets a slot reclaimed from the largest holder.
    bool over_limit = cfg.max_connections > 0 && worker_->connections >= cfg.max_connections &&
                      !worker_->budget.reclaim_for(*tenant_, cfg.max_connections);
    if (over_limit && spec_->mode == Mode::Tcp) {
      tenant_->stats.refuse(Refusal::ConnectionLimit);
      LOG_WARN_F(
          ({{"tenant", tenant_->id}, {"listen", spec_->listen}, {"error", "connection limit"}}),
          "tenant %s: daemon connection limit reached; refusing a connection on %s",
          tenant_name().c_str(), spec_->listen.c_str());
      continue;  // closes it
    }
    std::unique_ptr<Session> s = make_session_(this, std::move(client), peer, over_limit);
    if (s->start()) {
      s.release();  // the session owns itself from here on
    } else if (worker_->out_of_fds) {
      worker_->out_of_fds = false;
      s.reset();
      pause("no file descriptor left for upstream connections");
      return;
    }
  }
}

void Listener::log_upstream_problem(const char* what, int err) const {
  LOG_INFO_F(({{"tenant", tenant_->id},
               {"listen", spec_->listen},
               {"upstream", upstream_->text},
               {"error", std::strerror(err)}}),
             "tenant %s: %s %s: %s", tenant_->display.c_str(), what, upstream_->text.c_str(),
             std::strerror(err));
}

void Listener::upstream_failed(const char* what, int err) const {
  tenant_->stats.upstream_failed(upstream_error_of(err));
  log_upstream_problem(what, err);
}

}  // namespace nsproxy
