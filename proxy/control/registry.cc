#include "control/registry.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <set>
#include <utility>

#include "control/service_addresses.h"
#include "forward/http/http_session.h"
#include "forward/proxy_protocol.h"
#include "forward/tcp_session.h"
#include "log.h"
#include "version.h"

namespace nsproxy {
namespace {

using nlohmann::json;

int64_t now_seconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

// 32 hex digits from the kernel's random pool: tells one daemon from the next on the same
// socket (a takeover), where a pid cannot: daemons in two containers often have the same.
std::string random_instance() {
  unsigned char bytes[16] = {};
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n <= 0) break;  // EINTR before any byte, or no getrandom: the time still differs
    got += static_cast<size_t>(n);
  }
  if (got < sizeof bytes) {
    auto t = std::chrono::steady_clock::now().time_since_epoch().count() ^ ::getpid();
    std::memcpy(bytes, &t, sizeof t);
  }
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace

Registry::Registry(Acceptor* acceptor, const NetnsListenerFactory* factory)
    : acceptor_(acceptor),
      factory_(factory),
      started_at_(now_seconds()),
      instance_(random_instance()) {}

size_t Registry::listener_count() const {
  size_t n = 0;
  for (const auto& [key, reg] : regs_) n += reg->listeners.size();
  return n;
}

Reply Registry::handle(const Request& req, UniqueFd netns_fd) {
  switch (req.op) {
    case Op::Add:
      return add(req, std::move(netns_fd), {}, recording());
    case Op::Del:
      return del(req);
    case Op::Check:
      return check(req, std::move(netns_fd));
    case Op::List:
      return list();
    case Op::Status:
      return status();
    case Op::Gc:
      return gc(req);
    case Op::Handover:
      break;  // the control server runs handovers itself
  }
  return error_reply(make_error(Code::kBadRequest, "unknown op"));
}

Reply Registry::add(const Request& req, UniqueFd netns_fd,
                    const std::vector<std::string>& prior_added, Record record) {
  const std::string who = req.attachment.display();
  if (!netns_fd) {
    return error_reply(
        make_error(Code::kBadRequest, "add needs the network namespace as a file descriptor"));
  }
  auto id = netns_identity(netns_fd.get());
  if (!id)
    return error_reply(make_error(Code::kNotNetns, req.netns_path + ": " + id.error().message));
  if (req.listeners.empty()) {
    return error_reply(make_error(Code::kBadRequest, "add needs at least one listener"));
  }
  if (!allow_host_netns_) {
    auto home = netns_identity(factory_->home_fd());
    if (home && *home == *id) {
      return error_reply(
          make_error(Code::kHostNetns, req.netns_path +
                                           " is nsproxyd's own network namespace; refusing to "
                                           "register it (start nsproxyd with --allow-host-netns)"));
    }
  }

  std::vector<ListenTarget> targets;
  std::vector<std::shared_ptr<const Address>> upstreams;
  for (size_t i = 0; i < req.listeners.size(); ++i) {
    const ListenerSpec& spec = req.listeners[i];
    std::string where = "listeners[" + std::to_string(i) + "]";
    auto listen = parse_address(spec.listen, false);
    if (!listen)
      return error_reply(
          make_error(Code::kBadRequest, where + ".listen: " + listen.error().message));
    auto upstream = parse_address(spec.upstream, true);
    if (!upstream) {
      return error_reply(
          make_error(Code::kBadRequest, where + ".upstream: " + upstream.error().message));
    }
    if (spec.proxy_protocol == ProxyProtocol::V2) {
      if (Status ok = check_proxy_v2_identity(req.attachment.id, req.labels); !ok) {
        return error_reply(
            make_error(Code::kBadRequest, where + ".proxy_protocol: " + ok.error().message));
      }
    }
    if (spec.add_address) {
      if (Status ok = check_service_address(*listen); !ok) {
        return error_reply(
            make_error(Code::kBadRequest, where + ".add_address: " + ok.error().message));
      }
    }
    targets.push_back({std::move(*listen), spec.add_address});
    upstreams.push_back(shared_upstream(std::move(*upstream)));
  }

  auto tls = tls_servers(req);
  if (!tls) return error_reply(tls.error());
  auto upstream_tls = upstream_tls_clients(req, upstreams);
  if (!upstream_tls) return error_reply(upstream_tls.error());

  if (auto it = regs_.find(req.attachment); it != regs_.end()) {
    const Registration& old = *it->second;
    if (old.netns_id == *id && old.specs() == req.listeners && old.labels() == req.labels &&
        old.headers() == req.headers && old.request.limits == req.limits) {
      LOG_DEBUG("add %s: already registered, nothing to do", who.c_str());
      return ok_reply({{"registration", old.to_json()}, {"created", false}});
    }
    LOG_INFO("add %s: replacing the registration for %s (inode %ju) with %s (inode %ju)",
             who.c_str(), old.netns_path().c_str(), static_cast<uintmax_t>(old.netns_id.ino),
             req.netns_path.c_str(), static_cast<uintmax_t>(id->ino));
    forget(it, nullptr,
           record);  // closes the old listeners first: the new ones may need their ports
  }

  if (regs_.size() >= acceptor_->config().max_registrations) {
    return error_reply(make_error(Code::kLimit, "nsproxyd already holds " +
                                                    std::to_string(regs_.size()) +
                                                    " registrations (--max-registrations)"));
  }
  auto setup_start = std::chrono::steady_clock::now();
  auto made = factory_->listen_all(netns_fd.get(), req.netns_path, targets);
  listener_setup_.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_start).count());
  if (!made) {
    LOG_WARN_F(({{"tenant", req.attachment.id},
                 {"attachment", who},
                 {"netns", req.netns_path},
                 {"error", made.error().message}}),
               "add %s: %s", who.c_str(), made.error().message.c_str());
    return error_reply(made.error());
  }
  std::vector<std::string> added = owned_addresses(made->added, targets, prior_added);
  for (const auto& ip : added) {
    LOG_INFO("add %s: %s on lo in %s is nsproxy's (removed with the registration)", who.c_str(),
             ip.c_str(), req.netns_path.c_str());
  }
  // netns_fd closes here: the listeners keep the namespace alive.
  return install(req, *id, std::move(made->fds), std::move(upstreams), std::move(*tls),
                 std::move(*upstream_tls), std::move(added), record);
}

