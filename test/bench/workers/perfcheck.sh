#!/bin/bash
# perf stat cross-check of the in-process syscall counters: one run per variant.
cd "$(dirname "$0")"
n=${1:-100}
for v in a b c d e; do
  out=$(mktemp)
  ./pw perf $n 2 $v > $out 2>&1 &
  bg=$!
  for i in $(seq 100); do grep -q READY $out && break; sleep 0.05; done
  pid=$(awk '/READY/{print $2}' $out)
  perf stat -e raw_syscalls:sys_enter --per-thread -p $pid -o raw/perf_${v}_n$n.txt -- sleep 4.4 2>/dev/null
  wait $bg
  echo "== $v"; grep -E "TOTAL|load" $out; grep sys_enter raw/perf_${v}_n$n.txt
  cat $out >> raw/perf_${v}_n$n.txt; rm -f $out
done
