"""Copies with a real second S3 server (moto over HTTP): the URL API chooses as a blob
GET does, a copy that cannot be asked is skipped (and left alone for a while), and the
redirect counter names location and reason."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from blobgate.config import CopyConfig, RouteRule, RoutingConfig, S3Config, StorageConfig
from blobgate.devstack.procs import free_port
from blobgate.devstack.s3 import S3Server
from blobgate.reference import parse_digest, storage_key

from support.gateway import BUCKET, GatewayFactory, Scrape
from support.tokens import Signer

EU_BUCKET = "registry-eu"
FROM_EU = {"X-Forwarded-For": "198.51.100.7"}


@pytest.fixture(scope="module")
def eu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(tmp_path_factory.mktemp("eu")) as server:  # localhost: not the gateway's
        server.client().create_bucket(Bucket=EU_BUCKET)
        yield server


@pytest.fixture
def two_blobs(put_blob: Callable[[bytes, str], str], eu: S3Server, standin: Any
              ) -> tuple[str, str]:
    """Two blobs of ``library/a`` in the primary, only the first also in eu."""
    held, lacking = put_blob(os.urandom(2000), ""), put_blob(os.urandom(3000), "")
    eu.client().put_object(Bucket=EU_BUCKET, Key=storage_key("", parse_digest(held)),
                           Body=os.urandom(2000))
    for digest in (held, lacking):
        standin[0].blobs[("library/a", digest)] = b""
    return held, lacking


def with_copy(primary: str, copy_endpoint: str) -> dict[str, Any]:
    eu = CopyConfig(name="eu", s3=S3Config(bucket=EU_BUCKET, endpoint_url=copy_endpoint))
    return {"storage": StorageConfig(s3=S3Config(bucket=BUCKET, endpoint_url=primary),
                                     copies=(eu,), missing_ttl_s=60),
            "routing": RoutingConfig(trusted_proxies=("127.0.0.0/8",), rules=(
                RouteRule(networks=("198.51.100.0/24",), locations=("eu",), name="eu"),))}


async def test_the_url_api_signs_where_a_get_would_redirect(
    gateway: GatewayFactory, signer: Signer, s3_server: S3Server, eu: S3Server,
    two_blobs: tuple[str, str],
) -> None:
    held, lacking = two_blobs
    client = await gateway(**with_copy(s3_server.endpoint_url, eu.endpoint_url))
    auth = {"Authorization": f"Bearer {signer.token('library/a')}"}

    async def url(digest: str, headers: dict[str, str], query: str = "") -> str:
        reply = await client.get(f"/api/v1/blobs/{digest}/url?repository=library/a{query}",
                                 headers={**auth, **headers})
        assert reply.status == 200, await reply.text()
        return str((await reply.json())["url"])

    eu_host, primary_host = urlsplit(eu.endpoint_url).netloc, urlsplit(
        s3_server.endpoint_url).netloc
    assert urlsplit(await url(held, FROM_EU)).netloc == eu_host
    assert urlsplit(await url(lacking, FROM_EU)).netloc == primary_host
    assert urlsplit(await url(held, {})).netloc == primary_host
    assert urlsplit(await url(held, FROM_EU, "&filename=a.tar")).netloc == primary_host
    seed = await client.get(f"/api/v2.0/blobs/{held}/url?repository=library/a",
                            headers={**auth, **FROM_EU})
    assert urlsplit((await seed.json())["url"]).netloc == eu_host


async def test_a_copy_that_cannot_be_asked_is_skipped_and_left_alone(
    gateway: GatewayFactory, signer: Signer, s3_server: S3Server, scrape: Scrape,
    two_blobs: tuple[str, str],
) -> None:
    held, _ = two_blobs
    dead = f"http://localhost:{free_port()}"
    client = await gateway(**with_copy(s3_server.endpoint_url, dead))
    headers = {"Authorization": f"Bearer {signer.token('library/a')}", **FROM_EU}
    for _ in range(3):
        reply = await client.get(f"/v2/library/a/blobs/{held}", headers=headers,
                                 allow_redirects=False)
        assert reply.status == 307
        assert urlsplit(reply.headers["Location"]).netloc == urlsplit(
            s3_server.endpoint_url).netloc
    metrics = await scrape(client)
    assert metrics['blobgate_redirects_total{location="primary",reason="fallback"}'] == 3
    assert metrics['blobgate_fallbacks_total{reason="copy_unavailable"}'] == 1
    assert metrics['blobgate_fallbacks_total{reason="copy_down"}'] == 2  # not asked again


async def test_a_copy_lacking_the_blob_is_a_fallback_to_the_primary(
    gateway: GatewayFactory, signer: Signer, s3_server: S3Server, eu: S3Server,
    scrape: Scrape, two_blobs: tuple[str, str],
) -> None:
    held, lacking = two_blobs
    client = await gateway(**with_copy(s3_server.endpoint_url, eu.endpoint_url))
    headers = {"Authorization": f"Bearer {signer.token('library/a')}", **FROM_EU}
    for digest in (held, lacking, lacking):
        reply = await client.get(f"/v2/library/a/blobs/{digest}", headers=headers,
                                 allow_redirects=False)
        assert reply.status == 307
    metrics = await scrape(client)
    assert metrics['blobgate_redirects_total{location="eu",reason="eu"}'] == 1
    assert metrics['blobgate_redirects_total{location="primary",reason="fallback"}'] == 2
    heads = [r for r in eu.requests() if r.method == "HEAD"
             and parse_digest(lacking).hex in r.target]
    assert len(heads) == 1  # "not there" remembered for missing_ttl_s