void Registry::release_addresses(Registration& reg, Record record) {
  AddressRelease plan = plan_release(reg, regs_);
  for (auto& [heir, ip] : plan.inherited) {
    LOG_INFO("%s: %s on lo stays for %s", reg.key().display().c_str(), ip.c_str(),
             heir->key().display().c_str());
    heir->added_addresses.push_back(ip);
    if (record == Record::kYes) {
      if (Status s = journal_->record_add(heir->request, heir->netns_id, heir->added_addresses);
          !s) {
        LOG_ERROR("%s: %s", heir->key().display().c_str(), s.error().message.c_str());
      }
    }
  }
  reg.added_addresses.clear();
  if (plan.remove.empty()) return;
  auto netns = reg.netns_fd();
  Status s = netns ? factory_->remove_addresses(netns->get(), reg.netns_path(), plan.remove)
                   : Status(netns.error());
  if (!s) {
    LOG_WARN("%s: %s", reg.key().display().c_str(), s.error().message.c_str());
  } else {
    LOG_INFO("%s: removed %zu address(es) nsproxy had added to lo in %s",
             reg.key().display().c_str(), plan.remove.size(), reg.netns_path().c_str());
  }
}

Reply Registry::install(const Request& req, NetnsId id, std::vector<UniqueFd> fds_in,
                        std::vector<std::shared_ptr<const Address>> upstreams,
                        std::vector<std::shared_ptr<TlsServer>> tls,
                        std::vector<std::shared_ptr<TlsClient>> upstream_tls,
                        std::vector<std::string> added_addresses, Record record) {
  const std::string who = req.attachment.display();
  auto* fds = &fds_in;
  auto reg = std::make_unique<Registration>();
  reg->request = req;
  reg->netns_id = id;
  reg->added_addresses = std::move(added_addresses);
  reg->created_at = now_seconds();
  auto tenant = std::make_shared<Tenant>(acceptor_->workers().size());
  const Request& own = reg->request;  // the tenant's views point into it, never into req
  tenant->id = own.attachment.id;
  tenant->display = who;
  tenant->labels = &own.labels;
  tenant->tenant_header =
      own.headers.tenant_id.empty() ? acceptor_->config().tenant_header : own.headers.tenant_id;
  tenant->label_header_prefix = own.headers.label_prefix.empty()
                                    ? acceptor_->config().label_header_prefix
                                    : own.headers.label_prefix;
  tenant->apply_limits(acceptor_->config(), req.limits, ev_now(acceptor_->loop()));
  reg->tenant = tenant;
  for (size_t i = 0; i < fds->size(); ++i) {
    auto l = std::make_unique<Listener>(
        acceptor_, std::move((*fds)[i]), reg->request.listeners[i], std::move(upstreams[i]), tenant,
        req.listeners[i].mode == Mode::Tcp ? make_tcp_session : make_http_session);
    if (i < tls.size() && tls[i]) l->set_tls(std::move(tls[i]));
    if (i < upstream_tls.size() && upstream_tls[i]) {
      l->set_upstream_tls(std::move(upstream_tls[i]));
    }
    l->start();  // "bound" is not "serving": ack only once the accept watcher is armed
    reg->listeners.push_back(std::move(l));
  }
  if (record == Record::kYes) {
    if (Status saved = journal_->record_add(req, id, reg->added_addresses); !saved) {
      LOG_ERROR("add %s: %s; not registered", who.c_str(), saved.error().message.c_str());
      release_addresses(*reg, record);
      return error_reply(
          make_error(Code::kInternal, "cannot persist the registration: " + saved.error().message));
    }
  }
  json data = {{"registration", reg->to_json()}, {"created", true}};
  LOG_INFO_F(({{"tenant", req.attachment.id}, {"attachment", who}, {"netns", req.netns_path}}),
             "add %s: netns %s (inode %ju), %zu listener(s)", who.c_str(), req.netns_path.c_str(),
             static_cast<uintmax_t>(id.ino), reg->listeners.size());
  if (auto old = regs_.find(req.attachment); old != regs_.end()) regs_.erase(old);
  KeyRef key{&reg->request.attachment};
  regs_.emplace(key, std::move(reg));
  return ok_reply(std::move(data));
}

