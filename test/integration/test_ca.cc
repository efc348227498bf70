#include "test_ca.h"

#include <fstream>
#include <random>

#include "processes.h"

namespace nspit {

namespace {

std::vector<std::string> key_args(const std::string& key) {
  return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key};
}

}  // namespace

::testing::AssertionResult TestCa::create() {
  ca_cert_ = dir_ + "/ca.pem";
  ca_key_ = dir_ + "/ca.key";
  std::vector<std::string> argv = {"openssl", "req", "-x509"};
  for (auto& a : key_args(ca_key_)) argv.push_back(a);
  for (const char* a : {"-days", "2", "-subj", "/CN=nsproxy test CA", "-out"}) argv.push_back(a);
  argv.push_back(ca_cert_);
  auto r = run(argv, 30000ms);
  if (r.exit_code != 0) {
    return ::testing::AssertionFailure()
           << "openssl req -x509 (Debian package openssl): " << r.describe();
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult TestCa::issue(const std::string& file,
                                         const std::vector<std::string>& names,
                                         IssuedCert* out) const {
  if (names.empty()) return ::testing::AssertionFailure() << "a certificate needs a name";
  out->cert = dir_ + "/" + file + ".pem";
  out->key = dir_ + "/" + file + ".key";
  const std::string csr = dir_ + "/" + file + ".csr", ext = dir_ + "/" + file + ".ext";
  std::string san;
  for (const auto& n : names) {
    san += (san.empty() ? "" : ",") + (n.rfind("IP:", 0) == 0 ? n : "DNS:" + n);
  }
  std::ofstream(ext) << "subjectAltName=" << san << "\n";
  std::vector<std::string> req = {"openssl", "req"};
  for (auto& a : key_args(out->key)) req.push_back(a);
  const std::string cn = names[0].rfind("IP:", 0) == 0 ? names[0].substr(3) : names[0];
  for (const std::string& a : {std::string("-subj"), "/CN=" + cn, std::string("-out"), csr}) {
    req.push_back(a);
  }
  auto r = run(req, 30000ms);
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "openssl req: " << r.describe();
  std::random_device rd;
  const std::string serial = std::to_string(rd()) + std::to_string(rd());
  auto x = run({"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert_, "-CAkey", ca_key_,
                "-set_serial", serial, "-days", "2", "-extfile", ext, "-out", out->cert},
               30000ms);
  if (x.exit_code != 0) return ::testing::AssertionFailure() << "openssl x509: " << x.describe();
  return ::testing::AssertionSuccess();
}

}  // namespace nspit
