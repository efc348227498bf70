#!/usr/bin/env bash
# Runs each libFuzzer target for a bounded time: `make fuzz` calls this after building.
#   test/fuzz/run.sh BUILD_DIR SECONDS TARGET...
# Each target runs on BUILD_DIR/fuzz-corpus/<target>/, a copy of test/fuzz/corpus/<target>/
# that keeps what earlier runs found. A crash, leak, sanitizer report or a violated
# property leaves the input as BUILD_DIR/fuzz-artifacts/<target>/crash-* (or leak-*,
# timeout-*, oom-*), prints the report, and makes this script exit 1.
set -uo pipefail
cd "$(dirname "$0")/../.."

build=$1
seconds=$2
shift 2

# Smaller ASan quarantine than the default 256 MiB: same checks, far less RSS.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32}

failed=()
summary=()
for target in "$@"; do
  bin="$build/$target"
  corpus="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target"
  log="$build/fuzz-logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  cp -n test/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "test/fuzz/$target.dict" ] && dict=(-dict="test/fuzz/$target.dict")
  echo "fuzz: $target for ${seconds}s (corpus $corpus, log $log)"
  # -timeout: one input taking longer than 10 s is a hang. HTTP inputs may grow past the
  # 64 KiB head limit (431); the JSON targets keep libFuzzer's default length.
  len=()
  [ "$target" = fuzz_http_request ] && len=(-max_len=70000)
  "$bin" "${dict[@]}" "${len[@]}" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
  rc=$?
  done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    failed+=("$target")
    echo "fuzz: $target FAILED (exit $rc); report:" >&2
    grep -E -A60 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error|^fuzz_[a-z_]+: ' "$log" | head -120 >&2
    ls -1 "$artifacts" >&2
    summary+=("$target: FAILED (exit $rc), ${execs:-?} executions; input in $artifacts/")
  else
    summary+=("$target: ${done_line:-no final stats}; ${rate:-?} exec/s")
  fi
done

echo "fuzz summary:"
for line in "${summary[@]}"; do echo "  $line"; done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
