// nsproxy-abuse: one client-side attack, or the steady victim beside it, for the abuse
// tests and the benchmark. Single-threaded, one libev loop.
//
//   nsproxy-abuse [--netns PATH] --target IP:PORT --seconds S MODE
//                 [--connections N] [--rate R] [--interval-ms I] [--path P] [--timeout-ms T]
//
// --netns PATH  setns(CLONE_NEWNET) into PATH first, so every socket is in that namespace.
// --target      "127.0.0.1:8080" or "[::1]:8080": the listener under test.
// --seconds S   run time (a decimal number); then everything is closed, ONE JSON object is
//               printed on stdout and the exit status is 0. SIGTERM/SIGINT stop early and
//               still print (a second signal stops without waiting for anything).
// --timeout-ms  deadline of every connect and every request (default 5000).
// RLIMIT_NOFILE's soft limit is raised to the hard one. Sockets are non-blocking, CLOEXEC,
// TCP_NODELAY. Usage errors exit 2, setup errors (netns, loop) exit 1. Options that do not
// apply to MODE are usage errors.
//
// Modes (--connections N: how many are kept open; reopened when they end):
//   victim         every 1/R s (--rate, default 10) a NEW connection sends
//                  "GET /victim HTTP/1.1" (Host: victim, Connection: close) and reads the
//                  whole response. Requests start on schedule even while earlier ones are
//                  outstanding; at the end the outstanding ones are waited for (each up to
//                  its deadline). A request is ok when a complete 200 arrives within
//                  --timeout-ms of its connect start; latency is connect start to last byte.
//   flood          N (default 1000) connections that send nothing.
//   slowloris      N (1000) connections send "GET /slow HTTP/1.1", "Host: x", then one
//                  "X-a: b" header line every --interval-ms (default 1000), never the end.
//   slow-body      N (1000) connections send "POST /upload" with Content-Length: 10000000,
//                  then one body byte every --interval-ms.
//   slow-reader    N (1000) connections (SO_RCVBUF 4096) send "GET --path" (default
//                  /bytes/10000000) and never read. A close is seen through TCP_INFO (the
//                  peer's FIN or RST), polled every 100 ms; a FIN queued behind data the
//                  window does not admit never arrives, so only an RST (SO_LINGER 0) from a
//                  peer that gives up on it is seen.
//   request-flood  N (50) keep-alive connections each send "GET /flood", read the response
//                  and send the next at once. A response with Connection: close, a close by
//                  the peer or a request past its deadline makes a new connection.
//   idle           N (1000) connections each send one keep-alive "GET /idle", read the
//                  response, then stay open and silent.
// The attack modes keep at most 256 connects in progress; after a failed one they pause
// new connects, 10 ms doubling up to 1 s until one succeeds again.
//
// Output (counters are integers, *_ms and *_s numbers; elapsed_s is the time until stop):
//   victim: {"mode","elapsed_s","sent","ok","failed","statuses":{"200":N,"503":N,..},
//            "errors":{"connect","reset","timeout","eof","status","bad_response","aborted"},
//            "p50_ms","p90_ms","p99_ms","max_ms" (of ok requests; null when none),
//            "first_failures":["t=1.234s request 12: timeout (reading) after 5000 ms",..]}
//     failed = the sum of errors: connect (socket/connect failed), reset (read or write
//     error after connecting), timeout (deadline passed, connecting or not), eof (closed
//     before a complete response), status (a complete response that is not 200),
//     bad_response (not HTTP), aborted (still running at a second signal).
//   flood, slowloris, slow-body, slow-reader, idle:
//     {"mode","elapsed_s","opened","open_max","open_at_end","closed_by_peer",
//      "connect_errors","connect_errors_by":{"ECONNREFUSED":N,"ETIMEDOUT":N,..},
//      "responses":{"408":N,..}}
//     opened counts completed connects; open_max the most open at once; closed_by_peer the
//     open connections the peer ended (FIN or RST). responses counts the status of every
//     response head received (slow-reader reads nothing: always {}).
//     idle adds "idle_at_end" (answered and idle at the end) and "timeouts" (no response
//     within --timeout-ms).
//   request-flood: the same plus "requests" (responses read), "requests_per_second",
//     "reconnects" (connections replaced during the run, for any reason), "timeouts",
//     "bad_responses".
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "address.h"
#include "netns.h"
#include "unique_fd.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxConnecting = 256;      // attack modes: connects in progress at once
constexpr double kRetryDelay = 0.010;    // attack modes: first pause after a failed connect
constexpr double kRetryDelayMax = 1.0;   // doubling up to this while connects keep failing
constexpr double kProbeInterval = 0.1;   // slow-reader: how often TCP_INFO is looked at
constexpr int kSlowReaderRcvbuf = 4096;  // slow-reader: SO_RCVBUF, set before connect
constexpr size_t kReadChunk = 16 * 1024;
constexpr int kReadRounds = 16;  // reads per wakeup, so one socket cannot starve the rest
constexpr size_t kMaxFirstFailures = 5;

// ---------------------------------------------------------------- configuration

enum class Mode { Victim, Flood, Slowloris, SlowBody, SlowReader, RequestFlood, Idle };

// Options that only some modes take.
enum OptionBit : unsigned {
  kOptConnections = 1,
  kOptRate = 2,
  kOptInterval = 4,
  kOptPath = 8,
};

