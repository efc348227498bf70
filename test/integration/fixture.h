// Integration test fixture: real network namespaces, real processes, run as root.
//
// Everything a test creates carries a unique name ("nspit-<pid>-<n>") and is removed in
// a destructor, also when the test fails. ctest runs tests in parallel: no fixed names,
// no fixed host ports (upstreams listen on port 0 and report the port they got).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "control_client.h"
#include "control_protocol.h"
#include "error.h"
#include "netns.h"
#include "unique_fd.h"

namespace nspit {

using namespace std::chrono_literals;
using Millis = std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------
// Names and paths

// "nspit-<pid>-<n>", unique within this run and across parallel test processes.
std::string unique_name();
// A short unique token ("<pid%100000>x<n>"), for names with length limits (ifnames).
std::string short_token();
// Path of a program built by this project: NSPROXY_BUILD_DIR/name.
std::string binary(std::string_view name);
// Fails with the missing paths listed.
::testing::AssertionResult binaries_exist(const std::vector<std::string>& names);

// ---------------------------------------------------------------------------------------
// Processes

// Environment changes applied on top of the test's own environment.
// A value of std::nullopt removes the variable.
using Env = std::map<std::string, std::optional<std::string>>;

struct ProcessResult {
  int exit_code = -1;  // exit status; 128+signal when killed; -1 if it never ran
  bool timed_out = false;
  std::string out;
  std::string err;
  Millis elapsed{0};
  std::string describe() const;  // exit code, stdout and stderr, for assertion messages
};

// A child process with stdin fed from a string and stdout/stderr captured.
// The destructor stops it (SIGTERM, then SIGKILL) and reaps it.
class Process {
 public:
  Process(std::vector<std::string> argv, const Env& env = {}, std::string stdin_data = "");
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& start_error() const { return start_error_; }
  pid_t pid() const { return pid_; }
  std::string command_line() const;

  // Waits until a stdout line contains `needle`; returns that whole line.
  // Returns nullopt on timeout or when the process closed stdout first.
  std::optional<std::string> wait_for_line(std::string_view needle, Millis timeout);
  // Waits for exit; returns the exit code (128+signal if killed by one), nullopt on timeout.
  std::optional<int> wait(Millis timeout);
  bool running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code (128+signal).
  int stop(Millis grace = 5000ms);
  // Sends a signal to this process only.
  void signal(int sig);

  // Waits until the child's stdout and stderr reached EOF.
  bool wait_output_closed(Millis timeout);

  std::string out() const;
  std::string err() const;

 private:
  void io_loop(int in_fd, int out_fd, int err_fd);
  bool reap(bool block);

  std::vector<std::string> argv_;
  std::string stdin_data_;
  pid_t pid_ = -1;
  std::string start_error_;
  std::optional<int> exit_code_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;
  std::string err_;
  bool out_closed_ = false;
  bool err_closed_ = false;
  bool stop_io_ = false;
  std::thread io_;
};

// Runs a program to completion, killing it at the deadline. Never hangs.
ProcessResult run(const std::vector<std::string>& argv, Millis timeout = 10000ms,
                  const Env& env = {}, const std::string& stdin_data = "");
// Runs `sh -c command`.
ProcessResult run_shell(const std::string& command, Millis timeout = 10000ms);

// ---------------------------------------------------------------------------------------
// Files and namespaces

// mkdtemp under /tmp; removed recursively in the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  // Writes a file under the directory; returns its path.
  std::string write(std::string_view name, std::string_view content) const;

 private:
  std::string path_;
};

// A named network namespace (`ip netns add`), deleted in the destructor.
// `lo` is brought up unless lo_up is false.
class Netns {
 public:
  explicit Netns(bool lo_up = true);
  ~Netns();
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // (st_dev, st_ino) of the namespace as the daemon should report it.
  nsproxy::NetnsId identity() const;
  // `ip netns exec NAME sh -c command`.
  ProcessResult exec(const std::string& command, Millis timeout = 10000ms) const;
  // Adds an interface with an address, up: a dummy, or where the kernel has no dummy
  // driver, one end of a veth pair whose peer ("<ifname>p") also stays inside.
  ::testing::AssertionResult add_interface(const std::string& ifname,
                                           const std::string& cidr) const;
  // `ip netns del` now (the destructor then does nothing).
  ::testing::AssertionResult remove();
  // Prefix to run a program inside: {"ip", "netns", "exec", NAME}.
  std::vector<std::string> exec_prefix() const { return {"ip", "netns", "exec", name_}; }

