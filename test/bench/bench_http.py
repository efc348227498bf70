#!/usr/bin/env python3
"""Benchmark 1: HTTP throughput and p99 latency, nsproxyd vs HAProxy 2.6, same run.

N tenant namespaces (lo up). One nginx upstream on 127.0.0.1:<free port> in the host
namespace (48-byte static body, keep-alive). Two phases, each with every proxy serving
every tenant and measured side by side:

One core (pinned: wrk and nginx on CPU 0, every proxy on CPU 1):
  nsproxy        nsproxyd --workers 0: one thread does everything (BENCH_NSPROXYD_FLAGS
                 replaces the flags), one http listener per tenant (127.0.0.1:8080);
  nsproxy-w1     nsproxyd --workers 1 (127.0.0.1:8085): the main thread accepts and
                 hands connections to one worker thread, both on CPU 1;
  nsproxy-tuned  a further nsproxyd with BENCH_TUNED_FLAGS (127.0.0.1:8082; not run by
                 default);
  nsproxy-metrics  as "nsproxy" with --metrics-listen (127.0.0.1:8083 in the tenants),
                 its /metrics scraped every BENCH_SCRAPE_INTERVAL (1 s) during the whole
                 run: what serving metrics costs (BENCH_METRICS=0: not run);
  nsproxy-before nsproxyd built from another commit (BENCH_BASELINE_NSPROXYD=path to its
                 binary; 127.0.0.1:8084), to compare two builds (not run by default);
  go-peer        the Go peer (test/bench/gopeer, 127.0.0.1:8088): one listener per
                 namespace served by net/http/httputil.ReverseProxy, the way nsproxy's
                 proof of concept worked; GOMAXPROCS follows the pinning (BENCH_GO_PEER=0:
                 not run);
  haproxy        HAProxy (nbthread 1, mode http, one `bind 127.0.0.1:8081 namespace
                 <name>` per tenant, http-keep-alive, http-reuse always, and the same
                 identity-header work: tenant id from the listener, forged copies
                 removed, X-Forwarded-For, Forwarded).
wrk (one thread) runs inside tenant 0's namespace.

Every core (BENCH_MULTI=1, the default; nothing pinned), N = the number of CPUs:
  nsproxy-wN     nsproxyd --workers N (127.0.0.1:8086);
  go-peer-N      the Go peer, unpinned (127.0.0.1:8089);
  haproxy-tN     HAProxy with nbthread N (127.0.0.1:8087), otherwise as above.
wrk runs with BENCH_MULTI_WRK_THREADS threads (default N) and BENCH_MULTI_CONNS
connections (default 2 x BENCH_CONNS), spread over all tenants' namespaces is not
possible with one wrk: it connects from tenant 0's. On a machine with few cores the
load generator, nginx and the proxy share them: the figures say how each proxy does
when the box is saturated, not how it scales on a large host.

For each phase, mode (keep-alive, then `Connection: close`) and round, every proxy is
measured back to back, the order rotating every round; the medians over the rounds are
reported. Then (BENCH_SYSCALLS) one more 5 s run per proxy and mode under `perf stat`
counts the proxy's system calls per request (all its threads).

Environment: BUILD (default build/), BENCH_TENANTS (4), BENCH_ROUNDS (7),
BENCH_SECONDS (5), BENCH_CONNS (64), BENCH_PIN (1: pinned as above; 0: no pinning in
the first phase either), BENCH_MODES ("keepalive close"), BENCH_NSPROXYD_FLAGS (flags for
"nsproxy"; default "--workers 0"), BENCH_TUNED_FLAGS (empty: no nsproxy-tuned),
BENCH_MULTI (1), BENCH_SYSCALLS (1), BENCH_PERF (0; 1: one more keep-alive run per proxy
under `perf record -e cpu-clock -g`, top symbols printed, not part of the figures).
"""

import os
import re
import resource
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

NS_PORT = 8080
HA_PORT = 8081
TUNED_PORT = 8082
METRICS_PORT = 8083
BEFORE_PORT = 8084
W1_PORT = 8085
WN_PORT = 8086
HAN_PORT = 8087
GO_PORT = 8088
GON_PORT = 8089