struct ModeInfo {
  const char* name;
  Mode mode;
  unsigned options;  // OptionBits it accepts
  long default_connections;
};

constexpr ModeInfo kModes[] = {
    {"victim", Mode::Victim, kOptRate, 0},
    {"flood", Mode::Flood, kOptConnections, 1000},
    {"slowloris", Mode::Slowloris, kOptConnections | kOptInterval, 1000},
    {"slow-body", Mode::SlowBody, kOptConnections | kOptInterval, 1000},
    {"slow-reader", Mode::SlowReader, kOptConnections | kOptPath, 1000},
    {"request-flood", Mode::RequestFlood, kOptConnections, 50},
    {"idle", Mode::Idle, kOptConnections, 1000},
};

struct Config {
  std::string netns;  // empty: stay in the current namespace
  nsproxy::Address target;
  double seconds = 0;
  const ModeInfo* mode = nullptr;
  long connections = 0;
  double rate = 10;
  double interval = 1.0;  // seconds
  std::string path = "/bytes/10000000";
  double timeout = 5.0;  // seconds
  bool help = false;
};

// ---------------------------------------------------------------- counters

// Why a victim request failed; the names are the keys of "errors".
enum class Failure { Connect, Reset, Timeout, Eof, Status, BadResponse, Aborted, kCount };
constexpr const char* kFailureNames[] = {"connect", "reset",        "timeout", "eof",
                                         "status",  "bad_response", "aborted"};
static_assert(std::size(kFailureNames) == static_cast<size_t>(Failure::kCount));

struct VictimStats {
  uint64_t sent = 0, ok = 0;
  uint64_t outstanding = 0;          // started, not yet finished
  std::map<int, uint64_t> statuses;  // complete responses, by status
  std::array<uint64_t, static_cast<size_t>(Failure::kCount)> errors{};
  std::vector<double> latencies_ms;  // of ok requests
  std::vector<std::string> first_failures;
};

struct AttackStats {
  uint64_t connecting = 0;  // connects in progress
  uint64_t open = 0, opened = 0, open_max = 0;
  uint64_t closed_by_peer = 0;
  uint64_t connect_errors = 0;
  std::map<std::string, uint64_t> connect_errors_by;  // errno name
  std::map<int, uint64_t> responses;                  // response heads, by status
  uint64_t idle = 0;                                  // idle: answered, now idle
  uint64_t timeouts = 0;                              // requests past their deadline
  uint64_t bad_responses = 0;
  uint64_t reconnects = 0;
};

// ---------------------------------------------------------------- the run

struct Conn;

// Everything one run owns: the loop, its timers and signals, the live connections and
// the counters the JSON is made of.
struct Run {
  struct ev_loop* loop = nullptr;
  Config cfg;
  Clock::time_point t0;   // start, for latencies and failure offsets
  ev_tstamp ev_t0 = 0;    // start in loop time, for the victim's schedule
  double elapsed = 0;     // seconds from start to stop
  bool stopping = false;  // no new connections; set once
  std::unordered_set<Conn*> conns;
  ev_timer end_t{};                  // --seconds passed
  ev_timer tick_t{};                 // victim: the next request is due
  uint64_t victim_total = 0;         // victim: requests to send in --seconds
  ev_prepare top_up{};               // attack modes: open connections up to N before each wait
  ev_timer retry_t{};                // attack modes: active while pausing after a failed connect
  double retry_delay = kRetryDelay;  // the next pause; back to kRetryDelay on a connect
  ev_signal sigterm{}, sigint{};
  VictimStats victim;
  AttackStats attack;

  Mode mode() const { return cfg.mode->mode; }
  double since_start() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
};

void stop(Run* r);

// ---------------------------------------------------------------- connection plumbing

enum class Io { Done, WouldBlock, Eof, Failed };

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

std::string errno_name(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : "E" + std::to_string(err);
}

// Starts or stops an io watcher so that it is active exactly when `on`.
void set_active(struct ev_loop* loop, ev_io* w, bool on) {
  if (on && !ev_is_active(w)) {
    ev_io_start(loop, w);
  } else if (!on && ev_is_active(w)) {
    ev_io_stop(loop, w);
  }
}

