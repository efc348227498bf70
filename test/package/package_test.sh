#!/usr/bin/env bash
# package_test.sh CHECK BUILD_DIR SOURCE_DIR VERSION: one check of the .deb that
# `make package` built in BUILD_DIR.
#   contents           file list (exactly dist/package-layout.txt) and control fields
#   lintian            no lintian errors (warnings are printed)
#   unpacked-binaries  unpacked into a scratch root, the programs run and print VERSION
#   units              systemd-analyze verify on the packaged units; the service's
#                      exposure level (systemd-analyze security --offline) printed and
#                      no worse than MEDIUM
set -euo pipefail
check=$1 build=$2 src=$3 version=$4
arch=$(dpkg --print-architecture)
deb="$build/nsproxy_${version}_${arch}.deb"
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ -f $deb ]] || fail "$deb missing: build it with 'make package' (make test does)"
scratch=$(mktemp -d /tmp/nsproxy-pkgtest-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

case $check in
contents)
  # Regular files and links, as paths; directories are implied.
  dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {p=$6; sub(/^\./, "", p); print p}' | sort >"$scratch/got"
  grep -v '^#' "$src/dist/package-layout.txt" | sort >"$scratch/want"
  diff -u "$scratch/want" "$scratch/got" || fail "the package's files differ from dist/package-layout.txt (- expected, + in the package)"
  field() { dpkg-deb -f "$deb" "$1"; }
  [[ $(field Package) == nsproxy ]] || fail "Package: $(field Package)"
  [[ $(field Version) == "$version" ]] || fail "Version: $(field Version), project(VERSION) is $version"
  [[ $(field Architecture) == "$arch" ]] || fail "Architecture: $(field Architecture)"
  depends=$(field Depends)
  for lib in libc6 libstdc++6 libev4 libnl-3-200 libnl-route-3-200 libhttp-parser2.9 libsystemd0 init-system-helpers; do
    [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
  done
  dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$scratch"
  [[ $(cat "$scratch/conffiles") == /etc/default/nsproxyd ]] || fail "conffiles: $(cat "$scratch/conffiles")"
  for s in postinst prerm postrm; do
    [[ -x $scratch/$s ]] || fail "maintainer script $s missing or not executable"
    sh -n "$scratch/$s" || fail "$s: syntax error"
  done
  grep -q 'reload-or-restart' "$scratch/postinst" || fail "postinst does not reload (takeover) on upgrade"
  grep -q '"\$1" = "remove"' "$scratch/prerm" || fail "prerm must stop the service on remove only"
  echo "package contents: $(wc -l <"$scratch/got") files; Depends: $depends"
  ;;
lintian)
  # lintian refuses nothing as root but says so; its tags are what matters.
  out=$(lintian --no-tag-display-limit --display-info "$deb" 2>&1 || true)
  echo "$out"
  if grep -q '^E: ' <<<"$out"; then fail "lintian reported errors"; fi
  echo "lintian: no errors ($(grep -c '^W: ' <<<"$out" || true) warnings, $(grep -c '^I: ' <<<"$out" || true) infos)"
  ;;
unpacked-binaries)
  dpkg-deb -x "$deb" "$scratch/root"
  r=$scratch/root
  got=$("$r/usr/sbin/nsproxyd" --version) || fail "nsproxyd --version failed"
  [[ $got == "nsproxyd $version" ]] || fail "nsproxyd --version: $got"
  got=$("$r/usr/bin/nsproxyctl" --version)
  [[ $got == "nsproxyctl $version" ]] || fail "nsproxyctl --version: $got"
  "$r/usr/bin/nsproxyctl" --help | grep -q '^usage: nsproxyctl' || fail "nsproxyctl --help"
  got=$(CNI_COMMAND=VERSION "$r/usr/lib/cni/nsproxy" </dev/null)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert "1.0.0" in d["supportedVersions"], d' "$got" \
    || fail "the plugin's VERSION: $got"
  "$r/usr/lib/cni/nsproxy" --version | grep -q "nsproxy CNI plugin $version" || fail "nsproxy --version"
  # Stripped, and the daemon hardened like Debian's own packages.
  file "$r/usr/sbin/nsproxyd" | grep -q 'stripped' || fail "nsproxyd is not stripped"
  file "$r/usr/sbin/nsproxyd" | grep -q 'not stripped' && fail "nsproxyd is not stripped"
  for m in nsproxyd.8 nsproxy.8; do zcat "$r/usr/share/man/man8/$m.gz" | grep -q "^\.TH .*nsproxy $version" || fail "$m"; done
  echo "unpacked binaries run: nsproxyd, nsproxyctl, the plugin print $version"
  ;;
units)
  dpkg-deb -x "$deb" "$scratch/root"
  r=$scratch/root
  # The units refer to systemd's own (sysinit.target, multi-user.target): the root gets
  # this machine's, as on a host where the package is installed.
  mkdir -p "$r/usr/lib/systemd"
  cp -a /lib/systemd/system "$r/usr/lib/systemd/"
  for u in nsproxyd.service nsproxyd.socket; do
    out=$(systemd-analyze verify --man=no --root="$r" "$r/lib/systemd/system/$u" 2>&1) || fail "systemd-analyze verify $u: $out"
    # verify prints problems (unknown keys, missing executables) without failing on all of them.
    if [[ -n $out ]]; then fail "systemd-analyze verify $u: $out"; fi
  done
  sec=$(systemd-analyze security --offline=true --root="$r" "$r/lib/systemd/system/nsproxyd.service" 2>&1 || true)
  level=$(grep -o 'Overall exposure level for .*' <<<"$sec" || true)
  [[ -n $level ]] || fail "no exposure level from systemd-analyze security: $sec"
  echo "$level"
  score=$(grep -oE 'level for [^:]+: [0-9.]+' <<<"$level" | grep -oE '[0-9.]+$')
  # MEDIUM is up to 6.9 on systemd's scale (0 best, 10 worst); setns needs CAP_SYS_ADMIN.
  awk -v s="$score" 'BEGIN { exit !(s < 7.0) }' || fail "exposure $score is worse than MEDIUM"
  ;;
*)
  fail "unknown check $check"
  ;;
esac
