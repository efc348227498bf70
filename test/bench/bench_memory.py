#!/usr/bin/env python3
"""Benchmark 2: idle memory, nsproxyd vs HAProxy and the Go peer, with N idle tenants.

For each count N: N namespaces (lo up); a fresh nsproxyd with one http listener per
tenant (127.0.0.1:8080 -> an upstream port nobody connects to), registered over the
control socket; a fresh HAProxy (nbthread 1, one frontend, one
`bind 127.0.0.1:8081 namespace <name> name <name>` per tenant, the same identity-header
rules as the HTTP benchmark, maxconn BENCH_HA_MAXCONN); a fresh Go peer (test/bench/gopeer:
one net.Listen per namespace served by httputil.ReverseProxy, the way nsproxy's proof of
concept worked; BENCH_GO_PEER=0: not run). Each serves every namespace (checked on the
last one), then sits idle for BENCH_SETTLE seconds, and VmRSS and RssAnon are read from
/proc/PID/status. No request is sent. nsproxyd runs with its default worker count.

Environment: BUILD, BENCH_MEM_COUNTS ("10 100 1000 10000"; 10,000 adds about a minute of
namespace set-up), BENCH_HA_MAXCONN (4096; raised to (N + 257) / 2 when larger, see below),
BENCH_SETTLE (2). The nsproxyd journal is on tmpfs (/dev/shm) so registering 10,000
tenants does not wait for 10,000 fsyncs; it does not change the daemon's RSS.

File descriptors: a tenant costs nsproxyd one fd (its listener; the daemon holds no
namespace fd) and HAProxy two (the listener and the namespace it keeps open). Both raise
RLIMIT_NOFILE as far as they may; where its hard limit is 20,000 and raising it is not
permitted (no CAP_SYS_RESOURCE), HAProxy cannot start with 10,000 namespace binds
(reported in the row); nsproxyd fits them. A registration that fails anyway is reported
and the daemon measured at what fitted (the row says how many).
"""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