 private:
  std::string name_;
  std::string error_;
  bool removed_ = false;
};

// ---------------------------------------------------------------------------------------
// Programs under test

// nsproxyd on a socket in its own temp dir. Call start(); the destructor stops it with
// SIGTERM and records a test failure unless it exited 0.
class Daemon {
 public:
  // dir: holds the socket and the state dir. prefix: e.g. Netns::exec_prefix().
  explicit Daemon(std::string dir, std::vector<std::string> prefix = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Extra nsproxyd flags for the next start(), e.g. {"--response-timeout", "1"}.
  void set_extra_args(std::vector<std::string> args) { extra_args_ = std::move(args); }
  // Environment changes for the next start(), on top of the test's own environment.
  void set_env(Env env) { env_ = std::move(env); }
  // Spawns nsproxyd and waits (bounded) until a status call answers.
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  // SIGTERM and wait; returns the exit code.
  int stop();
  bool running() const { return process_ && process_->started() && !stopped_; }
  const std::string& socket_path() const { return socket_; }
  const std::string& state_dir() const { return state_dir_; }
  Process* process() { return process_.get(); }
  // The daemon's pid (-1 before start). Started without a prefix, it is nsproxyd itself.
  pid_t pid() const { return process_ && process_->started() ? process_->pid() : -1; }
  std::string log() const { return process_ ? process_->err() : std::string(); }

  nsproxy::Result<nsproxy::Reply> call(const nsproxy::Request& req, int netns_fd = -1,
                                       Millis timeout = 3000ms) const;
  // The "registrations" array of a list reply (empty array on any failure, with a
  // non-fatal test failure).
  nlohmann::json list() const;
  // Registrations whose attachment id is `id`.
  std::vector<nlohmann::json> registrations_with_id(const std::string& id) const;

 private:
  std::string dir_;
  std::vector<std::string> prefix_;
  std::string socket_;
  std::string state_dir_;
  std::vector<std::string> extra_args_;
  Env env_;
  std::unique_ptr<Process> process_;
  bool stopped_ = false;
};

// Resident set size (VmRSS of /proc/PID/status) in KiB, or -1 when unreadable.
long rss_kib(pid_t pid);

// Synchronisation on an observable condition instead of a sleep: calls `condition`
// every `every` until it returns true (then true) or `timeout` passed (then false). The
// timeout is a bound against a hang, not a measurement: make it
// generous (the condition is usually true within milliseconds).
bool wait_until(const std::function<bool()>& condition, Millis timeout = 20000ms,
                Millis every = 20ms);
// The daemon's status reply data (an empty object, with a non-fatal test failure, when
// the call fails).
nlohmann::json daemon_status(const Daemon& d);

// nsproxy-echo listening on `listen` (default 127.0.0.1:0): after start(), address() is
// the resolved "ip:port" it printed.
class EchoServer {
 public:
  explicit EchoServer(std::string mode = "echo", std::vector<std::string> prefix = {},
                      std::string listen = "127.0.0.1:0", std::string name = "");
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  const std::string& address() const { return address_; }
  Process* process() { return process_.get(); }

