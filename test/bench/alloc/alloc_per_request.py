#!/usr/bin/env python3
"""Heap allocations per request on nsproxyd's HTTP keep-alive path (root).

    test/bench/alloc/alloc_per_request.py [--build DIR] [--connections C]
        [--warmup N] [--batch N] [--trace FILE] [-- EXTRA_NSPROXYD_FLAGS...]

Runs nsproxyd (from DIR, default build/; a release build: ASan replaces malloc) with
malloc_count.so preloaded, an nsproxy-echo upstream in http mode, and one tenant
namespace registered with nsproxyctl. A client inside the namespace opens C keep-alive
connections (default 1) and sends requests round-robin over them, in three kinds that
alternate: GET /bytes/256 with browser-like headers (long values, "Connection:
keep-alive"), POST with a 128-byte Content-Length body, POST with a chunked body
(2 chunks). Every request reuses a pooled upstream connection after the first few.

Phases, with a counter snapshot (SIGUSR1 to the daemon) after each:
  start        registered, no tenant connection yet
  warmup       C connections opened, --warmup requests (default 1,000)
  batch-1      --batch requests (default 10,000)
  batch-2      2 x --batch requests (default 20,000)
  closed       tenant connections closed (the daemon noticed: a short pause)

Prints one table: allocations per request in batch-1 and batch-2 (the figure that must
be ~0), and the live heap held per idle keep-alive connection (batch-2 end, connections
idle, minus closed). The last line is JSON for scripts. --trace FILE writes the
backtrace of every allocation made during batch-2 to FILE and prints a count per
nsproxy function. See docs/hot-path.md for the figures.

Everything created here is removed on exit (namespace nspalloc-<pid>, temp dir, the
processes started here, ended by pid). Traffic stays on loopback in that namespace and
on 127.0.0.1 in the host namespace.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/120.0.0.0 Safari/537.36")
GET = ("GET /bytes/256 HTTP/1.1\r\nHost: service.internal:8080\r\nUser-Agent: " + UA +
       "\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
       "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
       "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
       "Connection: keep-alive\r\n\r\n").encode()
POST_BODY = b"x" * 128
POST = ("POST /submit?id=42 HTTP/1.1\r\nHost: service.internal:8080\r\nUser-Agent: " + UA +
        "\r\nContent-Type: application/octet-stream\r\nContent-Length: 128\r\n"
        "X-Request-Id: 9f1c2d3e-4b5a-6978-8091-a2b3c4d5e6f7\r\n\r\n").encode() + POST_BODY
CHUNKED = ("POST /upload HTTP/1.1\r\nHost: service.internal:8080\r\nUser-Agent: " + UA +
           "\r\nTransfer-Encoding: chunked\r\n\r\n").encode() + \
    b"40\r\n" + b"y" * 64 + b"\r\n20\r\n" + b"z" * 32 + b"\r\n0\r\n\r\n"
REQUESTS = [GET, POST, CHUNKED]


# ---- client (runs inside the tenant namespace) -----------------------------------------

def read_response(sock, buf):
    """Reads one response (Content-Length or chunked) from sock; returns (status, rest)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed before a response head")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while not rest.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                raise EOFError("connection closed in a chunked body")
            rest += data
        return status, b""
    length = length or 0
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed in a body")
        rest += data
    return status, rest[length:]


