#!/usr/bin/env bash
# A local kind cluster with Timedeal's images in it, for people with Docker, then the real-cluster
# suites against it:
#
#   scripts/kind.sh            create (or reuse) the cluster `timedeal`, build and load both
#                              images, run e2e/cluster.sh with them
#   scripts/kind.sh delete     delete the cluster
#
# Needs docker, kind and kubectl on the PATH, and helm (`make setup` puts it in .tools/bin).
# The hosted CI workflow (.github/workflows/e2e.yaml) runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cluster=${TIMEDEAL_KIND_CLUSTER:-timedeal}
tag=${TIMEDEAL_E2E_TAG:-e2e}
operator_image="ghcr.io/timedeal/timedeal-operator:$tag"
tenant_image="ghcr.io/timedeal/tenant-app:$tag"

say() { echo "kind: $*" >&2; }
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is not installed; it is needed to run a local cluster"; exit 1; }
done

if [ "${1:-}" = delete ]; then
  kind delete cluster --name "$cluster"
  exit 0
fi

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing the cluster $cluster"
else
  say "creating the cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
fi
kubectl config use-context "kind-$cluster" >/dev/null

say "building $operator_image"
docker build -f operator/Dockerfile -t "$operator_image" .
say "building $tenant_image"
docker build -f tenant-app/Dockerfile -t "$tenant_image" .
say "loading both images into $cluster"
kind load docker-image --name "$cluster" "$operator_image" "$tenant_image"

export TIMEDEAL_E2E_OPERATOR_IMAGE="$operator_image" TIMEDEAL_E2E_TENANT_IMAGE="$tenant_image"
e2e/cluster.sh
