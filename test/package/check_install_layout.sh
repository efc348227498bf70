#!/usr/bin/env bash
# check_install_layout.sh BUILD_DIR: `make install DESTDIR=<scratch>` with the default
# PREFIX, CNI_BIN_DIR and SYSTEMD_UNIT_DIR lays out exactly dist/install-layout.txt (what
# README's "Install" section quotes), and the installed units pass systemd-analyze verify.
# Run by `make test` before the test suites (it re-configures BUILD_DIR's install paths).
set -euo pipefail
build=${1:-build}
src=$(cd "$(dirname "$0")/../.." && pwd)
scratch=$(mktemp -d /tmp/nsproxy-install-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
make -C "$src" --no-print-directory install BUILD="$build" DESTDIR="$scratch" >"$scratch.log" 2>&1 \
  || { cat "$scratch.log"; rm -f "$scratch.log"; echo "FAIL: make install" >&2; exit 1; }
rm -f "$scratch.log"
(cd "$scratch" && find . -type f -o -type l) | sed 's|^\.||' | sort >"$scratch.got"
grep -v '^#' "$src/dist/install-layout.txt" | sort >"$scratch.want"
if ! diff -u "$scratch.want" "$scratch.got"; then
  rm -f "$scratch.got" "$scratch.want"
  echo "FAIL: make install laid out something else than dist/install-layout.txt (- expected, + installed)" >&2
  exit 1
fi
# README quotes the same list (the code block after "lays out exactly").
awk '/lays out exactly/ {on=1; next} on && /^```$/ {if (inblock) exit; inblock=1; next} on && inblock' \
  "$src/README.md" | sort >"$scratch.readme"
if ! diff -u "$scratch.want" "$scratch.readme"; then
  rm -f "$scratch.got" "$scratch.want" "$scratch.readme"
  echo "FAIL: README's \"From source\" layout differs from dist/install-layout.txt (- file, + README)" >&2
  exit 1
fi
rm -f "$scratch.got" "$scratch.want" "$scratch.readme"
grep -q "^ExecStart=/usr/local/sbin/nsproxyd " "$scratch/usr/local/lib/systemd/system/nsproxyd.service" \
  || { echo "FAIL: the installed unit does not run /usr/local/sbin/nsproxyd" >&2; exit 1; }
# The units refer to systemd's own targets: a copy of this machine's, beside them.
root=$(mktemp -d /tmp/nsproxy-verify-XXXXXX)
cp -a "$scratch/." "$root/"
mkdir -p "$root/usr/lib/systemd"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"
for u in nsproxyd.service nsproxyd.socket; do
  out=$(systemd-analyze verify --man=no --root="$root" "$root/usr/local/lib/systemd/system/$u" 2>&1) \
    && [[ -z $out ]] || { rm -rf "$root"; echo "FAIL: systemd-analyze verify $u: $out" >&2; exit 1; }
done
rm -rf "$root"
"$scratch/usr/local/sbin/nsproxyd" --version >/dev/null
echo "make install: $(grep -vc '^#' "$src/dist/install-layout.txt") files where dist/install-layout.txt says; units verified"
