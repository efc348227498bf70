#!/usr/bin/env python3
# Medians over the interleaved repetitions in raw/*.txt -> markdown tables.
import glob, re, statistics as st, collections
def parse(path, kind):
    rows = []
    for line in open(path):
        if not line.startswith(kind + " "): continue
        d = dict(kv.split("=", 1) for kv in line.split()[1:])
        rows.append(d)
    return rows
med = lambda xs: st.median(xs)
def load_table(paths, cols):
    rows = [r for p in paths for r in parse(p, "load")]
    by = collections.defaultdict(list)
    for r in rows: by[r["v"]].append(r)
    out = ["| variant | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for v in sorted(by):
        rs = by[v]
        cells = []
        for c, f in cols:
            xs = [float(r[c]) for r in rs if c in r]
            if not xs: cells.append("–"); continue
            m = med(xs)
            cells.append(f % m + (" (%s–%s)" % (f % min(xs), f % max(xs)) if c in ("accepts_s",) else ""))
        out.append("| %s | " % v + " | ".join(cells) + " |")
    return "\n".join(out) + "\n(n=%d runs per variant)" % len(by[sorted(by)[0]])
cols = [("accepts_s", "%.0f"), ("cpu_us_per_conn", "%.1f"), ("sys_per_conn", "%.2f"),
        ("ep_wait_per_conn", "%.2f"), ("eagain_per_conn", "%.2f"), ("efd_w_per_conn", "%.2f"),
        ("sleeps_per_conn", "%.2f"), ("wasted_per_conn", "%.4f"), ("inner_empty", "%.0f"),
        ("max_share", "%.3f"), ("client_err", "%.0f"), ("acceptor_cpu_us_per_conn", "%.1f")]
groups = collections.defaultdict(list)
for f in sorted(glob.glob("raw/load_*.txt")): groups[f.split(".")[0]].append(f)
for g in sorted(groups):
    print("###", g, groups[g]); print(load_table(groups[g], cols)); print()
mg = collections.defaultdict(list)
for f in sorted(glob.glob("raw/mem_*.txt")): mg[f.split(".")[0]].append(f)
for f in sorted(mg):
    rows = [r for p in mg[f] for r in parse(p, "mem")]
    by = collections.defaultdict(list)
    for r in rows: by[r["v"]].append(r)
    mc = ["fds", "slab_kb", "sunreclaim_kb", "memfree_kb", "slabinfo_kb", "TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "kmalloc-2k"]
    print("###", f)
    print("| variant | " + " | ".join(mc) + " |"); print("|---" * (len(mc) + 1) + "|")
    for v in sorted(by):
        print("| %s | " % v + " | ".join("%.0f" % med([float(r[c]) for r in by[v]]) for c in mc) + " |")
    print("(medians of %d runs, deltas for 1000 tenants; divide by 1000 for per tenant)" % len(by["a"]))