Reply Registry::del(const Request& req) {
  auto it = regs_.find(req.attachment);
  if (it == regs_.end()) {
    LOG_DEBUG("del %s: not registered", req.attachment.display().c_str());
    return ok_reply({{"deleted", false}});
  }
  LOG_INFO_F(({{"tenant", req.attachment.id}, {"attachment", req.attachment.display()}}),
             "del %s: closing %zu listener(s)", req.attachment.display().c_str(),
             it->second->listeners.size());
  forget(it, nullptr, recording());
  return ok_reply({{"deleted", true}});
}

Reply Registry::check(const Request& req, UniqueFd netns_fd) {
  auto it = regs_.find(req.attachment);
  const std::string who = req.attachment.display();
  if (it == regs_.end()) {
    return error_reply(make_error(Code::kNotFound, who + " is not registered"));
  }
  const Registration& reg = *it->second;
  if (netns_fd) {
    auto id = netns_identity(netns_fd.get());
    if (!id)
      return error_reply(make_error(Code::kNotNetns, req.netns_path + ": " + id.error().message));
    if (!(*id == reg.netns_id)) {
      return error_reply(make_error(
          Code::kNetnsMismatch, who + " is registered for network namespace " + reg.netns_path() +
                                    " (inode " + std::to_string(reg.netns_id.ino) + "), not " +
                                    req.netns_path + " (inode " + std::to_string(id->ino) + ")"));
    }
  }
  for (const auto& l : reg.listeners) {
    if (!l->accepting()) {
      return error_reply(make_error(Code::kNotServing,
                                    who + ": listener " + l->spec().listen + " is not accepting"));
    }
  }
  return ok_reply({{"registration", reg.to_json()}});
}

Reply Registry::list() const {
  json regs = json::array();
  for (const auto& [key, reg] : regs_) regs.push_back(reg->to_json());
  return ok_reply({{"registrations", std::move(regs)}});
}

