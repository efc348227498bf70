#!/usr/bin/env python3
"""Benchmark 1: HTTP throughput and p99 latency, nsproxyd vs HAProxy 2.6, same run.

N tenant namespaces (lo up). One nginx upstream on 127.0.0.1:<free port> in the host
namespace (48-byte static body, keep-alive). nsproxyd with one http listener per tenant
(127.0.0.1:8080 inside each namespace) and HAProxy (nbthread 1, mode http, one
`bind 127.0.0.1:8081 namespace <name>` per tenant, http-keep-alive, http-reuse always,
the same identity headers) run side by side. wrk runs inside tenant 0's namespace.
For each mode (keep-alive, Connection: close) and round, both proxies are measured
back to back, the order alternating per round; medians over the rounds are reported.

Environment: BUILD (default build/), BENCH_TENANTS (4), BENCH_ROUNDS (5),
BENCH_SECONDS (10), BENCH_CONNS (64), BENCH_PIN (1: wrk+nginx on CPU 0, proxies on
CPU 1; 0: no pinning), BENCH_MODES ("keepalive close"), BENCH_PERF (0; 1: after the
rounds, one more keep-alive run per proxy under `perf record -e cpu-clock -g` and the top
symbols of each, not part of the figures).
"""

import os
import re
import subprocess
import sys
import time

import benchlib as B

NS_PORT = 8080
HA_PORT = 8081


def run_wrk(tenant, port, seconds, conns, close, cpus):
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
            "-s", os.path.join(B.HERE, "wrk_report.lua")]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append("http://127.0.0.1:%d/" % port)
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = subprocess.run(B.in_netns(tenant, argv), capture_output=True, text=True,
                         timeout=seconds + 60)
    m = re.search(r"WRKRESULT (.*)", out.stdout)
    if out.returncode != 0 or not m:
        raise RuntimeError("wrk failed (%d): %s %s" % (out.returncode, out.stdout, out.stderr))
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


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
    perf.stop(__import__("signal").SIGINT, timeout=120)
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "--sort", "dso,symbol", "-g", "none", "--percent-limit", "1.5"],
                         capture_output=True, text=True, timeout=300).stdout
    lines = [ln for ln in rep.splitlines() if ln.strip() and not ln.startswith("#")]
    print("\nperf profile of %s (pid %d) during keep-alive wrk, %.0f req/s under perf:" % (
        name, pid, res["rps"]))
    print("\n".join(lines[:30]))


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    n = B.env_int("BENCH_TENANTS", 4)
    rounds = B.env_int("BENCH_ROUNDS", 5)
    secs = B.env_int("BENCH_SECONDS", 10)
    conns = B.env_int("BENCH_CONNS", 64)
    pin = B.env_int("BENCH_PIN", 1) and (os.cpu_count() or 1) >= 2
    modes = (os.environ.get("BENCH_MODES") or "keepalive close").split()
    load_cpus, proxy_cpus = ("0", "1") if pin else (None, None)
    t_start = time.monotonic()

    names = [B.PREFIX + "t%d" % i for i in range(n)]
    paths = B.make_namespaces(names)
    up_port = B.free_port()
    nginx = B.start_nginx(up_port, cpus=load_cpus)
    daemon = B.Daemon(build, "http", cpus=proxy_cpus)
    for name, path in zip(names, paths):
        B.register(daemon.sock, name, path, [{"listen": "127.0.0.1:%d" % NS_PORT,
                                              "upstream": "127.0.0.1:%d" % up_port,
                                              "mode": "http"}])
    ha = B.start_haproxy([(nm, HA_PORT) for nm in names], up_port, "http", cpus=proxy_cpus)
    B.wait_for(lambda: B.probe_in_ns(paths[-1], HA_PORT), 20, "haproxy", ha)
    for nm in names:
        check_once(nm, NS_PORT)
        check_once(nm, HA_PORT)

    B.log("%d tenants, nginx :%d, nsproxyd pid %d, haproxy pid %d, pin=%s, %d rounds x %d s, "
          "%d connections" % (n, up_port, daemon.pid, ha.pid, bool(pin), rounds, secs, conns))
    proxies = [("nsproxy", NS_PORT, daemon.proc), ("haproxy", HA_PORT, ha)]
    results = {m: {p[0]: [] for p in proxies} for m in modes}
    for mode in modes:
        close = mode == "close"
        for _, port, _ in proxies:  # warm up both (connections, caches, pools)
            run_wrk(names[0], port, 2, conns, close, load_cpus)
        for r in range(rounds):
            order = proxies if r % 2 == 0 else proxies[::-1]
            for name, port, proc in order:
                if not proc.alive():
                    raise RuntimeError(name + " died:\n" + proc.tail())
                res = run_wrk(names[0], port, secs, conns, close, load_cpus)
                results[mode][name].append(res)
                B.log("%-9s round %d %-7s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  errors %d" % (
                    mode, r + 1, name, res["rps"], res["p50_us"], res["p99_us"], res["errors"]))

    if B.env_int("BENCH_PERF", 0):
        for name, port, proc in proxies:
            profile(name, proc.pid, names[0], port, secs, conns, load_cpus)

    rows = []
    summary = {}
    for mode in modes:
        med = {}
        for name, _, _ in proxies:
            rs = results[mode][name]
            med[name] = {
                "rps": B.median([x["rps"] for x in rs]),
                "p50_us": B.median([x["p50_us"] for x in rs]),
                "p99_us": B.median([x["p99_us"] for x in rs]),
                "errors": sum(x["errors"] for x in rs),
                "rps_all": [round(x["rps"]) for x in rs],
                "p99_all": [round(x["p99_us"]) for x in rs],
            }
        summary[mode] = med
        a, b = med["nsproxy"], med["haproxy"]
        for name in ("nsproxy", "haproxy"):
            m = med[name]
            rows.append([mode, name, "%.0f" % m["rps"], "%.0f" % m["p50_us"], "%.0f" % m["p99_us"],
                         "%d" % m["errors"], " ".join(str(x) for x in m["rps_all"])])
        rows.append([mode, "ratio ns/ha", "%.2f" % (a["rps"] / b["rps"]),
                     "%.2f" % (a["p50_us"] / b["p50_us"]), "%.2f" % (a["p99_us"] / b["p99_us"]),
                     "", ""])
    elapsed = time.monotonic() - t_start
    print()
    print("HTTP through one tenant namespace: %d tenants, wrk -t1 -c%d, %d rounds x %d s, "
          "medians; pinned: %s" % (n, conns, rounds, secs,
                                   "wrk+nginx CPU0, proxies CPU1" if pin else "no"))
    print(B.table(["mode", "proxy", "req/s", "p50 us", "p99 us", "errors", "req/s per round"], rows))
    print("(%.0f s)" % elapsed)
    B.save_results("http", {"tenants": n, "rounds": rounds, "seconds": secs, "conns": conns,
                            "pinned": bool(pin), "results": summary, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
