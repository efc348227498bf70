"""Shared helpers for the nsproxy benchmarks (python3 stdlib only, run as root).

Everything a benchmark creates is registered with `cleanup` and removed on normal exit,
on an exception, and on SIGINT/SIGTERM/SIGHUP: network namespaces (names start with the
per-run prefix nspb-<pid>-), processes started here (ended by their pid, never by name)
and temporary directories. All traffic stays on loopback inside namespaces created here
or on 127.0.0.1 in the host namespace.
"""

import atexit
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PREFIX = os.environ.get("BENCH_PREFIX") or "nspb-%d-" % os.getpid()
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def env_list(name, default):
    v = os.environ.get(name)
    if v in (None, ""):
        return list(default)
    return [int(x) for x in v.replace(",", " ").split()]


def build_dir():
    d = os.environ.get("BUILD") or os.path.join(REPO, "build")
    d = os.path.abspath(d)
    for b in ("nsproxyd", "nsproxy", "nsproxyctl"):
        if not os.access(os.path.join(d, b), os.X_OK):
            sys.exit("bench: %s/%s missing; build first (make build, or BUILD=dir)" % (d, b))
    return d


# ---------------------------------------------------------------- cleanup

class Cleanup:
    def __init__(self):
        self.actions = []  # LIFO
        self.done = False

    def push(self, what, fn):
        self.actions.append((what, fn))
        return fn

    def run(self):
        while self.actions:
            what, fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning
                log("cleanup %s: %s" % (what, e))
        sweep_namespaces()


cleanup = Cleanup()


def _on_signal(signum, frame):
    # Raise into the main flow so `finally` blocks run, then atexit cleans the rest.
    signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt("signal %d" % signum)


def install_cleanup():
    atexit.register(cleanup.run)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)


def tempdir(tag, base=None):
    d = tempfile.mkdtemp(prefix="%s%s-" % (PREFIX, tag), dir=base)
    cleanup.push("rm " + d, lambda: shutil.rmtree(d, ignore_errors=True))
    return d


# ---------------------------------------------------------------- processes

class Proc:
    """A process started by the benchmark; stopped by its pid on cleanup."""

    def __init__(self, argv, name, log_path=None, cpus=None, env=None, stdin=subprocess.DEVNULL):
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + list(argv)
        self.name = name
        self.log_path = log_path
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, stdout=out, stderr=out, stdin=stdin, env=env)
        if log_path:
            out.close()
        self.pid = self.p.pid
        cleanup.push("stop %s (pid %d)" % (name, self.pid), self.stop)

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is not None:
            return
        try:
            self.p.send_signal(sig)
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)

    def tail(self, n=20):
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def wait_for(cond, timeout, what, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited while waiting for %s:\n%s" % (proc.name, what, proc.tail()))
        if cond():
            return
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for " + what)


def rss_kb(pid):
    """VmRSS, RssAnon, RssFile (KiB, /proc/PID/status) and Pss (KiB, smaps_rollup: shared
    library pages divided among the processes mapping them)."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                vals[k] = int(v.split()[0])
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    vals["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return vals


def cpu_ns(pid):
    """CPU time the process has run so far, in ns, over all its threads (schedstat:
    precise, unlike the 10 ms ticks of /proc/PID/stat). On a loaded machine this is the
    figure that does not depend on how long the process waited for a CPU."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), 0.2).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- namespaces

def ns_path(name):
    return os.path.join(NETNS_DIR, name)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _lo_up_here():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        import fcntl
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS IFF_UP
    finally:
        s.close()


def _ensure_netns_dir():
    # `ip netns add` makes /run/netns a shared mount point the first time; let it do that
    # once (with a throwaway name) so our bind mounts behave like its own.
    name = PREFIX + "init"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "del", name], check=True)


_created = set()


