#!/usr/bin/env bash
# package_test.sh CHECK BUILD_DIR SOURCE_DIR VERSION: one check of the .deb that
# `make package` built in BUILD_DIR.
#   contents           file list (exactly dist/package-layout.txt) and control fields
#   lintian            no lintian errors (warnings are printed)
#   unpacked-binaries  unpacked into a scratch root, the programs run and print VERSION
#   units              the directives README promises are in nsproxyd.service;
#                      systemd-analyze verify on the packaged units; the service's
#                      exposure level (systemd-analyze security --offline) printed and
#                      equal to the one README quotes ("rates it **3.0 OK**")
#   examples           every nsproxy entry of the shipped example conflists passes the
#                      shipped plugin's config checks (ADD gets as far as the daemon:
#                      code 11, not 6/7)
#   maintainer-scripts postinst/prerm/postrm run against stub systemctl,
#                      deb-systemd-helper and deb-systemd-invoke: what each dpkg call
#                      asks systemd to do
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
  # lintian refuses nothing as root but says so; its tags are what matters. Exit status
  # (lintian(1), 2.116): 1 is its own run-time error (an unreadable archive: "Skipping"),
  # 2 a tag named by --fail-on (default error), and 2 also for a file it cannot read.
  # --fail-on none leaves the tags to the E: check below, so any non-zero status means
  # lintian did not check the package and its silence proves nothing.
  rc=0
  out=$(lintian --fail-on none --no-tag-display-limit --display-info "$deb" 2>&1) || rc=$?
  echo "$out"
  [[ $rc == 0 ]] || fail "lintian could not check the package (exit $rc)"
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
  # What README ("Run under systemd", "Upgrading") promises of the service, one
  # extended regular expression per directive, matched against whole lines.
  unit=$r/lib/systemd/system/nsproxyd.service
  for want in 'Type=notify' 'NotifyAccess=all' 'Restart=on-failure' 'LimitNOFILE=[0-9]+' \
              'RuntimeDirectory=nsproxy' 'RuntimeDirectoryPreserve=yes' \
              'ExecReload=/usr/sbin/nsproxyd (.* )?--takeover( .*)?' 'NoNewPrivileges=yes' \
              'CapabilityBoundingSet=.+' 'SystemCallFilter=.+'; do
    grep -qxE "$want" "$unit" || fail "nsproxyd.service has no line matching '$want' (README promises it)"
  done
  sec=$(systemd-analyze security --offline=true --root="$r" "$r/lib/systemd/system/nsproxyd.service" 2>&1 || true)
  level=$(grep -o 'Overall exposure level for .*' <<<"$sec" || true)
  [[ -n $level ]] || fail "no exposure level from systemd-analyze security: $sec"
  echo "$level"
  score=$(grep -oE 'level for [^:]+: [0-9.]+' <<<"$level" | grep -oE '[0-9.]+$')
  # 0 best, 10 worst (root, CAP_SYS_ADMIN for setns, the host network and
  # NotifyAccess=all are what remain). README quotes the score ("`systemd-analyze
  # security --offline=true` rates it **3.0 OK**", across a line break): any change, a
  # lost hardening setting or a new one, must show up there too.
  quoted=$(tr '\n' ' ' <"$src/README.md" | grep -oE 'systemd-analyze security[^*]{0,60}\*\*[0-9]+\.[0-9]+' \
    | grep -oE '[0-9]+\.[0-9]+$' || true)
  [[ -n $quoted ]] || fail "README.md no longer quotes the exposure level (\"systemd-analyze security ... rates it **N.N ...**\")"
  [[ $score == "$quoted" ]] \
    || fail "exposure level $score, README.md says $quoted: update README (\"Run under systemd\") if the unit's hardening changed on purpose"
  ;;
