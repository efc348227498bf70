#!/usr/bin/env bash
# check_manifests.sh SOURCE_DIR BUILD_DIR SCRATCH_DIR: offline checks of deploy/kubernetes.
#  1. `kubectl kustomize` builds the kustomization (no cluster needed).
#  2. validate_manifests.mjs checks the files and that build against the Kubernetes
#     v1.33.0 OpenAPI schemas, strictly (unknown fields refused), and the points issue 12
#     asks of the agent.
#  3. The ConfigMap's nsproxy entry goes through BUILD_DIR's `nsproxyctl cni install`
#     into a bridge network (test/unit/cni_confs/bridge), as the agent installs it: an
#     entry the plugin would refuse fails here, not in every pod's ADD.
# Needs node, kubectl (scripts/install-deps.sh), the npm packages of
# test/deploy/package-lock.json (scripts/install-npm-deps.sh; `make deps` runs both) and
# the built nsproxyctl and nsproxy. No network.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_DIR BUILD_DIR SCRATCH_DIR" >&2
  exit 2
fi
src=$1 build=$2 scratch=$3
here=$src/test/deploy
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

command -v node >/dev/null || fail "node missing: run scripts/install-deps.sh (make deps)"
command -v kubectl >/dev/null || fail "kubectl missing: run scripts/install-deps.sh (make deps)"
cmp -s "$here/package-lock.json" "$here/node_modules/.nsproxy-installed-lock" ||
  fail "test/deploy/node_modules missing or older than package-lock.json: run scripts/install-npm-deps.sh (make deps)"
for b in nsproxyctl nsproxy; do
  [ -x "$build/$b" ] || fail "$build/$b missing: build first (make build)"
done

rm -rf "$scratch"
mkdir -p "$scratch"
# kubectl 1.20 (Debian bookworm's, kustomize v2.0.3) and 1.32 (kustomize v5.5) give the
# same build.
kubectl kustomize "$src/deploy/kubernetes" >"$scratch/kustomized.yaml" ||
  fail "kubectl kustomize deploy/kubernetes failed"
echo "$(kubectl version --client 2>/dev/null | head -1) built the kustomization"

node "$here/validate_manifests.mjs" "$src/deploy/kubernetes" "$scratch/kustomized.yaml" "$scratch"

mkdir -p "$scratch/net.d" "$scratch/bin"
cp "$src"/test/unit/cni_confs/bridge/*.conf "$scratch/net.d/"
"$build/nsproxyctl" cni install --cni-conf-dir "$scratch/net.d" --cni-bin-dir "$scratch/bin" \
  --plugin-binary "$build/nsproxy" --plugin-config "$scratch/plugin.json" ||
  fail "nsproxyctl cni install refused the ConfigMap's plugin.json (deploy/kubernetes/configmap.yaml)"
echo "the ConfigMap's nsproxy entry installs into a bridge network"
