// https mode: nsproxyd terminates TLS inside the tenant's namespace and then does what http
// mode does. Certificates come from a test CA made with openssl at test time (test_ca.h);
// clients are curl, openssl s_client and Python's ssl module, run inside the tenant's
// namespace. What an operator would check:
//   - `curl --cacert` gets its response, the upstream sees the tenant's identity and not
//     the identity header the tenant forged; ALPN says http/1.1;
//   - SNI picks the certificate that carries the asked name; no SNI or an unknown name
//     gets the default (and an unknown name is logged with the tenant);
//   - SIGHUP re-reads the files: new connections get the new certificate while an open
//     keep-alive connection goes on; a broken file is refused and the old one stays;
//   - so does a change of the files without a signal: a Kubernetes-style "..data"
//     symlink swap, a rewrite in place, a key written after its certificate (the
//     mismatch logged once, the old pair kept until the key comes), and an upstream's
//     CA file;
//   - plain HTTP, a garbage ClientHello, TLS 1.1, a renegotiation and a handshake that
//     never completes each end with a log line naming the tenant, and a stalled
//     handshake does not hold up other tenants;
//   - a registration naming a missing or mismatched file is refused with the file's name;
//   - a restarted daemon restores https registrations and reads their files again.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fixture.h"
#include "test_ca.h"

namespace nspit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nsproxy::ListenerSpec;
using nsproxy::Mode;

constexpr const char* kMetadata = "169.254.169.254:443";

// Python's ssl client, inside the tenant: one keep-alive connection, GET /first, then (once
// the file argv[3] exists) GET /second on the same connection. Prints the certificate's
// serial number and each answer's JSON on its own line; fails if the connection had to be
// reopened.
constexpr const char* kKeepAliveClient = R"(import http.client, json, os, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
conn = http.client.HTTPSConnection(sys.argv[2], 443, context=ctx, timeout=10)
conn.request("GET", "/first")
print("first", conn.getresponse().read().decode(), flush=True)
print("serial", conn.sock.getpeercert()["serialNumber"], flush=True)
conn.auto_open = 0
deadline = time.time() + 20
while not os.path.exists(sys.argv[3]) and time.time() < deadline:
    time.sleep(0.05)
conn.request("GET", "/second")
print("second", conn.getresponse().read().decode(), flush=True)
)";

// An HTTPS upstream in the host namespace (Python's http.server behind ssl): answers every
// GET with the request's path and headers as nsproxy-echo does, keep-alive.
constexpr const char* kTlsUpstream = R"(import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"path": self.path, "server": "python-tls",
                           "headers": [[k, v] for k, v in self.headers.items()]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()
)";

class HttpsTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    if (IsSkipped()) return;
    ca_ = std::make_unique<TestCa>(tmp_.file("pki"));
    fs::create_directories(tmp_.file("pki"));
    ASSERT_TRUE(ca_->create());
    ASSERT_TRUE(ca_->issue("metadata", {"metadata.test", "IP:169.254.169.254"}, &meta_));
    ASSERT_TRUE(ca_->issue("other", {"other.test"}, &other_));
  }

  void start_daemon(std::vector<std::string> flags = {}) {
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    daemon_->set_extra_args(std::move(flags));
    ASSERT_TRUE(daemon_->start());
    echo_ = std::make_unique<EchoServer>("http");
    ASSERT_TRUE(echo_->start());
  }

  ListenerSpec https(std::vector<IssuedCert> certs, const std::string& listen = kMetadata) const {
    ListenerSpec l{listen, echo_->address(), Mode::Https, nsproxy::ProxyProtocol::None, true};
    for (const auto& c : certs) l.certificates.push_back({c.cert, c.key});
    return l;
  }

  // A namespace registered as tenant `id` with the given listeners.
  void add_tenant(Netns& ns, const std::string& id, std::vector<ListenerSpec> listeners) {
    ASSERT_TRUE(register_tenant(*daemon_, ns.path(), id, {.listeners = std::move(listeners)}));
  }

  ProcessResult curl(const Netns& ns, const std::vector<std::string>& args) const {
    std::vector<std::string> argv = ns.exec_prefix();
    argv.insert(argv.end(), {"curl", "-sS", "--max-time", "10", "--cacert", ca_->ca_file()});
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, 20000ms);
  }

  // The subject CN of the certificate the listener presents for `servername` ("" : no
  // SNI), as openssl s_client shows it.
  std::string presented_cn(const Netns& ns, const std::string& servername) const {
    std::vector<std::string> argv = ns.exec_prefix();
    argv.insert(argv.end(), {"openssl", "s_client", "-connect", kMetadata, "-CAfile",
                             ca_->ca_file(), "-verify_return_error"});
    if (servername.empty()) {
      argv.push_back("-noservername");
    } else {
      argv.insert(argv.end(), {"-servername", servername});
    }
    auto r = run(argv, 20000ms);
    auto at = r.out.find("subject=CN = ");
    if (at == std::string::npos) return "(none: " + r.describe() + ")";
    auto end = r.out.find('\n', at);
    return r.out.substr(at + 13, end - at - 13);
  }

  // kKeepAliveClient inside ns: GET /first now, GET /second on the same connection once
  // the file `go` exists.
  std::unique_ptr<Process> keep_alive_client(const Netns& ns, const std::string& go) const {
    std::vector<std::string> argv = ns.exec_prefix();
    argv.insert(argv.end(),
                {"python3", "-c", kKeepAliveClient, ca_->ca_file(), "169.254.169.254", go});
    return std::make_unique<Process>(argv);
  }

  // Waits (bounded) until the daemon's log has a line with all of `parts`; that line.
  std::string log_line(const std::vector<std::string>& parts, Millis timeout = 10000ms) const {
    std::string found;
    wait_until(
        [&] {
          std::istringstream lines(daemon_->log());
          for (std::string line; std::getline(lines, line);) {
            bool all = true;
            for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
            if (all) {
              found = line;
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }

  std::unique_ptr<TestCa> ca_;
  IssuedCert meta_, other_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<EchoServer> echo_;
};

TEST_F(HttpsTest, CurlGetsItsResponseAndTheUpstreamSeesTheTenantNotTheForgedHeader) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({meta_})}));

  auto r = curl(ns, {"-v", "-H", "X-Tenant-Id: somebody-else", "-H", "X-Tenant-Label-team: red",
                     "https://169.254.169.254/latest/meta-data"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("ALPN: server accepted http/1.1"), std::string::npos) << r.err;
  json echo = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(echo.is_discarded()) << r.describe();
  EXPECT_EQ(echo.value("path", ""), "/latest/meta-data");
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{id}) << r.out;
  EXPECT_TRUE(echo_headers(echo, "X-Tenant-Label-team").empty()) << r.out;

  // The registration says what it serves.
  auto regs = daemon_->registrations_with_id(id);
  ASSERT_EQ(regs.size(), 1u);
  const json l = regs[0]["listeners"][0];
  EXPECT_EQ(l.value("mode", ""), "https") << l.dump();
  EXPECT_EQ(l["tls"]["certificates"][0].value("cert_file", ""), meta_.cert) << l.dump();
}

TEST_F(HttpsTest, SniPicksTheCertificateWithTheNameAndAnUnknownNameGetsTheDefault) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({meta_, other_})}));

  EXPECT_EQ(presented_cn(ns, "other.test"), "other.test");
  EXPECT_EQ(presented_cn(ns, "metadata.test"), "metadata.test");
  EXPECT_EQ(presented_cn(ns, ""), "metadata.test");
  auto ok = curl(ns, {"--resolve", "other.test:443:169.254.169.254", "https://other.test/x"});
  EXPECT_EQ(ok.exit_code, 0) << ok.describe();

  // curl checks the name once the handshake is done, then closes.
  auto unknown =
      curl(ns, {"--resolve", "unknown.test:443:169.254.169.254", "https://unknown.test/"});
  EXPECT_NE(unknown.exit_code, 0) << unknown.describe();
  EXPECT_NE(log_line({"tenant " + id, "unknown.test", "no certificate names"}), "")
      << daemon_->log();
}

