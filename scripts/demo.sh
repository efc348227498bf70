#!/usr/bin/env bash
# Three-tenant demo: three network namespaces with the SAME address (10.0.0.2/24), one
# shared nsproxyd, registered through a real CNI client (cnitool over libcni) running the
# chain [loopback, nsproxy]. Each tenant reaches a host-side upstream at 127.0.0.1:8080
# inside its own namespace. In http mode the upstream learns WHICH tenant is calling
# (X-Tenant-Id, X-Tenant-Label-*, X-Forwarded-For), and a tenant that sends a forged
# X-Tenant-Id does not get it through. After CNI DEL the listener is gone.
#
#   scripts/demo.sh BUILD_DIR          (as root; `make demo` does this)
#
# Environment:
#   DEMO_MODE=http|tcp   http (default): HTTP proxy to an upstream that answers with a
#                        JSON description of the request it received (identity headers);
#                        tcp: byte stream to an echo upstream.
#   DEMO_KEEP_LOGS=1     print the daemon log at the end even on success.
#
# Everything runs on loopback or inside namespaces this script creates, and everything it
# creates (processes, namespaces, temp dir) is removed on exit, failure or Ctrl-C.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage

MODE=${DEMO_MODE:-http}
case "$MODE" in tcp | http) ;; *) echo "demo: DEMO_MODE must be tcp or http" >&2; exit 2 ;; esac

bold="" reset=""
if [ -t 1 ]; then
  bold=$(tput bold 2>/dev/null || true)
  reset=$(tput sgr0 2>/dev/null || true)
fi
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
info() { printf '    %s\n' "$*"; }
indent() { [ -z "$1" ] || printf '%s\n' "$1" | sed 's/^/      /'; }
die() {
  printf '\n%sdemo: FAILED: %s%s\n' "$bold" "$*" "$reset" >&2
  exit 1
}
# Runs a command, echoing it first; its failure is fatal with a clear message.
run() {
  printf '    $ %s\n' "$*"
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  indent "$out"
  [ "$rc" -eq 0 ] || die "command failed (exit $rc): $*"
}

[ "$(id -u)" -eq 0 ] || die "the demo needs root (network namespaces); try: sudo make demo"
BUILD=$(cd "$1" 2>/dev/null && pwd) || die "build directory '$1' does not exist"
for bin in nsproxyd nsproxy nsproxyctl nsproxy-echo cnitool; do
  [ -x "$BUILD/$bin" ] || die "$BUILD/$bin is missing; build first (make build)"
done
tools=(ip python3)
[ "$MODE" = http ] && tools+=(curl)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
[ -x /usr/lib/cni/loopback ] || die "/usr/lib/cni/loopback missing (install containernetworking-plugins)"
# The system interpreter starts much faster than version-manager shims.
if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3); fi

TENANTS=(a b c)
PREFIX="nsp-demo-$$"
TMP=""
ECHO_PID=""
DAEMON_PID=""
CREATED_NS=()

