"""Streaming blob bytes through blobgate: from S3 (moto over HTTP) and from the registry,
full and ranged, resumed, refused ranges, client disconnects, origin failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from botocore.exceptions import NoCredentialsError

from blobgate.app import SERVICES
from blobgate.config import RouteRule, RoutingConfig, S3Config, StorageConfig

from support.gateway import BUCKET, GatewayFactory, Scrape
from support.standin import StandIn, storage_on_loopback
from support.tcpproxy import TCPProxy
from support.tokens import Signer

Standin = tuple[StandIn, Any]
STREAM_ALL = RoutingConfig(default="stream")
SIZE = 3 * (1 << 20) + 12345


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def blob(put_blob: Any, standin: Standin, data: bytes) -> str:
    digest: str = put_blob(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest


def auth(signer: Signer, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token('library/a')}", **extra}


async def test_full_stream_from_s3(
    gateway: GatewayFactory, signer: Signer, blob: str, data: bytes, standin: Standin,
    scrape: Scrape,
) -> None:
    client = await gateway(routing=STREAM_ALL)
    before = await scrape(client)
    response = await client.get(f"/v2/library/a/blobs/{blob}", headers=auth(signer),
                                allow_redirects=False)
    body = await response.read()
    assert response.status == 200
    assert "Location" not in response.headers
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.headers["Docker-Content-Digest"] == blob
    assert response.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in response.headers
    assert "sha256:" + hashlib.sha256(body).hexdigest() == blob
    assert standin[0].count("GET", f"/v2/library/a/blobs/{blob}") == 0  # not the registry
    after = await scrape(client)
    key = 'blobgate_requests_total{method="GET",outcome="stream",route="blob"}'
    assert after[key] - before.get(key, 0) == 1
    streamed = "blobgate_streamed_bytes_total{}"
    assert after[streamed] - before.get(streamed, 0) == SIZE


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=1048576-2097151", 1 << 20, (2 << 20) - 1),
     (f"bytes={SIZE - 10}-", SIZE - 10, SIZE - 1), ("bytes=-4096", SIZE - 4096, SIZE - 1),
     (f"bytes=5-{SIZE + 100}", 5, SIZE - 1), ("bytes=1000000-", 1000000, SIZE - 1)],
    ids=["start", "middle", "end", "suffix", "past-end", "resume"],
)
@pytest.mark.parametrize("backend", ["s3", "proxy"])
async def test_ranges(
    gateway: GatewayFactory, signer: Signer, blob: str, data: bytes, header: str, first: int,
    last: int, backend: str, s3_server: Any, standin: Standin,
) -> None:
    s3 = S3Config(bucket=BUCKET, endpoint_url=s3_server.endpoint_url)
    client = await gateway(routing=STREAM_ALL, storage=StorageConfig(
        backend=backend, s3=s3, proxy=storage_on_loopback(standin)))
    response = await client.get(f"/v2/library/a/blobs/{blob}",
                                headers=auth(signer, Range=header), allow_redirects=False)
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert await response.read() == data[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
async def test_unsatisfiable_range_is_a_well_formed_416(
    gateway: GatewayFactory, signer: Signer, blob: str, header: str
) -> None:
    client = await gateway(routing=STREAM_ALL)
    response = await client.get(f"/v2/library/a/blobs/{blob}",
                                headers=auth(signer, Range=header), allow_redirects=False)
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    assert len(await response.read()) == int(response.headers.get("Content-Length", "0"))


@pytest.mark.parametrize("header", ["bytes=0-1,5-9", "bytes=9-2", "items=0-5", "bytes=abc"])
async def test_multi_or_invalid_ranges_get_the_whole_blob(
    gateway: GatewayFactory, signer: Signer, blob: str, data: bytes, header: str
) -> None:
    client = await gateway(routing=STREAM_ALL)
    response = await client.get(f"/v2/library/a/blobs/{blob}",
                                headers=auth(signer, Range=header), allow_redirects=False)
    assert response.status == 200
    assert await response.read() == data


async def test_proxy_backend_follows_the_registry_redirect_without_the_token(
    gateway: GatewayFactory, signer: Signer, blob: str, data: bytes, standin: Standin
) -> None:
    standin[0].get_redirects = True
    client = await gateway(storage=StorageConfig(backend="proxy",
                                                 proxy=storage_on_loopback(standin)))
    response = await client.get(f"/v2/library/a/blobs/{blob}", headers=auth(signer),
                                allow_redirects=False)
    assert response.status == 200
    assert await response.read() == data
    assert standin[0].storage_auth  # the storage host was asked …
    assert all(a is None for a in standin[0].storage_auth)  # … never with the client's token
    head = await client.head(f"/v2/library/a/blobs/{blob}", headers=auth(signer))
    assert head.headers["Content-Length"] == str(SIZE)


async def test_client_disconnect_releases_the_origin_read(
    gateway: GatewayFactory, signer: Signer, standin: Standin
) -> None:
    digest = "sha256:" + "d" * 64
    standin[0].blobs[("library/a", digest)] = b""
    standin[0].trickling.add(digest)
    standin[0].head_redirects = False
    client = await gateway(storage=StorageConfig(backend="proxy"))
    async with aiohttp.ClientSession() as session:
        url = f"http://{client.host}:{client.port}/v2/library/a/blobs/{digest}"
        async with session.get(url, headers=auth(signer)) as response:
            assert response.status == 200
            await response.content.readexactly(65536)
    # The origin notices its reader is gone long before the 64 MiB (~10 s) would be sent.
    await asyncio.wait_for(standin[0].stream_ended_early.wait(), timeout=8)


async def test_origin_dying_mid_blob_aborts_the_response(
    gateway: GatewayFactory, signer: Signer, blob: str, s3_server: Any
) -> None:
    target = urlsplit(s3_server.endpoint_url)
    proxy = TCPProxy("127.0.0.1", target.port or 80)
    await proxy.start()
    s3 = S3Config(bucket=BUCKET, endpoint_url=f"http://localhost:{proxy.port}")
    client = await gateway(routing=STREAM_ALL, storage=StorageConfig(s3=s3,
                                                                     stream_chunk_bytes=65536))
    response = await client.get(f"/v2/library/a/blobs/{blob}", headers=auth(signer),
                                allow_redirects=False)
    assert response.status == 200
    await response.content.readexactly(65536)
    await proxy.cut()
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_presign_failure_streams_from_s3(
    gateway: GatewayFactory, signer: Signer, blob: str, data: bytes, scrape: Scrape,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await gateway()
    urls = client.server.app[SERVICES].blobs.urls
    assert urls is not None
    presigner = urls.presigner

    sign = presigner._presigner.generate_presigned_url

    async def no_credentials(operation: str, *args: Any, **kwargs: Any) -> str:
        if operation == "get_object":  # the URL for the client; the existence check signs
            raise NoCredentialsError   # its HEAD as before
        url: str = await sign(operation, *args, **kwargs)
        return url

    monkeypatch.setattr(presigner._presigner, "generate_presigned_url", no_credentials)
    before = await scrape(client)
    response = await client.get(f"/v2/library/a/blobs/{blob}", headers=auth(signer),
                                allow_redirects=False)
    assert response.status == 200
    assert await response.read() == data
    after = await scrape(client)
    key = 'blobgate_fallbacks_total{reason="presign_failed"}'
    assert after[key] - before.get(key, 0) == 1
    assert after['blobgate_presign_failures_total{backend="s3",reason="NoCredentialsError"}'] >= 1


async def test_routing_rules_pick_per_request(
    gateway: GatewayFactory, signer: Signer, blob: str
) -> None:
    rules = (RouteRule(action="stream", user_agents=("^firewalled/",)),
             RouteRule(action="stream", networks=("10.0.0.0/8",)))
    client = await gateway(routing=RoutingConfig(rules=rules, trusted_proxies=("127.0.0.0/8",)))
    path = f"/v2/library/a/blobs/{blob}"

    async def status(**headers: str) -> int:
        response = await client.get(path, headers=auth(signer, **headers), allow_redirects=False)
        await response.read()
        return response.status

    assert await status() == 307
    assert await status(**{"User-Agent": "firewalled/1.0"}) == 200
    assert await status(**{"X-Forwarded-For": "10.1.2.3"}) == 200
    assert await status(**{"X-Forwarded-For": "192.0.2.7"}) == 307