// With --no-watch-certificates, so that only the signal can be what reads the files.
TEST_F(HttpsTest, SighupLoadsNewCertificatesWithoutDroppingAnOpenConnection) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--no-watch-certificates"}));
  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({meta_})}));

  const std::string go = tmp_.file("go");
  auto client_p = keep_alive_client(ns, go);
  Process& client = *client_p;
  auto first_serial = client.wait_for_line("serial", 20000ms);
  ASSERT_TRUE(first_serial) << client.out() << client.err();

  // A new certificate for the same names in the same files, then SIGHUP.
  IssuedCert renewed;
  ASSERT_TRUE(ca_->issue("renewed", {"metadata.test", "IP:169.254.169.254"}, &renewed));
  fs::copy_file(renewed.cert, meta_.cert, fs::copy_options::overwrite_existing);
  fs::copy_file(renewed.key, meta_.key, fs::copy_options::overwrite_existing);
  EXPECT_EQ(log_line({"reload"}, 2500ms), "") << "read again without the signal";
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_NE(log_line({"reload: certificates", meta_.cert}), "") << daemon_->log();

  // The open connection goes on with its certificate; a new one gets the new certificate.
  tmp_.write("go", "");
  auto second = client.wait_for_line("second", 20000ms);
  ASSERT_TRUE(second) << client.out() << client.err();
  EXPECT_NE(second->find("\"/second\""), std::string::npos) << *second;
  EXPECT_EQ(client.wait(10000ms), std::optional<int>(0)) << client.err();

  const std::string never = tmp_.file("never");  // not created: the client stops after /first
  auto again_p = keep_alive_client(ns, never);
  Process& again = *again_p;
  auto new_serial = again.wait_for_line("serial", 20000ms);
  ASSERT_TRUE(new_serial) << again.out() << again.err();
  EXPECT_NE(*new_serial, *first_serial) << "the new connection still got the old certificate";

  // A broken file: refused with its name, and the certificate in use stays.
  std::ofstream(meta_.cert, std::ios::trunc) << "-----BEGIN CERTIFICATE-----\ngarbage\n";
  ::kill(daemon_->pid(), SIGHUP);
  EXPECT_NE(log_line({"reload:", meta_.cert, "the certificates in use stay"}), "")
      << daemon_->log();
  auto after = curl(ns, {"https://169.254.169.254/still"});
  EXPECT_EQ(after.exit_code, 0) << after.describe();
}

