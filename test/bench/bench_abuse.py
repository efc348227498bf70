#!/usr/bin/env python3
"""Benchmark: a victim tenant's latency under each attack of the abuse suite, vs quiet.

The scenarios are those of test/integration/abuse_test.cc (its `cases()` table: the
nsproxy-abuse attack, how many attacker tenants, the daemon's prefix, the attackers'
registration limits), plus "quiet" (the victim alone). Keep CASES below in step with
that table; the bench warns when the names differ.

Every run of a scenario gets a fresh nsproxyd (flags as in the test, `--upstream-idle-timeout
1`, but `--log-level warn` instead of info so logging costs nothing; FdExhaustion runs it
under `prlimit --nofile=1024:1024`) and fresh namespaces (victim, attackers; lo up,
127.0.0.1:8080 each). One nsproxy-echo --mode http in the host namespace (127.0.0.1, free
port) is the shared upstream of every tenant for the whole run. The attacks run with
build/nsproxy-abuse --netns <attacker namespace>; after 1 s of ramp-up the victim runs
`nsproxy-abuse --netns <victim> victim --rate R --timeout-ms 5000` (a new connection per
request) for S seconds; then the attacks are stopped (SIGTERM: they still print their
JSON). While the victim runs, the daemon's RSS and the kernel's TCP memory
(/proc/net/sockstat "TCP: mem", all namespaces) are sampled every 100 ms, and the daemon's
CPU time (schedstat) is taken at both ends.

Order: every round runs quiet before each attack (quiet, A1, quiet, A2, ...), the attack
order rotated by one every round, so each attack sits next to a quiet run in time.
Reported per attack: the worst round's victim success rate; medians over the rounds of
the victim's p50 and p99; "p99 vs quiet" = that median p99 over the median p99 of all
quiet runs; the daemon's RSS maximum over all rounds; the median daemon CPU (% of one
CPU over the victim's run); the attacker's figure (median over rounds: connections open
at most, summed over attackers, or responses/s for request floods, with the statuses of
non-200 responses); the maximum kernel TCP memory. Nothing is pinned: on 2 CPUs the
attacker, the daemon, the upstream and the victim share them, as in the test. The tool's
p99 is nearest-rank: of R x S = 80 requests it is the slowest one (the max); read it with
that in mind, and with the 1 s ramp-up: the victim starts while some attacks are still
building up (the slow reader filling socket buffers, the 4,000 idle connections' SYNs
retransmitted after a full backlog), as in the test.

Environment: BUILD (default build/), BENCH_ABUSE_ROUNDS (3), BENCH_ABUSE_SECONDS (8,
victim run time), BENCH_ABUSE_RATE (10, victim requests/s), BENCH_ABUSE_CASES (all; names
as in the test table, space or comma separated, e.g. "SlowReader RequestFlood"; quiet
always runs), BENCH_ABUSE_DAEMON_FLAGS (extra nsproxyd flags for every run, e.g.
"--socket-buffer 0" to compare with the kernel's socket buffer autotuning). Defaults
take about 7.5 minutes on a 2-core machine.
"""

import json
import os
import re
import shutil
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402

LISTEN = "127.0.0.1:8080"
RAMP_S = 1.0
SAMPLE_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")


class Case:
    def __init__(self, name, attack, attackers=1, prefix=(), limits=None):
        self.name = name
        self.attack = list(attack)      # nsproxy-abuse MODE and options
        self.attackers = attackers
        self.prefix = list(prefix)      # runs nsproxyd under this (e.g. prlimit)
        self.limits = limits            # the attackers' "limits" in the add request


QUIET = Case("quiet", [], 0)
CASES = [
    Case("ConnectionFloodFromTwoTenants", ["flood", "--connections", "3000"], 2),
    Case("Slowloris", ["slowloris", "--connections", "2000", "--interval-ms", "1000"]),
    Case("SlowRequestBody", ["slow-body", "--connections", "1000", "--interval-ms", "1000"]),
    Case("SlowReader", ["slow-reader", "--connections", "300", "--path", "/bytes/10000000"]),
    Case("RequestFlood", ["request-flood", "--connections", "50"]),
    Case("RequestFloodOverItsRate", ["request-flood", "--connections", "50"], 1,
         limits={"rate": 100, "burst": 100}),
    Case("ThousandsOfIdleKeepAlives", ["idle", "--connections", "4000"], 1,
         limits={"connections": 5000}),
    # RLIMIT_NOFILE 1024: a budget of (1024 - 256) / 2 = 384 connections.
    Case("FdExhaustion", ["idle", "--connections", "2000"], 1,
         prefix=["prlimit", "--nofile=1024:1024"], limits={"connections": 5000}),
]


