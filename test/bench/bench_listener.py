#!/usr/bin/env python3
"""Benchmark 4: listener creation inside the daemon, observed from outside.

Two measurements, both against a running nsproxyd (journal on tmpfs, so fsync is not
part of it; bench_cni.py shows the fsync on disk):

1. Kernel timestamps of the daemon's own system calls, recorded with
   `perf record -e syscalls:sys_enter_setns,...` attached to its pid (no change to the
   daemon, negligible overhead compared with strace). The window is from entering
   setns(tenant) to returning from setns(host): setns in, bringing lo up over netlink
   (libnl: socket, get link, change link when down), socket, setsockopt, bind, listen,
   setns back. This is exactly the DESIGN's "listener creation (setns, socket, bind,
   listen, setns back)" plus the lo step the daemon does in the same window. It is split
   into: setns in, lo up (from setns return to the AF_INET/AF_INET6 socket()), socket to
   listen return, setns back.
2. Control round trip: ADD over the control socket (netns fd via SCM_RIGHTS, one
   listener) minus a STATUS round trip, medians, each timed in this process around
   connect/send/recv (the netns is opened before the clock starts). This adds to (1)
   the daemon's request handling: JSON decoding, NS_GET_NSTYPE and fstat on the fd,
   registry insert, accept watcher, journal append (+fdatasync on tmpfs), reply.

Each is done for fresh namespaces with lo down (what a CNI ADD sees) and with lo already
up. BENCH_LISTENER_RUNS (200) per variant; the variants alternate.
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

EVENTS = ["syscalls:sys_enter_setns", "syscalls:sys_exit_setns", "syscalls:sys_enter_socket",
          "syscalls:sys_exit_listen"]


def perf_works():
    try:
        r = subprocess.run(["perf", "record", "-q", "-o", "/dev/null", "-e", EVENTS[0], "--", "true"],
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def timed_call(sock, req, fd=None, pid=None, cpu=None):
    c0 = B.cpu_ns(pid)
    t0 = time.perf_counter_ns()
    r = B.control_call(sock, req, netns_fd=fd)
    t1 = time.perf_counter_ns()
    cpu.append((B.cpu_ns(pid) - c0) / 1000.0)
    if not r.get("ok"):
        raise RuntimeError("%s: %s" % (req["op"], r.get("error")))
    return (t1 - t0) / 1000.0


def parse_windows(text):
    """Returns one dict per listener-creation window from `perf script` output."""
    line_re = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+(syscalls:\S+):\s*(.*)$")
    windows = []
    cur = None
    for line in text.splitlines():
        m = line_re.match(line)
        if not m:
            continue
        t = float(m.group(2)) * 1e6  # us
        ev, args = m.group(3), m.group(4)
        if ev == "syscalls:sys_enter_setns":
            if cur is None:
                cur = {"enter": t, "setns_count": 0}
            else:
                cur["back_enter"] = t
        elif ev == "syscalls:sys_exit_setns" and cur is not None:
            cur["setns_count"] += 1
            if cur["setns_count"] == 1:
                cur["in_done"] = t
            else:
                cur["end"] = t
                if "socket" in cur and "listen" in cur:
                    windows.append(cur)
                cur = None
        elif ev == "syscalls:sys_enter_socket" and cur is not None:
            fam = re.search(r"family: (0x[0-9a-f]+)", args)
            if fam and int(fam.group(1), 16) in (2, 10):  # AF_INET, AF_INET6
                cur["socket"] = t
        elif ev == "syscalls:sys_exit_listen" and cur is not None:
            cur["listen"] = t
    return [{"total": w["end"] - w["enter"],
             "without_lo": (w["end"] - w["enter"]) - (w["socket"] - w["in_done"]),
             "setns_in": w["in_done"] - w["enter"],
             "lo_up": w["socket"] - w["in_done"], "listen": w["listen"] - w["socket"],
             "setns_back": w["end"] - w["listen"]} for w in windows]


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    runs = B.env_int("BENCH_LISTENER_RUNS", 200)
    t_start = time.monotonic()
    upstream = "127.0.0.1:%d" % B.free_port()
    work = B.tempdir("listener")
    d = B.Daemon(build, "listener", state_base="/dev/shm")

    down = B.make_namespaces([B.PREFIX + "ld%d" % i for i in range(runs)], lo_up=False)
    up = B.make_namespaces([B.PREFIX + "lu%d" % i for i in range(runs)], lo_up=True)
    use_perf = perf_works()
    perf = None
    perf_data = os.path.join(work, "perf.data")
    if use_perf:
        argv = ["perf", "record", "-q", "-o", perf_data]
        for e in EVENTS:
            argv += ["-e", e]
        perf = B.Proc(argv + ["-p", str(d.pid)], "perf", os.path.join(work, "perf.log"))
        time.sleep(2)  # attach
    else:
        B.log("perf with syscall tracepoints unavailable: only the round-trip figures")

    listener = [{"listen": "127.0.0.1:8080", "upstream": upstream, "mode": "http"}]
    rtt = {"down": [], "up": [], "status": []}
    cpu = {"down": [], "up": [], "status": []}
    order = []
    for i in range(runs):
        variants = [("down", down[i]), ("up", up[i])]
        if i % 2:
            variants.reverse()
        for v, path in variants:
            rtt["status"].append(timed_call(d.sock, {"op": "status"}, None, d.pid, cpu["status"]))
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                rtt[v].append(timed_call(d.sock, {"op": "add", "attachment": {"id": "l%s%d" % (v, i)},
                                                  "netns": path, "listeners": listener},
                                          fd, d.pid, cpu[v]))
            finally:
                os.close(fd)
            order.append(v)
    if perf:
        time.sleep(0.5)
        perf.stop(signal.SIGINT, timeout=60)
    status = B.control_call(d.sock, {"op": "status"})["data"]
    if status.get("registrations") != 2 * runs:
        raise RuntimeError("expected %d registrations, daemon has %s" % (2 * runs, status))
    if not B.probe_in_ns(down[-1], 8080):
        raise RuntimeError("last listener does not accept")

    rows = []
    out = {}
    st = B.median(rtt["status"])
    windows = []
    if perf:
        text = subprocess.run(["perf", "script", "-i", perf_data, "--ns", "-F", "tid,time,event,trace"],
                              capture_output=True, text=True, timeout=300).stdout
        windows = parse_windows(text)
        if len(windows) != len(order):
            B.log("perf: %d windows for %d ADDs; per-variant split skipped" % (len(windows), len(order)))
    for v in ("down", "up"):
        add = B.median(rtt[v])
        row = {"add_rtt_us": add, "add_rtt_p99_us": B.percentile(rtt[v], 99), "status_rtt_us": st,
               "add_minus_status_us": add - st, "add_cpu_us": B.median(cpu[v]),
               "status_cpu_us": B.median(cpu["status"])}
        if windows and len(windows) == len(order):
            ws = [w for w, o in zip(windows, order) if o == v]
            for k in ("total", "without_lo", "setns_in", "lo_up", "listen", "setns_back"):
                row["win_" + k] = B.median([w[k] for w in ws])
            row["win_total_p99"] = B.percentile([w["total"] for w in ws], 99)
        out[v] = row
        name = "lo down (fresh)" if v == "down" else "lo already up"
        g = lambda k: "%.1f" % row[k] if k in row else "n/a"
        rows.append([name, g("win_total"), g("win_total_p99"), g("win_without_lo"),
                     g("win_setns_in"), g("win_lo_up"),
                     g("win_listen"), g("win_setns_back"), "%.0f" % add, "%.0f" % st,
                     "%.0f" % (add - st), "%.0f" % row["add_cpu_us"], "%.0f" % row["status_cpu_us"]])
    d.stop()
    elapsed = time.monotonic() - t_start
    print()
    print("Listener creation in nsproxyd, %d ADDs per variant, medians in us "
          "(window: perf syscall tracepoints on the daemon; rtt: control socket, tmpfs journal)"
          % runs)
    print(B.table(["namespace", "window", "window p99", "w/o lo up", "setns in", "lo up",
                   "socket..listen",
                   "setns back", "ADD rtt", "STATUS rtt", "ADD-STATUS", "ADD CPU",
                   "STATUS CPU"], rows))
    print("window: from entering setns(tenant) to returning from setns(host), kernel timestamps; "
          "rtt: this client's wall clock; CPU: the daemon's CPU time per request (schedstat)")
    print("(%.0f s)" % elapsed)
    B.save_results("listener", {"runs": runs, "perf": bool(perf), "results": out, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
