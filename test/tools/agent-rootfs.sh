#!/usr/bin/env bash
# agent-rootfs.sh BUILD_DIR ROOTFS: lays out the node agent image's file system from a
# build directory, for tests that cannot pull deploy/container/Containerfile's Debian base
# (no registry): the same programs at the package's paths (/usr/sbin/nsproxyd,
# /usr/bin/nsproxyctl, /usr/lib/cni/nsproxy), the shared libraries they load (as ldd
# resolves them here, the loader included), the entrypoint deploy/container/nsproxy-agent,
# and busybox-static for /bin/sh and the few tools the entrypoint uses (sed, sleep).
# Then: tar -C ROOTFS -c . | podman import --change 'ENTRYPOINT [...]' - NAME.
set -euo pipefail
build=$(cd "$1" && pwd)
rootfs=$2
src=$(cd "$(dirname "$0")/../.." && pwd)

mkdir -p "$rootfs"/{bin,usr/sbin,usr/bin,usr/lib/cni,usr/lib/nsproxy,etc/nsproxy,run/nsproxy,tmp,proc,sys,dev}
chmod 1777 "$rootfs/tmp"
install -s -m 0755 "$build/nsproxyd" "$rootfs/usr/sbin/nsproxyd"
install -s -m 0755 "$build/nsproxyctl" "$rootfs/usr/bin/nsproxyctl"
install -s -m 0755 "$build/nsproxy" "$rootfs/usr/lib/cni/nsproxy"
install -m 0755 "$src/deploy/container/nsproxy-agent" "$rootfs/usr/lib/nsproxy/nsproxy-agent"

# Every library ldd resolves ("name => /path (addr)") and the loader ("/lib64/ld-...").
for program in nsproxyd nsproxyctl nsproxy; do
  ldd "$build/$program" 2>/dev/null | awk '
    $2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }' || true
done | sort -u | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

busybox=/bin/busybox
install -m 0755 "$busybox" "$rootfs/bin/busybox"
for applet in sh sed sleep cat ls mkdir rm test [ kill ps; do
  ln -sf busybox "$rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
echo "root:x:0:" >"$rootfs/etc/group"