// One client connection: its socket, two io watchers, one timer (whose meaning the kind
// decides: a deadline, a drip or a probe) and the output not yet written. The kinds below
// derive from it and move through their phases by swapping the watchers' callbacks. The
// destructor stops every watcher, unregisters from the run and closes the socket.
struct Conn {
  explicit Conn(Run* r) : run(r) {
    ev_init(&rev, nullptr);
    ev_init(&wev, nullptr);
    ev_init(&timer, nullptr);
    rev.data = wev.data = timer.data = this;
    run->conns.insert(this);
  }
  virtual ~Conn() {
    ev_io_stop(run->loop, &rev);
    ev_io_stop(run->loop, &wev);
    ev_timer_stop(run->loop, &timer);
    run->conns.erase(this);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Opens a TCP socket (non-blocking, CLOEXEC, TCP_NODELAY, SO_RCVBUF `rcvbuf` when > 0)
  // and starts connecting it to the target. Returns 0 when the connect is under way (the
  // socket turns writable when it is done), else the errno of what failed.
  int start_connect(int rcvbuf) {
    const nsproxy::Address& a = run->cfg.target;
    fd.reset(::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return errno;
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (rcvbuf > 0) ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    ev_io_set(&rev, fd.get(), EV_READ);
    ev_io_set(&wev, fd.get(), EV_WRITE);
    if (::connect(fd.get(), a.sa(), a.length) == 0 || errno == EINPROGRESS) return 0;
    return errno;
  }

  // Once the socket turned writable while connecting: 0 when connected, else the errno.
  int connect_error() const {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
  }

  // Reads what is there, up to `cap` bytes: Done with *n > 0, WouldBlock, Eof, or Failed
  // with errno set.
  Io read_some(char* buf, size_t cap, size_t* n) {
    for (;;) {
      ssize_t r = ::recv(fd.get(), buf, cap, 0);
      if (r > 0) {
        *n = static_cast<size_t>(r);
        return Io::Done;
      }
      if (r == 0) return Io::Eof;
      if (errno == EINTR) continue;
      return would_block(errno) ? Io::WouldBlock : Io::Failed;
    }
  }

  // Writes queued output: Done when none is left, WouldBlock when the socket took only
  // part of it, Failed with errno set.
  Io flush() {
    while (out_off < out.size()) {
      ssize_t w = ::send(fd.get(), out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        return would_block(errno) ? Io::WouldBlock : Io::Failed;
      }
      out_off += static_cast<size_t>(w);
    }
    out.clear();
    out_off = 0;
    return Io::Done;
  }

  // After connecting: read when `want_read`, write exactly while output is pending.
  void watch(bool want_read) {
    assert(fd);  // never a watcher on a closed socket
    set_active(run->loop, &rev, want_read);
    set_active(run->loop, &wev, out_off < out.size());
  }

  // (Re)starts the timer: once after `after` seconds, then every `repeat` (0: once).
  void arm(double after, double repeat = 0.) {
    ev_timer_stop(run->loop, &timer);
    ev_timer_set(&timer, after, repeat);
    ev_timer_start(run->loop, &timer);
  }

  Run* run;
  nsproxy::UniqueFd fd;
  ev_io rev{}, wev{};
  ev_timer timer{};
  std::string out;
  size_t out_off = 0;
};

template <class>
struct MemberOf;
template <class C>
struct MemberOf<bool (C::*)()> {
  using type = C;
};

// Callbacks: cast, call one handler, delete the connection right here when it is over.
template <auto Handler>
void io_cb(struct ev_loop*, ev_io* w, int) {
  using T = typename MemberOf<decltype(Handler)>::type;
  auto* c = static_cast<T*>(static_cast<Conn*>(w->data));
  if (!(c->*Handler)()) delete c;
}
template <auto Handler>
void timer_cb(struct ev_loop*, ev_timer* w, int) {
  using T = typename MemberOf<decltype(Handler)>::type;
  auto* c = static_cast<T*>(static_cast<Conn*>(w->data));
  if (!(c->*Handler)()) delete c;
}

// ---------------------------------------------------------------- responses

// Reads HTTP/1.x responses from a byte stream with http-parser, one at a time: the parser
// pauses at the end of each, so the caller acts on it before the next.
struct ResponseReader {
  enum class Feed {
    More,      // all input taken, the response is not complete (at EOF: it was cut short)
    Complete,  // a response ended; status and keep_alive describe it; next() before more
    Bad,       // not HTTP
  };

  ResponseReader() {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
  }

  // Feeds input; len 0 is the peer's EOF (which ends a body that runs until EOF). *used:
  // bytes taken; on Complete the rest belongs to the next response.
  Feed feed(const char* data, size_t len, size_t* used) {
    *used = http_parser_execute(&parser, &settings(), data, len);
    if (complete) return Feed::Complete;
    enum http_errno err = HTTP_PARSER_ERRNO(&parser);
    if (err == HPE_INVALID_EOF_STATE) return Feed::More;
    return err == HPE_OK ? Feed::More : Feed::Bad;
  }

  // Makes ready for the next response after Complete.
  void next() {
    complete = false;
    status = 0;
    http_parser_pause(&parser, 0);
  }

  http_parser parser{};
  int status = 0;  // of the response being read, once its head is complete
  bool keep_alive = false;
  bool complete = false;
  std::map<int, uint64_t>* heads = nullptr;  // when set: every response head counted here

 private:
  static ResponseReader* self(http_parser* p) { return static_cast<ResponseReader*>(p->data); }
  static const http_parser_settings& settings() {
    static const http_parser_settings s = [] {
      http_parser_settings v{};
      v.on_headers_complete = [](http_parser* p) {
        ResponseReader* r = self(p);
        r->status = static_cast<int>(p->status_code);
        if (r->heads) (*r->heads)[r->status]++;
        return 0;
      };
      v.on_message_complete = [](http_parser* p) {
        ResponseReader* r = self(p);
        r->complete = true;
        r->keep_alive = http_should_keep_alive(p) != 0;
        http_parser_pause(p, 1);
        return 0;
      };
      return v;
    }();
    return s;
  }
};

// ---------------------------------------------------------------- victim

// victim: one request on its own connection, from connect start to the response's last
// byte, within one deadline. Connecting (wev: on_connect) -> exchanging (rev: on_readable,
// wev: on_writable). Ends with exactly one outcome recorded: ok or one Failure.
struct VictimRequest : Conn {
  VictimRequest(Run* r, uint64_t n) : Conn(r), index(n), started(Clock::now()) {
    run->victim.sent++;
    run->victim.outstanding++;
  }
  ~VictimRequest() override {
    if (!finished) failed(Failure::Aborted, "still running at the second signal");
    run->victim.outstanding--;
    if (run->stopping && run->victim.outstanding == 0) ev_break(run->loop, EVBREAK_ALL);
  }

  // false: failed at once (recorded).
  bool start() {
    ev_set_cb(&wev, io_cb<&VictimRequest::on_connect>);
    ev_set_cb(&timer, timer_cb<&VictimRequest::on_deadline>);
    arm(run->cfg.timeout);
    if (int err = start_connect(0)) return failed(Failure::Connect, errno_name(err));
    ev_io_start(run->loop, &wev);
    return true;
  }

  bool on_connect() {
    if (int err = connect_error()) return failed(Failure::Connect, errno_name(err));
    connected = true;
    ev_set_cb(&rev, io_cb<&VictimRequest::on_readable>);
    ev_set_cb(&wev, io_cb<&VictimRequest::on_writable>);
    out = "GET /victim HTTP/1.1\r\nHost: victim\r\nConnection: close\r\n\r\n";
    return on_writable();
  }

  bool on_writable() {
    if (flush() == Io::Failed) return failed(Failure::Reset, "write: " + errno_name(errno));
    watch(true);  // read from the start: an early answer (503) is still an answer
    return true;
  }

  bool on_readable() {
    char buf[kReadChunk];
    for (int round = 0; round < kReadRounds; ++round) {
      size_t n = 0;
      switch (read_some(buf, sizeof buf, &n)) {
        case Io::WouldBlock:
          return true;
        case Io::Failed:
          return failed(Failure::Reset, "read: " + errno_name(errno));
        case Io::Eof:
          return on_input(nullptr, 0);
        case Io::Done:
          if (!on_input(buf, n)) return false;
          break;
      }
    }
    return true;
  }

  // Input (len 0: EOF) for the response. false: the request is over (recorded).
  bool on_input(const char* data, size_t len) {
    size_t used = 0;
    switch (reader.feed(data, len, &used)) {
      case ResponseReader::Feed::Bad:
        return failed(Failure::BadResponse,
                      http_errno_description(HTTP_PARSER_ERRNO(&reader.parser)));
      case ResponseReader::Feed::More:
        if (len == 0) return failed(Failure::Eof, "closed before a complete response");
        return true;
      case ResponseReader::Feed::Complete:
        break;
    }
    run->victim.statuses[reader.status]++;
    if (reader.status != 200) {
      return failed(Failure::Status, "status " + std::to_string(reader.status));
    }
    finished = true;
    run->victim.ok++;
    run->victim.latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - started).count());
    return false;
  }

