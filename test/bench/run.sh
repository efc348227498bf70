#!/usr/bin/env bash
# Runs the nsproxy benchmarks against their peers and prints a summary table (root).
#
#   test/bench/run.sh [BUILD_DIR] [http|tls|memory|cni|listener|storm|abuse ...]
#
# BUILD_DIR defaults to $BUILD or build/. Never part of `make test`; abuse (about 7.5
# minutes) runs only when named. Every benchmark cleans up after itself (namespaces
# nspb-<pid>-..., its processes, temp dirs); this wrapper also removes anything left with
# its own prefix on exit, failure or Ctrl-C.
# Knobs (environment): see the docstring at the top of each bench_*.py and
# docs/benchmarks.md. Defaults take about 15 minutes on a 2-core machine (tls: 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-build}
if [[ $# -gt 0 && $1 != http && $1 != tls && $1 != memory && $1 != cni && $1 != listener &&
      $1 != storm && $1 != abuse ]]; then
  build=$1
  shift
fi
benches=("$@")
[[ ${#benches[@]} -gt 0 ]] || benches=(http tls listener cni storm memory)

if [[ $(id -u) -ne 0 ]]; then
  echo "bench: run as root (network namespaces, setns, bind mounts)" >&2
  exit 1
fi
for tool in wrk haproxy nginx curl ip taskset python3 go gnuplot openssl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done

prefix="nspb-$$-"
work=$(mktemp -d "/tmp/${prefix}run-XXXXXX")
results="$work/results.jsonl"
child=

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  # Backstop: namespaces of this run that a killed benchmark could not remove.
  for ns in /run/netns/"$prefix"*; do
    [[ -e $ns ]] || continue
    umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  rm -rf /tmp/"$prefix"* /dev/shm/"$prefix"* 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

export BUILD=$build BENCH_RESULTS=$results PYTHONDONTWRITEBYTECODE=1
start=$(date +%s)
echo "nsproxy benchmarks: $(date -u +%Y-%m-%dT%H:%M:%SZ), build $build, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for b in "${benches[@]}"; do
  BENCH_PREFIX="${prefix}${b:0:1}-" python3 "$here/bench_$b.py" &
  child=$!
  wait "$child"
  child=
done
python3 "$here/summary.py" "$results"
# The figures (PNG, gnuplot) into docs/ (BENCH_PLOT_DIR), linked from README and
# docs/benchmarks.md.
python3 "$here/plot.py" "$results" "${BENCH_PLOT_DIR:-$here/../../docs}"
echo "total $(( $(date +%s) - start )) s, load now $(cut -d' ' -f1-3 /proc/loadavg)"
