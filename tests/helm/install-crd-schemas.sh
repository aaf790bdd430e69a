#!/usr/bin/env bash
# Prints the node_modules directory of the npm packages that validate the CRD kinds the
# chart renders (Gateway API HTTPRoute, Prometheus Operator PrometheusRule and
# ServiceMonitor), installing them when missing. Their validators are compiled from the
# projects' own CRD schemas; nothing is fetched at test time once they are installed.
#
# Installed into $BLOBGATE_CRD_SCHEMAS_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/crd-schemas). Idempotent: a stamp file names
# the installed packages, and nothing is downloaded while it matches. Exits 3 when an
# install is needed but npm (or node, which runs the validators) is missing.
set -euo pipefail

PACKAGES=("@kubernetes-models/gateway-api@2.0.0" "@kubernetes-models/prometheus-operator@6.0.0")
CACHE_DIR="${BLOBGATE_CRD_SCHEMAS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/crd-schemas}"
STAMP="$CACHE_DIR/installed"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "${PACKAGES[*]}" ] && command -v node >/dev/null; then
    echo "$CACHE_DIR/node_modules"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-crd-schemas.sh: the CRD schema validators are not installed and npm or" \
         "node is missing (apt-get install npm)" >&2
    exit 3
fi

mkdir -p "$CACHE_DIR"
echo "install-crd-schemas.sh: npm install --prefix $CACHE_DIR ${PACKAGES[*]}" >&2
npm install --prefix "$CACHE_DIR" --no-audit --no-fund --loglevel=error "${PACKAGES[@]}" >&2
echo "${PACKAGES[*]}" > "$STAMP"
echo "$CACHE_DIR/node_modules"
