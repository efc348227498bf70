// TLS towards an upstream (http and https listeners with an "https://" upstream or
// upstreamTls): one client context per CA file and verification setting, shared by the
// listeners that use them; each upstream connection gets an SSL in connect state once its
// TCP connect completed, with the name it must verify (and send as SNI).
//   - TLS 1.2 and 1.3, ALPN http/1.1, no renegotiation;
//   - verification on unless insecure_skip_verify: the chain against ca_file (or the
//     system's trusted CAs), the leaf against server_name, or against the upstream's IP
//     address when no server_name is set (then no SNI is sent: RFC 6066 forbids IPs in it).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "address.h"
#include "control_protocol.h"
#include "error.h"

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

 private:
  TlsClient() = default;
  SSL_CTX* ctx_ = nullptr;
  UpstreamTls config_;
  std::string ip_;  // the upstream's IP, checked when there is no server_name
  std::string pool_key_;
};

}  // namespace nsproxy