def check_against_test():
    """Warns when the test's case names and ours differ (the table is copied by hand)."""
    path = os.path.join(B.REPO, "test", "integration", "abuse_test.cc")
    try:
        with open(path) as f:
            src = f.read()
    except OSError:
        return
    body = src[src.find("std::vector<AbuseCase> cases()"):]
    theirs = set(re.findall(r'make_case\("(\w+)"', body[:body.find("\n}\n")]))
    ours = {c.name for c in CASES}
    if theirs and theirs != ours:
        B.log("WARNING: abuse_test.cc cases %s differ from ours %s" % (sorted(theirs), sorted(ours)))


def tcp_mem_pages(pid=None):
    """Kernel TCP memory in pages ("TCP: mem" of sockstat; one figure for all namespaces)
    and, for pid's namespace, the TCP sockets in use there."""
    path = "/proc/%d/net/sockstat" % pid if pid else "/proc/net/sockstat"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("TCP:"):
                    kv = line.split()[1:]
                    d = dict(zip(kv[::2], (int(x) for x in kv[1::2])))
                    return d.get("mem", 0), d.get("inuse", 0)
    except OSError:
        pass
    return 0, 0


def json_of(proc):
    """The one JSON object nsproxy-abuse printed (stdout and stderr share the log)."""
    with open(proc.log_path) as f:
        for line in reversed(f.read().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
    raise RuntimeError("%s printed no JSON:\n%s" % (proc.name, proc.tail()))


def register(sock, tenant_id, netns, upstream, limits):
    """benchlib.register with the add request's "limits" object."""
    req = {"op": "add", "attachment": {"id": tenant_id}, "netns": netns,
           "listeners": [{"listen": LISTEN, "upstream": upstream, "mode": "http"}]}
    if limits:
        req["limits"] = limits
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        r = B.control_call(sock, req, netns_fd=fd)
    finally:
        os.close(fd)
    if not r.get("ok"):
        raise RuntimeError("add %s: %s" % (tenant_id, r.get("error")))


def daemon_binary(build, prefix):
    """BUILD/nsproxyd, or a script that execs it under prefix (prlimit execs too, so the
    daemon keeps the pid benchlib waits on)."""
    binary = os.path.join(build, "nsproxyd")
    if not prefix:
        return binary
    path = os.path.join(B.tempdir("wrap"), "nsproxyd")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nexec %s %s "$@"\n' % (" ".join(prefix), binary))
    os.chmod(path, 0o755)
    return path


def abuse(build, netns, seconds, mode, tag):
    argv = [os.path.join(build, "nsproxy-abuse"), "--netns", netns, "--target", LISTEN,
            "--seconds", "%g" % seconds] + mode
    return B.Proc(argv, tag, os.path.join(B.tempdir(tag), "out"))


EXTRA_FLAGS = os.environ.get("BENCH_ABUSE_DAEMON_FLAGS", "").split()


def run_one(build, upstream, case, seq, secs, rate):
    tag = "%d-%s" % (seq, case.name[:12])
    names = [B.PREFIX + "%d-v" % seq] + [B.PREFIX + "%d-a%d" % (seq, i) for i in range(case.attackers)]
    paths = B.make_namespaces(names)
    daemon = B.Daemon(build, tag, extra=["--upstream-idle-timeout", "1"] + EXTRA_FLAGS,
                      binary=daemon_binary(build, case.prefix))
    attacks = []
    try:
        register(daemon.sock, "victim-%d" % seq, paths[0], upstream, None)
        for i, p in enumerate(paths[1:]):
            register(daemon.sock, "attacker%d-%d" % (i, seq), p, upstream, case.limits)
        mem_start, _ = tcp_mem_pages()
        for i, p in enumerate(paths[1:]):
            # Longer than needed; stopped once the victim is done.
            attacks.append(abuse(build, p, RAMP_S + secs + 10, case.attack, "attack%d-%d" % (i, seq)))
        time.sleep(RAMP_S)
        cpu0, t0 = B.cpu_ns(daemon.pid), time.monotonic()
        victim = abuse(build, paths[0], secs, ["victim", "--rate", "%g" % rate, "--timeout-ms", "5000"],
                       "victim-%d" % seq)
        rss_max, mem_max, attacker_tcp = 0, 0, 0
        while victim.alive():
            rss_max = max(rss_max, B.rss_kb(daemon.pid)["VmRSS"])
            mem_max = max(mem_max, tcp_mem_pages()[0])
            for a in attacks:
                if a.alive():
                    attacker_tcp = max(attacker_tcp, tcp_mem_pages(a.pid)[1])
            time.sleep(SAMPLE_S)
        cpu_pct = (B.cpu_ns(daemon.pid) - cpu0) / 1e9 / (time.monotonic() - t0) * 100
        if victim.p.wait() != 0:
            raise RuntimeError("victim exited %d:\n%s" % (victim.p.returncode, victim.tail()))
        v = json_of(victim)
        for a in attacks:
            if not a.alive():
                B.log("WARNING: %s ended before the victim:\n%s" % (a.name, a.tail()))
            a.stop(signal.SIGTERM, timeout=20)
        atk = [json_of(a) for a in attacks]
        if not daemon.proc.alive():
            raise RuntimeError("nsproxyd died during %s:\n%s" % (case.name, daemon.proc.tail()))
    finally:
        for a in attacks:
            a.stop(signal.SIGKILL)
        daemon.stop()
        B.delete_namespaces(names)
        shutil.rmtree(daemon.dir, ignore_errors=True)
    for r in atk:  # as the test: the attack must really have run
        if (r.get("requests", 0) <= 1000) if "requests" in r else (r.get("open_max", 0) <= 200):
            B.log("WARNING: %s: the attack hardly ran: %s" % (case.name, json.dumps(r)))
    return {"victim": v, "attacks": atk, "rss_max_kb": rss_max, "cpu_pct": cpu_pct,
            "tcp_mem_max_mib": mem_max * PAGE / 2**20, "tcp_mem_start_mib": mem_start * PAGE / 2**20,
            "attacker_tcp_inuse_max": attacker_tcp}


def attack_figure(atk):
    """One number that shows the attack ran, and its non-200 responses."""
    if not atk:
        return None, {}
    statuses = {}
    for r in atk:
        for k, n in r.get("responses", {}).items():
            statuses[k] = statuses.get(k, 0) + n
    statuses.pop("200", None)
    if "requests_per_second" in atk[0]:
        return sum(r["requests_per_second"] for r in atk), statuses
    return sum(r["open_max"] for r in atk), statuses


def describe(case, runs):
    figs = [attack_figure(r["attacks"]) for r in runs]
    if not case.attack:
        return "-"
    fig = B.median([f[0] for f in figs])
    st = sorted(figs, key=lambda f: f[0])[len(figs) // 2][1]  # of the median round
    extra = (" (%s)" % ", ".join("%s x%d" % kv for kv in sorted(st.items()))) if st else ""
    if case.attack[0] == "request-flood":
        return "%.0f resp/s%s" % (fig, extra)
    return "open max %.0f%s" % (fig, extra)


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    for b in ("nsproxy-abuse", "nsproxy-echo"):
        if not os.access(os.path.join(build, b), os.X_OK):
            sys.exit("bench: %s/%s missing; build first" % (build, b))
    rounds = B.env_int("BENCH_ABUSE_ROUNDS", 3)
    secs = float(os.environ.get("BENCH_ABUSE_SECONDS") or 8)
    rate = float(os.environ.get("BENCH_ABUSE_RATE") or 10)
    want = (os.environ.get("BENCH_ABUSE_CASES") or "").replace(",", " ").split()
    unknown = set(want) - {c.name for c in CASES} - {"quiet"}
    if unknown:
        sys.exit("bench: unknown BENCH_ABUSE_CASES %s (known: %s)" % (
            " ".join(sorted(unknown)), " ".join(c.name for c in CASES)))
    cases = [c for c in CASES if not want or c.name in want]
    check_against_test()
    t_start = time.monotonic()

    d = B.tempdir("echo")
    echo = B.Proc([os.path.join(build, "nsproxy-echo"), "--listen", "127.0.0.1:0", "--mode", "http"],
                  "nsproxy-echo", os.path.join(d, "log"))
    B.wait_for(lambda: "listening on " in echo.tail(), 10, "nsproxy-echo", echo)
    upstream = re.search(r"listening on (\S+)", echo.tail()).group(1)
    B.log("upstream %s, %d rounds, victim %g req/s for %g s, cases: %s" % (
        upstream, rounds, rate, secs, " ".join(c.name for c in cases) or "quiet only"))

    runs = {c.name: [] for c in [QUIET] + cases}
    seq = 0
    for r in range(rounds):
        k = r % len(cases) if cases else 0
        order = []
        for c in cases[k:] + cases[:k]:
            order += [QUIET, c]
        for c in order or [QUIET]:
            if not echo.alive():
                raise RuntimeError("nsproxy-echo died:\n" + echo.tail())
            seq += 1
            res = run_one(build, upstream, c, seq, secs, rate)
            res["round"] = r + 1
            runs[c.name].append(res)
            v = res["victim"]
            fig, st = attack_figure(res["attacks"])
            B.log("round %d %-29s victim %3d/%3d ok  p50 %7.1f ms  p99 %7.1f ms  max %7.1f ms"
                  "  RSS %6.1f MiB  CPU %3.0f%%  TCP mem %6.1f MiB (at start %.1f)  attack %s %s" % (
                      r + 1, c.name, v["ok"], v["sent"], v["p50_ms"] or -1, v["p99_ms"] or -1,
                      v["max_ms"] or -1, res["rss_max_kb"] / 1024, res["cpu_pct"],
                      res["tcp_mem_max_mib"], res["tcp_mem_start_mib"],
                      "-" if fig is None else "%.0f" % fig, st or ""))
            if v["failed"]:
                B.log("  failures %s: %s" % (json.dumps(v["errors"]), v.get("first_failures")))

    def p99s(name):
        return [x["victim"]["p99_ms"] for x in runs[name] if x["victim"]["p99_ms"] is not None]

    quiet_p99 = B.median(p99s("quiet"))
    rows, summary = [], {}
    for c in [QUIET] + cases:
        rs = runs[c.name]
        m = {
            "ok_pct_min": min(100.0 * x["victim"]["ok"] / max(x["victim"]["sent"], 1) for x in rs),
            "p50_ms": B.median([x["victim"]["p50_ms"] for x in rs if x["victim"]["p50_ms"] is not None]),
            "p99_ms": B.median(p99s(c.name)),
            "rss_max_mib": max(x["rss_max_kb"] for x in rs) / 1024,
            "cpu_pct": B.median([x["cpu_pct"] for x in rs]),
            "tcp_mem_max_mib": max(x["tcp_mem_max_mib"] for x in rs),
            "attack": describe(c, rs),
            "p99_all": [x["victim"]["p99_ms"] for x in rs],
            "max_all": [x["victim"]["max_ms"] for x in rs],
            "failed": sum(x["victim"]["failed"] for x in rs),
            "attack_json": [x["attacks"] for x in rs],
        }
        m["p99_vs_quiet"] = m["p99_ms"] / quiet_p99
        summary[c.name] = m
        rows.append([c.name, "%.1f" % m["ok_pct_min"], "%.1f" % m["p50_ms"], "%.1f" % m["p99_ms"],
                     "%.2f" % m["p99_vs_quiet"], "%.1f" % m["rss_max_mib"], "%.0f" % m["cpu_pct"],
                     m["attack"], "%.0f" % m["tcp_mem_max_mib"]])
    elapsed = time.monotonic() - t_start
    print()
    print("Victim tenant under attack: %g req/s, a new connection each, %g s per run after %g s "
          "of attack ramp-up; %d rounds, quiet before every attack, attack order rotated per "
          "round; medians over rounds (quiet: over all %d quiet runs); nsproxyd "
          "--upstream-idle-timeout 1 --log-level warn, fresh per run" % (
              rate, secs, RAMP_S, rounds, len(runs["quiet"])))
    print(B.table(["attack", "victim ok % (worst)", "p50 ms", "p99 ms", "p99 vs quiet",
                   "daemon RSS max MiB", "daemon CPU %", "attacker's figure", "kernel TCP mem max MiB"],
                  rows))
    print("p99 per round (ms): " + "; ".join(
        "%s %s" % (n, " ".join("%.1f" % x if x is not None else "-" for x in summary[n]["p99_all"]))
        for n in summary))
    print("daemon CPU %: of one CPU, during the victim's run; kernel TCP mem: /proc/net/sockstat, "
          "all namespaces, max over rounds")
    print("(%.0f s)" % elapsed)
    B.save_results("abuse", {"rounds": rounds, "seconds": secs, "rate": rate,
                             "daemon_flags": "--upstream-idle-timeout 1 --log-level warn",
                             "quiet_p99_ms": quiet_p99, "results": summary, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
