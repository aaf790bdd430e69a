"""A pull-through cache behind blobgate: every redirect leads to bytes that exist.

The real distribution registry runs in proxy mode (``proxy.remoteurl``: the stack's own
registry, token auth with the stack's issuer, blobs in the same S3 bucket under its own
root directory ``/cache``), with a second blobgate in front of it in its default
configuration. skopeo pulls an image the cache has never seen: the cache holds no blob
yet, so blobgate must not redirect to S3 but pass the blob GETs through, which makes the
cache fetch and store them. Once stored, pulls are redirected blob by blob, and a warm
redirect makes no S3 request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from blobgate.devstack.clients import skopeo_pull, skopeo_push
from blobgate.devstack.gateway import GatewayProcess
from blobgate.devstack.image import MiB, OciImage, build_image, verified_blobs
from blobgate.devstack.registry import Registry, RegistryOptions, Remote
from blobgate.devstack.stack import BUCKET, PUSHER, Stack, gateway_config
from blobgate.reference import parse_digest, storage_key
from e2e.conftest import require

pytestmark = pytest.mark.e2e
ROOT = "/cache"
REPOSITORY = "library/demo"
MISSING_TTL_S = 1.0


@dataclass
class Cache:
    """The pull-through registry, the blobgate in front of it, and the image it mirrors."""

    registry: Registry
    gateway: GatewayProcess
    image: OciImage


@pytest.fixture(scope="module")
def cache(stack: Stack, e2e_dir: Path) -> Iterator[Cache]:
    require("docker-registry", "skopeo")
    workdir = e2e_dir / "pull-through"
    image = build_image(workdir / "image", [MiB // 4, 2 * MiB], tag="v1")
    skopeo_push(image, stack.gateway_host, REPOSITORY, PUSHER)  # into the remote registry
    options = RegistryOptions(rootdirectory=ROOT,
                              remote=Remote(stack.registry.url, PUSHER.username,
                                            PUSHER.password))
    with Registry(workdir, stack.s3, BUCKET, stack.token_auth(), options) as registry:
        config = gateway_config(stack)
        config["upstream"] = {"url": registry.url}
        config["storage"]["s3"]["rootdirectory"] = ROOT
        config["storage"]["missing_ttl_s"] = MISSING_TTL_S
        del config["log"], config["membership"]  # blobgate's defaults for both
        with GatewayProcess(workdir, config, name="blobgate-cache") as gateway:
            yield Cache(registry, gateway, image)


def stored(stack: Stack, digest: str) -> bool:
    """Whether the cache's copy of ``digest`` is in S3."""
    key = storage_key(ROOT, parse_digest(digest))
    return bool(stack.s3.client().list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"])


def blob_gets(cache: Cache, since: int) -> dict[str, tuple[str, int]]:
    """Digest → (outcome, status) of the blob GETs blobgate answered after entry ``since``."""
    return {e["digest"]: (e["outcome"], e["status"]) for e in cache.gateway.access_log()[since:]
            if e["method"] == "GET" and e["route"] == "blob"}


def pull(cache: Cache, into: Path) -> None:
    skopeo_pull(cache.gateway.host, f"{REPOSITORY}:v1", into, PUSHER)
    on_disk = verified_blobs(into / "blobs")  # skopeo verified them too
    for blob in (cache.image.manifest, *cache.image.blobs):
        assert on_disk.get(blob.digest) == blob.size


def test_pull_through_cache_is_served_first_through_then_from_s3(
    stack: Stack, cache: Cache, tmp_path: Path
) -> None:
    digests = {blob.digest for blob in cache.image.blobs}
    assert not any(stored(stack, d) for d in digests)  # the cache has never seen them

    seen = len(cache.gateway.access_log())
    pull(cache, tmp_path / "first")
    assert blob_gets(cache, seen) == dict.fromkeys(digests, ("passthrough", 200))

    deadline = time.monotonic() + 60
    while not all(stored(stack, d) for d in digests):  # the cache stores in the background
        assert time.monotonic() < deadline, "the cache never stored the blobs"
        time.sleep(0.2)
    time.sleep(MISSING_TTL_S + 0.2)  # blobgate's memory of the absence runs out

    seen, presigned = len(cache.gateway.access_log()), len(stack.presigned_blob_gets())
    pull(cache, tmp_path / "second")
    assert blob_gets(cache, seen) == dict.fromkeys(digests, ("redirect", 307))
    assert set(stack.presigned_blob_gets()[presigned:]) == digests

    # Warm: the redirects of a third pull make no S3 request of blobgate's.
    keys = {storage_key(ROOT, parse_digest(d)) for d in digests}
    s3_seen = len(stack.s3.requests())
    seen = len(cache.gateway.access_log())
    pull(cache, tmp_path / "third")
    assert blob_gets(cache, seen) == dict.fromkeys(digests, ("redirect", 307))
    looked_up = [r for r in stack.s3.requests()[s3_seen:]
                 if r.method == "HEAD" and any(key in r.target for key in keys)]
    assert looked_up == []