  bool on_deadline() {
    return failed(Failure::Timeout, std::string(connected ? "reading" : "connecting") + " after " +
                                        std::to_string(std::lround(run->cfg.timeout * 1000)) +
                                        " ms");
  }

  // Records the failure; returns false (the request is over).
  bool failed(Failure f, const std::string& what) {
    finished = true;
    VictimStats& v = run->victim;
    v.errors[static_cast<size_t>(f)]++;
    if (v.first_failures.size() < kMaxFirstFailures) {
      char at[32];
      std::snprintf(at, sizeof at, "t=%.3fs", run->since_start());
      v.first_failures.push_back(std::string(at) + " request " + std::to_string(index) + ": " +
                                 kFailureNames[static_cast<size_t>(f)] + ": " + what);
    }
    return false;
  }

  uint64_t index;  // 0-based, in start order
  Clock::time_point started;
  bool connected = false;  // for the deadline's message only
  bool finished = false;   // an outcome was recorded
  ResponseReader reader;
};

void on_tick(struct ev_loop*, ev_timer* w, int) {
  Run* r = static_cast<Run*>(w->data);
  // Requests due by now (catching up if the loop was late), at most victim_total.
  double due = std::floor((ev_now(r->loop) - r->ev_t0) * r->cfg.rate + 1e-3) + 1;
  uint64_t until = std::min<uint64_t>(r->victim_total, static_cast<uint64_t>(due));
  while (r->victim.sent < until) {
    auto* v = new VictimRequest(r, r->victim.sent);
    if (!v->start()) delete v;
  }
  if (r->victim.sent >= r->victim_total) ev_timer_stop(r->loop, &r->tick_t);
}

// ---------------------------------------------------------------- attack connections

// An attack connection's accounting: connecting from construction, open once connected,
// counted out in the destructor. Connect failures and timeouts count as connect errors
// and pause new connects: 10 ms, doubling up to 1 s while no connect succeeds.
struct AttackConn : Conn {
  explicit AttackConn(Run* r) : Conn(r) { run->attack.connecting++; }
  ~AttackConn() override {
    AttackStats& a = run->attack;
    if (open)
      a.open--;
    else
      a.connecting--;
    if (!run->stopping) a.reconnects++;  // the top-up replaces it
  }

