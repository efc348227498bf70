#include "forward/tls_client.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nsproxy {

namespace {

std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason != nullptr ? reason : "unknown OpenSSL error";
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

struct TlsClient::Context {
  SSL_CTX* ctx = nullptr;
  ~Context() { SSL_CTX_free(ctx); }
};

Result<std::shared_ptr<TlsClient>> TlsClient::make(const UpstreamTls& config,
                                                   const Address& upstream) {
  std::shared_ptr<TlsClient> c(new TlsClient());
  c->config_ = config;
  if (upstream.family() != AF_UNIX) c->ip_ = address_ip(upstream);
  c->pool_key_ = key_for(config, upstream);
  c->upstream_ = upstream.text;
  if (Status s = c->reload(); !s) return s.error();
  return c;
}

Result<std::shared_ptr<const TlsClient::Context>> TlsClient::make_context() const {
  const UpstreamTls& config = config_;
  if (!config.ca_file.empty()) {
    int fd = ::open(config.ca_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return make_error(Code::kBadRequest,
                        "caFile " + config.ca_file + ": " + std::strerror(errno));
    }
    ::close(fd);
  }
  ERR_clear_error();
  auto c = std::make_shared<Context>();
  c->ctx = SSL_CTX_new(TLS_client_method());
  if (c->ctx == nullptr) return make_error(Code::kInternal, "SSL_CTX_new: " + ssl_errors());
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                               SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(c->ctx, kHttp11, sizeof kHttp11);
  if (!config.insecure_skip_verify) {
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, nullptr);
    int ok = config.ca_file.empty()
                 ? SSL_CTX_set_default_verify_paths(c->ctx)
                 : SSL_CTX_load_verify_locations(c->ctx, config.ca_file.c_str(), nullptr);
    if (ok != 1) {
      return make_error(Code::kBadRequest,
                        (config.ca_file.empty() ? std::string("the system's CA certificates")
                                                : "caFile " + config.ca_file) +
                            ": " + ssl_errors());
    }
  }
  return std::shared_ptr<const Context>(std::move(c));
}

Status TlsClient::reload() {
  return stamps_.read(
      files(), [&] { return make_context(); },
      [&](std::shared_ptr<const Context> c) { ctx_.store(std::move(c)); });
}

std::vector<std::string> TlsClient::files() const {
  if (config_.insecure_skip_verify || config_.ca_file.empty()) return {};
  return {config_.ca_file};
}

bool TlsClient::files_changed() const {
  return !files().empty() && stamps_.changed(files());
}

std::string TlsClient::key_for(const UpstreamTls& config, const Address& upstream) {
  return "tls " + upstream.text + " " + config.server_name + " " + config.ca_file +
         (config.insecure_skip_verify ? " insecure" : " verified");
}

TlsClient::~TlsClient() = default;

SSL* TlsClient::new_ssl(int fd) const {
  // The SSL holds its own reference on the context.
  SSL* ssl = SSL_new(ctx_.load()->ctx);
  if (ssl == nullptr) return nullptr;
  bool ok = SSL_set_fd(ssl, fd) == 1;
  if (ok && !config_.server_name.empty()) {
    ok = SSL_set_tlsext_host_name(ssl, config_.server_name.c_str()) == 1 &&
         (config_.insecure_skip_verify || SSL_set1_host(ssl, config_.server_name.c_str()) == 1);
  } else if (ok && !config_.insecure_skip_verify && !ip_.empty()) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip_.c_str()) == 1;
  }
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

}  // namespace nsproxy
