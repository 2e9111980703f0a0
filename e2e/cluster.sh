#!/usr/bin/env bash
# Runs the real-cluster suites when KUBECONFIG (or ~/.kube/config) reaches a cluster, and says
# SKIPPED, with the reason, for each one that cannot run. A skip is never reported as a pass.
#
#   cluster: the CRD and the sample deals against the API server (needs only a cluster);
#   flow:    the chart installed and a deal run from approval to deletion (needs the images too,
#            named by TIMEDEAL_E2E_OPERATOR_IMAGE and TIMEDEAL_E2E_TENANT_IMAGE; scripts/kind.sh
#            builds them and loads them into a kind cluster).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v kubectl >/dev/null 2>&1; then
  echo "e2e cluster suites: SKIPPED (kubectl is not installed)"
  exit 0
fi
if ! reason=$(kubectl version --request-timeout=5s 2>&1 >/dev/null) \
   || ! kubectl get --raw=/readyz --request-timeout=5s >/dev/null 2>&1; then
  echo "e2e cluster suites: SKIPPED (no Kubernetes cluster reachable through KUBECONFIG=${KUBECONFIG:-~/.kube/config}: $(echo "$reason" | tail -n 1))"
  exit 0
fi
echo "e2e cluster suite: running against $(kubectl config current-context)"
cargo test -p timedeal-e2e --test cluster --locked -- --ignored

if [ -z "${TIMEDEAL_E2E_OPERATOR_IMAGE:-}" ] || [ -z "${TIMEDEAL_E2E_TENANT_IMAGE:-}" ]; then
  echo "e2e flow suite: SKIPPED (set TIMEDEAL_E2E_OPERATOR_IMAGE and TIMEDEAL_E2E_TENANT_IMAGE to images the cluster can run; scripts/kind.sh builds and loads them)"
  exit 0
fi
echo "e2e flow suite: running against $(kubectl config current-context) with $TIMEDEAL_E2E_OPERATOR_IMAGE and $TIMEDEAL_E2E_TENANT_IMAGE"
cargo test -p timedeal-e2e --test flow --locked -- --ignored --nocapture