// No signal: the daemon sees the files change. First as the kubelet updates a secret
// volume (the files are symlinks through "..data", which is swapped for a new directory
// and the old one removed), then a rewrite in place of the certificate alone (its key no
// longer matches: logged once, the pair in use stays) and then of its key.
TEST_F(HttpsTest, ChangedCertificateFilesAreReadAgainWithoutASignal) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  const fs::path secret = tmp_.file("secret");
  auto publish = [&](const std::string& version, const IssuedCert& c) {
    fs::create_directories(secret / version);
    fs::copy_file(c.cert, secret / version / "tls.crt");
    fs::copy_file(c.key, secret / version / "tls.key");
    fs::create_directory_symlink(version, secret / "..data_tmp");
    fs::rename(secret / "..data_tmp", secret / "..data");
  };
  publish("..v1", meta_);
  fs::create_symlink("..data/tls.crt", secret / "tls.crt");
  fs::create_symlink("..data/tls.key", secret / "tls.key");
  const IssuedCert mounted{(secret / "tls.crt").string(), (secret / "tls.key").string()};

  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({mounted})}));
  ASSERT_EQ(presented_cn(ns, ""), "metadata.test");

  const std::string go = tmp_.file("go");
  auto client_p = keep_alive_client(ns, go);
  Process& client = *client_p;
  ASSERT_TRUE(client.wait_for_line("serial", 20000ms)) << client.out() << client.err();

  IssuedCert v2, v3;
  ASSERT_TRUE(ca_->issue("v2", {"v2.metadata.test", "IP:169.254.169.254"}, &v2));
  ASSERT_TRUE(ca_->issue("v3", {"v3.metadata.test", "IP:169.254.169.254"}, &v3));
  publish("..v2", v2);
  fs::remove_all(secret / "..v1");
  ASSERT_NE(log_line({"reload: certificates", mounted.cert, "v2.metadata.test"}), "")
      << daemon_->log();
  EXPECT_NE(log_line({"reload (the files changed): 1 certificate set(s) read again"}), "");
  EXPECT_EQ(presented_cn(ns, ""), "v2.metadata.test");

  // The connection opened before goes on.
  tmp_.write("go", "");
  auto second = client.wait_for_line("second", 20000ms);
  ASSERT_TRUE(second) << client.out() << client.err();
  EXPECT_NE(second->find("\"/second\""), std::string::npos) << *second;
  EXPECT_EQ(client.wait(10000ms), std::optional<int>(0)) << client.err();

  // In place, through the symlinks: the certificate first; its key is v2's.
  fs::copy_file(v3.cert, mounted.cert, fs::copy_options::overwrite_existing);
  ASSERT_NE(log_line({"reload:", mounted.key, "the certificates in use stay"}), "")
      << daemon_->log();
  EXPECT_EQ(presented_cn(ns, ""), "v2.metadata.test");
  // Another file changing beside them does not repeat the error.
  std::ofstream(secret / "unrelated") << "x";
  std::this_thread::sleep_for(2000ms);
  const std::string log = daemon_->log();
  size_t errors = 0;
  for (size_t at = 0; (at = log.find("the certificates in use stay", at)) != std::string::npos;
       ++at) {
    ++errors;
  }
  EXPECT_EQ(errors, 1u) << log;

  fs::copy_file(v3.key, mounted.key, fs::copy_options::overwrite_existing);
  EXPECT_NE(log_line({"reload: certificates", mounted.cert, "v3.metadata.test"}), "")
      << daemon_->log();
  EXPECT_EQ(presented_cn(ns, ""), "v3.metadata.test");
  auto r = curl(ns, {"https://169.254.169.254/after"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// Each bad client from a tenant of its own: the daemon logs at most one refusal per tenant
// and second.
TEST_F(HttpsTest, BadClientsEndWithALogLineNamingTheTenantAndDoNotHoldOthersUp) {
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--head-timeout", "1"}));
  enum { kStall, kPlain, kGarbage, kOld, kReneg, kOther, kCount };
  std::vector<std::unique_ptr<Netns>> ns;
  std::vector<std::string> id;
  for (int i = 0; i < kCount; ++i) {
    ns.push_back(std::make_unique<Netns>());
    id.push_back(unique_name());
    ASSERT_NO_FATAL_FAILURE(add_tenant(*ns[i], id[i], {https({meta_})}));
  }

  // A handshake that never completes holds nothing up: another tenant is served meanwhile,
  // and the stalled one is closed after --head-timeout.
  std::vector<std::string> stall = ns[kStall]->exec_prefix();
  stall.insert(stall.end(), {"python3", "-c",
                             "import socket\n"
                             "s=socket.create_connection(('169.254.169.254',443))\n"
                             "s.sendall(b'\\x16\\x03\\x01\\x00\\x80')\n"
                             "print('sent',flush=True)\n"
                             "print('closed' if s.recv(1)==b'' else 'data',flush=True)\n"});
  Process staller(stall);
  ASSERT_TRUE(staller.wait_for_line("sent", 10000ms)) << staller.err();
  auto served = curl(*ns[kOther], {"https://169.254.169.254/meanwhile"});
  EXPECT_EQ(served.exit_code, 0) << served.describe();
  EXPECT_TRUE(staller.wait_for_line("closed", 10000ms)) << staller.out() << staller.err();
  EXPECT_NE(log_line({"tenant " + id[kStall], "TLS handshake not completed within 1 s"}), "")
      << daemon_->log();

  // Plain HTTP to the TLS port.
  auto plain = ns[kPlain]->exec("curl -sS --max-time 5 http://169.254.169.254:443/");
  EXPECT_NE(plain.exit_code, 0) << plain.describe();
  EXPECT_NE(log_line({"tenant " + id[kPlain], "plain HTTP sent to an https listener"}), "")
      << daemon_->log();

  // A ClientHello that is not one.
  ns[kGarbage]->exec(
      "python3 -c \"import socket; s=socket.create_connection(('169.254.169.254',443)); "
      "s.sendall(b'\\x16\\x03\\x01\\x00\\x08' + b'\\xff' * 8); s.recv(100)\"");
  EXPECT_NE(log_line({"tenant " + id[kGarbage], "TLS handshake failed"}), "") << daemon_->log();

  // TLS 1.1 (a downgrade): refused.
  auto old =
      ns[kOld]->exec("openssl s_client -connect " + std::string(kMetadata) + " -tls1_1 </dev/null");
  EXPECT_NE(old.exit_code, 0) << old.describe();
  EXPECT_NE(log_line({"tenant " + id[kOld], "unsupported protocol"}), "") << daemon_->log();

  // A renegotiation (TLS 1.2): refused, and the connection closed.
  ns[kReneg]->exec("(sleep 0.5; echo R; sleep 2) | openssl s_client -connect " +
                       std::string(kMetadata) + " -tls1_2 -CAfile " + ca_->ca_file(),
                   20000ms);
  EXPECT_NE(log_line({"tenant " + id[kReneg], "renegotiation refused"}), "") << daemon_->log();

  // Counted where an operator looks (nsproxyctl list --json, and /metrics'
  // nsproxy_tenant_refused_total{reason=...}).
  auto refused = [&](int i) {
    auto regs = daemon_->registrations_with_id(id[i]);
    return regs.empty() ? json::object() : regs[0]["stats"].value("refused", json::object());
  };
  for (int i : {kStall, kPlain, kGarbage, kOld}) {
    EXPECT_EQ(refused(i).value("tls_handshake", 0), 1) << id[i] << ": " << refused(i).dump();
  }
  EXPECT_EQ(refused(kReneg).value("tls_renegotiation", 0), 1) << refused(kReneg).dump();
  EXPECT_EQ(refused(kReneg).value("tls_handshake", 0), 0) << refused(kReneg).dump();
  EXPECT_TRUE(refused(kOther).empty()) << refused(kOther).dump();

  // The daemon is fine and every tenant is served.
  for (int i = 0; i < kCount; ++i) {
    auto r = curl(*ns[i], {"https://169.254.169.254/after"});
    EXPECT_EQ(r.exit_code, 0) << id[i] << ": " << r.describe();
  }
}

TEST_F(HttpsTest, RegistrationNamingAMissingOrMismatchedFileIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  std::optional<nsproxy::Reply> reply;
  ListenerSpec missing = https({{tmp_.file("pki/nope.pem"), meta_.key}});
  EXPECT_FALSE(
      register_tenant(*daemon_, ns.path(), unique_name(), {.listeners = {missing}}, &reply));
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->error.message.find("nope.pem: No such file or directory"), std::string::npos)
      << reply->error.message;

  reply.reset();
  ListenerSpec mismatched = https({{meta_.cert, other_.key}});
  EXPECT_FALSE(
      register_tenant(*daemon_, ns.path(), unique_name(), {.listeners = {mismatched}}, &reply));
  ASSERT_TRUE(reply);
  EXPECT_NE(reply->error.message.find("keyFile " + other_.key + " (for certFile " + meta_.cert +
                                      "): key values mismatch"),
            std::string::npos)
      << reply->error.message;
  EXPECT_TRUE(daemon_->list().empty()) << daemon_->list().dump(2);
}

TEST_F(HttpsTest, NsproxyctlAddsHttpsListenersAndRefusesIncompleteCertificates) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  const std::string id = unique_name();
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {binary("nsproxyctl"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  const std::vector<std::string> base = {
      "add",      "--id",    id,           "--netns",        ns.path(),
      "--listen", kMetadata, "--upstream", echo_->address(), "--add-address"};
  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  for (const auto& c : std::vector<Case>{
           {{"--mode", "https"}, "--mode https needs --tls-cert FILE --tls-key FILE"},
           {{"--mode", "https", "--tls-cert", meta_.cert}, "has no --tls-key"},
           {{"--mode", "https", "--tls-key", meta_.key}, "--tls-key must follow its --tls-cert"},
           {{"--tls-cert", meta_.cert, "--tls-key", meta_.key}, "applies to --mode https only"},
           {{"--mode", "gopher"}, "--mode: expected http, https or tcp"}}) {
    std::vector<std::string> args = base;
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    auto r = ctl(args);
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.describe();
  }
  EXPECT_TRUE(daemon_->list().empty());

  std::vector<std::string> args = base;
  args.insert(args.end(), {"--mode", "https", "--tls-cert", meta_.cert, "--tls-key", meta_.key,
                           "--tls-cert", other_.cert, "--tls-key", other_.key});
  auto added = ctl(args);
  ASSERT_EQ(added.exit_code, 0) << added.describe();
  EXPECT_NE(added.out.find("(https, address added to lo, 2 certificate(s))"), std::string::npos)
      << added.out;
  auto r = curl(ns, {"https://169.254.169.254/by-hand"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(echo_headers(json::parse(r.out, nullptr, false), "X-Tenant-Id"),
            std::vector<std::string>{id});
  EXPECT_EQ(presented_cn(ns, "other.test"), "other.test");
}

TEST_F(HttpsTest, RestartedDaemonRestoresHttpsRegistrations) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({meta_, other_})}));
  ASSERT_EQ(daemon_->stop(), 0);
  ASSERT_TRUE(daemon_->start());
  ASSERT_EQ(daemon_->registrations_with_id(id).size(), 1u) << daemon_->log();
  auto r = curl(ns, {"https://169.254.169.254/after-restart"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  json echo = json::parse(r.out, nullptr, false);
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{id}) << r.out;
  EXPECT_EQ(presented_cn(ns, "other.test"), "other.test");
}

// TLS towards the upstream: verified against the test CA for the upstream's IP (no
// server name) or for a server name; a wrong CA is a 502 with the reason in the log;
// insecureSkipVerify works and is warned about at registration.
TEST_F(HttpsTest, TlsUpstreamIsVerifiedAndSeesTheTenant) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  IssuedCert upstream_cert;
  ASSERT_TRUE(ca_->issue("upstream", {"upstream.test", "IP:127.0.0.1"}, &upstream_cert));
  Process upstream({"python3", "-c", kTlsUpstream, upstream_cert.cert, upstream_cert.key});
  auto line = upstream.wait_for_line("listening on", 10000ms);
  ASSERT_TRUE(line) << upstream.err();
  const std::string addr = line->substr(line->find("127.0.0.1:"));

  fs::create_directories(tmp_.file("pki/wrong"));
  TestCa other(tmp_.file("pki/wrong"));
  ASSERT_TRUE(other.create());

  struct Case {
    std::string name;
    nsproxy::UpstreamTls tls;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"by-ip", {true, ca_->ca_file(), "", false}, true},
      {"by-name", {true, ca_->ca_file(), "upstream.test", false}, true},
      {"wrong-name", {true, ca_->ca_file(), "elsewhere.test", false}, false},
      {"wrong-ca", {true, other.ca_file(), "", false}, false},
      {"insecure", {true, other.ca_file(), "", true}, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Netns ns;
    const std::string id = unique_name();
    ListenerSpec l{"127.0.0.1:8080", addr, Mode::Http};
    l.upstream_tls = c.tls;
    ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {l}));
    auto r = ns.exec(
        "curl -sS --max-time 10 -H 'X-Tenant-Id: forged' -w ' %{http_code}' "
        "http://127.0.0.1:8080/" +
        c.name);
    if (c.ok) {
      ASSERT_EQ(r.exit_code, 0) << r.describe();
      json echo = json::parse(r.out.substr(0, r.out.rfind(' ')), nullptr, false);
      EXPECT_EQ(echo.value("server", ""), "python-tls") << r.out;
      EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{id}) << r.out;
    } else {
      EXPECT_NE(r.out.find(" 502"), std::string::npos) << r.describe();
      EXPECT_NE(log_line({"tenant " + id, "certificate verify failed"}), "") << daemon_->log();
    }
  }
  EXPECT_NE(log_line({"insecureSkipVerify", "without verifying its certificate"}), "")
      << daemon_->log();

  // By hand: nsproxyctl add --upstream https://... --upstream-ca ... --upstream-server-name.
  Netns ns;
  const std::string id = unique_name();
  auto added =
      run({binary("nsproxyctl"), "--socket", daemon_->socket_path(), "add", "--id", id, "--netns",
           ns.path(), "--listen", "127.0.0.1:8080", "--upstream", "https://" + addr,
           "--upstream-ca", ca_->ca_file(), "--upstream-server-name", "upstream.test"});
  ASSERT_EQ(added.exit_code, 0) << added.describe();
  EXPECT_NE(added.out.find("TLS upstream verified for upstream.test"), std::string::npos)
      << added.out;
  auto r = ns.exec("curl -sS --max-time 10 http://127.0.0.1:8080/by-hand");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(echo_headers(json::parse(r.out, nullptr, false), "X-Tenant-Id"),
            std::vector<std::string>{id})
      << r.out;
}

