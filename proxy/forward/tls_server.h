// The TLS side of an https listener: its certificates as OpenSSL contexts, shared by every
// listener that names the same files (the registry keeps one per list of certificates).
//
//   - TLS 1.2 and 1.3 only; no renegotiation, no compression; ALPN "http/1.1" is chosen
//     when the client offers it (a client offering only h2 gets no ALPN answer and then
//     speaks HTTP/1.1 or fails on its own).
//   - The first certificate is the default. The client's SNI name picks another one
//     whose DNS names (subjectAltName, or the common name without any) match it,
//     wildcards as RFC 6125 allows; an unknown name gets the default.
//   - reload() re-reads every file and swaps the contexts in one step: a handshake
//     starts from the contexts current at accept time and keeps them to its end, so
//     open connections never notice. When a file is missing or invalid, nothing changes
//     and the error says which.
//   - files_changed() says whether any file is not the one last read (another inode, size
//     or modification time), for a reload when the files change (control/file_watch.h).
// Thread safety: new_ssl() may run on any worker while reload() runs on the main thread.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "error.h"
#include "forward/file_stamps.h"

namespace nsproxy {

class TlsServer {
 public:
  // Reads and checks every certificate and key; the error names the file and why.
  static Result<std::shared_ptr<TlsServer>> load(const std::vector<TlsCertificate>& certs);
  ~TlsServer();

  // A server-side SSL for one accepted connection, from the current contexts (nullptr
  // when OpenSSL is out of memory).
  SSL* new_ssl() const;
  // Re-reads the files; on failure the contexts in use stay.
  Status reload();
  // Whether a file differs from the one the contexts were read from, and from the one a
  // reload last failed on (a broken file is reported once, not at every change beside it).
  bool files_changed() const;
  // Every certificate and key file, in order.
  std::vector<std::string> files() const;

  // The name the client asked for when no certificate carries it (the default was
  // presented), else nullptr.
  static const char* unmatched_name(const SSL* ssl);

  const std::vector<TlsCertificate>& certificates() const { return certs_; }
  // "cert.pem (a.example, *.b.example); other.pem (c.example)": for logs.
  std::string describe() const;

 private:
  struct Contexts;
  explicit TlsServer(std::vector<TlsCertificate> certs) : certs_(std::move(certs)) {}
  static Result<std::shared_ptr<const Contexts>> make_contexts(
      const std::vector<TlsCertificate>& certs);

  std::vector<TlsCertificate> certs_;
  FileStamps stamps_;  // the files the contexts in use were read from (main thread)
  std::atomic<std::shared_ptr<const Contexts>> current_;
};

}  // namespace nsproxy