def make_namespaces(names, lo_up=True):
    """Creates named network namespaces in /run/netns quickly: one forked child does
    unshare(CLONE_NEWNET) + bind mount per name (what `ip netns add` does, without an
    exec per namespace) and optionally brings lo up. Returns the paths."""
    names = list(names)
    if not names:
        return []
    if not os.path.isdir(NETNS_DIR) or not _created:
        _ensure_netns_dir()
    for n in names:
        _created.add(n)
    cleanup.push("namespaces", lambda ns=names: delete_namespaces(ns))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(r)
        code = 0
        try:
            for n in names:
                p = ns_path(n)
                fd = os.open(p, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
                os.close(fd)
                _check(_libc.unshare(CLONE_NEWNET), "unshare")
                _check(_libc.mount(b"/proc/thread-self/ns/net", p.encode(), None, MS_BIND, None),
                       "mount " + p)
                if lo_up:
                    _lo_up_here()
        except BaseException as e:
            os.write(w, str(e).encode()[:500])
            code = 1
        os._exit(code)
    os.close(w)
    msg = os.read(r, 600).decode(errors="replace")
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError("creating namespaces failed: " + msg)
    return [ns_path(n) for n in names]


def delete_namespaces(names):
    for n in names:
        p = ns_path(n)
        _libc.umount2(p.encode(), MNT_DETACH)
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
        _created.discard(n)


def sweep_namespaces():
    """Removes every namespace of this run (prefix includes our pid), also half-made ones."""
    try:
        left = [n for n in os.listdir(NETNS_DIR) if n.startswith(PREFIX)]
    except FileNotFoundError:
        return
    if left:
        delete_namespaces(left)


def probe_in_ns(path, port, timeout=0.5):
    """True when something accepts TCP on 127.0.0.1:port inside the namespace at path
    (checked from a forked child that setns()es there; this process stays home)."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            fd = os.open(path, os.O_RDONLY)
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
            socket.create_connection(("127.0.0.1", port), timeout).close()
            ok = True
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return status == 0


def in_netns(name, argv):
    return ["ip", "netns", "exec", name] + list(argv)


# ---------------------------------------------------------------- nsproxyd

class Daemon:
    """nsproxyd with its own socket and state directory."""

    def __init__(self, build, tag, state_base=None, cpus=None, extra=(), binary=None):
        """state_base: where the state directory goes (default: next to the socket in
        /tmp, on disk here; "/dev/shm" puts the journal on tmpfs, fsync almost free).
        binary: another nsproxyd to run (default BUILD/nsproxyd), e.g. an older build."""
        self.dir = tempdir("nsproxyd-" + tag)
        self.sock = os.path.join(self.dir, "nsproxyd.sock")
        self.state = os.path.join(tempdir("state-" + tag, state_base) if state_base else self.dir,
                                  "state")
        self.build = build
        argv = [binary or os.path.join(build, "nsproxyd"), "--socket", self.sock, "--state-dir", self.state,
                "--log-level", "warn", "--reconcile-interval", "3600"] + list(extra)
        self.proc = Proc(argv, "nsproxyd-" + tag, os.path.join(self.dir, "log"), cpus=cpus)
        self.pid = self.proc.pid
        wait_for(lambda: self._answers(), 10, "nsproxyd on " + self.sock)

    def _answers(self):
        if not self.proc.alive():
            raise RuntimeError("nsproxyd exited:\n" + self.proc.tail())
        try:
            return control_call(self.sock, {"op": "status"})["ok"]
        except OSError:
            return False

    def stop(self):
        self.proc.stop()


def control_call(sock_path, req, netns_fd=None, timeout=10.0, conn=None):
    """One request/reply over the SOCK_SEQPACKET control socket (shared/control_protocol.h)."""
    req = dict(req)
    req.setdefault("version", 1)
    data = json.dumps(req).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        if netns_fd is not None:
            socket.send_fds(s, [data], [netns_fd])
        else:
            s.send(data)
        reply = s.recv(16 * 1024 * 1024)
    finally:
        s.close()
    return json.loads(reply)


def register(sock_path, tenant_id, netns, listeners):
    """ADD over the control socket without exec'ing nsproxyctl (fast, for many tenants)."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        r = control_call(sock_path, {"op": "add", "attachment": {"id": tenant_id}, "netns": netns,
                                     "listeners": listeners}, netns_fd=fd)
    finally:
        os.close(fd)
    if not r.get("ok"):
        raise RuntimeError("add %s: %s" % (tenant_id, r.get("error")))
    return r


def unregister(sock_path, tenant_id, network=None, ifname=None):
    att = {"id": tenant_id}
    if network:
        att.update(network=network, ifname=ifname)
    r = control_call(sock_path, {"op": "del", "attachment": att})
    if not r.get("ok"):
        raise RuntimeError("del %s: %s" % (tenant_id, r.get("error")))


# ---------------------------------------------------------------- haproxy / nginx

