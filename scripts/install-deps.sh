#!/usr/bin/env bash
# Installs every Debian package that nsproxy's build, tests, demo and benchmarks need.
# Idempotent: runs `apt-get update` and `apt-get install` only when something is missing.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config
  libev-dev libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libhttp-parser-dev libssl-dev
  libgtest-dev googletest
  libsystemd-dev
  # tests and demo
  iproute2 curl procps psmisc python3 strace openssl
  containernetworking-plugins golang-go golang-github-appc-cni-dev
  # real container runtimes for end-to-end tests: podman (CNI network backend) and
  # containerd with ctr (go-cni, as its CRI plugin wires Kubernetes pods); the tests
  # start their own containerd, never the system's service
  podman runc busybox-static containerd
  # fuzzing and sanitizers; clang-format for make format-check
  clang libclang-rt-14-dev clang-format
  # packaging and operating: the .deb's checks, the systemd unit checks, a real scraper
  lintian dpkg-dev systemd prometheus
  # benchmarks and real peers: the Go peer (test/bench/gopeer) uses containernetworking's
  # ns package; gnuplot draws the figures
  nginx wrk haproxy golang-github-containernetworking-plugins-dev gnuplot-nox
)

# The Kubernetes manifests' test (test/deploy): node and npm for its validator
# (scripts/install-npm-deps.sh installs the npm packages), kubectl for `kubectl
# kustomize`. Debian's packages only where the command is missing: a machine may have
# them from elsewhere (NodeSource's nodejs bundles npm, and Google Cloud's kubectl
# package owns /usr/bin/kubectl, which Debian's kubernetes-client would collide with).
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi

echo "install-deps: installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