def client_main(host, port, conns):
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bufs = [b""] * conns
    sent = 0
    print("connected", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "close":
            for s in socks:
                s.close()
            print("closed", flush=True)
            continue
        n = int(cmd[1])
        bad = 0
        i = 0
        while i < n:
            # One request on each connection, then every response: C requests in flight.
            k = min(conns, n - i)
            for j in range(k):
                socks[j].sendall(REQUESTS[(sent + j) % len(REQUESTS)])
            for j in range(k):
                status, bufs[j] = read_response(socks[j], bufs[j])
                if status != 200:
                    bad += 1
            sent += k
            i += k
        print("done %d bad %d" % (n, bad), flush=True)


# ---- orchestration (host namespace) ----------------------------------------------------

class Run:
    def __init__(self):
        self.procs = []
        self.netns = None
        self.tmp = None

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], stderr=subprocess.DEVNULL)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def wait_line(proc, needle, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line.strip()
    sys.exit("alloc: no '%s' from %s" % (needle, proc.args))


def write_trace(counts, binary, path):
    """Copies the traced backtraces, with nsproxyd's own frames resolved by addr2line."""
    with open(counts) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith("seq=")]
    addrs = sorted({m.group(1) for l in lines
                    for m in [re.search(r"nsproxyd\(\+(0x[0-9a-f]+)\)", l)] if m})
    names = {}
    if addrs and shutil.which("addr2line"):
        out = subprocess.run(["addr2line", "-f", "-C", "-i", "-p", "-e", binary] + addrs,
                             stdout=subprocess.PIPE, text=True).stdout.splitlines()
        # -i may print inlined frames as extra lines starting with " (inlined by)".
        i = -1
        for line in out:
            if line.startswith(" (inlined by)") and i >= 0:
                names[addrs[i]] += "\n      " + line.strip()
            else:
                i += 1
                if i < len(addrs):
                    names[addrs[i]] = line
    with open(path, "w") as f:
        for l in lines:
            m = re.search(r"nsproxyd\(\+(0x[0-9a-f]+)\)", l)
            f.write(l + ("   " + names[m.group(1)] if m and m.group(1) in names else "") + "\n")
    # Summary: each allocation charged to the innermost nsproxy function on its stack.
    sites = {}
    with open(path) as f:
        blocks = f.read().split("--- allocation of ")[1:]
    for block in blocks:
        site = "(outside nsproxy code)"
        for m in re.finditer(r"(nsproxy::[A-Za-z_:]+)[^\n]* at (\S*/proxy/\S+?):(\d+)", block):
            site = "%s %s:%s" % (m.group(1), os.path.basename(m.group(2)), m.group(3))
            break
        sites[site] = sites.get(site, 0) + 1
    print("alloc: %d traced allocation(s) written to %s; by site:" % (len(blocks), path))
    for site, n in sorted(sites.items(), key=lambda kv: -kv[1]):
        print("  %8d  %s" % (n, site))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD") or os.path.join(REPO, "build"))
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--trace", metavar="FILE",
                    help="write the backtrace of every allocation made during batch-2 to FILE")
    ap.add_argument("--client", nargs=3, metavar=("HOST", "PORT", "CONNS"), help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help="extra nsproxyd flags (after --)")
    args = ap.parse_args()
    if args.client:
        return client_main(args.client[0], int(args.client[1]), int(args.client[2]))

    if os.geteuid() != 0:
        sys.exit("alloc: run as root (network namespaces)")
    build = os.path.abspath(args.build)
    for b in ("nsproxyd", "nsproxyctl", "nsproxy-echo"):
        if not os.access(os.path.join(build, b), os.X_OK):
            sys.exit("alloc: %s/%s missing; build first" % (build, b))

    run = Run()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    try:
        return measure(run, build, args)
    finally:
        run.cleanup()


