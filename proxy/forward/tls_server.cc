#include "forward/tls_server.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace nsproxy {

namespace {

// OpenSSL's queued errors as one line ("no start line; PEM lib"), and the queue cleared.
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (reason == nullptr) {
      ERR_error_string_n(e, buf, sizeof buf);
      reason = buf;
    }
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// The file can be opened for reading (OpenSSL's message for a missing file is obscure).
Status readable(const std::string& path, const char* what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(Code::kBadRequest,
                      std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  ::close(fd);
  return {};
}

// The SNI table of a listener's default context: the other certificates' contexts. It
// lives in the default context's ex_data and goes when OpenSSL frees that context, i.e.
// after the last connection made from it, so a handshake never sees it freed.
struct SniTable {
  std::vector<SSL_CTX*> others;
  ~SniTable() {
    for (SSL_CTX* c : others) SSL_CTX_free(c);
  }
};

void free_sni_table(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<SniTable*>(ptr);
}

int sni_table_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free_sni_table);
  return index;
}

// Set on an SSL whose SNI name matched no certificate.
int unmatched_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// ClientHello with a server name: the first certificate whose names match it, the default
// first; none: the default stays.
int on_servername(SSL* ssl, int*, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  auto* table = static_cast<SniTable*>(arg);
  if (name == nullptr || table == nullptr) return SSL_TLSEXT_ERR_OK;
  X509* def = SSL_get_certificate(ssl);
  if (def != nullptr && X509_check_host(def, name, 0, 0, nullptr) == 1) return SSL_TLSEXT_ERR_OK;
  for (SSL_CTX* ctx : table->others) {
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (cert != nullptr && X509_check_host(cert, name, 0, 0, nullptr) == 1) {
      SSL_set_SSL_CTX(ssl, ctx);
      return SSL_TLSEXT_ERR_OK;
    }
  }
  SSL_set_ex_data(ssl, unmatched_index(), ssl);  // any non-null value
  return SSL_TLSEXT_ERR_OK;
}

// ALPN: http/1.1 when offered; otherwise no ALPN in the answer (RFC 7301 allows the
// server to ignore the extension), and the client decides.
int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
            unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// The DNS names a certificate is valid for: subjectAltName, or the common name when it
// has none.
std::vector<std::string> dns_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
      names.emplace_back(cn);
    }
  }
  return names;
}

// One certificate's context, with the listener's TLS settings.
Result<SSL_CTX*> make_context(const TlsCertificate& c) {
  if (Status s = readable(c.cert_file, "certFile"); !s) return s.error();
  if (Status s = readable(c.key_file, "keyFile"); !s) return s.error();
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return make_error(Code::kInternal, "SSL_CTX_new: " + ssl_errors());
  auto fail = [&](const std::string& what) -> Result<SSL_CTX*> {
    std::string why = ssl_errors();
    SSL_CTX_free(ctx);
    return make_error(Code::kBadRequest, what + ": " + why);
  };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Buffers go back to OpenSSL while a connection is idle (a keep-alive tenant holds
  // ~34 KiB less); writes resume from a queue that may have grown or moved.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One read() per burst of records instead of two per record (header, then body); what
  // was read ahead is seen with SSL_has_pending (connection.cc).
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  if (SSL_CTX_use_certificate_chain_file(ctx, c.cert_file.c_str()) != 1) {
    return fail("certFile " + c.cert_file);
  }
  // OpenSSL checks here that the key is the certificate's ("key values mismatch").
  if (SSL_CTX_use_PrivateKey_file(ctx, c.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return fail("keyFile " + c.key_file + " (for certFile " + c.cert_file + ")");
  }
  return ctx;
}

}  // namespace

// The default context, whose ex_data holds the SNI table; freed with SSL_CTX_free.
struct TlsServer::Contexts {
  SSL_CTX* ctx = nullptr;
  std::string description;
  ~Contexts() { SSL_CTX_free(ctx); }
};

Result<std::shared_ptr<const TlsServer::Contexts>> TlsServer::make_contexts(
    const std::vector<TlsCertificate>& certs) {
  if (certs.empty()) return make_error(Code::kBadRequest, "https needs a certificate");
  auto contexts = std::make_shared<Contexts>();
  auto table = std::make_unique<SniTable>();
  for (size_t i = 0; i < certs.size(); ++i) {
    auto ctx = make_context(certs[i]);
    if (!ctx) return ctx.error();
    if (i == 0) {
      contexts->ctx = *ctx;
    } else {
      table->others.push_back(*ctx);
    }
    std::string names;
    for (const auto& n : dns_names(SSL_CTX_get0_certificate(*ctx))) {
      names += (names.empty() ? "" : ", ") + n;
    }
    contexts->description += (i == 0 ? "" : "; ") + certs[i].cert_file + " (" +
                             (names.empty() ? "no DNS name" : names) + ")";
  }
  SniTable* raw = table.release();
  if (SSL_CTX_set_ex_data(contexts->ctx, sni_table_index(), raw) != 1) {
    delete raw;
    return make_error(Code::kInternal, "SSL_CTX_set_ex_data failed");
  }
  SSL_CTX_set_tlsext_servername_callback(contexts->ctx, on_servername);
  SSL_CTX_set_tlsext_servername_arg(contexts->ctx, raw);
  return std::shared_ptr<const Contexts>(std::move(contexts));
}

Result<std::shared_ptr<TlsServer>> TlsServer::load(const std::vector<TlsCertificate>& certs) {
  std::shared_ptr<TlsServer> server(new TlsServer(certs));
  if (Status s = server->reload(); !s) return s.error();
  return server;
}

TlsServer::~TlsServer() = default;

const char* TlsServer::unmatched_name(const SSL* ssl) {
  if (ssl == nullptr || SSL_get_ex_data(ssl, unmatched_index()) == nullptr) return nullptr;
  return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

SSL* TlsServer::new_ssl() const {
  auto contexts = current_.load();
  // The SSL holds its own reference on the context (and through it the SNI table).
  return SSL_new(contexts->ctx);
}

Status TlsServer::reload() {
  return stamps_.read(
      files(), [&] { return make_contexts(certs_); },
      [&](std::shared_ptr<const Contexts> c) { current_.store(std::move(c)); });
}

std::vector<std::string> TlsServer::files() const {
  std::vector<std::string> out;
  for (const auto& c : certs_) {
    out.push_back(c.cert_file);
    out.push_back(c.key_file);
  }
  return out;
}

bool TlsServer::files_changed() const {
  return stamps_.changed(files());
}

std::string TlsServer::describe() const {
  return current_.load()->description;
}

}  // namespace nsproxy