Reply Registry::status() const {
  TenantStats totals;
  for (const auto& [key, reg] : regs_) {
    if (reg->tenant) totals.add(reg->tenant->total_stats());
  }
  json breakdown = totals.to_json();
  return ok_reply({{"version", kVersion},
                   {"requests", totals.requests_total()},
                   {"errors", totals.errors_total()},
                   {"refused", breakdown["refused"]},
                   {"upstream_errors", breakdown["upstream_errors"]},
                   {"connections_reclaimed", breakdown["reclaimed"]},
                   {"tenants_at_limit", std::count_if(regs_.begin(), regs_.end(),
                                                      [](const auto& r) {
                                                        return r.second->tenant &&
                                                               r.second->tenant->holding();
                                                      })},
                   {"connections_total", acceptor_->connections_total()},
                   {"pid", static_cast<int64_t>(::getpid())},
                   {"instance", instance_},
                   {"uptime_seconds", now_seconds() - started_at_},
                   {"registrations", regs_.size()},
                   {"listeners", listener_count()},
                   {"connections", acceptor_->connections()},
                   {"workers", acceptor_->threads()},
                   {"reclaimed", reclaimed_}});
}

Reply Registry::gc(const Request& req) {
  const std::string& network = req.attachment.network;
  if (network.empty()) {
    return error_reply(make_error(Code::kBadRequest, "gc needs attachment.network"));
  }
  std::set<std::pair<std::string, std::string>> valid;
  for (const auto& a : req.valid_attachments) valid.emplace(a.id, a.ifname);
  json removed = json::array();
  for (auto it = regs_.begin(); it != regs_.end();) {
    const AttachmentKey& k = *it->first;
    if (k.network == network && !valid.contains({k.id, k.ifname})) {
      LOG_INFO("gc %s: not among the valid attachments of %s; removing", k.display().c_str(),
               network.c_str());
      removed.push_back(attachment_json(k));
      auto next = std::next(it);
      forget(it, nullptr, recording());
      it = next;
    } else {
      ++it;
    }
  }
  return ok_reply({{"removed", std::move(removed)}});
}

void Registry::forget(Registrations::iterator it, const char* why, Record record) {
  AttachmentKey key = *it->first;  // a copy: the registration goes below
  if (why != nullptr) {
    LOG_WARN_F(({{"tenant", key.id},
                 {"attachment", key.display()},
                 {"netns", it->second->netns_path()},
                 {"error", why}}),
               "%s: %s; dropping the registration (%zu listener(s))", key.display().c_str(), why,
               it->second->listeners.size());
  }
  release_addresses(*it->second, record);
  regs_.erase(it);
  if (record == Record::kYes) {
    if (Status s = journal_->record_del(key); !s) {
      LOG_ERROR("del %s: %s (it may come back after a restart)", key.display().c_str(),
                s.error().message.c_str());
    }
    maybe_compact();
  }
}

std::shared_ptr<const Address> Registry::shared_upstream(Address a) {
  if (upstreams_.size() > 64 && upstreams_.size() > 2 * regs_.size()) {
    std::erase_if(upstreams_, [](const auto& e) { return e.second.expired(); });
  }
  std::weak_ptr<const Address>& slot = upstreams_[a.text];
  if (auto held = slot.lock()) return held;
  auto made = std::make_shared<const Address>(std::move(a));
  slot = made;
  return made;
}

void Registry::maybe_compact() {
  if (journal_ == nullptr || journal_->lines() < 2 * regs_.size() + 1024) return;
  std::vector<SavedRegistration> live;
  live.reserve(regs_.size());
  for (const auto& [key, reg] : regs_)
    live.push_back({reg->request, reg->netns_id, reg->added_addresses});
  if (Status s = journal_->compact(live); !s) {
    LOG_ERROR("compacting %s: %s", journal_->path().c_str(), s.error().message.c_str());
  }
}