  // Starts connecting with the connect deadline on `timer` (the caller has set the
  // callbacks). false: failed at once (counted).
  bool begin_connect(int rcvbuf) {
    if (int err = start_connect(rcvbuf)) return connect_failed(err);
    arm(run->cfg.timeout);
    ev_io_start(run->loop, &wev);
    return true;
  }

  // Once the socket turned writable while connecting. false: it failed (counted).
  bool finish_connect() {
    if (int err = connect_error()) return connect_failed(err);
    ev_timer_stop(run->loop, &timer);
    run->retry_delay = kRetryDelay;
    AttackStats& a = run->attack;
    a.connecting--;
    open = true;
    a.opened++;
    a.open++;
    a.open_max = std::max(a.open_max, a.open);
    return true;
  }

  bool on_connect_timeout() { return connect_failed(ETIMEDOUT); }

  bool connect_failed(int err) {
    run->attack.connect_errors++;
    run->attack.connect_errors_by[errno_name(err)]++;
    if (!run->stopping && !ev_is_active(&run->retry_t)) {
      ev_timer_set(&run->retry_t, run->retry_delay, 0.);
      ev_timer_start(run->loop, &run->retry_t);
      run->retry_delay = std::min(run->retry_delay * 2, kRetryDelayMax);
    }
    return false;
  }

  // The peer ended an open connection (FIN or RST); returns false.
  bool closed_by_peer() {
    run->attack.closed_by_peer++;
    return false;
  }

  bool open = false;
};

// flood, slowloris, slow-body, slow-reader: a connection held open for as long as the
// peer allows. Connecting (timer: connect deadline) -> held (timer: drip for slowloris
// and slow-body, TCP_INFO probe for slow-reader; none for flood).
struct Holder : AttackConn {
  explicit Holder(Run* r) : AttackConn(r) { reader.heads = &run->attack.responses; }

  bool start() {
    ev_set_cb(&wev, io_cb<&Holder::on_connect>);
    ev_set_cb(&timer, timer_cb<&Holder::on_connect_timeout>);
    return begin_connect(run->mode() == Mode::SlowReader ? kSlowReaderRcvbuf : 0);
  }

  bool on_connect() {
    if (!finish_connect()) return false;
    ev_set_cb(&rev, io_cb<&Holder::on_readable>);
    ev_set_cb(&wev, io_cb<&Holder::on_writable>);
    const Config& cfg = run->cfg;
    switch (run->mode()) {
      case Mode::Slowloris:
        out = "GET /slow HTTP/1.1\r\nHost: x\r\n";
        ev_set_cb(&timer, timer_cb<&Holder::on_drip>);
        arm(cfg.interval, cfg.interval);
        break;
      case Mode::SlowBody:
        out = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
        ev_set_cb(&timer, timer_cb<&Holder::on_drip>);
        arm(cfg.interval, cfg.interval);
        break;
      case Mode::SlowReader:
        out = "GET " + cfg.path + " HTTP/1.1\r\nHost: x\r\n\r\n";
        ev_set_cb(&timer, timer_cb<&Holder::on_probe>);
        arm(kProbeInterval, kProbeInterval);
        break;
      default:  // flood: nothing to send
        break;
    }
    return on_writable();
  }

  bool on_writable() {
    if (flush() == Io::Failed) return closed_by_peer();
    // slow-reader never reads: its socket is readable all the time.
    watch(run->mode() != Mode::SlowReader);
    return true;
  }

  // slowloris: one more header line; slow-body: one more body byte.
  bool on_drip() {
    out += run->mode() == Mode::Slowloris ? "X-a: b\r\n" : "x";
    return on_writable();
  }

  // slow-reader: whether the peer has sent FIN or RST, without reading.
  bool on_probe() {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return closed_by_peer();
    return ti.tcpi_state == TCP_ESTABLISHED || closed_by_peer();
  }

  bool on_readable() {
    char buf[kReadChunk];
    for (int round = 0; round < kReadRounds; ++round) {
      size_t n = 0;
      switch (read_some(buf, sizeof buf, &n)) {
        case Io::WouldBlock:
          return true;
        case Io::Eof:
          count_heads(nullptr, 0);
          return closed_by_peer();
        case Io::Failed:
          return closed_by_peer();
        case Io::Done:
          count_heads(buf, n);
          break;
      }
    }
    return true;
  }

  // Parses the input only to count response heads (ResponseReader::heads).
  void count_heads(const char* data, size_t len) {
    for (;;) {
      size_t used = 0;
      if (reader.feed(data, len, &used) != ResponseReader::Feed::Complete) return;
      reader.next();
      data += used;
      len -= used;
      if (len == 0) return;
    }
  }

  ResponseReader reader;
};

// request-flood, idle: a keep-alive connection sending "GET" requests one at a time, each
// within a deadline (timer). request-flood sends the next as soon as a response ends;
// idle sends one and then stays open, silent, without deadline.
struct KeepAlive : AttackConn {
  explicit KeepAlive(Run* r) : AttackConn(r) { reader.heads = &run->attack.responses; }
  ~KeepAlive() override {
    if (idle) run->attack.idle--;
  }

  bool start() {
    ev_set_cb(&wev, io_cb<&KeepAlive::on_connect>);
    ev_set_cb(&timer, timer_cb<&KeepAlive::on_connect_timeout>);
    return begin_connect(0);
  }

