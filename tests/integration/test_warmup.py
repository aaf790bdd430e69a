"""Manifest-driven warm-up: after a client pulls a manifest, its blobs need no membership
round trip; nothing is learnt from uploads, indexes, errors or clients without pull."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pytest

from blobgate.app import SERVICES
from blobgate.reference import parse_blob
from blobgate.warmup import ManifestWarmer

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


async def test_a_confused_manifest_passes_through_untouched_and_teaches_nothing(
    gateway: GatewayFactory, signer: Signer, image: list[str], standin: Standin, scrape: Scrape,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``layers`` and ``Layers``: Go (the registry) reads the last, Python the first;
    blobgate learns neither, counts the refusal and says so once per repository."""
    honest = json.loads(manifest(image[0], image[1:]))
    body = (json.dumps(honest)[:-1] + ', "Layers": []}').encode()
    standin[0].manifests[("library/a", "v1")] = (OCI_MANIFEST, body)
    client = await gateway()
    token = signer.token("library/a")
    caplog.set_level("INFO", logger="blobgate.warmup")
    for _ in range(2):
        response = await client.get("/v2/library/a/manifests/v1",
                                    headers={"Authorization": f"Bearer {token}"})
        assert (response.status, await response.read()) == (200, body)
    await settle(client)
    metrics = await scrape(client)
    assert metrics['blobgate_warmup_refused_total{reason="folded_key"}'] == 2
    logged = [r.getMessage() for r in caplog.records if r.name == "blobgate.warmup"]
    assert logged == ["warm-up learnt nothing from a manifest of library/a (folded_key)"]
    await pull(client, signer, image, token=token)
    heads = [r for r in standin[0].requests if r[0] == "HEAD"]
    assert len(heads) == 4  # every blob needed its own membership check


async def test_what_was_learnt_is_kept_within_the_membership_bounds(
    gateway: GatewayFactory, image: list[str]
) -> None:
    """At most ``max_refs`` references (``max_refs // max_blobs`` manifests), each for
    ``ttl_s``: the oldest manifest is forgotten first, and an expired one is."""
    blobs = (await gateway()).server.app[SERVICES].blobs
    manifests = [f"sha256:{c * 64}" for c in "abc"]
    bounded = ManifestWarmer(blobs, max_blobs=4, ttl_s=300, max_refs=8)
    for digest in manifests:
        bounded.warm("library/a", dict.fromkeys(image), digest)
    assert [len(bounded.forget(parse_blob("library/a", d))) for d in manifests] == [0, 4, 4]
    expired = ManifestWarmer(blobs, max_blobs=4, ttl_s=0, max_refs=8)
    expired.warm("library/a", dict.fromkeys(image), manifests[0])
    assert expired.forget(parse_blob("library/a", manifests[0])) == ()
    await bounded.wait()
    await expired.wait()


async def test_deleting_a_manifest_by_its_digest_forgets_what_it_taught(
    gateway: GatewayFactory, signer: Signer, image: list[str], standin: Standin,
) -> None:
    """The learnt blobs are kept under the manifest's own digest (the stand-in, like some
    proxies, sends no Docker-Content-Digest), so a DELETE by that digest forgets them."""
    client = await gateway()
    token = signer.token("library/a")
    headers = {"Authorization": f"Bearer {token}"}
    body = await (await client.get("/v2/library/a/manifests/v1", headers=headers)).read()
    await settle(client)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    deleted = await client.delete(f"/v2/library/a/manifests/{digest}", headers=headers)
    assert deleted.status == 200
    await pull(client, signer, image, token=token)
    heads = [r for r in standin[0].requests if r[0] == "HEAD"]
    assert len(heads) == 4  # forgotten: every blob needed its own membership check again
