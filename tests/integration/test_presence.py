"""A redirect must lead to bytes: with a real S3 server (moto over HTTP), blobgate never
hands out a URL for an object that is not in the bucket, and redirects once it is.

The stand-in registry plays a pull-through cache (it serves blobs S3 does not hold yet)
or a registry whose garbage collection removed an object behind blobgate's back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import pytest

from blobgate.app import SERVICES
from blobgate.config import S3Config, StorageConfig
from blobgate.devstack.s3 import S3Server
from blobgate.reference import parse_digest, storage_key

from support.gateway import BUCKET, GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
NAME = "mirror/app"
MISSING_TTL_S = 0.5


def storage(s3_server: S3Server) -> StorageConfig:
    return StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url),
                         missing_ttl_s=MISSING_TTL_S)


def only_upstream(standin: Standin, data: bytes) -> str:
    """A blob the registry serves but S3 does not hold (yet)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    standin[0].blobs[(NAME, digest)] = data
    return digest


def store(s3_server: S3Server, digest: str, data: bytes) -> None:
    key = storage_key("", parse_digest(digest))
    s3_server.client().put_object(Bucket=BUCKET, Key=key, Body=data)


async def get(client: Any, digest: str, token: str, method: str = "GET") -> Any:
    return await client.request(method, f"/v2/{NAME}/blobs/{digest}", allow_redirects=False,
                                headers={"Authorization": f"Bearer {token}"})


async def test_a_blob_not_yet_in_storage_passes_through_until_it_is(
    gateway: GatewayFactory, standin: Standin, s3_server: S3Server, signer: Signer,
    scrape: Scrape,
) -> None:
    data = os.urandom(4000)
    digest = only_upstream(standin, data)
    client = await gateway(storage=storage(s3_server))
    token = signer.token(NAME)
    for _ in range(2):
        response = await get(client, digest, token)
        assert response.status == 200  # the registry serves it (and would store it)
        assert await response.read() == data
    store(s3_server, digest, data)
    await asyncio.sleep(MISSING_TTL_S + 0.1)
    response = await get(client, digest, token)
    assert response.status == 307
    metrics = await scrape(client)
    assert metrics['blobgate_fallbacks_total{reason="not_in_storage"}'] == 2
    assert metrics['blobgate_cache_requests_total{cache="not_in_storage",result="hit"}'] == 1


async def test_a_blob_removed_behind_blobgates_back_is_not_redirected_to_a_404(
    gateway: GatewayFactory, standin: Standin, s3_server: S3Server, signer: Signer,
) -> None:
    data = os.urandom(4000)
    digest = only_upstream(standin, data)
    store(s3_server, digest, data)
    client = await gateway(storage=storage(s3_server))
    token = signer.token(NAME)
    assert (await get(client, digest, token, "HEAD")).status == 200  # membership now warm
    key = storage_key("", parse_digest(digest))
    s3_server.client().delete_object(Bucket=BUCKET, Key=key)  # garbage collection
    response = await get(client, digest, token)
    assert response.status == 200  # passed through: the registry's own answer
    assert "Location" not in response.headers
    assert standin[0].count("HEAD", f"/v2/{NAME}/blobs/{digest}") == 1  # membership was warm


async def test_the_url_api_hands_out_no_url_for_a_missing_object(
    gateway: GatewayFactory, standin: Standin, s3_server: S3Server, signer: Signer,
) -> None:
    missing = only_upstream(standin, os.urandom(100))
    present_data = os.urandom(200)
    present = only_upstream(standin, present_data)
    store(s3_server, present, present_data)
    client = await gateway(storage=storage(s3_server))
    headers = {"Authorization": f"Bearer {signer.token(NAME)}"}
    one = await client.get(f"/api/v1/blobs/{missing}/url?repository={NAME}", headers=headers)
    assert one.status == 404
    assert (await one.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    batch = await client.post("/api/v1/blobs/urls", headers=headers, data=json.dumps(
        {"repository": NAME, "digests": [missing, present]}))
    entries = {e["digest"]: e for e in (await batch.json())["urls"]}
    assert entries[missing]["error"]["code"] == "BLOB_UNKNOWN"
    assert "url" not in entries[missing]
    assert entries[present]["size"] == len(present_data)  # the size S3 reported


@pytest.mark.parametrize("in_storage", [True, False])
async def test_warm_up_records_only_blobs_storage_has(
    gateway: GatewayFactory, standin: Standin, s3_server: S3Server, signer: Signer,
    in_storage: bool,
) -> None:
    """A pull-through cache's manifest lists blobs it has not fetched: warm-up does not
    make them members (their GETs ask the registry and pass through)."""
    data = os.urandom(700)
    digest = only_upstream(standin, data)
    if in_storage:
        store(s3_server, digest, data)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "c", "digest": digest, "size": len(data)},
                "layers": []}
    standin[0].manifests[(NAME, "v1")] = ("application/vnd.oci.image.manifest.v1+json",
                                          json.dumps(manifest).encode())
    client = await gateway(storage=storage(s3_server))
    token = signer.token(NAME)
    assert (await client.get(f"/v2/{NAME}/manifests/v1",
                             headers={"Authorization": f"Bearer {token}"})).status == 200
    warmer = client.server.app[SERVICES].warmer
    assert warmer is not None
    await warmer.wait()
    response = await get(client, digest, token)
    assert response.status == (307 if in_storage else 200)
    heads = standin[0].count("HEAD", f"/v2/{NAME}/blobs/{digest}")
    assert heads == (0 if in_storage else 1)