STOP_STATUS=0
stop_pid() { # pid name: SIGTERM, wait up to 5 s, then SIGKILL; exit status in STOP_STATUS
  local pid=$1
  STOP_STATUS=0
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "    $2 (pid $pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || STOP_STATUS=$?
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  step "Cleaning up"
  if [ "$rc" -ne 0 ] && [ -n "$TMP" ]; then
    for log in nsproxyd.log upstream.log; do
      if [ -s "$TMP/$log" ]; then
        echo "    --- last lines of $log:"
        tail -n 30 "$TMP/$log" | sed 's/^/      /'
      fi
    done
  elif [ "${DEMO_KEEP_LOGS:-0}" = 1 ] && [ -s "$TMP/nsproxyd.log" ]; then
    echo "    --- nsproxyd.log:"
    sed 's/^/      /' "$TMP/nsproxyd.log"
  fi
  stop_pid "$DAEMON_PID" nsproxyd
  if [ "$STOP_STATUS" -ne 0 ] && [ "$STOP_STATUS" -ne 127 ]; then
    # nsproxyd exits 0 on SIGTERM; anything else (a crash on shutdown) fails the demo.
    echo "    nsproxyd exited with status $STOP_STATUS on SIGTERM (expected 0)" >&2
    if [ -n "$TMP" ] && [ -s "$TMP/nsproxyd.log" ]; then
      echo "    --- last lines of nsproxyd.log:" >&2
      tail -n 30 "$TMP/nsproxyd.log" | sed 's/^/      /' >&2
    fi
    [ "$rc" -ne 0 ] || rc=1
  fi
  stop_pid "$ECHO_PID" nsproxy-echo
  for ns in "${CREATED_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null
  done
  [ -n "$TMP" ] && rm -rf "$TMP"
  info "stopped processes, deleted ${#CREATED_NS[@]} namespace(s) and the temp dir"
  if [ "$rc" -eq 0 ]; then
    printf '\n%sdemo: OK%s\n' "$bold" "$reset"
  else
    printf '\n%sdemo: exit status %d%s\n' "$bold" "$rc" "$reset" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Temp dir"
TMP=$(mktemp -d /tmp/nsproxy-demo.XXXXXX) || die "mktemp failed"
info "$TMP"

# A small client run inside a namespace: sends one line, half-closes, prints the reply.
# Exit status: 0 reply received, 3 connection refused, 1 anything else.
cat >"$TMP/client.py" <<'EOF'
import socket, sys
host, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode() + b"\n"
try:
    s = socket.create_connection((host, port), timeout=5)
except ConnectionRefusedError:
    print(f"connect {host}:{port}: connection refused")
    sys.exit(3)
except OSError as e:
    print(f"connect {host}:{port}: {e}")
    sys.exit(1)
try:
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except OSError as e:
    print(f"{host}:{port}: {e}")
    sys.exit(1)
if not data.endswith(msg):
    print(f"unexpected reply: {data!r}")
    sys.exit(1)
prefix = data[: len(data) - len(msg)]
if prefix:
    # A PROXY protocol header sent by the proxy to the upstream, echoed back.
    print(f"(upstream received a {len(prefix)}-byte header before the data: {prefix[:16]!r}...)")
print("reply: " + data[len(prefix):].decode().rstrip("\n"))
EOF

# Reads nsproxy-echo's JSON description of a request on stdin, prints the identity the
# upstream received, and checks it: exactly one X-Tenant-Id equal to argv[1], and none of
# the forged values argv[2:] anywhere in the headers. Exit 1 on a mismatch.
cat >"$TMP/identity.py" <<'EOF'
import json, sys
expected, forged = sys.argv[1], sys.argv[2:]
raw = sys.stdin.read()
try:
    seen = json.loads(raw)
    headers = seen["headers"]
except (ValueError, KeyError, TypeError):
    print(f"not an nsproxy-echo answer: {raw[:300]!r}")
    sys.exit(1)
def identity(name):
    n = name.lower()
    return n in ("x-tenant-id", "x-forwarded-for", "forwarded") or n.startswith("x-tenant-label-")
print(f'upstream received {seen["method"]} {seen["path"]} with:')
for name, value in headers:
    if identity(name):
        print(f"  {name}: {value}")
ids = [v for k, v in headers if k.lower() == "x-tenant-id"]
if ids != [expected]:
    print(f"WRONG: expected exactly X-Tenant-Id: {expected}, upstream got {ids}")
    sys.exit(1)
leaked = [f"{k}: {v}" for k, v in headers for f in forged if f in v]
if leaked:
    print(f"WRONG: forged values reached the upstream: {leaked}")
    sys.exit(1)
print(f"  -> the upstream knows this is {expected}" +
      (f"; the forged {', '.join(forged)} did not get through" if forged else ""))
EOF

step "Creating three namespaces that all use 10.0.0.2/24"
for t in "${TENANTS[@]}"; do
  ns="$PREFIX-$t"
  ip netns add "$ns" || die "ip netns add $ns failed"
  CREATED_NS+=("$ns")
  # A dummy interface carries the tenant address; kernels without the dummy module get a
  # veth pair that lives entirely inside the namespace instead.
  if ip -n "$ns" link add eth0 type dummy 2>/dev/null; then
    :
  elif ip -n "$ns" link add eth0 type veth peer name eth0-peer; then
    [ "$t" != a ] || info "(no dummy interfaces on this kernel: using a veth pair inside each namespace)"
    ip -n "$ns" link set eth0-peer up || die "cannot bring eth0-peer up in $ns"
  else
    die "cannot add an interface in $ns (neither dummy nor veth)"
  fi
  ip -n "$ns" addr add 10.0.0.2/24 dev eth0 || die "cannot add 10.0.0.2/24 in $ns"
  ip -n "$ns" link set eth0 up || die "cannot bring eth0 up in $ns"
done
for t in "${TENANTS[@]}"; do
  run ip -n "$PREFIX-$t" addr show
done

step "Starting the upstream (nsproxy-echo, $([ "$MODE" = tcp ] && echo echo || echo http) mode) on host loopback"
ECHO_MODE=$([ "$MODE" = tcp ] && echo echo || echo http)
"$BUILD/nsproxy-echo" --listen 127.0.0.1:0 --mode "$ECHO_MODE" --name demo-upstream \
  >"$TMP/upstream.out" 2>"$TMP/upstream.log" &
ECHO_PID=$!
UPSTREAM=""
for _ in $(seq 50); do
  UPSTREAM=$(sed -n 's/^listening on //p' "$TMP/upstream.out" 2>/dev/null)
  [ -n "$UPSTREAM" ] && break
  kill -0 "$ECHO_PID" 2>/dev/null || die "nsproxy-echo exited: $(cat "$TMP/upstream.log")"
  sleep 0.1
done
[ -n "$UPSTREAM" ] || die "nsproxy-echo did not report its address within 5 s"
info "upstream listening on $UPSTREAM (pid $ECHO_PID)"
UPSTREAM_PORT=${UPSTREAM##*:}
if [ "$MODE" = tcp ]; then
  run "$PYTHON" "$TMP/client.py" 127.0.0.1 "$UPSTREAM_PORT" "hello upstream, from the host"
else
  run curl -sS -m 5 "http://$UPSTREAM/from-the-host"
fi

step "Starting nsproxyd"
SOCK="$TMP/nsproxyd.sock"
mkdir -p "$TMP/state"
printf '    $ %s\n' "$BUILD/nsproxyd --socket $SOCK --state-dir $TMP/state --log-level info &"
"$BUILD/nsproxyd" --socket "$SOCK" --state-dir "$TMP/state" --log-level info \
  >"$TMP/nsproxyd.log" 2>&1 &
DAEMON_PID=$!
ready=0
for _ in $(seq 100); do
  kill -0 "$DAEMON_PID" 2>/dev/null || die "nsproxyd exited during start-up"
  if "$BUILD/nsproxyctl" --socket "$SOCK" status >/dev/null 2>&1; then
    ready=1
    break
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || die "nsproxyd did not become ready within 10 s"
info "nsproxyd is ready (pid $DAEMON_PID)"
run "$BUILD/nsproxyctl" --socket "$SOCK" status

step "CNI plugin directory and network config"
mkdir -p "$TMP/cni-bin" "$TMP/cni-cache"
ln -s "$BUILD/nsproxy" "$TMP/cni-bin/nsproxy"
ln -s /usr/lib/cni/loopback "$TMP/cni-bin/loopback"
cat >"$TMP/demo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "demo",
  "plugins": [
    {"type": "loopback"},
    {
      "type": "nsproxy",
      "socket": "$SOCK",
      "labels": {"env": "demo"},
      "listeners": [
        {"listen": "127.0.0.1:8080", "upstream": "$UPSTREAM", "mode": "$MODE"}
      ]
    }
  ]
}
EOF
run ls -l "$TMP/cni-bin"
run cat "$TMP/demo.conflist"

cni() { # cni add|del TENANT  (CNI_ARGS carry the pod name: it becomes a label)
  "$BUILD/cnitool" --cni-path "$TMP/cni-bin" --cache-dir "$TMP/cni-cache" \
    --container-id "demo-$2" --args "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-$2" \
    "$1" "$TMP/demo.conflist" "/run/netns/$PREFIX-$2"
}

step "CNI ADD for each tenant (cnitool -> libcni -> loopback, nsproxy)"
for t in "${TENANTS[@]}"; do
  printf '    $ cnitool --container-id demo-%s --args "K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-%s" add demo.conflist /run/netns/%s\n' "$t" "$t" "$PREFIX-$t"
  if ! out=$(cni add "$t" 2>&1); then
    indent "$out"
    die "CNI ADD failed for tenant $t"
  fi
  if [ "$t" = a ]; then
    indent "$out"
  else
    info "  ok (same result shape as above)"
  fi
done

step "Registrations in the daemon"
run "$BUILD/nsproxyctl" --socket "$SOCK" list
list=$("$BUILD/nsproxyctl" --socket "$SOCK" list 2>&1) || die "nsproxyctl list failed"
for t in "${TENANTS[@]}"; do
  if ! grep -q -e "demo-$t" -e "$PREFIX-$t" <<<"$list"; then
    die "nsproxyctl list does not show tenant $t (container demo-$t, netns $PREFIX-$t)"
  fi
done

step "Each tenant talks to 127.0.0.1:8080 inside its own namespace"
for t in "${TENANTS[@]}"; do
  ns="$PREFIX-$t"
  if [ "$MODE" = tcp ]; then
    run ip netns exec "$ns" "$PYTHON" "$TMP/client.py" 127.0.0.1 8080 "hello from tenant $t (10.0.0.2)"
  else
    run ip netns exec "$ns" curl -sS -m 5 "http://127.0.0.1:8080/hello-from-$t"
  fi
done

if [ "$MODE" = http ]; then
  # curl inside a tenant namespace; the upstream's JSON answer goes to identity.py.
  identity() { # identity TENANT EXPECTED_ID [FORGED_VALUE...] -- CURL_ARGS...
    local t=$1 expected=$2
    shift 2
    local forged=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do forged+=("$1"); shift; done
    shift
    printf '    $ ip netns exec %s curl -sS' "$PREFIX-$t"
    printf " %q" "$@"
    printf '\n'
    local out rc=0
    out=$(ip netns exec "$PREFIX-$t" curl -sS -m 5 "$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] || { indent "$out"; die "curl failed in tenant $t (exit $rc)"; }
    out=$(printf '%s' "$out" | "$PYTHON" "$TMP/identity.py" "$expected" "${forged[@]}" 2>&1) || rc=$?
    indent "$out"
    [ "$rc" -eq 0 ] || die "tenant $t: the upstream did not receive the expected identity"
  }

  step "The identity the upstream received, per tenant (all three are 10.0.0.2)"
  for t in "${TENANTS[@]}"; do
    identity "$t" "demo-$t" -- "http://127.0.0.1:8080/whoami"
  done

  step "A tenant forging its identity: the upstream still sees the real one"
  for t in "${TENANTS[@]}"; do
    # Mixed case and duplicates, a forged label and a forged client address.
    identity "$t" "demo-$t" someone-else pod-of-someone-else 6.6.6.6 -- \
      -H "X-Tenant-Id: someone-else" -H "x-tenant-id: someone-else" \
      -H "X-Tenant-Label-pod-name: pod-of-someone-else" -H "X-Forwarded-For: 6.6.6.6" \
      "http://127.0.0.1:8080/forged-by-$t"
  done
fi

step "CNI DEL for each tenant"
for t in "${TENANTS[@]}"; do
  printf '    $ cnitool --container-id demo-%s del demo.conflist /run/netns/%s\n' "$t" "$PREFIX-$t"
  if ! out=$(cni del "$t" 2>&1); then
    indent "$out"
    die "CNI DEL failed for tenant $t"
  fi
  info "  ok"
done

step "Registrations after DEL (expected: none)"
run "$BUILD/nsproxyctl" --socket "$SOCK" list
list=$("$BUILD/nsproxyctl" --socket "$SOCK" list 2>&1) || die "nsproxyctl list failed"
for t in "${TENANTS[@]}"; do
  if grep -q -e "demo-$t" -e "$PREFIX-$t" <<<"$list"; then
    die "tenant $t is still registered after CNI DEL"
  fi
done

step "Nothing listens inside the namespaces any more"
for t in "${TENANTS[@]}"; do
  ns="$PREFIX-$t"
  printf '    $ ip netns exec %s ss -ltn\n' "$ns"
  out=$(ip netns exec "$ns" ss -ltn 2>&1) || die "ss failed in $ns"
  indent "$out"
  if grep -q ':8080 ' <<<"$out"; then
    die "something still listens on port 8080 in $ns after CNI DEL"
  fi
done

step "Connecting inside the namespaces now fails"
info "(the loopback plugin's DEL took lo down; bring it back up so the kernel can answer)"
for t in "${TENANTS[@]}"; do
  ns="$PREFIX-$t"
  ip -n "$ns" link set lo up || die "cannot bring lo up in $ns"
  printf '    $ ip netns exec %s python3 client.py 127.0.0.1 8080 ...\n' "$ns"
  set +e
  out=$(ip netns exec "$ns" "$PYTHON" "$TMP/client.py" 127.0.0.1 8080 "still there?" 2>&1)
  rc=$?
  set -e
  indent "$out"
  [ "$rc" -eq 3 ] || die "expected 'connection refused' in $ns after DEL (client exit $rc)"
done

step "Demo complete: three tenants with the same address were served by one daemon"