  bool on_connect() {
    if (!finish_connect()) return false;
    ev_set_cb(&rev, io_cb<&KeepAlive::on_readable>);
    ev_set_cb(&wev, io_cb<&KeepAlive::on_writable>);
    ev_set_cb(&timer, timer_cb<&KeepAlive::on_deadline>);
    return send_request();
  }

  bool send_request() {
    out = run->mode() == Mode::Idle ? "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n"
                                    : "GET /flood HTTP/1.1\r\nHost: x\r\n\r\n";
    arm(run->cfg.timeout);
    return on_writable();
  }

  bool on_writable() {
    if (flush() == Io::Failed) return closed_by_peer();
    watch(true);
    return true;
  }

  bool on_deadline() {
    run->attack.timeouts++;
    return false;
  }

  bool on_readable() {
    char buf[kReadChunk];
    for (int round = 0; round < kReadRounds; ++round) {
      size_t n = 0;
      switch (read_some(buf, sizeof buf, &n)) {
        case Io::WouldBlock:
          return true;
        case Io::Eof:
          on_input(nullptr, 0);  // may end a body that runs until EOF
          return closed_by_peer();
        case Io::Failed:
          return closed_by_peer();
        case Io::Done:
          if (!on_input(buf, n)) return false;
          break;
      }
    }
    return true;
  }

  // Input (len 0: EOF), one response at a time. false: the connection is over.
  bool on_input(const char* data, size_t len) {
    for (;;) {
      size_t used = 0;
      switch (reader.feed(data, len, &used)) {
        case ResponseReader::Feed::Bad:
          run->attack.bad_responses++;
          return false;
        case ResponseReader::Feed::More:
          return true;
        case ResponseReader::Feed::Complete:
          break;
      }
      bool keep_alive = reader.keep_alive;
      reader.next();
      if (!on_response(keep_alive)) return false;
      data += used;
      len -= used;
      if (len == 0) return true;
    }
  }

  bool on_response(bool keep_alive) {
    if (run->mode() == Mode::Idle) {
      if (!idle) {
        idle = true;
        run->attack.idle++;
        ev_timer_stop(run->loop, &timer);
      }
      return true;
    }
    if (!keep_alive) return false;  // the server asked to close: reconnect
    return send_request();
  }

  bool idle = false;  // idle mode: answered, now holding
  ResponseReader reader;
};

// Opens attack connections up to N (at most kMaxConnecting in progress) before the loop
// waits, unless pausing after a failed connect.
void on_top_up(struct ev_loop*, ev_prepare* w, int) {
  Run* r = static_cast<Run*>(w->data);
  AttackStats& a = r->attack;
  while (!r->stopping && !ev_is_active(&r->retry_t) &&
         a.open + a.connecting < static_cast<uint64_t>(r->cfg.connections) &&
         a.connecting < static_cast<uint64_t>(kMaxConnecting)) {
    bool started;
    if (r->mode() == Mode::RequestFlood || r->mode() == Mode::Idle) {
      auto* c = new KeepAlive(r);
      if (!(started = c->start())) delete c;
    } else {
      auto* c = new Holder(r);
      if (!(started = c->start())) delete c;
    }
    if (!started) break;  // connect_failed started retry_t
  }
}

void on_retry(struct ev_loop*, ev_timer*, int) {}  // wakes the loop; on_top_up goes on

// ---------------------------------------------------------------- run control

void stop(Run* r) {
  if (r->stopping) return;
  r->stopping = true;
  r->elapsed = r->since_start();
  ev_timer_stop(r->loop, &r->end_t);
  ev_timer_stop(r->loop, &r->tick_t);
  ev_timer_stop(r->loop, &r->retry_t);
  ev_prepare_stop(r->loop, &r->top_up);
  // The victim waits for its outstanding requests (each ends by its deadline).
  if (r->mode() != Mode::Victim || r->victim.outstanding == 0) ev_break(r->loop, EVBREAK_ALL);
}

void on_end(struct ev_loop*, ev_timer* w, int) {
  stop(static_cast<Run*>(w->data));
}

void on_signal(struct ev_loop* loop, ev_signal* w, int) {
  Run* r = static_cast<Run*>(w->data);
  if (r->stopping) {
    ev_break(loop, EVBREAK_ALL);  // second signal: do not wait
    return;
  }
  stop(r);
}

double round3(double x) {
  return std::round(x * 1000.0) / 1000.0;
}

// Nearest-rank percentile of sorted values; null when there are none.
nlohmann::json percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return nullptr;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return round3(sorted[std::max<size_t>(rank, 1) - 1]);
}

nlohmann::json by_status(const std::map<int, uint64_t>& m) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [status, n] : m) j[std::to_string(status)] = n;
  return j;
}

