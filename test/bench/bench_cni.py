#!/usr/bin/env python3
"""Benchmark 3: CNI ADD latency, the nsproxy plugin vs Debian's reference loopback plugin.

One CNI ADD = one plugin process, timed from posix_spawn() to waitpid() returning, with
a real CNI environment (CNI_COMMAND=ADD, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME,
CNI_PATH) and the network configuration on stdin. Each ADD gets a fresh namespace with
lo down (the same kind for both plugins): `loopback` brings lo up; `nsproxy` sends the
netns fd to nsproxyd, which brings lo up, creates the listener (127.0.0.1:8080), arms
it, appends the registration to its journal (fdatasync'ed with --fsync) and replies. The plugin's exit
status and its stdout (a CNI result) are checked. The nsproxy registration is removed
again right after (DEL over the control socket, not timed), so the daemon holds exactly
the background count. Both plugins alternate, the order flipping every run.

Background: BENCH_CNI_COUNTS ("10 1000") tenants already registered (one http listener
each). State directory: BENCH_CNI_STATE ("disk-fsync tmpfs"): disk-fsync = /tmp on this
machine's ext4 with --fsync (the state before it moved: /var/lib/nsproxy, fdatasync per
change), disk = the same without --fsync, tmpfs = /dev/shm without --fsync (what the default
/run/nsproxy is). BENCH_CNI_RUNS (200) ADDs per plugin and setting. BENCH_PLUGIN: another nsproxy
plugin binary to measure (default BUILD/nsproxy), e.g. one linked with -static.

Before the ADDs, the cost of merely starting each program is measured the same way
(CNI_COMMAND=VERSION, which needs no daemon and no namespace), with /bin/true alongside:
on a machine where exec is expensive, process start-up dominates both plugins.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

LOOPBACK = "/usr/lib/cni/loopback"
CNI_PATH = "/usr/lib/cni"


def spawn_timed(argv, env, stdin_path, out_path, daemon_pid=None):
    """Runs argv with stdin from stdin_path and stdout/stderr into out_path; returns
    (microseconds from posix_spawn to wait4, exit status, CPU microseconds of the process
    (user + system, all its threads), CPU microseconds the daemon ran meanwhile)."""
    fin = os.open(stdin_path, os.O_RDONLY)
    fout = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        fa = [(os.POSIX_SPAWN_DUP2, fin, 0), (os.POSIX_SPAWN_DUP2, fout, 1),
              (os.POSIX_SPAWN_DUP2, fout, 2)]
        d0 = B.cpu_ns(daemon_pid) if daemon_pid else 0
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
        _, status, ru = os.wait4(pid, 0)
        t1 = time.perf_counter_ns()
        d1 = B.cpu_ns(daemon_pid) if daemon_pid else 0
    finally:
        os.close(fin)
        os.close(fout)
    return ((t1 - t0) / 1000.0, os.waitstatus_to_exitcode(status),
            (ru.ru_utime + ru.ru_stime) * 1e6, (d1 - d0) / 1000.0)


def cni_env(cid, netns, ifname):
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": CNI_PATH}


def check_result(out_path, who):
    with open(out_path) as f:
        text = f.read()
    try:
        res = json.loads(text[text.index("{"):]) if "{" in text else None
    except ValueError:
        res = None
    if not isinstance(res, dict) or "code" in res:
        raise RuntimeError("%s ADD gave no CNI result: %s" % (who, text[:500]))


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    plugin = os.environ.get("BENCH_PLUGIN") or os.path.join(build, "nsproxy")
    if not os.access(LOOPBACK, os.X_OK):
        sys.exit("bench: %s missing (apt-get install containernetworking-plugins)" % LOOPBACK)
    counts = B.env_list("BENCH_CNI_COUNTS", [10, 1000])
    runs = B.env_int("BENCH_CNI_RUNS", 200)
    states = (os.environ.get("BENCH_CNI_STATE") or "disk-fsync tmpfs").split()
    for st in states:
        if st not in ("disk-fsync", "disk", "tmpfs"):
            sys.exit("bench: BENCH_CNI_STATE: expected disk-fsync, disk or tmpfs, got %r" % st)
    t_start = time.monotonic()
    upstream = "127.0.0.1:%d" % B.free_port()
    work = B.tempdir("cni")
    out_path = os.path.join(work, "out")

    lo_conf = os.path.join(work, "loopback.json")
    with open(lo_conf, "w") as f:
        json.dump({"cniVersion": "1.0.0", "name": "nspb", "type": "loopback"}, f)

    # baseline: what spawning any small program costs here (context for the figures)
    startup = {"true": [], "nsproxy": [], "loopback": []}
    version_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION"}
    for _ in range(100):
        for who, argv in (("true", ["/bin/true", "true"]), ("nsproxy", [plugin, "nsproxy"]),
                          ("loopback", [LOOPBACK, "loopback"])):
            startup[who].append(spawn_timed(argv, version_env, lo_conf, out_path))
    start_med = {k: (B.median([x[0] for x in v]), B.median([x[2] for x in v]))
                 for k, v in startup.items()}
    true_us = [x[0] for x in startup["true"]]
    true_cpu = start_med["true"][1]
    B.log("start-up (VERSION): " + ", ".join("%s %.0f us wall %.0f us CPU" % (k, w, cp)
                                            for k, (w, cp) in start_med.items()))

    bg_names = [B.PREFIX + "b%d" % i for i in range(max(counts))]
    bg_paths = B.make_namespaces(bg_names)
    rows = []
    out = {"spawn_true_us": B.median(true_us), "spawn_true_cpu_us": true_cpu,
           "startup": {k: {"wall_us": w, "cpu_us": cp} for k, (w, cp) in start_med.items()},
           "plugin": plugin}
    seq = 0
    for state in states:
        for n in counts:
            d = B.Daemon(build, "cni-%s-%d" % (state, n),
                         state_base="/dev/shm" if state == "tmpfs" else None,
                         extra=["--fsync"] if state == "disk-fsync" else [])
            conf = os.path.join(work, "nsproxy-%s.json" % state)
            with open(conf, "w") as f:
                json.dump({"cniVersion": "1.0.0", "name": "nspb", "type": "nsproxy",
                           "socket": d.sock,
                           "listeners": [{"listen": "127.0.0.1:8080", "upstream": upstream}]}, f)
            for nm, p in zip(bg_names[:n], bg_paths[:n]):
                B.register(d.sock, nm, p, [{"listen": "127.0.0.1:8080", "upstream": upstream,
                                            "mode": "http"}])
            fresh = [B.PREFIX + "c%d" % (seq + i) for i in range(2 * runs)]
            seq += 2 * runs
            fresh_paths = B.make_namespaces(fresh, lo_up=False)
            times = {"nsproxy": [], "loopback": []}
            cpu = {"nsproxy": [], "loopback": []}
            dcpu = []
            for i in range(runs):
                pair = [("loopback", fresh_paths[2 * i]), ("nsproxy", fresh_paths[2 * i + 1])]
                if i % 2:
                    pair.reverse()
                for who, path in pair:
                    cid = "nspb%d" % i
                    if who == "loopback":
                        us, rc, c_us, _ = spawn_timed([LOOPBACK, "loopback"],
                                                      cni_env(cid, path, "lo"), lo_conf, out_path)
                    else:
                        us, rc, c_us, d_us = spawn_timed([plugin, "nsproxy"],
                                                         cni_env(cid, path, "eth0"), conf,
                                                         out_path, d.pid)
                        dcpu.append(d_us)
                    if rc != 0:
                        with open(out_path) as f:
                            raise RuntimeError("%s ADD exited %d: %s" % (who, rc, f.read()[:500]))
                    check_result(out_path, who)
                    times[who].append(us)
                    cpu[who].append(c_us)
                    if who == "nsproxy":
                        B.unregister(d.sock, cid, "nspb", "eth0")
            status = B.control_call(d.sock, {"op": "status"})["data"]
            if status.get("registrations") != n:
                raise RuntimeError("daemon holds %s registrations, expected %d" % (
                    status.get("registrations"), n))
            d.stop()
            B.delete_namespaces(fresh)
            med = {k: B.median(v) for k, v in times.items()}
            cmed = {k: B.median(v) for k, v in cpu.items()}
            dmed = B.median(dcpu)
            p99 = {k: B.percentile(v, 99) for k, v in times.items()}
            B.log("state %-5s %5d tenants: nsproxy median %.0f us p99 %.0f us; loopback median "
                  "%.0f us p99 %.0f us" % (state, n, med["nsproxy"], p99["nsproxy"],
                                           med["loopback"], p99["loopback"]))
            rows.append([state, str(n), "%.0f" % med["nsproxy"], "%.0f" % p99["nsproxy"],
                         "%.0f" % med["loopback"], "%.0f" % p99["loopback"],
                         "%.2f" % (med["nsproxy"] / med["loopback"]),
                         "%.2f" % (p99["nsproxy"] / p99["loopback"]),
                         "%.0f+%.0f" % (cmed["nsproxy"], dmed), "%.0f" % cmed["loopback"],
                         "%.2f" % ((cmed["nsproxy"] + dmed) / cmed["loopback"])])
            out["%s/%d" % (state, n)] = {"nsproxy_median_us": med["nsproxy"],
                                         "nsproxy_p99_us": p99["nsproxy"],
                                         "loopback_median_us": med["loopback"],
                                         "loopback_p99_us": p99["loopback"], "runs": runs,
                                         "nsproxy_cpu_us": cmed["nsproxy"], "daemon_cpu_us": dmed,
                                         "loopback_cpu_us": cmed["loopback"]}

    elapsed = time.monotonic() - t_start
    print()
    print("Program start-up alone (CNI_COMMAND=VERSION), 100 runs each, medians: " + "; ".join(
        "%s %.0f us wall, %.0f us CPU" % (k, w, cp) for k, (w, cp) in start_med.items()))
    print("CNI ADD, exec to exit, %d runs per plugin and setting, plugin %s" % (runs, plugin))
    print(B.table(["state", "registered", "nsproxy med us", "nsproxy p99 us", "loopback med us",
                   "loopback p99 us", "ratio med", "ratio p99", "CPU us ns+daemon",
                   "CPU us loopback", "CPU ratio"], rows))
    print("CPU us: medians of the plugin's own CPU time (user+system, wait4 rusage) and, for "
          "nsproxy, + the daemon's CPU time during the ADD (schedstat)")
    print("(%.0f s)" % elapsed)
    B.save_results("cni", {"results": out, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
