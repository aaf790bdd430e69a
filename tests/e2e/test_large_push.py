"""A large layer pushed through blobgate lands: the registry may need tens of seconds
after the last body byte to finish an upload (multipart completion, the move into the
blob store, digest verification), and blobgate's default configuration waits for it.

Pushed the way skopeo and containerd push a layer (POST, then one monolithic
``PUT ?digest=``) to the real registry storing in S3, through blobgate in its default
upstream timeouts. 64 MiB by default; ``BLOBGATE_LARGE_PUSH=1`` pushes 1 GiB (about a
minute here) and prints the timing and blobgate's peak memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from blobgate.devstack.stack import BUCKET, PUSHER, Stack
from blobgate.reference import parse_digest, storage_key

pytestmark = pytest.mark.e2e
LARGE = os.environ.get("BLOBGATE_LARGE_PUSH") == "1"
SIZE = (1 << 30) if LARGE else (64 << 20)
CHUNK = 1 << 20
REPOSITORY = "big/layer"


def chunks(seed: int) -> AsyncIterator[bytes]:
    """``SIZE`` incompressible bytes, the same for the same seed, made as they are sent."""

    async def produce() -> AsyncIterator[bytes]:
        rng = random.Random(seed)  # noqa: S311 - reproducible test bytes, not a secret
        for _ in range(SIZE // CHUNK):
            yield rng.randbytes(CHUNK)

    return produce()


async def digest_of(seed: int) -> str:
    hasher = hashlib.sha256()
    async for chunk in chunks(seed):
        hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


async def test_a_large_monolithic_push_lands_through_the_default_configuration(
    stack: Stack,
) -> None:
    seed = int(time.time())
    digest = await digest_of(seed)
    token = stack.token(f"repository:{REPOSITORY}:pull,push", creds=PUSHER)
    headers = {"Authorization": f"Bearer {token}"}
    base = stack.gateway_url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as session:
        async with session.post(f"{base}/v2/{REPOSITORY}/blobs/uploads/",
                                headers=headers) as started:
            assert started.status == 202
            location = started.headers["Location"]
        joiner = "&" if "?" in location else "?"
        sent_at = time.monotonic()
        async with session.put(f"{location}{joiner}digest={digest}", data=chunks(seed),
                               headers={**headers, "Content-Type": "application/octet-stream"}
                               ) as finished:
            body = await finished.read()
            assert finished.status == 201, body
            assert finished.headers["Docker-Content-Digest"] == digest
        took = time.monotonic() - sent_at
        async with session.head(f"{base}/v2/{REPOSITORY}/blobs/{digest}",
                                headers=headers) as head:
            assert head.status == 200  # answered by blobgate: the registry linked the blob
            assert head.headers["Content-Length"] == str(SIZE)
        async with session.get(f"{base}/v2/{REPOSITORY}/blobs/{digest}", headers=headers,
                               allow_redirects=False) as get:
            assert get.status == 307  # pullable, from S3
    key = storage_key("", parse_digest(digest))
    assert stack.s3.client().head_object(Bucket=BUCKET, Key=key)["ContentLength"] == SIZE
    peak = peak_rss_mib(stack.gateway.pid)
    print("\nPUSH", json.dumps({"bytes": SIZE, "put_s": round(took, 1),
                                "blobgate_peak_rss_mib": round(peak, 1)}))
    assert peak < 400  # one chunk at a time, never the whole layer (64 MiB .. 1 GiB)