 private:
  std::vector<std::string> argv_;
  std::string address_;
  std::unique_ptr<Process> process_;
};

// ---------------------------------------------------------------------------------------
// Sockets inside namespaces

// Creates a socket inside the namespace at netns_path (on a fresh thread that does
// setns and then ends). The socket stays in that namespace wherever it is used.
nsproxy::Result<nsproxy::UniqueFd> socket_in_netns(const std::string& netns_path, int domain,
                                                   int type);

struct Connection {
  nsproxy::UniqueFd fd;
  int err = 0;          // errno of the failed step (ECONNREFUSED, ETIMEDOUT...)
  std::string message;  // what failed, for assertion messages
  bool ok() const { return static_cast<bool>(fd); }
};
// Connects from inside the namespace to "ip:port" (blocking socket afterwards).
Connection connect_in_netns(const std::string& netns_path, const std::string& address,
                            Millis timeout = 3000ms);
// Binds and listens on "ip:port" inside the namespace (to occupy a port).
nsproxy::Result<nsproxy::UniqueFd> listen_in_netns(const std::string& netns_path,
                                                   const std::string& address);

// Writes everything, bounded by timeout.
nsproxy::Status send_all(int fd, std::string_view data, Millis timeout = 5000ms);
// Reads until EOF, bounded by timeout.
nsproxy::Result<std::string> recv_until_eof(int fd, Millis timeout = 5000ms);
// Sends payload while reading concurrently (no deadlock on large echoes), shuts down the
// write side after the last byte, then reads until EOF. Returns all bytes read.
nsproxy::Result<std::string> exchange(int fd, std::string_view payload, Millis timeout = 10000ms);
// connect_in_netns + exchange.
nsproxy::Result<std::string> roundtrip_in_netns(const std::string& netns_path,
                                                const std::string& address,
                                                std::string_view payload, Millis timeout = 10000ms);

// ---------------------------------------------------------------------------------------
// HTTP clients and upstreams (for http mode). The response parser here is deliberately
// independent of the daemon's (it follows RFC 9112 framing: 1xx/204/304/HEAD without a
// body, chunked, Content-Length, or until EOF).

struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool chunked = false;    // the body arrived with Transfer-Encoding: chunked
  bool until_eof = false;  // the body was delimited by the connection closing
  std::string head;        // raw status line and headers, for messages

  // First header with that name (case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
  // Every value of headers with that name, in order.
  std::vector<std::string> all(std::string_view name) const;
  // The body parsed as JSON (null when it is not JSON).
  nlohmann::json json() const;
  // The head plus the start of the body, for assertion messages.
  std::string describe(size_t body_bytes = 300) const;
};

// One client connection (usually from inside a tenant namespace). Keeps the bytes read
// past the end of a response for the next one (keep-alive, pipelining).
class HttpConn {
 public:
  HttpConn() = default;
  explicit HttpConn(nsproxy::UniqueFd fd) : fd_(std::move(fd)) {}
  // Connects from inside the namespace (connect_in_netns); check ok() / error().
  static HttpConn open(const std::string& netns_path, const std::string& address,
                       Millis timeout = 3000ms);

  bool ok() const { return static_cast<bool>(fd_); }
  const std::string& error() const { return error_; }
  int fd() const { return fd_.get(); }

  nsproxy::Status send(std::string_view data, Millis timeout = 10000ms);
  // Reads one response. head_request: the request was HEAD (no body whatever the
  // headers say). The whole response must arrive within timeout.
  nsproxy::Result<HttpResponse> read_response(Millis timeout = 5000ms, bool head_request = false);
  // Reads a response head only (status line and headers), leaving the body unread.
  nsproxy::Result<HttpResponse> read_head(Millis timeout = 5000ms);
  // Reads exactly n bytes (buffered ones first).
  nsproxy::Result<std::string> read_exact(size_t n, Millis timeout = 5000ms);
  // send + read_response.
  nsproxy::Result<HttpResponse> request(std::string_view raw, Millis timeout = 5000ms,
                                        bool head_request = false);
  // Waits for the peer to close (EOF or reset). Returns the bytes that arrived before
  // the close (buffered ones included), or an error on timeout.
  nsproxy::Result<std::string> wait_closed(Millis timeout = 5000ms);
  // Bytes read but not yet consumed by a response.
  const std::string& buffered() const { return buf_; }
  void close() { fd_.reset(); }

 private:
  // Reads more into buf_. Error on timeout; "eof" error when the peer closed.
  nsproxy::Status fill(std::chrono::steady_clock::time_point deadline);

  nsproxy::UniqueFd fd_;
  std::string error_;
  std::string buf_;
  bool eof_ = false;
};

// A small upstream of the test's own on 127.0.0.1:0: every accepted connection is
// handed to `handler` on its own thread (a blocking socket). The destructor shuts the
// listener and every connection down and joins the threads.
class RawUpstream {
 public:
  using Handler = std::function<void(int fd)>;
  explicit RawUpstream(Handler handler);
  ~RawUpstream();
  RawUpstream(const RawUpstream&) = delete;
  RawUpstream& operator=(const RawUpstream&) = delete;
  bool ok() const { return listen_fd_ >= 0; }
  const std::string& address() const { return address_; }
  int accepted() const { return accepted_.load(); }

 private:
  Handler handler_;
  int listen_fd_ = -1;
  std::string address_;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<int> conn_fds_;
  std::vector<std::thread> threads_;
  std::thread accept_thread_;
};

