#!/usr/bin/env python3
"""Prints one table of every benchmark result in a results file (JSON lines written by
the bench_*.py scripts), next to the targets in DESIGN.md ("Targets the design must
allow")."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

MEM_TARGET_MB = {100: 4, 1000: 6, 10000: 16}


def verdict(ok):
    return "met" if ok else "MISSED"


def http_rows(rows, r, results, peer, where):
    for mode, m in results.items():
        ha = m[peer]
        want = 1.25 if mode == "keepalive" else 1.1
        for name in [k for k in m if not k.startswith("haproxy")]:
            ns = m[name]
            if name.startswith("go-peer"):
                rows.append(["HTTP %s req/s: %s (a peer)%s" % (mode, name, where),
                             "%.0f" % ns["rps"], "%s %.0f" % (peer, ha["rps"]),
                             "%.2f" % (ns["rps"] / ha["rps"]), "-", "-"])
                continue
            flags = r.get("variant_flags", {}).get(name, r.get("tuned_flags", ""))
            label = "" if name == "nsproxy" else " (%s%s)" % (name, ": " + flags if flags else "")
            label += where
            ratio = ns["rps"] / ha["rps"]
            rows.append(["HTTP %s req/s%s" % (mode, label), "%.0f" % ns["rps"],
                         "%s %.0f" % (peer, ha["rps"]), "%.2f" % ratio, ">= %.2f" % want,
                         verdict(ratio >= want)])
            if "cpu_us_per_req" in ns:
                cr = ns["cpu_us_per_req"] / ha["cpu_us_per_req"]
                cw = 1 / want
                rows.append(["HTTP %s CPU us/req%s" % (mode, label),
                             "%.1f" % ns["cpu_us_per_req"],
                             "%s %.1f" % (peer, ha["cpu_us_per_req"]), "%.2f" % cr,
                             "<= %.2f (derived)" % cw, verdict(cr <= cw)])
            pr = ns["p99_us"] / ha["p99_us"]
            rows.append(["HTTP %s p99 us%s" % (mode, label), "%.0f" % ns["p99_us"],
                         "%s %.0f" % (peer, ha["p99_us"]), "%.2f" % pr,
                         "<= 1.00" if mode == "keepalive" else "-",
                         verdict(pr <= 1.0) if mode == "keepalive" else "-"])


def main(path):
    try:
        with open(path) as f:
            res = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        res = []
    rows = []
    times = []
    for r in res:
        b = r["bench"]
        times.append("%s %.0f s" % (b, r.get("elapsed_s", 0)))
        if b == "http":
            phases = [(r["results"], "haproxy", "")]
            multi = r.get("multi") or {}
            if multi.get("results"):
                peer = "haproxy-t%d" % multi["cpus"]
                phases.append((multi["results"], peer, " [%d cores, vs %s]" % (multi["cpus"], peer)))
            for results, peer, where in phases:
                http_rows(rows, r, results, peer, where)
            # System calls per request (perf stat), each nsproxy against HAProxy's.
            sc = r.get("syscalls_per_request") or {}
            targets = {"keepalive": 4.5, "close": 10}
            for key, counts in sc.items():
                mode, name = key.split("/", 1)
                if name.startswith("haproxy") or name.startswith("go-peer"):
                    continue
                if multi.get("results") and name == "nsproxy-w%d" % multi["cpus"]:
                    ha_key = "%s/haproxy-t%d" % (mode, multi["cpus"])  # the every-core phase
                else:
                    ha_key = "%s/haproxy" % mode
                ha = sc.get(ha_key)
                total = sum(counts.values())
                want = targets.get(mode)
                rows.append(["system calls per %s request (%s)" % (mode, name), "%.2f" % total,
                             "%s %.2f" % (ha_key.split("/")[1], sum(ha.values())) if ha else "-",
                             "%.2f" % (total / sum(ha.values())) if ha else "-",
                             "<= %.1f" % want if want else "-",
                             verdict(total <= want) if want else "-"])
            if multi.get("results"):
                rows.append(["worker threads (default: one per CPU)", "%d" % multi["cpus"],
                             "haproxy nbthread %d" % multi["cpus"], "1.00", "N", "met"])
        elif b == "tls":
            # Issue 11's targets: handshakes >= 1.0x HAProxy, keep-alive >= 1.25x.
            targets = {"handshake": 1.0, "keepalive": 1.25}
            for mode, m in r["results"].items():
                ns, ha = m["nsproxy"], m["haproxy"]
                want = targets.get(mode)
                what = "TLS handshakes/s (Connection: close)" if mode == "handshake" else \
                    "HTTPS %s req/s" % mode
                ratio = ns["rps"] / ha["rps"]
                rows.append([what, "%.0f" % ns["rps"], "haproxy %.0f" % ha["rps"], "%.2f" % ratio,
                             ">= %.2f" % want if want else "-", verdict(ratio >= want) if want else "-"])
                cr = ns["cpu_us_per_req"] / ha["cpu_us_per_req"]
                rows.append(["%s CPU us/%s" % ("TLS" if mode == "handshake" else "HTTPS",
                                               "handshake" if mode == "handshake" else "req"),
                             "%.1f" % ns["cpu_us_per_req"], "haproxy %.1f" % ha["cpu_us_per_req"],
                             "%.2f" % cr, "-", "-"])
        elif b == "memory":
            for n, m in r["results"].items():
                n = int(n)
                if n <= 1:
                    continue
                ns, ha = m["nsproxyd"]["VmRSS"] / 1024, m["haproxy"]["VmRSS"] / 1024
                peer = "haproxy failed" if "failure" in m["haproxy"] else "haproxy %.1f" % ha
                ratio = "-" if "failure" in m["haproxy"] else "%.2f" % (ns / ha)
                t = MEM_TARGET_MB.get(n)
                reg = m["nsproxyd"].get("registered", n)
                if reg != n:
                    rows.append(["RSS %d idle tenants MB: nsproxyd stopped at %d" % (n, reg),
                                 "%.1f" % ns, peer, "-", "<= %d MB" % t if t else "-",
                                 "NOT MEASURABLE"])
                    continue
                rows.append(["RSS %d idle tenants MB" % n, "%.1f" % ns, peer, ratio,
                             "<= %d MB" % t if t else "-", verdict(ns <= t) if t else "-"])
                go = m.get("go-peer")
                if go and "failure" not in go:
                    rows.append(["RSS %d idle tenants MB (vs the Go peer)" % n, "%.1f" % ns,
                                 "go-peer %.1f" % (go["VmRSS"] / 1024),
                                 "%.2f" % (ns / (go["VmRSS"] / 1024)), "-", "-"])
        elif b == "storm":
            for label, m in r["results"].items():
                rows.append(["tenant p99 during %d CNI ADDs, %s" % (r["adds"], label),
                             "%.0f us" % m["storm"]["p99_us"], "quiet %.0f us" % m["quiet"]["p99_us"],
                             "%.2f" % m["ratio_p99"], "<= 1.50", verdict(m["ratio_p99"] <= 1.5)])
        elif b == "cni":
            meds = {}
            su = r["results"].get("startup")
            if su:
                rows.append(["plugin start-up only (VERSION) wall us", "%.0f" % su["nsproxy"]["wall_us"],
                             "loopback %.0f" % su["loopback"]["wall_us"],
                             "%.2f" % (su["nsproxy"]["wall_us"] / su["loopback"]["wall_us"]),
                             "(/bin/true %.0f)" % su["true"]["wall_us"], "-"])
            for key, m in r["results"].items():
                if "/" not in key:
                    continue
                state, n = key.split("/")
                meds.setdefault(state, {})[int(n)] = m["nsproxy_median_us"]
                ratio = m["nsproxy_median_us"] / m["loopback_median_us"]
                rows.append(["CNI ADD median us (%s, %s reg.)" % (state, n),
                             "%.0f" % m["nsproxy_median_us"],
                             "loopback %.0f" % m["loopback_median_us"], "%.2f" % ratio,
                             "<= 0.33", verdict(ratio <= 1 / 3)])
                if "nsproxy_cpu_us" in m:
                    c_ns = m["nsproxy_cpu_us"] + m["daemon_cpu_us"]
                    cr = c_ns / m["loopback_cpu_us"]
                    rows.append(["CNI ADD CPU us, plugin+daemon (%s, %s reg.)" % (state, n),
                                 "%.0f" % c_ns, "loopback %.0f" % m["loopback_cpu_us"],
                                 "%.2f" % cr, "<= 0.33 (derived)", verdict(cr <= 1 / 3)])
                rows.append(["CNI ADD p99 us (%s, %s reg.)" % (state, n),
                             "%.0f" % m["nsproxy_p99_us"], "loopback %.0f" % m["loopback_p99_us"],
                             "%.2f" % (m["nsproxy_p99_us"] / m["loopback_p99_us"]), "-", "-"])
            for state, by_n in meds.items():
                if len(by_n) >= 2:
                    lo, hi = min(by_n), max(by_n)
                    g = by_n[hi] / by_n[lo]
                    rows.append(["CNI ADD growth %d -> %d (%s)" % (lo, hi, state),
                                 "%.2fx" % g, "", "", "flat (<= 1.10x)", verdict(g <= 1.10)])
        elif b == "listener":
            for v, m in r["results"].items():
                name = "lo down" if v == "down" else "lo up"
                if "win_total" in m:
                    rows.append(["listener window us (%s)" % name, "%.1f" % m["win_total"], "", "",
                                 "<= 30 us", verdict(m["win_total"] <= 30)])
                    rows.append(["  same without the lo-up step (%s)" % name,
                                 "%.1f" % m["win_without_lo"], "", "", "<= 30 us",
                                 verdict(m["win_without_lo"] <= 30)])
                rows.append(["ADD - STATUS rtt us (%s)" % name, "%.0f" % m["add_minus_status_us"],
                             "", "", "-", "-"])
        elif b == "abuse":
            q = r["quiet_p99_ms"]
            for name, m in r["results"].items():
                if name == "quiet":
                    continue
                rows.append(["abuse %s: victim p99 ms" % name, "%.1f" % m["p99_ms"],
                             "quiet %.1f" % q, "%.2f" % m["p99_vs_quiet"], "every request ok",
                             verdict(m["ok_pct_min"] == 100)])
    print()
    print("SUMMARY (medians unless stated; targets from DESIGN.md)")
    print(B.table(["figure", "nsproxy", "peer", "ratio", "target", "verdict"], rows))
    print("durations: " + ", ".join(times))


if __name__ == "__main__":
    main(sys.argv[1])
