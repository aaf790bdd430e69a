#!/usr/bin/env bash
# Prints the path of Azurite's blob service (azurite-blob), installing it when missing.
#
# Order: $AZURITE_BLOB if set; `azurite-blob` on PATH; a copy cached under
# $BLOBGATE_AZURITE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/azurite);
# otherwise the npm package azurite is installed into that directory. Idempotent: once
# a working copy is found nothing is downloaded. Exits 3 when an install is needed but
# npm (or node) is missing.
set -euo pipefail

PACKAGE="azurite@3.37.0"
CACHE_DIR="${BLOBGATE_AZURITE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/azurite}"
CACHED="$CACHE_DIR/node_modules/.bin/azurite-blob"

works() {
    [ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

for candidate in "${AZURITE_BLOB:-}" "$(command -v azurite-blob || true)" "$CACHED"; do
    if [ -n "$candidate" ] && works "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "install-azurite.sh: no azurite-blob found and npm/node are not installed" \
         "(apt-get install nodejs npm, or put azurite-blob on PATH)" >&2
    exit 3
fi

mkdir -p "$CACHE_DIR"
echo "install-azurite.sh: npm install --prefix $CACHE_DIR $PACKAGE" >&2
npm install --prefix "$CACHE_DIR" --no-audit --no-fund --loglevel=error "$PACKAGE" >&2
if ! works "$CACHED"; then
    echo "install-azurite.sh: $CACHED does not run on this machine" >&2
    exit 1
fi
echo "$CACHED"
