// The daemon's registrations: one per attachment (CNI network, container id, ifname) or
// manual id. Each holds the namespace identity (st_dev, st_ino) and its listeners, whose
// sockets keep the namespace alive (no namespace fd is held).
//
// add    same key, same namespace, same listeners and labels: idempotent (created=false).
//        same key, anything else different: the old registration is removed first, then
//        the new one is created (a re-created sandbox has a new namespace inode).
//        All listeners or none: a failure undoes what was made.
// del    closes the listeners and every connection they accepted; unknown keys are fine.
// gc     removes every registration of the request's network whose (id, ifname) is not
//        in valid_attachments; never touches other networks or manual registrations.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "control/file_watch.h"
#include "control/netns_listen.h"
#include "control/registration.h"
#include "control/state_journal.h"
#include "control_protocol.h"
#include "forward/acceptor.h"
#include "forward/histogram.h"
#include "forward/listener.h"
#include "netns.h"
#include "unique_fd.h"

namespace nsproxy {

class Registry {
 public:
  Registry(Acceptor* acceptor, const NetnsListenerFactory* factory);

  // Handles one decoded control request; netns_fd is the fd that came with it (if any).
  Reply handle(const Request& req, UniqueFd netns_fd);

  size_t size() const { return regs_.size(); }
  size_t listener_count() const;
  uint64_t reclaimed() const { return reclaimed_; }
  // Time to create a registration's listeners (setns .. setns back), seconds.
  const Histogram& listener_setup() const { return listener_setup_; }
  // f(const Registration&) for every registration, in key order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, reg] : regs_) f(*reg);
  }
  void clear() { regs_.clear(); }

  // Registering the daemon's own network namespace is refused unless allowed: listeners
  // there would be reachable from the host itself, not from one tenant.
  void allow_host_netns(bool allow) { allow_host_netns_ = allow; }

  // Every acknowledged change is recorded here before the reply (may be null).
  void set_journal(StateJournal* journal) { journal_ = journal; }
  // At start, before the control socket serves: re-creates saved registrations whose
  // namespace still exists under its path with the recorded identity; drops (and logs)
  // the others; then compacts the journal to the survivors. Returns how many came back.
  size_t restore(std::vector<SavedRegistration> saved);
  // Handover, old daemon: one message per registration (the add request and namespace
  // identity as JSON; fds: the namespace, then each listener in order).
  struct HandoverItem {
    std::string payload;
    UniqueFd netns;        // opened for the handover; fds[0]
    std::vector<int> fds;  // the namespace, then each listener
  };
  std::vector<HandoverItem> handover_items() const;
  void stop_accepting_all();
  // Handover, new daemon: takes over a registration with its open sockets.
  Reply take_over(const Request& req, NetnsId id, std::vector<UniqueFd> listeners,
                  std::vector<std::string> added_addresses = {});
  // The live registrations, as the journal stores them.
  std::vector<SavedRegistration> saved() const;

  // Drops registrations whose namespace path vanished or now names another namespace
  // (a DEL that never came): listening sockets would pin the namespace forever.
  void reconcile();
  // Reads https listeners' certificates, and the CA certificates verifying TLS upstreams,
  // again: on SIGHUP (kAll) every set; when the file watch saw a change (kChanged) the
  // sets whose files are not the ones last read.
  // A file that fails keeps the certificates in use (logged); open connections are not
  // touched either way. Then the watch follows the files (they may have moved).
  enum class Reload { kAll, kChanged };
  void reload_tls(Reload which);
  // Told the certificate files of the live https listeners whenever they change (nullptr:
  // nothing is watched).
  void set_file_watch(FileWatch* watch) { file_watch_ = watch; }

 private:
  // Whether a change goes to the journal: kSkip while re-creating what the journal
  // already holds (restore at start, a takeover), kYes for every acknowledged change.
  enum class Record { kYes, kSkip };
  Record recording() const { return journal_ != nullptr ? Record::kYes : Record::kSkip; }

  // Closes a registration (why: logged as a warning when not asked for by a request).
  void forget(Registrations::iterator it, const char* why, Record record);
  void maybe_compact();
  // Creates the registration from ready listening sockets (start accepting, journal).
  Reply install(const Request& req, NetnsId id, std::vector<UniqueFd> fds,
                std::vector<std::shared_ptr<const Address>> upstreams,
                std::vector<std::shared_ptr<TlsServer>> tls,
                std::vector<std::shared_ptr<TlsClient>> upstream_tls,
                std::vector<std::string> added_addresses, Record record);
  // The TLS client of each listener whose upstream speaks TLS (nullptr for the others),
  // shared by listeners with the same upstream and settings; the error names the
  // listener and the CA file. Warns when a listener skips verification.
  Result<std::vector<std::shared_ptr<TlsClient>>> upstream_tls_clients(
      const Request& req, const std::vector<std::shared_ptr<const Address>>& upstreams);
  // The certificates of each https listener of req (nullptr for the others), read now;
  // listeners naming the same files share them. The error names the listener and file.
  Result<std::vector<std::shared_ptr<TlsServer>>> tls_servers(const Request& req);
  // One Address per upstream, shared by every listener toward it (hundreds of tenants
  // usually share a handful of upstreams); freed with its last listener, its entry swept
  // once the table holds twice as many entries as there are registrations.
  std::shared_ptr<const Address> shared_upstream(Address a);
  // The file watch follows the files of the live certificate sets.
  void watch_tls_files();
  // prior_added: IPs a restored registration had added before (still ours if lo has them).
  Reply add(const Request& req, UniqueFd netns_fd, const std::vector<std::string>& prior_added,
            Record record);
  // Removes the IPs this registration added from lo, unless another registration of the
  // same namespace wants them (it takes them over; service_addresses.h).
  void release_addresses(Registration& reg, Record record);
  Reply del(const Request& req);
  Reply check(const Request& req, UniqueFd netns_fd);
  Reply list() const;
  Reply status() const;
  Reply gc(const Request& req);

  Acceptor* acceptor_;
  const NetnsListenerFactory* factory_;
  int64_t started_at_;
  std::string instance_;  // status "instance": this daemon, not the one before or after it
  StateJournal* journal_ = nullptr;
  bool allow_host_netns_ = false;
  std::unordered_map<std::string, std::weak_ptr<const Address>> upstreams_;  // by text
  // By the certificate and key paths, in order; reload_tls() re-reads the live ones.
  std::map<std::vector<TlsCertificate>, std::weak_ptr<TlsServer>> tls_;
  std::unordered_map<std::string, std::weak_ptr<TlsClient>> upstream_tls_;  // by pool key
  FileWatch* file_watch_ = nullptr;
  uint64_t reclaimed_ = 0;  // dropped by reconcile (namespace gone or replaced)
  Histogram listener_setup_{kListenerSetupBounds};
  Registrations regs_;
};

}  // namespace nsproxy
