#!/usr/bin/env python3
"""Draws the benchmark figures of one results file (JSON lines written by the bench_*.py
scripts) as PNG with gnuplot (Debian's gnuplot-nox):

  OUT/bench-http.png    req/s and CPU us per request of every proxy, per mode (keep-alive,
                        close), one core (pinned) and every core
  OUT/bench-memory.png  idle RSS against the number of tenants (log scales), every peer

    test/bench/plot.py RESULTS.jsonl OUT_DIR

`make bench` (test/bench/run.sh) calls it with docs/ as OUT_DIR. A figure whose benchmark
is not in the file is left as it was."""

import json
import math
import os
import subprocess
import sys
import tempfile


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def gnuplot(script):
    r = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("gnuplot: " + r.stderr)


def http_figure(r, out):
    """Two rows of bar charts: req/s, CPU us/req; columns: keep-alive and close; each
    chart has one bar per proxy, one core then every core."""
    # Blue: nsproxy; orange: HAProxy; green: the Go peer.
    phases = [("one core", r["results"])]
    multi = r.get("multi") or {}
    if multi.get("results"):
        phases.append(("%d cores" % multi["cpus"], multi["results"]))
    modes = list(r["results"].keys())
    d = tempfile.mkdtemp(prefix="nsproxy-plot-")
    plots = []
    for metric, title in (("rps", "requests/s (higher is better)"),
                          ("cpu_us_per_req", "proxy CPU us per request (lower is better)")):
        for mode in modes:
            data = os.path.join(d, "%s-%s.dat" % (metric, mode))
            with open(data, "w") as f:
                for where, results in phases:
                    for name, m in results.get(mode, {}).items():
                        color = (0x4472c4 if name.startswith("nsproxy") else
                                 0xed7d31 if name.startswith("haproxy") else 0x70ad47)
                        f.write('"%s\\n(%s)" %f %d\n' % (name, where, m[metric], color))
            plots.append((data, "%s, %s" % (title, "keep-alive" if mode == "keepalive" else
                                             "Connection: close")))
    script = [
        "set terminal pngcairo size 1600,%d font 'sans,10'" % (450 * 2),
        "set output '%s'" % out,
        "set multiplot layout 2,%d title 'nsproxy vs HAProxy and the Go peer: HTTP through a "
        "tenant namespace (medians, one run)'" % len(modes),
        "set style fill solid 0.7 border -1",
        "set boxwidth 0.7",
        "set grid ytics",
        "set yrange [0:*]",
        "set offsets 0, 0, graph 0.12, 0",
        "set xtics rotate by -35 font 'sans,8'",
        "unset key",
    ]
    for data, title in plots:
        script += ["set title '%s'" % title,
                   "plot '%s' using 0:2:3:xtic(1) with boxes lc rgb variable, "
                   "'' using 0:2:(sprintf('%%.0f', $2)) with labels offset 0,0.7 font 'sans,8'"
                   % data]
    script.append("unset multiplot")
    gnuplot("\n".join(script) + "\n")


def memory_figure(r, out):
    res = r["results"]
    peers = ("nsproxyd", "haproxy", "go-peer")
    d = tempfile.mkdtemp(prefix="nsproxy-plot-")
    series = []
    for who in peers:
        pts = []
        for n, m in res.items():
            v = m.get(who)
            if not v or "failure" in v or not isinstance(v.get("VmRSS"), (int, float)) or \
                    math.isnan(v["VmRSS"]):
                continue
            if who == "nsproxyd" and v.get("registered", int(n)) != int(n):
                continue
            pts.append((int(n), v["VmRSS"] / 1024))
        if not pts:
            continue
        data = os.path.join(d, who + ".dat")
        with open(data, "w") as f:
            for n, mb in sorted(pts):
                f.write("%d %f\n" % (n, mb))
        series.append((data, who))
    if not series:
        return
    script = [
        "set terminal pngcairo size 1000,600 font 'sans,10'",
        "set output '%s'" % out,
        "set title 'Idle memory against tenants (VmRSS; one http listener per tenant; one run)'",
        "set logscale x",
        "set logscale y",
        "set xlabel 'tenants'",
        "set ylabel 'MiB'",
        "set grid",
        "set key top left",
    ]
    plot = ", ".join("'%s' using 1:2 with linespoints lw 2 pt 7 title '%s', '' using 1:2:"
                     "(sprintf('%%.1f', $2)) with labels offset 0,1 notitle" % (data, who)
                     for data, who in series)
    script.append("plot " + plot)
    gnuplot("\n".join(script) + "\n")


def main(path, out_dir):
    done = []
    for r in load(path):
        if r["bench"] == "http":
            f = os.path.join(out_dir, "bench-http.png")
            http_figure(r, f)
            done.append(f)
        elif r["bench"] == "memory":
            f = os.path.join(out_dir, "bench-memory.png")
            memory_figure(r, f)
            done.append(f)
    for f in done:
        print("plot: wrote " + f)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
