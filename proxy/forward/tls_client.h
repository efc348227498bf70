// TLS towards an upstream (http and https listeners with an "https://" upstream or
// upstreamTls): one client context per CA file and verification setting, shared by the
// listeners that use them; each upstream connection gets an SSL in connect state once its
// TCP connect completed, with the name it must verify (and send as SNI).
//   - TLS 1.2 and 1.3, ALPN http/1.1, no renegotiation;
//   - verification on unless insecure_skip_verify: the chain against ca_file (or the
//     system's trusted CAs), the leaf against server_name, or against the upstream's IP
//     address when no server_name is set (then no SNI is sent: RFC 6066 forbids IPs in it).
//   - reload() reads the CA file (or the system's CAs) again and swaps the context in one
//     step, as TlsServer does: connections already made, pooled ones included, keep
//     theirs; on failure the context in use stays.
// Thread safety: new_ssl() may run on any worker while reload() runs on the main thread.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "address.h"
#include "control_protocol.h"
#include "error.h"
#include "forward/file_stamps.h"

namespace nsproxy {

class TlsClient {
 public:
  // Reads ca_file now; the error names it.
  static Result<std::shared_ptr<TlsClient>> make(const UpstreamTls& config,
                                                 const Address& upstream);
  ~TlsClient();
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // A connect-state SSL on fd with the name to verify (nullptr when out of memory).
  SSL* new_ssl(int fd) const;
  // What tells pooled connections apart: the address and every TLS setting.
  const std::string& pool_key() const { return pool_key_; }
  static std::string key_for(const UpstreamTls& config, const Address& upstream);
  bool verifies() const { return !config_.insecure_skip_verify; }
  const UpstreamTls& config() const { return config_; }
  const std::string& upstream() const { return upstream_; }  // its address, for logs

  // Reads the CA certificates again; on failure the ones in use stay.
  Status reload();
  // Whether the CA file is not the one last read (nor the one a reload last failed on);
  // false without a CA file or verification.
  bool files_changed() const;
  // The CA file, when there is one and it is used.
  std::vector<std::string> files() const;

 private:
  struct Context;
  TlsClient() = default;
  Result<std::shared_ptr<const Context>> make_context() const;

  std::atomic<std::shared_ptr<const Context>> ctx_;
  FileStamps stamps_;  // main thread
  UpstreamTls config_;
  std::string upstream_;
  std::string ip_;  // the upstream's IP, checked when there is no server_name
  std::string pool_key_;
};

}  // namespace nsproxy