// Helpers for RawUpstream handlers (blocking fd): read until "\r\n\r\n" (returns the
// head, everything up to and including it; extra bytes go to *rest), write everything.
std::optional<std::string> read_head_blocking(int fd, std::string* rest, Millis timeout = 5000ms);
bool write_all_blocking(int fd, std::string_view data);

// A free TCP port on 127.0.0.1 (bound to port 0, then released) for servers that cannot
// report the port they got.
int free_port();

// ---------------------------------------------------------------------------------------
// The CNI plugin

struct PluginResult {
  int exit_code = -1;
  nlohmann::json json;  // parsed stdout; null if stdout is not JSON
  std::string out;
  std::string err;
  Millis elapsed{0};
  bool timed_out = false;
  std::string describe() const;
  int cni_code() const;     // json["code"], or -1
  std::string msg() const;  // json["msg"] + " " + json["details"]
};

// CNI_* variables for a command; add or override with `extra`.
Env cni_env(const std::string& command, const std::string& container_id,
            const std::string& netns_path, const Env& extra = {});
// Runs BUILD/nsproxy with cni_env(...) and the config on stdin.
PluginResult run_plugin(const Env& env, const std::string& stdin_config, Millis timeout = 15000ms);

// {"listen":..,"upstream":..,"mode":..}
nlohmann::json listener(const std::string& listen, const std::string& upstream,
                        const std::string& mode = "tcp");
// A plugin config: {"cniVersion","name","type":"nsproxy","socket","timeoutMs","listeners"}.
nlohmann::json plugin_config(const std::string& network, const std::string& socket,
                             const nlohmann::json& listeners, int timeout_ms = 3000,
                             const std::string& cni_version = "1.0.0");

// ---------------------------------------------------------------------------------------
// Base fixture: skips loudly when not root.

class IntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

// ---------------------------------------------------------------------------------------
// http mode

// Registers `ns` for manual id `id` with the listeners given, through the control client.
::testing::AssertionResult register_listeners(const Daemon& d, const Netns& ns,
                                              const std::string& id,
                                              const std::vector<nsproxy::ListenerSpec>& listeners,
                                              const std::map<std::string, std::string>& labels = {},
                                              const nsproxy::IdentityHeaders& headers = {},
                                              const nsproxy::TenantLimits& limits = {});
// One http listener `listen` -> `upstream`.
::testing::AssertionResult register_http(const Daemon& d, const Netns& ns, const std::string& id,
                                         const std::string& upstream,
                                         const std::map<std::string, std::string>& labels = {},
                                         const nsproxy::IdentityHeaders& headers = {},
                                         const std::string& listen = "127.0.0.1:8080",
                                         const nsproxy::TenantLimits& limits = {});

// "METHOD PATH HTTP/1.1\r\nHost: tenant.test\r\n" + extra_headers + "\r\n" + body.
// extra_headers: complete lines, each ending in \r\n.
std::string http_request(const std::string& method, const std::string& path,
                         const std::string& extra_headers = "", const std::string& body = "");

// Values of every header `name` (case-insensitive) in an nsproxy-echo JSON answer
// ({"headers":[[name,value],...]}).
std::vector<std::string> echo_headers(const nlohmann::json& echo, std::string_view name);
// Names of the headers in an nsproxy-echo answer that start with `prefix`
// (case-insensitive), as "name: value" lines.
std::vector<std::string> echo_headers_with_prefix(const nlohmann::json& echo,
                                                  std::string_view prefix);

// Base for http tests: root check, the programs, a temp dir.
class HttpTest : public IntegrationTest {
 protected:
  void SetUp() override;
  TempDir tmp_;
};

// nginx from Debian in the foreground on 127.0.0.1:<free port>, everything under `dir`;
// `server_body` is inserted into the server block (locations). The root is dir/www.
class Nginx {
 public:
  Nginx(std::string dir, std::string server_body);
  ~Nginx();
  ::testing::AssertionResult start(Millis timeout = 5000ms);
  const std::string& address() const { return address_; }
  std::string root() const { return dir_ + "/www"; }
  std::string log() const;

 private:
  std::string dir_;
  std::string server_body_;
  std::string address_;
  std::unique_ptr<Process> process_;
};

}  // namespace nspit
