// A certificate authority made at test time with the openssl command (Debian package
// openssl): P-256 keys, certificates valid for two days, nothing kept between runs.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nspit {

struct IssuedCert {
  std::string cert;  // PEM certificate (leaf only)
  std::string key;   // PEM private key
};

class TestCa {
 public:
  // Files under dir (a test's TempDir).
  explicit TestCa(std::string dir) : dir_(std::move(dir)) {}

  // The CA's key and self-signed certificate.
  ::testing::AssertionResult create();
  const std::string& ca_file() const { return ca_cert_; }

  // A certificate for `names` (DNS names; "IP:a.b.c.d" for an address), the first one its
  // common name too, signed by the CA, written as dir/<file>.pem and dir/<file>.key.
  ::testing::AssertionResult issue(const std::string& file, const std::vector<std::string>& names,
                                   IssuedCert* out) const;

 private:
  std::string dir_;
  std::string ca_cert_, ca_key_;
};

}  // namespace nspit
