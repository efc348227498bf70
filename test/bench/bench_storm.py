#!/usr/bin/env python3
"""Benchmark 6: a tenant's latency during a storm of 200 CNI ADDs.

One tenant namespace with an http listener to an nginx upstream (48-byte body). wrk
(-t1 -c8, keep-alive) inside it measures the tenant's latency while nothing else happens
("quiet"), and while 200 nsproxy plugin processes run ADD at once ("storm"): each
registers a listener on its own port (22000 + i) in a second namespace, with the real CNI
environment, through the daemon's control socket, so the daemon makes 200 listeners
(setns, socket, bind, listen) and appends 200 journal lines on its main thread meanwhile.
A storm round's wrk runs from just before the first ADD until the last plugin exited;
the quiet round before it runs as long. After each storm the 200 registrations are
removed again (DEL over the control socket, not measured). Quiet and storm rounds
alternate; the medians of p50 and p99 over the rounds are reported, and the ratio
storm p99 / quiet p99 (target: at most 1.5, issue 10: journal writes and listener set-up
must not stall tenant traffic).

Daemons, measured one after the other in the same run: nsproxyd with its default
worker count (one per CPU: the tenant's connections are served by worker threads while
the main thread registers), and with --workers 0 (everything on one thread), for
comparison. Nothing is pinned. The journal is on /dev/shm (tmpfs, as /run/nsproxy).

Each daemon meets the storm two ways (BENCH_STORM_VIA, "plugin control"): 200 plugin
processes (what a node sees, including the cost of starting 200 programs on the cores
the tenant's traffic uses), and the same ADDs sent straight to the control socket from
8 threads (the daemon's own work only).

Environment: BUILD, BENCH_STORM_ROUNDS (5), BENCH_STORM_ADDS (200), BENCH_STORM_VIA.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

PORT = 8080


def start_wrk(tenant, conns=8):
    argv = B.in_netns(tenant, ["wrk", "-t1", "-c%d" % conns, "-d120s", "--timeout", "5s", "-s",
                               os.path.join(B.HERE, "wrk_report.lua"),
                               "http://127.0.0.1:%d/" % PORT])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_wrk(p):
    p.send_signal(signal.SIGINT)  # wrk stops and reports what it measured so far
    out, err = p.communicate(timeout=30)
    m = re.search(r"WRKRESULT (.*)", out)
    if not m:
        raise RuntimeError("wrk gave no result: %s %s" % (out, err))
    r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return r


def storm(plugin, sock, netns, adds, upstream, work):
    """200 plugin processes at once; returns when all exited (each must succeed)."""
    procs = []
    for i in range(adds):
        conf = json.dumps({"cniVersion": "1.0.0", "name": "storm", "type": "nsproxy",
                           "socket": sock, "timeoutMs": 20000,
                           "listeners": [{"listen": "127.0.0.1:%d" % (22000 + i),
                                          "upstream": upstream, "mode": "tcp"}]})
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD",
               "CNI_CONTAINERID": "storm%d" % i, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni"}
        procs.append(subprocess.Popen([plugin], env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        procs[-1].stdin.write(conf.encode())
        procs[-1].stdin.close()
    failed = 0
    for p in procs:
        p.stdin = None  # written and closed above
        out, err = p.communicate(timeout=60)
        if p.returncode != 0:
            failed += 1
            if failed == 1:
                B.log("storm ADD failed: %s %s" % (out[:300], err[:300]))
    if failed:
        raise RuntimeError("%d of %d storm ADDs failed" % (failed, adds))


def storm_control(sock, netns, adds, upstream, threads=8):
    """The same 200 ADDs sent straight to the control socket from 8 threads at once (no
    plugin processes): what the daemon's own work does to the tenant, without the cost of
    starting 200 programs on the same cores."""
    import threading
    errors = []

    def send(first):
        for i in range(first, adds, threads):
            try:
                r = B.control_call(sock, {"op": "add", "attachment": {
                    "network": "storm", "id": "storm%d" % i, "ifname": "eth0"},
                    "netns": netns, "listeners": [{"listen": "127.0.0.1:%d" % (22000 + i),
                                                   "upstream": upstream, "mode": "tcp"}]},
                    netns_fd=fds[0])
                if not r.get("ok"):
                    errors.append(str(r.get("error")))
            except OSError as e:
                errors.append(str(e))
    fds = [os.open(netns, os.O_RDONLY | os.O_CLOEXEC)]
    try:
        ts = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        os.close(fds[0])
    if errors:
        raise RuntimeError("%d of %d control ADDs failed: %s" % (len(errors), adds, errors[0]))


def clear(sock, adds):
    for i in range(adds):
        B.unregister(sock, "storm%d" % i, network="storm", ifname="eth0")


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    plugin = os.path.join(build, "nsproxy")
    rounds = B.env_int("BENCH_STORM_ROUNDS", 5)
    adds = B.env_int("BENCH_STORM_ADDS", 200)
    t_start = time.monotonic()
    work = B.tempdir("storm")
    names = [B.PREFIX + "q", B.PREFIX + "s"]
    paths = B.make_namespaces(names)
    up_port = B.free_port()
    B.start_nginx(up_port)
    upstream = "127.0.0.1:%d" % up_port
    cpus = os.cpu_count() or 1

    out = {}
    rows = []
    ways = (os.environ.get("BENCH_STORM_VIA") or "plugin control").split()
    for label, flags, via in [(lb + ", ADDs by " + via, fl, via) for via in ways
                              for lb, fl in (("workers %d" % cpus, []),
                                             ("--workers 0", ["--workers", "0"]))]:
        d = B.Daemon(build, "storm%d" % len(out), state_base="/dev/shm", extra=flags)
        B.register(d.sock, names[0], paths[0], [{"listen": "127.0.0.1:%d" % PORT,
                                                  "upstream": upstream, "mode": "http"}])
        if not B.probe_in_ns(paths[0], PORT):
            raise RuntimeError("nsproxyd does not serve the quiet tenant")
        quiet, loud = [], []
        for r in range(rounds):
            w = start_wrk(names[0])
            time.sleep(0.3)
            t0 = time.monotonic()
            if via == "plugin":
                storm(plugin, d.sock, paths[1], adds, upstream, work)
            else:
                storm_control(d.sock, paths[1], adds, upstream)
            took = time.monotonic() - t0
            loud.append(stop_wrk(w))
            clear(d.sock, adds)
            w = start_wrk(names[0])
            time.sleep(0.3 + took)
            quiet.append(stop_wrk(w))
            B.log("%s round %d: storm of %d ADDs %.2f s; p99 quiet %.0f us, storm %.0f us" % (
                label, r + 1, adds, took, quiet[-1]["p99_us"], loud[-1]["p99_us"]))
        d.stop()
        med = {k: {"p50_us": B.median([x["p50_us"] for x in v]),
                   "p99_us": B.median([x["p99_us"] for x in v]),
                   "requests": B.median([x["requests"] for x in v]),
                   "errors": sum(x["errors"] for x in v),
                   "p99_all": [round(x["p99_us"]) for x in v]}
               for k, v in (("quiet", quiet), ("storm", loud))}
        ratio = med["storm"]["p99_us"] / med["quiet"]["p99_us"]
        out[label] = dict(med, ratio_p99=ratio)
        for k in ("quiet", "storm"):
            m = med[k]
            rows.append([label, k, "%.0f" % m["p50_us"], "%.0f" % m["p99_us"],
                         " ".join(str(x) for x in m["p99_all"]), "%d" % m["errors"]])
        rows.append([label, "ratio storm/quiet", "", "%.2f" % ratio, "", ""])
    elapsed = time.monotonic() - t_start
    print()
    print("A tenant's keep-alive latency (wrk -t1 -c8) during %d concurrent CNI ADDs, %d rounds, "
          "medians" % (adds, rounds))
    print(B.table(["daemon", "phase", "p50 us", "p99 us", "p99 per round", "errors"], rows))
    print("(%.0f s)" % elapsed)
    B.save_results("storm", {"adds": adds, "rounds": rounds, "results": out,
                             "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
