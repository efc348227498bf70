#!/usr/bin/env bash
# instructions_per_request.sh NSPROXYD [NSPROXYD ...]: instructions nsproxyd executes
# per keep-alive HTTP request, counted by valgrind's callgrind (a count, not a time: the
# same on a busy machine, where CPU-time comparisons of two builds differ by a few percent
# between runs). Each binary serves one tenant namespace; curl sends N requests over one
# keep-alive connection, for N = 500 and N = 2500; per request = the difference / 2000,
# which cancels start-up, registration and shutdown. Used to measure what per-tenant
# counting costs (docs/benchmarks.md): pass the build before it and the build after.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
echo_bin=${ECHO_BIN:-$here/../../build/nsproxy-echo}
prefix="nspi-$$"
work=$(mktemp -d "/tmp/$prefix-XXXXXX")
ns="$prefix-t"
cleanup() {
  pkill -f "$work/" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
"$echo_bin" --listen 127.0.0.1:0 --mode http >"$work/echo.out" 2>&1 &
for _ in $(seq 50); do grep -q 'listening on' "$work/echo.out" && break; sleep 0.1; done
up=$(sed -n 's/.*listening on //p' "$work/echo.out" | head -1)

count() {  # binary requests -> instructions
  local bin=$1 n=$2 d="$work/run-$RANDOM"
  mkdir -p "$d"
  valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$bin" --socket "$d/s.sock" \
    --state-dir "$d/state" --log-level warn >"$d/log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do [[ -S $d/s.sock ]] && break; sleep 0.1; done
  "$(dirname "$bin")/nsproxyctl" --socket "$d/s.sock" add --id t --netns "/run/netns/$ns" \
    --listen 127.0.0.1:8080 --upstream "$up" >/dev/null 2>&1 ||
    "$here/../../build/nsproxyctl" --socket "$d/s.sock" add --id t --netns "/run/netns/$ns" \
      --listen 127.0.0.1:8080 --upstream "$up" >/dev/null
  ip netns exec "$ns" curl -s -o /dev/null "http://127.0.0.1:8080/r[1-$n]"
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p;s/^totals: //p' "$d/cg.out" | head -1
}

for bin in "$@"; do
  a=$(count "$bin" 500)
  b=$(count "$bin" 2500)
  echo "$bin: $(( (b - a) / 2000 )) instructions per keep-alive request ($a at 500, $b at 2500)"
done