def haproxy_config(path, binds, upstream_port, identity=True, maxconn=4096, nbthread=1,
                   ssl_crt=None):
    """binds: list of (netns name, listen port). One frontend, one `bind ... namespace` per
    tenant, named after the tenant so the tenant id header can be set from so_name.
    ssl_crt: a PEM with the certificate and its key: every bind terminates TLS with it."""
    lines = [
        "global",
        "  nbthread %d" % nbthread,
        "  maxconn %d" % maxconn,
        "  log stderr format short local0 err",
        "defaults",
        "  mode http",
        "  timeout connect 5s",
        "  timeout client 60s",
        "  timeout server 60s",
        "  timeout http-keep-alive 60s",
        "  option http-keep-alive",
        "  http-reuse always",
        "frontend tenants",
    ]
    for name, port in binds:
        tls = " ssl crt %s alpn http/1.1" % ssl_crt if ssl_crt else ""
        lines.append("  bind 127.0.0.1:%d namespace %s name %s%s" % (port, name, name, tls))
    if identity:
        # The same work nsproxy does per request: drop forged identity, add the tenant id
        # (from the listener, never the source), X-Forwarded-For and Forwarded.
        lines += [
            "  http-request del-header X-Tenant-Id",
            "  http-request del-header X-Tenant-Label- -m beg",
            "  http-request del-header X-Forwarded-For",
            "  http-request del-header Forwarded",
            "  http-request set-header X-Tenant-Id %[so_name]",
            "  http-request set-header Forwarded for=%[src]",
            "  option forwardfor",
        ]
    lines += [
        "  default_backend up",
        "backend up",
        "  server s1 127.0.0.1:%d maxconn 1000" % upstream_port,
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def start_haproxy(binds, upstream_port, tag, cpus=None, identity=True, maxconn=4096, nbthread=1,
                  ssl_crt=None):
    d = tempdir("haproxy-" + tag)
    cfg = os.path.join(d, "haproxy.cfg")
    haproxy_config(cfg, binds, upstream_port, identity, maxconn, nbthread, ssl_crt)
    chk = subprocess.run(["haproxy", "-c", "-q", "-f", cfg], capture_output=True, text=True)
    if chk.returncode != 0:
        raise RuntimeError("haproxy config: " + chk.stdout + chk.stderr)
    proc = Proc(["haproxy", "-db", "-f", cfg], "haproxy-" + tag, os.path.join(d, "log"), cpus=cpus)
    return proc


# ---------------------------------------------------------------- the Go peer

def go_peer_binary(build):
    """test/bench/gopeer built once into BUILD (GOPATH mode over Debian's /usr/share/gocode,
    as test/cnitool is; no network)."""
    src_dir = os.path.join(HERE, "gopeer")
    out = os.path.join(build, "nsproxy-go-peer")
    src = os.path.join(src_dir, "main.go")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off", GOFLAGS="",
                   GOPROXY="off", GOTOOLCHAIN="local",
                   GOCACHE=os.path.join(os.path.abspath(build), "go-cache"))
        r = subprocess.run(["go", "build", "-o", os.path.abspath(out), "main.go"], cwd=src_dir,
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("building the Go peer: " + r.stdout + r.stderr)
    return out


def start_go_peer(build, tenants, port, upstream_port, tag, cpus=None):
    """tenants: list of (name, netns path). Returns the Proc once every listener accepts."""
    d = tempdir("gopeer-" + tag)
    lst = os.path.join(d, "tenants")
    with open(lst, "w") as f:
        for name, path in tenants:
            f.write("%s %s\n" % (name, path))
    log_path = os.path.join(d, "log")
    proc = Proc([go_peer_binary(build), "--listen", "127.0.0.1:%d" % port,
                 "--upstream", "127.0.0.1:%d" % upstream_port, "--tenants", lst],
                "gopeer-" + tag, log_path, cpus=cpus)

    def serving():
        with open(log_path, "rb") as f:
            return b"serving " in f.read()
    wait_for(serving, 60 + len(tenants) / 100, "the Go peer's listeners", proc)
    return proc


NGINX_BODY = b"hello from the upstream\n" * 2  # 48 bytes


def start_nginx(port, cpus=None):
    d = tempdir("nginx")
    for sub in ("logs", "tmp", "html"):
        os.mkdir(os.path.join(d, sub))
    with open(os.path.join(d, "html", "index.html"), "wb") as f:
        f.write(NGINX_BODY)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""
worker_processes 1;
daemon off;
master_process off;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %(d)s/tmp;
  proxy_temp_path %(d)s/tmp;
  fastcgi_temp_path %(d)s/tmp;
  uwsgi_temp_path %(d)s/tmp;
  scgi_temp_path %(d)s/tmp;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:%(port)d backlog=4096;
    root %(d)s/html;
    location / { index index.html; }
  }
}
""" % {"d": d, "port": port})
    proc = Proc(["nginx", "-p", d, "-c", conf], "nginx", os.path.join(d, "stderr"), cpus=cpus)
    wait_for(lambda: proc.alive() and port_open(port), 10, "nginx on 127.0.0.1:%d" % port)
    return proc


# ---------------------------------------------------------------- statistics and tables

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def percentile(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def table(headers, rows):
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                             for i, c in enumerate(r)).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def save_results(name, data):
    """Appends one benchmark's results as JSON where run.sh collects them (BENCH_RESULTS)."""
    path = os.environ.get("BENCH_RESULTS")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"bench": name, **data}) + "\n")


def require_root():
    if os.geteuid() != 0:
        sys.exit("bench: run as root (namespaces, setns, bind mounts)")
