#!/usr/bin/env python3
"""Benchmark: HTTPS terminated by the proxy, nsproxyd vs HAProxy 2.6 with `bind ... ssl crt`
and the same certificate, same run.

N tenant namespaces (lo up). One nginx upstream on 127.0.0.1:<free port> in the host
namespace (48-byte static body, keep-alive, plain HTTP). A self-signed P-256 certificate
made with openssl at start; both proxies present it and negotiate the same way (TLS 1.3,
OpenSSL 3's defaults, ALPN http/1.1). One core each (pinned: wrk and nginx on CPU 0, the
proxies on CPU 1):
  nsproxy   nsproxyd --workers 0, one https listener per tenant (127.0.0.1:8443);
  haproxy   HAProxy (nbthread 1, mode http, one `bind 127.0.0.1:8444 namespace <name> ssl
            crt <pem> alpn http/1.1` per tenant), with the identity-header work nsproxy
            does (as in bench_http.py).
wrk (one thread, OpenSSL) runs inside tenant 0's namespace, https://127.0.0.1:<port>/.

Modes:
  keepalive  requests on kept-alive TLS connections: what TLS adds per request (record
             encryption) once the handshake is paid;
  handshake  `Connection: close` on every request: each request is a new TCP connection
             and a full TLS handshake (wrk resumes no session), so req/s is handshakes/s.

Every proxy is measured back to back per mode and round, the order rotating; medians over
the rounds are reported (bench_http.py's measure()).

Environment: BUILD (default build/), BENCH_TENANTS (4), BENCH_TLS_ROUNDS (5),
BENCH_SECONDS (5), BENCH_CONNS (64), BENCH_PIN (1), BENCH_TLS_MODES ("keepalive handshake"),
BENCH_NSPROXYD_FLAGS (default "--workers 0").
"""

import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import benchlib as B  # noqa: E402
import bench_http as H  # noqa: E402

NS_PORT = 8443
HA_PORT = 8444


def make_certificate(d):
    """A self-signed P-256 certificate for 127.0.0.1: (cert, key, cert+key PEM)."""
    cert, key, both = (os.path.join(d, x) for x in ("cert.pem", "key.pem", "both.pem"))
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=bench.nsproxy", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:bench.nsproxy"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl req: " + r.stderr)
    with open(both, "w") as out:
        for p in (cert, key):
            with open(p) as f:
                out.write(f.read())
    return cert, key, both


def check_once(tenant, port):
    out = subprocess.run(B.in_netns(tenant, ["curl", "-sSk", "-o", "-", "-w", " %{http_code}",
                                             "https://127.0.0.1:%d/" % port]),
                         capture_output=True, timeout=10)
    body = out.stdout
    if out.returncode != 0 or not body.endswith(b" 200") or B.NGINX_BODY not in body:
        raise RuntimeError("probe through port %d failed: %r %r" % (port, body, out.stderr))


HEADERS = ["mode", "proxy", "req/s", "p50 us", "p99 us", "CPU us/req", "wrk+nginx us/req",
           "errors", "req/s per round"]


def main():
    B.require_root()
    B.install_cleanup()
    build = B.build_dir()
    n = B.env_int("BENCH_TENANTS", 4)
    rounds = B.env_int("BENCH_TLS_ROUNDS", 5)
    secs = B.env_int("BENCH_SECONDS", 5)
    conns = B.env_int("BENCH_CONNS", 64)
    cpus = os.cpu_count() or 1
    pin = B.env_int("BENCH_PIN", 1) and cpus >= 2
    modes = (os.environ.get("BENCH_TLS_MODES") or "keepalive handshake").split()
    load_cpus, proxy_cpus = ("0", "1") if pin else (None, None)
    t_start = time.monotonic()

    cert, key, both = make_certificate(B.tempdir("pki"))
    names = [B.PREFIX + "t%d" % i for i in range(n)]
    paths = B.make_namespaces(names)
    up_port = B.free_port()
    H.NGINX.append(B.start_nginx(up_port, cpus=load_cpus))
    ns_flags = (os.environ.get("BENCH_NSPROXYD_FLAGS") or "--workers 0").split()

    daemon = B.Daemon(build, "tls", cpus=proxy_cpus, extra=ns_flags)
    for name, path in zip(names, paths):
        B.register(daemon.sock, name, path, [{
            "listen": "127.0.0.1:%d" % NS_PORT, "upstream": "127.0.0.1:%d" % up_port,
            "mode": "https",
            "tls": {"certificates": [{"cert_file": cert, "key_file": key}]}}])
    ha = B.start_haproxy([(nm, HA_PORT) for nm in names], up_port, "tls", cpus=proxy_cpus,
                         ssl_crt=both)
    B.wait_for(lambda: B.probe_in_ns(paths[-1], HA_PORT), 20, "haproxy", ha)
    proxies = [("nsproxy", NS_PORT, daemon.proc), ("haproxy", HA_PORT, ha)]
    for nm in names:
        for _, port, _ in proxies:
            check_once(nm, port)

    B.log("%d tenants, nginx :%d, %s, pin=%s, %d rounds x %d s, %d connections" % (
        n, up_port, ", ".join("%s pid %d" % (p[0], p[2].pid) for p in proxies), bool(pin),
        rounds, secs, conns))
    results = H.measure(proxies, names, modes, rounds, secs, conns, load_cpus, scheme="https")
    summary = H.medians(results, proxies, modes)
    elapsed = time.monotonic() - t_start
    print()
    print("HTTPS terminated by the proxy, one core: %d tenants, wrk -t1 -c%d, %d rounds x %d s, "
          "medians; pinned: %s; nsproxy: %s; handshake: Connection: close, a full TLS 1.3 "
          "handshake per request" % (n, conns, rounds, secs,
                                     "wrk+nginx CPU0, proxies CPU1" if pin else "no",
                                     " ".join(ns_flags)))
    print(B.table(HEADERS, H.table_rows(summary, proxies, modes, "haproxy")))
    print("(%.0f s)" % elapsed)
    B.save_results("tls", {"nsproxyd_flags": " ".join(ns_flags), "tenants": n, "rounds": rounds,
                           "seconds": secs, "conns": conns, "pinned": bool(pin),
                           "results": summary, "elapsed_s": elapsed})


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
