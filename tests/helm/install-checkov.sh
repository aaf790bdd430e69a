#!/usr/bin/env bash
# Prints the path of a checkov binary, installing one into a virtual environment of its
# own when there is none. checkov pins boto3 (1.35.x) far below what blobgate's
# aiobotocore needs, so it cannot share the test environment without downgrading the S3
# stack the tests exercise. Its environment is locked too: requirements/checkov.txt,
# written by ./dev lock from requirements/checkov.in, installed with --require-hashes.
#
# Order: $CHECKOV if set; a copy cached under $BLOBGATE_CHECKOV_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/checkov); otherwise that locked set is
# installed there with pip. Idempotent: once the locked set is there nothing is
# downloaded (a stamp file holds the lock file's hash).
set -euo pipefail

LOCK="$(cd "$(dirname "$0")/../.." && pwd)/requirements/checkov.txt"
STAMP="$(sha256sum "$LOCK" | cut -d' ' -f1)"
CACHE_DIR="${BLOBGATE_CHECKOV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/blobgate/checkov}"
CACHED="$CACHE_DIR/venv/bin/checkov"

if [ -n "${CHECKOV:-}" ]; then
    echo "$CHECKOV"
    exit 0
fi
if [ -x "$CACHED" ] && [ "$(cat "$CACHE_DIR/installed" 2>/dev/null)" = "$STAMP" ]; then
    echo "$CACHED"
    exit 0
fi

echo "install-checkov.sh: pip install --require-hashes -r $LOCK into $CACHE_DIR/venv" >&2
mkdir -p "$CACHE_DIR"
python3 -m venv --clear "$CACHE_DIR/venv" >&2
"$CACHE_DIR/venv/bin/python" -m pip install -q --disable-pip-version-check \
    --require-hashes -r "$LOCK" >&2
echo "$STAMP" > "$CACHE_DIR/installed"
echo "$CACHED"