class Scraper:
    """GET /metrics every `interval` seconds in a thread, as Prometheus would."""

    def __init__(self, addr, interval):
        import threading
        import urllib.request
        self.stop_flag = threading.Event()
        self.count = 0
        self.bytes = 0

        def loop():
            while not self.stop_flag.wait(interval):
                with urllib.request.urlopen("http://%s/metrics" % addr, timeout=5) as r:
                    self.bytes = len(r.read())
                    self.count += 1
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_flag.set()
        self.thread.join()


def run_wrk(tenant, port, seconds, conns, close, cpus, threads=1, scheme="http"):
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
            "-s", os.path.join(B.HERE, "wrk_report.lua")]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("%s://127.0.0.1:%d/" % (scheme, port))
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    p = subprocess.Popen(B.in_netns(tenant, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    stdout, stderr = p.communicate(timeout=seconds + 60)
    m = re.search(r"WRKRESULT (.*)", stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError("wrk failed (%d): %s %s" % (p.returncode, stdout, stderr))
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


def perf_ok():
    r = subprocess.run(["perf", "stat", "-e", "syscalls:sys_enter_close", "-o", "/dev/null", "true"],
                       capture_output=True)
    return r.returncode == 0


def check_once(tenant, port):
    out = subprocess.run(B.in_netns(tenant, ["curl", "-sS", "-o", "-", "-w", " %{http_code}",
                                             "http://127.0.0.1:%d/" % port]),
                         capture_output=True, timeout=10)
    body = out.stdout
    if out.returncode != 0 or not body.endswith(b" 200") or B.NGINX_BODY not in body:
        raise RuntimeError("probe through port %d failed: %r %r" % (port, body, out.stderr))


def profile(name, pid, tenant, port, secs, conns, cpus):
    d = B.tempdir("perf-" + name)
    data = os.path.join(d, "perf.data")
    perf = B.Proc(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", data,
                   "-p", str(pid)], "perf-" + name, os.path.join(d, "log"))
    time.sleep(1)
    res = run_wrk(tenant, port, secs, conns, False, cpus)
    perf.stop(signal.SIGINT, timeout=120)
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1.5"],
                         capture_output=True, text=True, timeout=300).stdout
    lines = [re.sub(r"\s{2,}", "  ", ln.strip()) for ln in rep.splitlines()
             if ln.strip() and not ln.startswith("#")]
    print("\nperf profile of %s (pid %d) during keep-alive wrk, %.0f req/s under perf:" % (
        name, pid, res["rps"]))
    print("\n".join("  " + ln for ln in lines[:30]))


SYSCALLS = ["epoll_ctl", "epoll_wait", "read", "recvfrom", "readv", "recvmsg", "write", "sendto",
            "writev", "sendmsg", "accept4", "connect", "close", "shutdown", "setsockopt",
            "getsockopt", "clock_gettime"]


def syscall_counts(pid, tenant, port, secs, conns, close, cpus, threads=1):
    """System calls of the proxy per request during one wrk run, counted by the kernel
    (perf stat on syscall tracepoints; the proxy is not slowed down measurably)."""
    d = B.tempdir("stat")
    out = os.path.join(d, "stat.csv")
    argv = ["perf", "stat", "-x,", "-o", out, "-p", str(pid)]
    for sc in SYSCALLS:
        argv += ["-e", "syscalls:sys_enter_" + sc]
    perf = B.Proc(argv, "perf-stat", os.path.join(d, "log"))
    time.sleep(1)
    res = run_wrk(tenant, port, secs, conns, close, cpus, threads)
    perf.stop(signal.SIGINT, timeout=60)
    counts = {}
    with open(out) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[0].isdigit():
                counts[fields[2].replace("syscalls:sys_enter_", "")] = int(fields[0])
    return {k: v / res["requests"] for k, v in counts.items()}, res


NGINX = []  # the nginx master's Proc


def upstream_cpu_ns():
    """CPU time of nginx's worker processes (the master's children) so far, ns."""
    if not NGINX:
        return 0
    pid = NGINX[0].pid
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return 0
    return sum(B.cpu_ns(k) for k in kids if os.path.exists("/proc/%d" % k))


def children_cpu_s():
    """CPU time of the finished child processes (wrk, with what it waited for), s."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(proxies, names, modes, rounds, secs, conns, load_cpus, threads=1, scheme="http"):
    """Every proxy back to back per mode and round, the order rotating; the raw results.
    A mode other than "keepalive" sends `Connection: close` (one connection per request)."""
    results = {m: {p[0]: [] for p in proxies} for m in modes}
    for mode in modes:
        close = mode != "keepalive"
        for _, port, _ in proxies:  # warm up each (connections, caches, pools)
            run_wrk(names[0], port, 2, conns, close, load_cpus, threads, scheme)
        for r in range(rounds):
            k = r % len(proxies)  # rotate the order every round
            for name, port, proc in proxies[k:] + proxies[:k]:
                if not proc.alive():
                    raise RuntimeError(name + " died:\n" + proc.tail())
                cpu0 = B.cpu_ns(proc.pid)
                up0 = upstream_cpu_ns()
                ch0 = children_cpu_s()
                res = run_wrk(names[0], port, secs, conns, close, load_cpus, threads, scheme)
                nreq = max(res["requests"], 1)
                res["cpu_us_per_req"] = (B.cpu_ns(proc.pid) - cpu0) / 1000.0 / nreq
                # What the same request cost the client and the upstream (wrk + nginx): a
                # proxy whose requests cost them more gets fewer req/s where they share a
                # core, whatever its own CPU per request.
                res["load_cpu_us_per_req"] = ((children_cpu_s() - ch0) * 1e6 +
                                              (upstream_cpu_ns() - up0) / 1000.0) / nreq
                results[mode][name].append(res)
                B.log("%-9s round %d %-15s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  %5.1f CPU us/req"
                      "  errors %d" % (mode, r + 1, name, res["rps"], res["p50_us"], res["p99_us"],
                                      res["cpu_us_per_req"], res["errors"]))
    return results


def medians(results, proxies, modes):
    summary = {}
    for mode in modes:
        med = {}
        for name, _, _ in proxies:
            rs = results[mode][name]
            med[name] = {
                "rps": B.median([x["rps"] for x in rs]),
                "p50_us": B.median([x["p50_us"] for x in rs]),
                "p99_us": B.median([x["p99_us"] for x in rs]),
                "cpu_us_per_req": B.median([x["cpu_us_per_req"] for x in rs]),
                "load_cpu_us_per_req": B.median([x["load_cpu_us_per_req"] for x in rs]),
                "errors": sum(x["errors"] for x in rs),
                "rps_all": [round(x["rps"]) for x in rs],
                "p99_all": [round(x["p99_us"]) for x in rs],
            }
        summary[mode] = med
    return summary


def table_rows(summary, proxies, modes, peer, extra_ratios=()):
    """One row per proxy and mode, then each nsproxy's ratios to `peer`."""
    rows = []
    for mode in modes:
        med = summary[mode]
        b = med[peer]
        for name, _, _ in proxies:
            m = med[name]
            rows.append([mode, name, "%.0f" % m["rps"], "%.0f" % m["p50_us"], "%.0f" % m["p99_us"],
                         "%.1f" % m["cpu_us_per_req"], "%.1f" % m["load_cpu_us_per_req"],
                         "%d" % m["errors"], " ".join(str(x) for x in m["rps_all"])])
        for name, _, _ in proxies:
            if name.startswith("haproxy"):
                continue
            a = med[name]
            rows.append([mode, "ratio %s/%s" % (name, peer), "%.2f" % (a["rps"] / b["rps"]),
                         "%.2f" % (a["p50_us"] / b["p50_us"]), "%.2f" % (a["p99_us"] / b["p99_us"]),
                         "%.2f" % (a["cpu_us_per_req"] / b["cpu_us_per_req"]),
                         "%.2f" % (a["load_cpu_us_per_req"] / b["load_cpu_us_per_req"]), "", ""])
        for x, y in extra_ratios:
            if x in med and y in med:
                a, c = med[x], med[y]
                rows.append([mode, "ratio %s/%s" % (x, y), "%.3f" % (a["rps"] / c["rps"]),
                             "%.2f" % (a["p50_us"] / c["p50_us"]), "%.2f" % (a["p99_us"] / c["p99_us"]),
                             "%.3f" % (a["cpu_us_per_req"] / c["cpu_us_per_req"]),
                             "%.2f" % (a["load_cpu_us_per_req"] / c["load_cpu_us_per_req"]), "", ""])
    return rows


def syscall_table(syscalls):
    keys = [k for k in SYSCALLS if any(v.get(k, 0) >= 0.005 for v in syscalls.values())]
    srows = [[m, p] + ["%.2f" % v.get(k, 0) for k in keys] + ["%.2f" % sum(v.values())]
             for (m, p), v in syscalls.items()]
    return B.table(["mode", "proxy"] + keys + ["total"], srows)


HEADERS = ["mode", "proxy", "req/s", "p50 us", "p99 us", "CPU us/req", "wrk+nginx us/req",
           "errors", "req/s per round"]


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    n = B.env_int("BENCH_TENANTS", 4)
    rounds = B.env_int("BENCH_ROUNDS", 7)
    secs = B.env_int("BENCH_SECONDS", 5)
    conns = B.env_int("BENCH_CONNS", 64)
    cpus = os.cpu_count() or 1
    pin = B.env_int("BENCH_PIN", 1) and cpus >= 2
    multi = B.env_int("BENCH_MULTI", 1)
    modes = (os.environ.get("BENCH_MODES") or "keepalive close").split()
    load_cpus, proxy_cpus = ("0", "1") if pin else (None, None)
    t_start = time.monotonic()

    names = [B.PREFIX + "t%d" % i for i in range(n)]
    paths = B.make_namespaces(names)
    up_port = B.free_port()
    # nginx (one worker process) shares CPU 0 with wrk when pinned, in both phases.
    NGINX.append(B.start_nginx(up_port, cpus=load_cpus))
    ns_flags = (os.environ.get("BENCH_NSPROXYD_FLAGS") or "--workers 0").split()
    tuned_flags = (os.environ.get("BENCH_TUNED_FLAGS") or "").split()
    variants = [("nsproxy", NS_PORT, ns_flags, None),
                ("nsproxy-w1", W1_PORT, ["--workers", "1"], None)]
    if tuned_flags:
        variants.append(("nsproxy-tuned", TUNED_PORT, tuned_flags, None))
    scraper = None
    if B.env_int("BENCH_METRICS", 1):
        metrics_addr = "127.0.0.1:%d" % B.free_port()
        variants.append(("nsproxy-metrics", METRICS_PORT, ns_flags + ["--metrics-listen", metrics_addr],
                         None))
    baseline = os.environ.get("BENCH_BASELINE_NSPROXYD")
    if baseline:
        variants.append(("nsproxy-before", BEFORE_PORT, ns_flags, baseline))

    def start_nsproxy(label, port, flags, binary, cpus_):
        daemon = B.Daemon(build, label, cpus=cpus_, extra=flags, binary=binary)
        for name, path in zip(names, paths):
            B.register(daemon.sock, name, path, [{"listen": "127.0.0.1:%d" % port,
                                                  "upstream": "127.0.0.1:%d" % up_port,
                                                  "mode": "http"}])
        return (label, port, daemon.proc)

    def start_ha(label, port, nbthread, cpus_):
        ha = B.start_haproxy([(nm, port) for nm in names], up_port, label, cpus=cpus_,
                             nbthread=nbthread)
        B.wait_for(lambda: B.probe_in_ns(paths[-1], port), 20, label, ha)
        return (label, port, ha)

    go_peer = B.env_int("BENCH_GO_PEER", 1)

    def start_go(label, port, cpus_):
        gp = B.start_go_peer(build, list(zip(names, paths)), port, up_port, label, cpus=cpus_)
        return (label, port, gp)

    proxies = [start_nsproxy(*v, proxy_cpus) for v in variants]
    if go_peer:
        proxies.append(start_go("go-peer", GO_PORT, proxy_cpus))
    proxies.append(start_ha("haproxy", HA_PORT, 1, proxy_cpus))
    multi_proxies = []
    wrk_threads = B.env_int("BENCH_MULTI_WRK_THREADS", cpus)
    multi_conns = B.env_int("BENCH_MULTI_CONNS", 2 * conns)
    if multi:
        multi_proxies = [start_nsproxy("nsproxy-w%d" % cpus, WN_PORT, ["--workers", str(cpus)],
                                       None, None)]
        if go_peer:
            multi_proxies.append(start_go("go-peer-%d" % cpus, GON_PORT, None))
        multi_proxies.append(start_ha("haproxy-t%d" % cpus, HAN_PORT, cpus, None))
    for nm in names:
        for _, port, _ in proxies + multi_proxies:
            check_once(nm, port)
    if B.env_int("BENCH_METRICS", 1):
        scraper = Scraper(metrics_addr, float(os.environ.get("BENCH_SCRAPE_INTERVAL") or 1))

    B.log("%d tenants, nginx :%d, %s, pin=%s, %d rounds x %d s, %d connections" % (
        n, up_port, ", ".join("%s pid %d" % (p[0], p[2].pid) for p in proxies + multi_proxies),
        bool(pin), rounds, secs, conns))
    results = measure(proxies, names, modes, rounds, secs, conns, load_cpus)
    scrapes = None
    if scraper:
        scraper.stop()
        scrapes = {"count": scraper.count, "bytes": scraper.bytes}
        B.log("nsproxy-metrics: %d scrapes of %d bytes during the rounds" % (scraper.count,
                                                                            scraper.bytes))
    multi_results = {}
    if multi:
        B.log("every core: %s, unpinned, wrk -t%d -c%d" % (
            ", ".join(p[0] for p in multi_proxies), wrk_threads, multi_conns))
        multi_results = measure(multi_proxies, names, modes, rounds, secs, multi_conns, None,
                                wrk_threads)
    syscalls = {}
    if B.env_int("BENCH_SYSCALLS", 1) and perf_ok():
        for mode in modes:
            for name, port, proc in proxies:
                syscalls[(mode, name)], _ = syscall_counts(proc.pid, names[0], port, 5, conns,
                                                           mode == "close", load_cpus)
            for name, port, proc in multi_proxies:
                syscalls[(mode, name)], _ = syscall_counts(proc.pid, names[0], port, 5, multi_conns,
                                                           mode == "close", None, wrk_threads)
    if B.env_int("BENCH_PERF", 0):
        for name, port, proc in proxies:
            profile(name, proc.pid, names[0], port, secs, conns, load_cpus)

    summary = medians(results, proxies, modes)
    rows = table_rows(summary, proxies, modes, "haproxy",
                      (("nsproxy-metrics", "nsproxy"), ("nsproxy", "nsproxy-before"),
                       ("nsproxy", "go-peer")))
    elapsed = time.monotonic() - t_start
    if syscalls:
        print()
        print("System calls per request in the proxy process, all threads (perf stat, one 5 s "
              "wrk run each)")
        print(syscall_table(syscalls))
    print()
    print("HTTP through one tenant namespace, one core: %d tenants, wrk -t1 -c%d, %d rounds x %d s, "
          "medians; pinned: %s; nsproxy: %s; nsproxy-w1: --workers 1" % (
              n, conns, rounds, secs, "wrk+nginx CPU0, proxies CPU1" if pin else "no",
              " ".join(ns_flags)))
    print(B.table(HEADERS, rows))
    multi_summary = {}
    if multi:
        multi_summary = medians(multi_results, multi_proxies, modes)
        print()
        print("HTTP, every core (%d CPUs, nothing pinned; wrk, nginx and the proxy share them): "
              "wrk -t%d -c%d, %d rounds x %d s, medians" % (cpus, wrk_threads, multi_conns, rounds,
                                                         secs))
        print(B.table(HEADERS, table_rows(multi_summary, multi_proxies, modes,
                                          multi_proxies[-1][0])))
    print("CPU us/req: the proxy's own CPU time (schedstat, all threads) per completed request; "
          "unlike req/s it does not depend on how much CPU the neighbours left. wrk+nginx us/req: "
          "what the same requests cost the load generator and the upstream")
    print("(%.0f s)" % elapsed)
    B.save_results("http", {"nsproxyd_flags": " ".join(ns_flags),
                            "tuned_flags": " ".join(tuned_flags),
                            "variant_flags": {v[0]: " ".join(v[2]) + (" (binary %s)" % v[3] if v[3] else "")
                                              for v in variants},
                            "scrapes": scrapes,
                            "syscalls_per_request": {"%s/%s" % k: v for k, v in syscalls.items()},
                            "tenants": n, "rounds": rounds, "seconds": secs, "conns": conns,
                            "pinned": bool(pin), "results": summary,
                            "multi": {"cpus": cpus, "wrk_threads": wrk_threads,
                                      "conns": multi_conns, "results": multi_summary},
                            "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
