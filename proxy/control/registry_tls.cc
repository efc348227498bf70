// Registry: the TLS side. The certificates of https listeners and the TLS clients toward
// upstreams, shared by the listeners that name the same files and settings, and read
// again on SIGHUP or when the file watch sees their files change.
#include <string>
#include <vector>

#include "control/registry.h"
#include "log.h"

namespace nsproxy {

Result<std::vector<std::shared_ptr<TlsServer>>> Registry::tls_servers(const Request& req) {
  std::vector<std::shared_ptr<TlsServer>> out(req.listeners.size());
  for (size_t i = 0; i < req.listeners.size(); ++i) {
    const ListenerSpec& spec = req.listeners[i];
    if (spec.mode != Mode::Https) continue;
    const std::string where = "listeners[" + std::to_string(i) + "].tls";
    if (spec.certificates.empty()) {
      return make_error(Code::kBadRequest, where + ": https needs a certificate");
    }
    std::erase_if(tls_, [](const auto& e) { return e.second.expired(); });  // a handful
    std::weak_ptr<TlsServer>& slot = tls_[spec.certificates];
    if (auto held = slot.lock()) {
      out[i] = std::move(held);
      continue;
    }
    auto loaded = TlsServer::load(spec.certificates);
    if (!loaded) {
      tls_.erase(spec.certificates);
      return make_error(Code::kBadRequest, where + ": " + loaded.error().message);
    }
    LOG_INFO("%s: certificates %s", req.attachment.display().c_str(),
             (*loaded)->describe().c_str());
    slot = *loaded;
    out[i] = std::move(*loaded);
    watch_tls_files();
  }
  return out;
}

Result<std::vector<std::shared_ptr<TlsClient>>> Registry::upstream_tls_clients(
    const Request& req, const std::vector<std::shared_ptr<const Address>>& upstreams) {
  std::vector<std::shared_ptr<TlsClient>> out(req.listeners.size());
  for (size_t i = 0; i < req.listeners.size(); ++i) {
    const UpstreamTls& cfg = req.listeners[i].upstream_tls;
    if (!cfg.enabled) continue;
    const std::string where = "listeners[" + std::to_string(i) + "].upstream_tls";
    std::erase_if(upstream_tls_, [](const auto& e) { return e.second.expired(); });
    std::weak_ptr<TlsClient>& slot = upstream_tls_[TlsClient::key_for(cfg, *upstreams[i])];
    if (auto held = slot.lock()) {
      out[i] = std::move(held);
      continue;
    }
    auto made = TlsClient::make(cfg, *upstreams[i]);  // reads the CA file(s)
    if (!made) {
      upstream_tls_.erase(TlsClient::key_for(cfg, *upstreams[i]));
      return make_error(Code::kBadRequest, where + ": " + made.error().message);
    }
    if (cfg.insecure_skip_verify) {
      LOG_WARN(
          "%s: %s: TLS to upstream %s without verifying its certificate "
          "(insecureSkipVerify): anyone on the path can pose as it",
          req.attachment.display().c_str(), where.c_str(), upstreams[i]->text.c_str());
    }
    slot = *made;
    out[i] = std::move(*made);
    watch_tls_files();
  }
  return out;
}

void Registry::reload_tls(Reload which) {
  size_t ok = 0, failed = 0;
  for (auto it = tls_.begin(); it != tls_.end();) {
    auto server = it->second.lock();
    if (!server) {
      it = tls_.erase(it);
      continue;
    }
    ++it;
    if (which == Reload::kChanged && !server->files_changed()) continue;
    if (Status s = server->reload(); !s) {
      ++failed;
      LOG_ERROR("reload: %s; the certificates in use stay", s.error().message.c_str());
    } else {
      ++ok;
      LOG_INFO("reload: certificates %s", server->describe().c_str());
    }
  }
  // Upstream TLS: the CA certificates verifying each upstream (the system's on SIGHUP too).
  for (auto it = upstream_tls_.begin(); it != upstream_tls_.end();) {
    auto client = it->second.lock();
    if (!client) {
      it = upstream_tls_.erase(it);
      continue;
    }
    ++it;
    if (!client->verifies()) continue;
    if (which == Reload::kChanged && !client->files_changed()) continue;
    const std::string ca = client->config().ca_file.empty() ? "the system's CA certificates"
                                                            : "caFile " + client->config().ca_file;
    if (Status s = client->reload(); !s) {
      ++failed;
      LOG_ERROR("reload: %s (TLS to upstream %s); the CA certificates in use stay",
                s.error().message.c_str(), client->upstream().c_str());
    } else {
      ++ok;
      LOG_INFO("reload: %s for TLS to upstream %s", ca.c_str(), client->upstream().c_str());
    }
  }
  if (ok + failed > 0) {
    LOG_INFO("reload%s: %zu certificate set(s) read again, %zu kept after an error",
             which == Reload::kChanged ? " (the files changed)" : "", ok, failed);
  }
  watch_tls_files();
}

void Registry::watch_tls_files() {
  if (file_watch_ == nullptr) return;
  std::vector<std::string> files;
  for (const auto& [certs, weak] : tls_) {
    if (auto server = weak.lock()) {
      auto f = server->files();
      files.insert(files.end(), f.begin(), f.end());
    }
  }
  for (const auto& [key, weak] : upstream_tls_) {
    if (auto client = weak.lock()) {
      auto f = client->files();
      files.insert(files.end(), f.begin(), f.end());
    }
  }
  file_watch_->watch(files);
}

}  // namespace nsproxy
