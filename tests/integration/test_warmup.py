"""Manifest-driven warm-up: after a client pulls a manifest, its blobs need no membership
round trip; nothing is learnt from uploads, indexes, errors or clients without pull."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from blobgate.app import SERVICES
from blobgate.warmup import manifest_blobs

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def manifest(config: str, layers: list[str], foreign: str | None = None) -> bytes:
    descriptors = [{"mediaType": "l", "digest": d, "size": 1} for d in layers]
    if foreign:
        descriptors.append({"mediaType": "l", "digest": foreign, "size": 1,
                            "urls": ["https://example.invalid/layer"]})
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "c", "digest": config, "size": 1},
                       "layers": descriptors}).encode()


@pytest.fixture
def image(put_blob: Any, standin: Standin) -> list[str]:
    digests = []
    for _ in range(4):
        data = os.urandom(500)
        digest = put_blob(data)
        standin[0].blobs[("library/a", digest)] = data
        digests.append(digest)
    standin[0].manifests[("library/a", "v1")] = (OCI_MANIFEST, manifest(digests[0], digests[1:]))
    return digests


async def pull(client: Any, signer: Signer, digests: list[str], name: str = "library/a",
               token: str | None = None) -> None:
    """GET every blob with ``token`` (a new one by default), expecting redirects."""
    headers = {"Authorization": f"Bearer {token or signer.token(name)}"}
    for digest in digests:
        response = await client.get(f"/v2/{name}/blobs/{digest}", headers=headers,
                                    allow_redirects=False)
        assert response.status == 307


async def settle(client: Any) -> None:
    """Let the background presigning finish."""
    warmer = client.server.app[SERVICES].warmer
    assert warmer is not None
    await warmer.wait()


async def test_manifest_pull_warms_membership_and_urls(
    gateway: GatewayFactory, signer: Signer, image: list[str], standin: Standin, scrape: Scrape
) -> None:
    client = await gateway()
    token = signer.token("library/a")
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.get("/v2/library/a/manifests/v1", headers=headers)
    assert response.status == 200
    assert await response.read() == standin[0].manifests[("library/a", "v1")][1]
    await settle(client)
    before = await scrape(client)
    await pull(client, signer, image, token=token)  # a pull's blob GETs use its token
    after = await scrape(client)
    heads = [r for r in standin[0].requests if r[0] == "HEAD"]
    assert heads == []  # no membership round trip for any of the four blobs
    url_hits = 'blobgate_cache_requests_total{cache="url",result="hit"}'
    assert after[url_hits] - before.get(url_hits, 0) == 4  # all URLs presigned in advance
    # Offloaded bytes are the objects' sizes, which the warm-up's one look at S3 per digest
    # found (500 each); the blob GETs themselves made no S3 request.
    offloaded = 'blobgate_offloaded_bytes_total{backend="s3"}'
    assert after[offloaded] - before.get(offloaded, 0) == 4 * 500
    assert after == after | {'blobgate_cache_entries{cache="url"}': 4.0}


@pytest.mark.parametrize("case", ["no-pull-grant", "index", "not-found", "upload"])
async def test_nothing_is_learnt_otherwise(
    gateway: GatewayFactory, signer: Signer, image: list[str], standin: Standin, case: str
) -> None:
    client = await gateway()
    token = signer.token("library/a")
    if case == "no-pull-grant":
        token = signer.token("library/other")
        await client.get("/v2/library/a/manifests/v1", headers={"Authorization": f"Bearer {token}"})
        token = signer.token("library/a")
    elif case == "index":
        standin[0].manifests[("library/a", "v1")] = (OCI_INDEX, manifest(image[0], image[1:]))
        await client.get("/v2/library/a/manifests/v1", headers={"Authorization": f"Bearer {token}"})
    elif case == "not-found":
        await client.get("/v2/library/a/manifests/v2", headers={"Authorization": f"Bearer {token}"})
    else:
        await client.put("/v2/library/a/manifests/v1", data=manifest(image[0], image[1:]),
                         headers={"Authorization": f"Bearer {token}",
                                  "Content-Type": OCI_MANIFEST})
    await settle(client)
    await pull(client, signer, image)
    heads = [r for r in standin[0].requests if r[0] == "HEAD"]
    assert len(heads) == 4  # every blob needed its own membership check


def test_manifest_blobs_bounds_sizes_and_skips_foreign_layers() -> None:
    body = manifest("sha256:" + "c" * 64, ["sha256:" + "1" * 64, "sha256:" + "2" * 64],
                    foreign="sha256:" + "f" * 64)
    assert manifest_blobs(body, 10) == {"sha256:" + "c" * 64: 1, "sha256:" + "1" * 64: 1,
                                        "sha256:" + "2" * 64: 1}
    assert len(manifest_blobs(body, 2)) == 2
    odd = {"layers": [{"digest": "sha256:" + "3" * 64, "size": -1},
                      {"digest": "sha256:" + "4" * 64, "size": "7"}]}
    assert set(manifest_blobs(json.dumps(odd).encode(), 10).values()) == {None}
    assert manifest_blobs(b"not json", 10) == {}
    assert manifest_blobs(b"[1, 2]", 10) == {}
    assert manifest_blobs(json.dumps({"layers": [{"digest": 5}, "x"]}).encode(), 10) == {}