NS_PORT = 8080
HA_PORT = 8081
GO_PORT = 8088


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    counts = B.env_list("BENCH_MEM_COUNTS", [10, 100, 1000, 10000])
    go_peer = B.env_int("BENCH_GO_PEER", 1)
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
        reached, failure = 0, None
        for nm, p in zip(sub, subp):
            try:
                B.register(d.sock, nm, p, [{"listen": "127.0.0.1:%d" % NS_PORT,
                                            "upstream": upstream, "mode": "http"}])
            except RuntimeError as e:  # e.g. out of file descriptors: measure what fits
                failure = str(e)
                B.log("nsproxyd: registration %d of %d failed: %s" % (reached + 1, n, failure))
                break
            reached += 1
        t_reg = time.monotonic() - t
        if not B.probe_in_ns(subp[reached - 1], NS_PORT):
            raise RuntimeError("nsproxyd does not serve in " + subp[reached - 1])
        if failure:
            nofile = open("/proc/%d/limits" % d.pid).read()
            nofile = [ln for ln in nofile.splitlines() if ln.startswith("Max open files")][0]
            fds = len(os.listdir("/proc/%d/fd" % d.pid))
            failure += " (after %d registrations; daemon has %d fds open; %s)" % (
                reached, fds, " ".join(nofile.split()))
        time.sleep(settle)
        ns = B.rss_kb(d.pid)
        ns["registered"] = reached
        if failure:
            ns["failure"] = failure
        d.stop()

        t = time.monotonic()
        # HAProxy sizes its fd budget as about 2 x maxconn + listeners, but every
        # `namespace` bind also keeps the namespace open: the extra fds must fit in the
        # 2 x maxconn slack, so maxconn grows with the tenant count beyond 8,000 or so.
        maxconn = max(ha_maxconn, (n + 257) // 2)
        ha = B.start_haproxy([(nm, HA_PORT) for nm in sub], up_port, "mem%d" % n,
                             maxconn=maxconn)
        try:
            B.wait_for(lambda: B.probe_in_ns(subp[-1], HA_PORT), 600, "haproxy with %d binds" % n, ha)
        except RuntimeError as e:  # e.g. "not enough free sockets" at 10,000 binds
            alerts = [ln for ln in ha.tail(50).splitlines() if "ALERT" in ln]
            hr = {"VmRSS": float("nan"), "RssAnon": float("nan"), "maxconn": maxconn,
                  "failure": (alerts[0] if alerts else str(e))[:300]}
            B.log("haproxy with %d binds failed: %s" % (n, hr["failure"]))
            return ns, hr, t_reg, float("nan")
        t_ha = time.monotonic() - t
        time.sleep(settle)
        hr = B.rss_kb(ha.pid)
        hr["maxconn"] = maxconn
        ha.stop()
        B.log("%5d tenants: nsproxyd VmRSS %.1f MB (%d registered in %.1f s), haproxy %.1f MB "
              "(up in %.1f s)" % (n, ns["VmRSS"] / 1024, reached, t_reg, hr["VmRSS"] / 1024, t_ha))
        return ns, hr, t_reg, t_ha

    def measure_go(n):
        if not go_peer:
            return None
        sub, subp = names[:n], paths[:n]
        try:
            gp = B.start_go_peer(build, list(zip(sub, subp)), GO_PORT, up_port, "mem%d" % n)
            if not B.probe_in_ns(subp[-1], GO_PORT):
                raise RuntimeError("the Go peer does not serve in " + subp[-1])
        except RuntimeError as e:
            B.log("Go peer with %d tenants failed: %s" % (n, e))
            return {"VmRSS": float("nan"), "RssAnon": float("nan"), "failure": str(e)[:300]}
        time.sleep(settle)
        gr = B.rss_kb(gp.pid)
        gp.stop()
        B.log("%5d tenants: Go peer VmRSS %.1f MB" % (n, gr["VmRSS"] / 1024))
        return gr

    base_ns, base_ha, _, _ = measure(1)
    rows.append(["1", "%.1f" % (base_ns["VmRSS"] / 1024), "%.1f" % (base_ns["RssAnon"] / 1024),
                 "%.1f" % (base_ns.get("Pss", float("nan")) / 1024),
                 "%.1f" % (base_ha["VmRSS"] / 1024), "%.1f" % (base_ha["RssAnon"] / 1024),
                 "%.1f" % (base_ha.get("Pss", float("nan")) / 1024),
                 "%.2f" % (base_ns["VmRSS"] / base_ha["VmRSS"]), "", ""])
    out["1"] = {"nsproxyd": base_ns, "haproxy": base_ha}
    go_rss = {}
    base_go = measure_go(1)
    if base_go:
        go_rss["1"] = base_go
        out["1"]["go-peer"] = base_go

    for n in counts:
        ns, hr, t_reg, t_ha = measure(n)
        gr = measure_go(n)
        if gr:
            go_rss[str(n)] = gr
        per_ns = (ns["VmRSS"] - base_ns["VmRSS"]) / max(ns["registered"] - 1, 1)
        per_ha = (hr["VmRSS"] - base_ha["VmRSS"]) / max(n - 1, 1)
        label = str(n) if ns["registered"] == n else "%d (nsproxyd: %d)" % (n, ns["registered"])
        rows.append([label, "%.1f" % (ns["VmRSS"] / 1024), "%.1f" % (ns["RssAnon"] / 1024),
                     "%.1f" % (ns.get("Pss", float("nan")) / 1024),
                     "%.1f" % (hr["VmRSS"] / 1024), "%.1f" % (hr["RssAnon"] / 1024),
                     "%.1f" % (hr.get("Pss", float("nan")) / 1024),
                     "%.2f" % (ns["VmRSS"] / hr["VmRSS"]), "%.2f" % per_ns, "%.2f" % per_ha])
        out[str(n)] = {"nsproxyd": ns, "haproxy": hr, "register_s": t_reg, "haproxy_start_s": t_ha}
        if gr:
            out[str(n)]["go-peer"] = gr

    elapsed = time.monotonic() - t_start
    print()
    print("Idle memory (MB = MiB, from /proc/PID/status), one http listener per tenant; "
          "haproxy maxconn %d, or (tenants + 257) / 2 when larger" % ha_maxconn)
    print(B.table(["tenants", "nsproxyd VmRSS", "RssAnon", "Pss", "haproxy VmRSS",
                   "RssAnon", "Pss", "ratio ns/ha", "ns KiB/tenant*", "ha KiB/tenant*"], rows))
    print("* (VmRSS - VmRSS with 1 tenant) / (tenants - 1). RssAnon: private memory; Pss: "
          "shared library pages divided among the processes mapping them")
    if go_rss:
        print()
        print("The Go peer (one ReverseProxy per namespace, as the proof of concept), same tenants")
        print(B.table(["tenants", "Go peer VmRSS", "RssAnon", "nsproxyd/Go peer"],
                      [[k, "%.1f" % (v["VmRSS"] / 1024), "%.1f" % (v["RssAnon"] / 1024),
                        "%.2f" % (out[k]["nsproxyd"]["VmRSS"] / v["VmRSS"])]
                       for k, v in go_rss.items()]))
    for n in counts:
        for who in ("nsproxyd", "haproxy", "go-peer"):
            if "failure" in out[str(n)].get(who, {}):
                print("%s at %d: %s" % (who, n, out[str(n)][who]["failure"]))
    print("(%.0f s)" % elapsed)
    B.save_results("memory", {"counts": counts, "haproxy_maxconn": ha_maxconn,
                              "results": out, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