// The CA file verifying a TLS upstream is read again when it changes, as certificates
// are: an upstream whose new CA the file did not hold gets 502 until the file holds it.
TEST_F(HttpsTest, UpstreamCaFileIsReadAgainWhenItChanges) {
  // No pooled upstream connection: each request makes and verifies a new one.
  ASSERT_NO_FATAL_FAILURE(start_daemon({"--upstream-idle-max", "0"}));
  fs::create_directories(tmp_.file("pki/next"));
  TestCa next(tmp_.file("pki/next"));
  ASSERT_TRUE(next.create());
  IssuedCert upstream_cert;
  ASSERT_TRUE(next.issue("upstream", {"upstream.test", "IP:127.0.0.1"}, &upstream_cert));
  Process upstream({"python3", "-c", kTlsUpstream, upstream_cert.cert, upstream_cert.key});
  auto line = upstream.wait_for_line("listening on", 10000ms);
  ASSERT_TRUE(line) << upstream.err();
  const std::string addr = line->substr(line->find("127.0.0.1:"));

  fs::create_directories(tmp_.file("trust"));
  const std::string ca_file = tmp_.file("trust/upstream-ca.pem");
  fs::copy_file(ca_->ca_file(), ca_file);  // not the CA that signed the upstream's
  Netns ns;
  const std::string id = unique_name();
  ListenerSpec l{"127.0.0.1:8080", addr, Mode::Http};
  l.upstream_tls = nsproxy::UpstreamTls{true, ca_file, "upstream.test", false};
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {l}));
  const std::string get = "curl -sS --max-time 10 -w ' %{http_code}' http://127.0.0.1:8080/";
  auto r = ns.exec(get + "before");
  EXPECT_NE(r.out.find(" 502"), std::string::npos) << r.describe();

  fs::copy_file(next.ca_file(), ca_file, fs::copy_options::overwrite_existing);
  ASSERT_NE(log_line({"reload: caFile " + ca_file, "for TLS to upstream " + addr}), "")
      << daemon_->log();
  r = ns.exec(get + "after");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  json echo = json::parse(r.out.substr(0, r.out.rfind(' ')), nullptr, false);
  EXPECT_EQ(echo_headers(echo, "X-Tenant-Id"), std::vector<std::string>{id}) << r.out;

  // A broken CA file: logged, and the CA certificates in use stay.
  std::ofstream(ca_file, std::ios::trunc) << "-----BEGIN CERTIFICATE-----\ngarbage\n";
  EXPECT_NE(log_line({"reload: caFile " + ca_file, "the CA certificates in use stay"}), "")
      << daemon_->log();
  r = ns.exec(get + "still");
  EXPECT_NE(r.out.find(" 200"), std::string::npos) << r.describe();
}

