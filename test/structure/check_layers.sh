#!/usr/bin/env bash
# The include arrows point one way (proxy/CMakeLists.txt draws the layers):
#   shared/, plugin/        never include the daemon's code, never libev
#   proxy/forward/          shared/ and itself: never forward/http/, control/ or the daemon
#   proxy/forward/http/     shared/, forward/ and itself: never control/ or the daemon
#   proxy/control/          shared/, forward/ (and http/): never the daemon's top level
# Prints every include that points the wrong way; exits 1 when there is one.
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
top='"(daemon|daemon_options|systemd)\.h"'
status=0
check() {  # check <description> <pattern> <files...>
  local what=$1 pattern=$2
  shift 2
  local hits
  hits=$(grep -HnE "^#include ${pattern}" "$@" 2>/dev/null || true)
  if [ -n "$hits" ]; then
    echo "layering: $what:"
    echo "$hits"
    status=1
  fi
}
mapfile -t shared_plugin < <(find shared plugin -name '*.h' -o -name '*.cc')
mapfile -t forward < <(find proxy/forward -path proxy/forward/http -prune -o \( -name '*.h' -o -name '*.cc' \) -print)
mapfile -t http < <(find proxy/forward/http -name '*.h' -o -name '*.cc')
mapfile -t control < <(find proxy/control -name '*.h' -o -name '*.cc')
check "shared/ and plugin/ include the daemon" '("(forward|control)/|<ev\.h>)' "${shared_plugin[@]}"
check "forward/ includes a layer above it" "(\"(forward/http|control)/|${top})" "${forward[@]}"
check "forward/http/ includes a layer above it" "(\"control/|${top})" "${http[@]}"
check "control/ includes the daemon's top level" "${top}" "${control[@]}"
[ "$status" -eq 0 ] && echo "layering: every include points down (${#forward[@]} forward, ${#http[@]} http, ${#control[@]} control files)"
exit "$status"
