#!/usr/bin/env bash
# Prints the path of a checkov binary, installing one into a virtual environment of its
# own when there is none. checkov pins boto3 (1.35.x) far below what blobgate's
# aiobotocore needs, so it cannot share the test environment without downgrading the S3
# stack the tests exercise.
#
# Order: $CHECKOV if set; a copy cached under $BLOBGATE_CHECKOV_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/checkov); otherwise PyPI's checkov is
# installed there with pip. Idempotent: once the pinned version is there nothing is
# downloaded (a stamp file names the installed version).
set -euo pipefail

VERSION="3.3.30"
CACHE_DIR="${BLOBGATE_CHECKOV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/checkov}"
CACHED="$CACHE_DIR/venv/bin/checkov"

if [ -n "${CHECKOV:-}" ]; then
    echo "$CHECKOV"
    exit 0
fi
if [ -x "$CACHED" ] && [ "$(cat "$CACHE_DIR/installed" 2>/dev/null)" = "$VERSION" ]; then
    echo "$CACHED"
    exit 0
fi

echo "install-checkov.sh: pip install checkov==$VERSION into $CACHE_DIR/venv" >&2
mkdir -p "$CACHE_DIR"
python3 -m venv "$CACHE_DIR/venv" >&2
"$CACHE_DIR/venv/bin/python" -m pip install -q --disable-pip-version-check \
    "checkov==$VERSION" >&2
echo "$VERSION" > "$CACHE_DIR/installed"
echo "$CACHED"