size_t Registry::restore(std::vector<SavedRegistration> saved) {
  size_t restored = 0;
  for (auto& s : saved) {
    const std::string who = s.request.attachment.display();
    auto fd = open_netns(s.request.netns_path);
    if (!fd) {
      LOG_WARN_F(({{"tenant", s.request.attachment.id},
                   {"attachment", who},
                   {"netns", s.request.netns_path},
                   {"error", fd.error().message}}),
                 "restore %s: %s; dropped", who.c_str(), fd.error().message.c_str());
      continue;
    }
    auto id = netns_identity(fd->get());
    if (!id || !(*id == s.netns_id)) {
      LOG_WARN("restore %s: %s is now another namespace than the one registered; dropped",
               who.c_str(), s.request.netns_path.c_str());
      continue;
    }
    // Re-creating what the journal holds is not a change: compacted below instead.
    Reply r = add(s.request, std::move(*fd), s.added_addresses, Record::kSkip);
    if (!r.ok) {
      LOG_WARN("restore %s: %s; dropped", who.c_str(), r.error.message.c_str());
      continue;
    }
    ++restored;
  }
  if (journal_ != nullptr) {
    std::vector<SavedRegistration> live;
    for (const auto& [key, reg] : regs_)
      live.push_back({reg->request, reg->netns_id, reg->added_addresses});
    if (Status st = journal_->compact(live); !st) {
      LOG_ERROR("compacting %s: %s", journal_->path().c_str(), st.error().message.c_str());
    }
  }
  return restored;
}

void Registry::reconcile() {
  for (auto it = regs_.begin(); it != regs_.end();) {
    auto next = std::next(it);
    const Registration& reg = *it->second;
    struct stat st;
    if (::stat(reg.netns_path().c_str(), &st) < 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        ++reclaimed_;
        forget(it, ("namespace path " + reg.netns_path() + " is gone").c_str(), recording());
      }
    } else if (st.st_ino != reg.netns_id.ino || st.st_dev != reg.netns_id.dev) {
      ++reclaimed_;
      forget(it, ("namespace path " + reg.netns_path() + " now names another namespace").c_str(),
             recording());
    }
    it = next;
  }
}

std::vector<Registry::HandoverItem> Registry::handover_items() const {
  std::vector<HandoverItem> items;
  for (const auto& [key, reg] : regs_) {
    HandoverItem item;
    item.payload = json{{"registration", json::parse(encode_request(reg->request))},
                        {"dev", static_cast<uint64_t>(reg->netns_id.dev)},
                        {"ino", static_cast<uint64_t>(reg->netns_id.ino)},
                        {"added_addresses", reg->added_addresses}}
                       .dump(-1, ' ', false, json::error_handler_t::replace);
    // The namespace fd first (what the handover protocol has always sent; a receiving
    // daemon of this version closes it again), then the listeners.
    auto netns = reg->netns_fd();
    if (!netns) {
      LOG_ERROR("handover: %s: %s; not handed over", reg->key().display().c_str(),
                netns.error().message.c_str());
      continue;
    }
    item.netns = std::move(*netns);
    item.fds.push_back(item.netns.get());
    for (const auto& l : reg->listeners) item.fds.push_back(l->fd());
    items.push_back(std::move(item));
  }
  return items;
}

void Registry::stop_accepting_all() {
  for (auto& [key, reg] : regs_) {
    for (auto& l : reg->listeners) l->stop_accepting();
  }
}

Reply Registry::take_over(const Request& req, NetnsId id, std::vector<UniqueFd> listeners,
                          std::vector<std::string> added_addresses) {
  if (listeners.size() != req.listeners.size()) {
    return error_reply(make_error(Code::kBadRequest, "handover: listener count mismatch"));
  }
  std::vector<std::shared_ptr<const Address>> upstreams;
  for (const auto& spec : req.listeners) {
    auto up = parse_address(spec.upstream, true);
    if (!up) return error_reply(up.error());
    upstreams.push_back(shared_upstream(std::move(*up)));
  }
  // The certificates are read again: a changed file takes effect with the new daemon.
  auto tls = tls_servers(req);
  if (!tls) return error_reply(tls.error());
  auto upstream_tls = upstream_tls_clients(req, upstreams);
  if (!upstream_tls) return error_reply(upstream_tls.error());
  // Already in the journal (the old daemon's, handed over with the state directory).
  return install(req, id, std::move(listeners), std::move(upstreams), std::move(*tls),
                 std::move(*upstream_tls), std::move(added_addresses), Record::kSkip);
}

std::vector<SavedRegistration> Registry::saved() const {
  std::vector<SavedRegistration> live;
  for (const auto& [key, reg] : regs_)
    live.push_back({reg->request, reg->netns_id, reg->added_addresses});
  return live;
}

}  // namespace nsproxy
