#!/usr/bin/env bash
# oci-archive.sh ROOTFS NAME ARCHIVE: packs the directory ROOTFS as a one-layer image in an
# OCI image layout tar (image-spec v1: oci-layout, index.json, blobs/sha256/...), for tests
# that cannot pull an image (no registry): `ctr images import ARCHIVE` takes it, as does
# `podman load`. NAME (e.g. localhost/nspit-tenant:latest) is written as both annotations
# importers read: io.containerd.image.name and org.opencontainers.image.ref.name (the tag).
# The layer is an uncompressed tar, so its digest is also the config's diff_id. The image
# runs /bin/sh unless the runtime is given a command.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: oci-archive.sh ROOTFS NAME ARCHIVE" >&2; exit 2; }
rootfs=$1 name=$2 archive=$3
[ -d "$rootfs" ] || { echo "oci-archive.sh: $rootfs: not a directory" >&2; exit 1; }

case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

layout=$(mktemp -d)
trap 'rm -rf "$layout"' EXIT
blobs=$layout/blobs/sha256
mkdir -p "$blobs"

# Moves FILE into blobs/ under its digest; prints "DIGEST SIZE".
add_blob() {
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$blobs/$digest"
  echo "$digest $size"
}

# Numeric owners and a fixed order and mtime: the same rootfs gives the same digest.
tar -C "$rootfs" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
  -cf "$layout/layer" .
read -r layer_digest layer_size < <(add_blob "$layout/layer")

printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\
\"config\":{\"Cmd\":[\"/bin/sh\"],\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_digest\"]}}" >"$layout/config"
read -r config_digest config_size < <(add_blob "$layout/config")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\
\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\
\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" >"$layout/manifest"
read -r manifest_digest manifest_size < <(add_blob "$layout/manifest")

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\
\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"},\
\"annotations\":{\"io.containerd.image.name\":\"$name\",\
\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}]}" >"$layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

tar -C "$layout" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
  -cf "$archive" oci-layout index.json blobs