// The result; open_at_end and idle_at_end as passed (taken before closing everything).
nlohmann::json report(Run* r, uint64_t open_at_end, uint64_t idle_at_end) {
  nlohmann::json j = {{"mode", r->cfg.mode->name}, {"elapsed_s", round3(r->elapsed)}};
  if (r->mode() == Mode::Victim) {
    VictimStats& v = r->victim;
    std::sort(v.latencies_ms.begin(), v.latencies_ms.end());
    nlohmann::json errors = nlohmann::json::object();
    uint64_t failed = 0;
    for (size_t i = 0; i < v.errors.size(); ++i) {
      errors[kFailureNames[i]] = v.errors[i];
      failed += v.errors[i];
    }
    j["sent"] = v.sent;
    j["ok"] = v.ok;
    j["failed"] = failed;
    j["statuses"] = by_status(v.statuses);
    j["errors"] = errors;
    j["p50_ms"] = percentile(v.latencies_ms, 50);
    j["p90_ms"] = percentile(v.latencies_ms, 90);
    j["p99_ms"] = percentile(v.latencies_ms, 99);
    j["max_ms"] = percentile(v.latencies_ms, 100);
    j["first_failures"] = v.first_failures;
    return j;
  }
  const AttackStats& a = r->attack;
  j["opened"] = a.opened;
  j["open_max"] = a.open_max;
  j["open_at_end"] = open_at_end;
  j["closed_by_peer"] = a.closed_by_peer;
  j["connect_errors"] = a.connect_errors;
  j["connect_errors_by"] = a.connect_errors_by;
  j["responses"] = by_status(a.responses);
  if (r->mode() == Mode::Idle) {
    j["idle_at_end"] = idle_at_end;
    j["timeouts"] = a.timeouts;
  }
  if (r->mode() == Mode::RequestFlood) {
    uint64_t requests = 0;
    for (auto& [status, n] : a.responses) requests += n;
    j["requests"] = requests;
    j["requests_per_second"] =
        r->elapsed > 0 ? round3(static_cast<double>(requests) / r->elapsed) : 0.0;
    j["reconnects"] = a.reconnects;
    j["timeouts"] = a.timeouts;
    j["bad_responses"] = a.bad_responses;
  }
  return j;
}

// Joins the network namespace at `path` (this process has one thread).
nsproxy::Status enter_netns(const std::string& path) {
  auto fd = nsproxy::open_netns(path);
  if (!fd) return fd.error();
  if (::setns(fd->get(), CLONE_NEWNET) < 0)
    return nsproxy::errno_error(nsproxy::Code::kNotNetns, "setns " + path);
  return {};
}

void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max) return;
  rl.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &rl) < 0)
    std::fprintf(stderr, "nsproxy-abuse: raising RLIMIT_NOFILE: %s\n", std::strerror(errno));
}

// ---------------------------------------------------------------- command line

void usage(FILE* f) {
  std::fprintf(f,
               "usage: nsproxy-abuse [--netns PATH] --target IP:PORT --seconds S MODE\n"
               "                     [--connections N] [--rate R] [--interval-ms I]\n"
               "                     [--path P] [--timeout-ms T]\n"
               "  MODE: victim (--rate, default 10/s), flood, slowloris (--interval-ms),\n"
               "        slow-body (--interval-ms), slow-reader (--path), request-flood, idle;\n"
               "        every mode but victim takes --connections\n"
               "  prints one JSON object on stdout at the end\n");
}

// Whole-string decimal number, finite, in [min, max].
bool parse_number(const char* text, double min, double max, double* out) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !std::isfinite(v) || v < min || v > max)
    return false;
  *out = v;
  return true;
}

// Whole-string decimal integer in [min, max].
bool parse_integer(const char* text, long min, long max, long* out) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || errno != 0 || v < min || v > max) return false;
  *out = v;
  return true;
}

const ModeInfo* find_mode(const char* name) {
  for (const ModeInfo& m : kModes)
    if (std::strcmp(m.name, name) == 0) return &m;
  return nullptr;
}

