#!/usr/bin/env bash
# Installs the npm packages of test/deploy exactly as its package-lock.json pins them, into
# test/deploy/node_modules (gitignored): the Kubernetes manifests' validation
# (kubernetes-models, typescript, yaml) and prettier for `make format-check`. Idempotent:
# `npm ci` runs only when node_modules is missing or the lock file changed since it ran.
# Needs node and npm (scripts/install-deps.sh) and, when it installs, the npm registry.
set -euo pipefail
cd "$(dirname "$0")/../test/deploy"

stamp=node_modules/.nsproxy-installed-lock
if cmp -s package-lock.json "$stamp"; then
  exit 0
fi
echo "install-npm-deps: npm ci in test/deploy" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
cp package-lock.json "$stamp"