// The CNI plugin, as a runtime runs it, registers an https listener from its config's
// "tls" entry; DEL removes it.
TEST_F(HttpsTest, CniAddRegistersAnHttpsListener) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  json l = listener(kMetadata, echo_->address(), "https");
  l["addAddress"] = true;
  l["tls"] = {{"certFile", meta_.cert}, {"keyFile", meta_.key}};
  const std::string config =
      plugin_config("https-net", daemon_->socket_path(), json::array({l})).dump();
  const std::string cid = unique_name();
  auto add = run_plugin(cni_env("ADD", cid, ns.path()), config);
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto regs = daemon_->registrations_with_id(cid);
  ASSERT_EQ(regs.size(), 1u) << daemon_->list().dump(2);
  EXPECT_EQ(regs[0]["listeners"][0].value("mode", ""), "https");
  auto r = curl(ns, {"https://169.254.169.254/from-cni"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(echo_headers(json::parse(r.out, nullptr, false), "X-Tenant-Id"),
            std::vector<std::string>{cid})
      << r.out;
  auto del = run_plugin(cni_env("DEL", cid, ns.path()), config);
  ASSERT_EQ(del.exit_code, 0) << del.describe();
  EXPECT_TRUE(daemon_->registrations_with_id(cid).empty());
}

// A takeover with https listeners: a keep-alive TLS connection made to the old daemon
// keeps working while it drains, and the new daemon, which read the certificate files
// again, presents the renewed certificate to new connections.
TEST_F(HttpsTest, TakeoverKeepsOpenTlsConnectionsAndReadsTheFilesAgain) {
  ASSERT_NO_FATAL_FAILURE(start_daemon());
  Netns ns;
  const std::string id = unique_name();
  ASSERT_NO_FATAL_FAILURE(add_tenant(ns, id, {https({meta_})}));

  const std::string go = tmp_.file("go");
  auto client_p = keep_alive_client(ns, go);
  Process& client = *client_p;
  auto first_serial = client.wait_for_line("serial", 20000ms);
  ASSERT_TRUE(first_serial) << client.out() << client.err();

  IssuedCert renewed;
  ASSERT_TRUE(ca_->issue("renewed", {"metadata.test", "IP:169.254.169.254"}, &renewed));
  fs::copy_file(renewed.cert, meta_.cert, fs::copy_options::overwrite_existing);
  fs::copy_file(renewed.key, meta_.key, fs::copy_options::overwrite_existing);

  Daemon new_daemon(tmp_.path());
  new_daemon.set_extra_args({"--takeover"});
  ASSERT_TRUE(new_daemon.start());
  ASSERT_TRUE(wait_until([&] {
    auto reply = new_daemon.call(status_request());
    return reply.ok() && reply->ok &&
           reply->data.value("pid", 0) == static_cast<int>(new_daemon.pid());
  })) << new_daemon.log();

  auto fresh_p = keep_alive_client(ns, tmp_.file("never"));
  Process& fresh = *fresh_p;
  auto new_serial = fresh.wait_for_line("serial", 20000ms);
  ASSERT_TRUE(new_serial) << fresh.out() << fresh.err();
  EXPECT_NE(*new_serial, *first_serial) << "the new daemon presented the old certificate";

  // The connection made before the switch is still served by the draining old daemon.
  tmp_.write("go", "");
  auto second = client.wait_for_line("second", 20000ms);
  ASSERT_TRUE(second) << client.out() << client.err();
  EXPECT_NE(second->find("\"/second\""), std::string::npos) << *second;
  EXPECT_EQ(client.wait(10000ms), std::optional<int>(0)) << client.err();
  auto code = daemon_->process()->wait(10000ms);
  ASSERT_TRUE(code.has_value()) << "the old daemon did not exit after draining";
  EXPECT_EQ(*code, 0) << daemon_->log();
  daemon_->stop();
  auto r = curl(ns, {"https://169.254.169.254/after-takeover"});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

}  // namespace
}  // namespace nspit