// Parses the command line; an error is a usage error (its message names the culprit).
nsproxy::Result<Config> parse_args(int argc, char** argv) {
  static const option opts[] = {
      {"netns", required_argument, nullptr, 'n'},
      {"target", required_argument, nullptr, 't'},
      {"seconds", required_argument, nullptr, 's'},
      {"connections", required_argument, nullptr, 'c'},
      {"rate", required_argument, nullptr, 'r'},
      {"interval-ms", required_argument, nullptr, 'i'},
      {"path", required_argument, nullptr, 'p'},
      {"timeout-ms", required_argument, nullptr, 'T'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  auto bad = [](const std::string& msg) {
    return nsproxy::make_error(nsproxy::Code::kBadRequest, msg);
  };
  Config cfg;
  std::string target;
  unsigned given = 0;            // OptionBits seen
  std::unordered_set<int> seen;  // every option once
  opterr = 0;
  optind = 1;
  for (;;) {
    int longindex = -1;
    int o = getopt_long(argc, argv, ":h", opts, &longindex);
    if (o == -1) break;
    if (o == '?') {
      return bad(optopt ? std::string("unknown option -") + static_cast<char>(optopt)
                        : std::string("unknown option ") + argv[optind - 1]);
    }
    if (o == ':') return bad(std::string("option ") + argv[optind - 1] + " needs a value");
    if (!seen.insert(o).second) {
      return bad(std::string("option --") + opts[longindex >= 0 ? longindex : 0].name +
                 " given twice");
    }
    long n = 0;
    switch (o) {
      case 'n':
        if (*optarg == '\0') return bad("--netns: empty path");
        cfg.netns = optarg;
        break;
      case 't':
        target = optarg;
        break;
      case 's':
        if (!parse_number(optarg, 0.001, 1e6, &cfg.seconds))
          return bad(std::string("--seconds: not a number of seconds in [0.001, 1e6]: ") + optarg);
        break;
      case 'c':
        if (!parse_integer(optarg, 1, 1000000, &cfg.connections))
          return bad(std::string("--connections: not an integer in [1, 1000000]: ") + optarg);
        given |= kOptConnections;
        break;
      case 'r':
        if (!parse_number(optarg, 0.001, 100000, &cfg.rate))
          return bad(std::string("--rate: not a rate in [0.001, 100000] per second: ") + optarg);
        given |= kOptRate;
        break;
      case 'i':
        if (!parse_integer(optarg, 1, 3600000, &n))
          return bad(std::string("--interval-ms: not an integer in [1, 3600000]: ") + optarg);
        cfg.interval = static_cast<double>(n) / 1000.0;
        given |= kOptInterval;
        break;
      case 'p':
        cfg.path = optarg;
        if (cfg.path.empty() || cfg.path[0] != '/' ||
            std::any_of(cfg.path.begin(), cfg.path.end(),
                        [](char ch) { return ch <= ' ' || ch >= 0x7f; }))
          return bad(std::string("--path: not a request path (/..., no spaces): ") + optarg);
        given |= kOptPath;
        break;
      case 'T':
        if (!parse_integer(optarg, 1, 3600000, &n))
          return bad(std::string("--timeout-ms: not an integer in [1, 3600000]: ") + optarg);
        cfg.timeout = static_cast<double>(n) / 1000.0;
        break;
      case 'h':
        cfg.help = true;
        return cfg;
    }
  }
  if (optind == argc) return bad("no MODE given");
  if (argc - optind > 1) return bad(std::string("unexpected argument: ") + argv[optind + 1]);
  cfg.mode = find_mode(argv[optind]);
  if (!cfg.mode) return bad(std::string("unknown MODE: ") + argv[optind]);
  if (target.empty()) return bad("--target is required");
  if (cfg.seconds == 0) return bad("--seconds is required");
  auto addr = nsproxy::parse_address(target, false);
  if (!addr) return bad("--target: " + addr.error().message);
  cfg.target = *addr;
  static const std::pair<unsigned, const char*> kNames[] = {{kOptConnections, "--connections"},
                                                            {kOptRate, "--rate"},
                                                            {kOptInterval, "--interval-ms"},
                                                            {kOptPath, "--path"}};
  for (auto& [bit, name] : kNames) {
    if ((given & bit) && !(cfg.mode->options & bit))
      return bad(std::string(name) + " does not apply to mode " + cfg.mode->name);
  }
  if (!(given & kOptConnections)) cfg.connections = cfg.mode->default_connections;
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (!parsed) {
    std::fprintf(stderr, "nsproxy-abuse: %s\n", parsed.error().message.c_str());
    usage(stderr);
    return 2;
  }
  if (parsed->help) {
    usage(stdout);
    return 0;
  }

  Run run;
  run.cfg = std::move(*parsed);
  if (!run.cfg.netns.empty()) {
    if (auto st = enter_netns(run.cfg.netns); !st) {
      std::fprintf(stderr, "nsproxy-abuse: %s\n", st.error().message.c_str());
      return 1;
    }
  }
  raise_fd_limit();
  ::signal(SIGPIPE, SIG_IGN);

  run.loop = ev_default_loop(EVFLAG_AUTO | EVFLAG_SIGNALFD);
  if (!run.loop) {
    std::fprintf(stderr, "nsproxy-abuse: cannot create event loop\n");
    return 1;
  }
  ev_now_update(run.loop);
  run.t0 = Clock::now();
  run.ev_t0 = ev_now(run.loop);

  ev_timer_init(&run.end_t, on_end, run.cfg.seconds, 0.);
  ev_timer_init(&run.tick_t, on_tick, 0., 1.0 / run.cfg.rate);
  ev_timer_init(&run.retry_t, on_retry, kRetryDelay, 0.);
  ev_prepare_init(&run.top_up, on_top_up);
  ev_signal_init(&run.sigterm, on_signal, SIGTERM);
  ev_signal_init(&run.sigint, on_signal, SIGINT);
  run.end_t.data = run.tick_t.data = run.retry_t.data = &run;
  run.top_up.data = run.sigterm.data = run.sigint.data = &run;
  ev_timer_start(run.loop, &run.end_t);
  ev_signal_start(run.loop, &run.sigterm);
  ev_signal_start(run.loop, &run.sigint);
  if (run.mode() == Mode::Victim) {
    run.victim_total = std::max<uint64_t>(
        1, static_cast<uint64_t>(std::ceil(run.cfg.seconds * run.cfg.rate - 1e-9)));
    ev_timer_start(run.loop, &run.tick_t);
  } else {
    ev_prepare_start(run.loop, &run.top_up);
  }

  ev_run(run.loop, 0);

  stop(&run);  // a no-op: every way out of the loop went through stop()
  uint64_t open_at_end = run.attack.open, idle_at_end = run.attack.idle;
  for (Conn* c : std::vector<Conn*>(run.conns.begin(), run.conns.end())) delete c;
  nlohmann::json out = report(&run, open_at_end, idle_at_end);
  ev_signal_stop(run.loop, &run.sigterm);
  ev_signal_stop(run.loop, &run.sigint);
  ev_loop_destroy(run.loop);
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  return 0;
}
