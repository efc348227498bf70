#!/usr/bin/env python3
"""Benchmark 2: idle memory, nsproxyd vs HAProxy, with N registered idle tenants.

For each count N: N namespaces (lo up); a fresh nsproxyd with one http listener per
tenant (127.0.0.1:8080 -> an upstream port nobody connects to), registered over the
control socket; a fresh HAProxy (nbthread 1, one frontend, one
`bind 127.0.0.1:8081 namespace <name> name <name>` per tenant, the same identity-header
rules as the HTTP benchmark, maxconn BENCH_HA_MAXCONN). Both serve every namespace
(checked on the last one), then sit idle for BENCH_SETTLE seconds, and VmRSS and RssAnon
are read from /proc/PID/status. No request is sent.

Environment: BUILD, BENCH_MEM_COUNTS ("100 1000"; add 10000 for the third target, about
2-3 minutes more), BENCH_HA_MAXCONN (10000, about nsproxyd's default --max-connections
here), BENCH_SETTLE (2). The nsproxyd journal is on tmpfs (/dev/shm) so registering
10,000 tenants does not wait for 10,000 fsyncs; it does not change the daemon's RSS.
"""

import os
import sys
import time

import benchlib as B

NS_PORT = 8080
HA_PORT = 8081


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    counts = B.env_list("BENCH_MEM_COUNTS", [100, 1000])
    ha_maxconn = B.env_int("BENCH_HA_MAXCONN", 4096)
    settle = B.env_int("BENCH_SETTLE", 2)
    t_start = time.monotonic()
    up_port = B.free_port()
    upstream = "127.0.0.1:%d" % up_port

    names = [B.PREFIX + "m%d" % i for i in range(max(counts))]
    t = time.monotonic()
    paths = B.make_namespaces(names)
    B.log("created %d namespaces in %.1f s" % (len(names), time.monotonic() - t))

    rows = []
    out = {}
    # baseline: one tenant each (HAProxy refuses a frontend without a bind)
    def measure(n):
        sub, subp = names[:n], paths[:n]
        t = time.monotonic()
        d = B.Daemon(build, "mem%d" % n, state_base="/dev/shm")
        for nm, p in zip(sub, subp):
            B.register(d.sock, nm, p, [{"listen": "127.0.0.1:%d" % NS_PORT, "upstream": upstream,
                                        "mode": "http"}])
        t_reg = time.monotonic() - t
        if not B.probe_in_ns(subp[-1], NS_PORT):
            raise RuntimeError("nsproxyd does not serve in " + subp[-1])
        time.sleep(settle)
        ns = B.rss_kb(d.pid)
        d.stop()

        t = time.monotonic()
        ha = B.start_haproxy([(nm, HA_PORT) for nm in sub], up_port, "mem%d" % n,
                             maxconn=ha_maxconn)
        B.wait_for(lambda: B.probe_in_ns(subp[-1], HA_PORT), 600, "haproxy with %d binds" % n, ha)
        t_ha = time.monotonic() - t
        time.sleep(settle)
        hr = B.rss_kb(ha.pid)
        ha.stop()
        B.log("%5d tenants: nsproxyd VmRSS %.1f MB (registered in %.1f s), haproxy %.1f MB "
              "(up in %.1f s)" % (n, ns["VmRSS"] / 1024, t_reg, hr["VmRSS"] / 1024, t_ha))
        return ns, hr, t_reg, t_ha

    base_ns, base_ha, _, _ = measure(1)
    rows.append(["1", "%.1f" % (base_ns["VmRSS"] / 1024), "%.1f" % (base_ns["RssAnon"] / 1024),
                 "%.1f" % (base_ha["VmRSS"] / 1024), "%.1f" % (base_ha["RssAnon"] / 1024),
                 "%.2f" % (base_ns["VmRSS"] / base_ha["VmRSS"]), "", ""])
    out["1"] = {"nsproxyd": base_ns, "haproxy": base_ha}

    for n in counts:
        ns, hr, t_reg, t_ha = measure(n)
        per_ns = (ns["VmRSS"] - base_ns["VmRSS"]) / max(n - 1, 1)
        per_ha = (hr["VmRSS"] - base_ha["VmRSS"]) / max(n - 1, 1)
        rows.append([str(n), "%.1f" % (ns["VmRSS"] / 1024), "%.1f" % (ns["RssAnon"] / 1024),
                     "%.1f" % (hr["VmRSS"] / 1024), "%.1f" % (hr["RssAnon"] / 1024),
                     "%.2f" % (ns["VmRSS"] / hr["VmRSS"]), "%.2f" % per_ns, "%.2f" % per_ha])
        out[str(n)] = {"nsproxyd": ns, "haproxy": hr, "register_s": t_reg, "haproxy_start_s": t_ha}

    elapsed = time.monotonic() - t_start
    print()
    print("Idle memory (MB = MiB, from /proc/PID/status), one http listener per tenant; "
          "haproxy maxconn %d" % ha_maxconn)
    print(B.table(["tenants", "nsproxyd VmRSS", "nsproxyd RssAnon", "haproxy VmRSS",
                   "haproxy RssAnon", "ratio ns/ha", "ns KiB/tenant*", "ha KiB/tenant*"], rows))
    print("* (RSS - RSS with 1 tenant) / (tenants - 1)")
    print("(%.0f s)" % elapsed)
    B.save_results("memory", {"counts": counts, "haproxy_maxconn": ha_maxconn,
                              "results": out, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
