// libFuzzer target: the TLS input path of an https listener (Connection's TLS reads and
// writes under HttpSession, TlsServer's SNI and ALPN callbacks, OpenSSL's record layer and
// ClientHello parsing), end to end over real loopback sockets, in the current network
// namespace (no root needed). The input is what a tenant sends from the first byte: the
// seeds are real ClientHellos (with SNI and ALPN, TLS 1.2 and 1.3), plain HTTP and a
// truncated record. The harness and the properties it checks: session_harness.h. Here,
// whatever the daemon sent must start as a TLS record: a handshake (22) or an alert (21),
// never plaintext HTTP. (The record version is not checked: before a version is agreed,
// OpenSSL's alert carries the version the client's hello named, whatever it was.)
//
// The listener presents two certificates (the second chosen by SNI "b.fuzz"): self-signed
// P-256 ones made with OpenSSL's API at start, written to a temporary directory that is
// removed at exit.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "session_harness.h"

namespace {

std::string g_dir;

void remove_dir() {
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

// A self-signed certificate for `name` and its key, as PEM files in g_dir.
nsproxy::TlsCertificate make_certificate(const std::string& name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  if (key == nullptr || cert == nullptr) fuzz_session::die("EVP_EC_gen / X509_new");
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* subject = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, subject);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, ("DNS:" + name).c_str());
  if (san == nullptr || X509_add_ext(cert, san, -1) != 1) fuzz_session::die("subjectAltName");
  X509_EXTENSION_free(san);
  if (X509_sign(cert, key, EVP_sha256()) == 0) fuzz_session::die("X509_sign");
  nsproxy::TlsCertificate out{g_dir + "/" + name + ".pem", g_dir + "/" + name + ".key"};
  FILE* c = std::fopen(out.cert_file.c_str(), "w");
  FILE* k = std::fopen(out.key_file.c_str(), "w");
  if (c == nullptr || k == nullptr || PEM_write_X509(c, cert) != 1 ||
      PEM_write_PrivateKey(k, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    fuzz_session::die("writing the test certificate");
  }
  std::fclose(c);
  std::fclose(k);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char tmpl[] = "/tmp/fuzz_tls_request.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) fuzz_session::die("mkdtemp");
  g_dir = tmpl;
  std::atexit(remove_dir);
  std::vector<nsproxy::TlsCertificate> certs = {make_certificate("a.fuzz"),
                                                make_certificate("b.fuzz")};
  auto tls = nsproxy::TlsServer::load(certs);
  if (!tls) {
    std::fprintf(stderr, "fuzz_tls_request: %s\n", tls.error().message.c_str());
    std::abort();
  }
  fuzz_session::setup("fuzz_tls_request", std::move(*tls));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_session::run_input(data, size, [](const std::string& head) {
    const auto type = static_cast<unsigned char>(head[0]);
    if (type != 21 && type != 22) {
      return std::string("the daemon sent something that is not a TLS handshake or alert record");
    }
    return std::string();
  });
  return 0;
}