def measure(run, build, args):
    run.tmp = tempfile.mkdtemp(prefix="nspalloc-%d-" % os.getpid())
    so = os.path.join(run.tmp, "malloc_count.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so,
                    os.path.join(HERE, "malloc_count.c")], check=True)
    run.netns = "nspalloc-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", run.netns], check=True)
    subprocess.run(["ip", "-n", run.netns, "link", "set", "lo", "up"], check=True)

    echo = subprocess.Popen([os.path.join(build, "nsproxy-echo"), "--listen", "127.0.0.1:0",
                             "--mode", "http"], stdout=subprocess.PIPE, text=True)
    run.procs.append(echo)
    upstream = wait_line(echo, "listening on").split()[-1]

    counts = os.path.join(run.tmp, "counts")
    sock = os.path.join(run.tmp, "nsproxyd.sock")
    env = dict(os.environ, LD_PRELOAD=so, MALLOC_COUNT_OUT=counts)
    log = open(os.path.join(run.tmp, "nsproxyd.log"), "w")
    daemon = subprocess.Popen([os.path.join(build, "nsproxyd"), "--socket", sock,
                               "--state-dir", os.path.join(run.tmp, "state"),
                               "--log-level", "warn"] + args.extra,
                              env=env, stderr=log)
    run.procs.append(daemon)
    ctl = [os.path.join(build, "nsproxyctl"), "--socket", sock]
    for _ in range(100):
        if subprocess.run(ctl + ["status"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            break
        time.sleep(0.05)
    subprocess.run(ctl + ["add", "--id", "alloc-bench", "--netns", "/run/netns/" + run.netns,
                          "--listen", "127.0.0.1:8080", "--upstream", upstream],
                   check=True, stdout=subprocess.DEVNULL)

    seq = [0]

    def snapshot():
        seq[0] += 1
        os.kill(daemon.pid, signal.SIGUSR1)
        for _ in range(200):
            if os.path.exists(counts):
                with open(counts) as f:
                    lines = f.read().splitlines()
                lines = [l for l in lines if l.startswith("seq=")]
                if len(lines) >= seq[0]:
                    m = dict(kv.split("=") for kv in lines[seq[0] - 1].split())
                    return {k: int(v) for k, v in m.items()}
            time.sleep(0.01)
        sys.exit("alloc: no counter line from nsproxyd (is malloc_count.so preloaded?)")

    snaps = {"start": snapshot()}
    client = subprocess.Popen(["ip", "netns", "exec", run.netns, sys.executable,
                               os.path.abspath(__file__), "--client", "127.0.0.1", "8080",
                               str(args.connections)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    run.procs.append(client)
    wait_line(client, "connected")

    def batch(n):
        client.stdin.write("run %d\n" % n)
        client.stdin.flush()
        line = wait_line(client, "done", timeout=600)
        if not line.endswith("bad 0"):
            sys.exit("alloc: non-200 answers: " + line)
        time.sleep(0.2)  # the daemon finishes its bookkeeping (pooling) after the last write

    batch(args.warmup)
    snaps["warmup"] = snapshot()
    batch(args.batch)
    snaps["batch-1"] = snapshot()
    if args.trace:
        os.kill(daemon.pid, signal.SIGUSR2)
    batch(2 * args.batch)
    if args.trace:
        os.kill(daemon.pid, signal.SIGUSR2)
    snaps["batch-2"] = snapshot()
    if args.trace:
        write_trace(counts, os.path.join(build, "nsproxyd"), args.trace)
    client.stdin.write("close\n")
    client.stdin.flush()
    wait_line(client, "closed")
    time.sleep(0.3)
    snaps["closed"] = snapshot()
    client.stdin.close()
    client.wait(10)

    def per(a, b, n, key):
        return (snaps[b][key] - snaps[a][key]) / n

    result = {
        "connections": args.connections,
        "extra_flags": args.extra,
        "batch1_requests": args.batch,
        "batch2_requests": 2 * args.batch,
        "allocs_per_request_batch1": per("warmup", "batch-1", args.batch, "allocs"),
        "allocs_per_request_batch2": per("batch-1", "batch-2", 2 * args.batch, "allocs"),
        "frees_per_request_batch2": per("batch-1", "batch-2", 2 * args.batch, "frees"),
        "allocs_batch1": snaps["batch-1"]["allocs"] - snaps["warmup"]["allocs"],
        "allocs_batch2": snaps["batch-2"]["allocs"] - snaps["batch-1"]["allocs"],
        "live_bytes_per_idle_connection":
            (snaps["batch-2"]["live_bytes"] - snaps["closed"]["live_bytes"]) / args.connections,
        "live_bytes_growth_batch2": snaps["batch-2"]["live_bytes"] - snaps["batch-1"]["live_bytes"],
    }
    print("nsproxyd heap allocations, %d keep-alive connection(s)%s" %
          (args.connections, (" flags " + " ".join(args.extra)) if args.extra else ""))
    print("  %-44s %12s" % ("phase", "value"))
    print("  %-44s %12d" % ("allocations in batch-1 (%d requests)" % args.batch,
                            result["allocs_batch1"]))
    print("  %-44s %12d" % ("allocations in batch-2 (%d requests)" % (2 * args.batch),
                            result["allocs_batch2"]))
    print("  %-44s %12.3f" % ("allocations per request (batch-1)",
                              result["allocs_per_request_batch1"]))
    print("  %-44s %12.3f" % ("allocations per request (batch-2)",
                              result["allocs_per_request_batch2"]))
    print("  %-44s %12.0f" % ("live heap held per idle keep-alive connection",
                              result["live_bytes_per_idle_connection"]))
    print("  %-44s %12d" % ("live heap growth over batch-2 (bytes)",
                            result["live_bytes_growth_batch2"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
