#!/usr/bin/env bash
# Runs every test of one build directory with CTest. Integration tests need root.
set -euo pipefail
build=${1:-build}
if [ "$(id -u)" -ne 0 ]; then
  echo "run-tests: integration tests need root (namespaces); run 'make test' as root" >&2
  exit 1
fi
echo "== tests in $build"
ctest --test-dir "$build" --output-on-failure --no-tests=error -j 2 --timeout 300