examples)
  dpkg-deb -x "$deb" "$scratch/root"
  r=$scratch/root
  n=0
  for f in "$r"/usr/share/doc/nsproxy/examples/*.conflist; do
    # Each nsproxy entry as the runtime hands it to the plugin (cniVersion and name from
    # the list), pointed at a socket nobody serves.
    confs=$(python3 - "$f" "$scratch/none.sock" <<'PY'
import json, sys
conf = json.load(open(sys.argv[1]))
for p in conf["plugins"]:
    if p.get("type") == "nsproxy":
        print(json.dumps(dict(p, cniVersion=conf["cniVersion"], name=conf["name"],
                              socket=sys.argv[2], timeoutMs=500)))
PY
) || fail "$(basename "$f"): not valid JSON"
    [[ -n $confs ]] || fail "$(basename "$f") has no nsproxy entry"
    while IFS= read -r conf; do
      out=$(CNI_COMMAND=ADD CNI_CONTAINERID=example CNI_NETNS=/proc/self/ns/net CNI_IFNAME=eth0 \
            CNI_PATH=/usr/lib/cni "$r/usr/lib/cni/nsproxy" <<<"$conf" || true)
      code=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("code"))' "$out" 2>/dev/null || true)
      [[ $code == 11 ]] || fail "$(basename "$f"): the plugin refused the nsproxy entry: $out"
      n=$((n + 1))
    done <<<"$confs"
  done
  echo "examples: $n nsproxy entries accepted by the packaged plugin"
  ;;
maintainer-scripts)
  dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$scratch"
  # Stubs log their arguments; `systemctl is-active` answers from $ACTIVE. The scripts
  # test /run/systemd/system (absent here): they run with a scratch directory instead.
  mkdir -p "$scratch/bin" "$scratch/run-systemd-system"
  for c in systemctl deb-systemd-helper deb-systemd-invoke; do
    cat >"$scratch/bin/$c" <<STUB
#!/bin/sh
echo "$c \$*" >>"$scratch/calls"
if [ "$c \$1" = "systemctl --quiet" ] && [ "\$2" = is-active ]; then [ "\$ACTIVE" = yes ]; exit; fi
if [ "$c \$1 \$2" = "deb-systemd-helper --quiet was-enabled" ]; then [ "\$WAS_ENABLED" = yes ]; exit; fi
exit 0
STUB
    chmod +x "$scratch/bin/$c"
  done
  for s in postinst prerm postrm; do
    sed "s|/run/systemd/system|$scratch/run-systemd-system|g; s|/usr/bin/deb-systemd-helper|$scratch/bin/deb-systemd-helper|g" \
      "$scratch/$s" >"$scratch/$s.test"
  done
  run() {  # run SCRIPT ARGS...: prints the systemd-related calls, one per line
    : >"$scratch/calls"
    PATH="$scratch/bin:$PATH" sh "$scratch/$1.test" "${@:2}" >/dev/null 2>"$scratch/stderr" \
      || fail "$1 $*: exit $?: $(cat "$scratch/stderr")"
    grep -v -e ' unmask ' -e ' update-state ' -e ' --quiet was-enabled ' -e ' --quiet is-active ' "$scratch/calls" || true
  }
  expect() {  # expect WHAT WANT GOT
    [[ $3 == "$2" ]] || fail "$1: expected
$2
got
$3"
  }
  # First install: enable and start the service; the socket stays disabled.
  got=$(WAS_ENABLED=yes run postinst configure)
  expect "postinst configure (first install)" "deb-systemd-helper enable nsproxyd.service
systemctl --system daemon-reload
deb-systemd-invoke start nsproxyd.service" "$got"
  # Upgrade of a running daemon: reload (takeover), never stop and start.
  got=$(WAS_ENABLED=yes ACTIVE=yes run postinst configure 0.0.9)
  expect "postinst configure 0.0.9 (upgrade, running)" "deb-systemd-helper enable nsproxyd.service
systemctl --system daemon-reload
deb-systemd-invoke reload-or-restart nsproxyd.service" "$got"
  # Upgrade while stopped: start, which deb-systemd-invoke skips for a disabled unit.
  got=$(WAS_ENABLED=no ACTIVE=no run postinst configure 0.0.9)
  expect "postinst configure 0.0.9 (upgrade, stopped, disabled by the admin)" "systemctl --system daemon-reload
deb-systemd-invoke start nsproxyd.service" "$got"
  grep -q 'enable.*nsproxyd.socket' "$scratch/calls" && fail "postinst enables nsproxyd.socket (opt-in only)"
  # prerm: stop on remove only; an upgrade keeps the daemon serving.
  got=$(run prerm upgrade 0.1.1)
  expect "prerm upgrade" "" "$got"
  got=$(run prerm remove)
  expect "prerm remove" "deb-systemd-invoke stop nsproxyd.socket nsproxyd.service" "$got"
  # postrm: purge forgets the helper's state of both units.
  got=$(run postrm purge)
  [[ $got == *"deb-systemd-helper purge nsproxyd.service nsproxyd.socket"* ]] \
    || fail "postrm purge does not purge the helper state: $got"
  got=$(run postrm upgrade 0.1.1)
  expect "postrm upgrade" "" "$got"
  echo "maintainer scripts: install enables+starts, upgrade reloads (takeover), prerm stops on remove only, purge forgets"
  ;;
*)
  fail "unknown check $check"
  ;;
esac
