"""The pass-through: bodies streamed both ways, headers kept, errors as OCI JSON."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from blobgate.config import UpstreamConfig

from support.gateway import GatewayFactory
from support.standin import StandIn

Standin = tuple[StandIn, Any]


async def test_method_path_query_headers_and_body_reach_upstream(gateway: GatewayFactory) -> None:
    client = await gateway()
    body = os.urandom(100_000)
    response = await client.request(
        "PATCH", "/v2/a/b/blobs/uploads/x%2Fy?_state=q%3D&n=1", data=body,
        headers={"X-Custom": "1", "Authorization": "Bearer t", "Connection": "keep-alive, X-Hop",
                 "X-Hop": "secret", "Proxy-Authorization": "p", "X-Forwarded-For": "10.9.9.9"},
    )
    assert response.status == 200
    seen = await response.json()
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert seen["method"] == "PATCH"
    assert seen["path"] == "/v2/a/b/blobs/uploads/x%2Fy?_state=q%3D&n=1"
    assert seen["size"] == len(body)
    assert seen["sha256"] == hashlib.sha256(body).hexdigest()
    assert headers["x-custom"] == "1"
    assert headers["authorization"] == "Bearer t"
    assert "x-hop" not in headers
    assert "proxy-authorization" not in headers
    assert headers["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"{client.host}:{client.port}"
    # Upstream's own hop-by-hop headers do not reach the client either.
    assert response.headers["X-Upstream"] == "yes"
    assert "X-Drop" not in response.headers
    assert "Keep-Alive" not in response.headers


async def test_upload_is_streamed_not_buffered(gateway: GatewayFactory,
                                               standin: Standin) -> None:
    """The upstream sees the first bytes while the client is still holding back the rest."""
    client = await gateway()
    state = standin[0]

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 65536
        await asyncio.wait_for(state.first_chunk.wait(), timeout=20)
        yield b"y" * 65536

    response = await client.put("/v2/a/blobs/uploads/1", data=body())
    seen = await response.json()
    assert seen["size"] == 131072


async def test_upstream_location_is_rewritten_to_the_gateway(gateway: GatewayFactory) -> None:
    client = await gateway()
    response = await client.post("/v2/x/blobs/uploads/", allow_redirects=False)
    assert response.status == 202
    assert response.headers["Location"] == (
        f"http://{client.host}:{client.port}/v2/x/blobs/uploads/abc?_state=s%2Fq"
    )
    ingress = await client.post("/v2/x/blobs/uploads/", allow_redirects=False,
                                headers={"X-Forwarded-Proto": "https",
                                         "X-Forwarded-Host": "registry.example.com"})
    assert ingress.headers["Location"].startswith("https://registry.example.com/v2/x/")


async def test_head_passthrough_keeps_content_length(gateway: GatewayFactory,
                                                     standin: Standin) -> None:
    standin[0].blobs[("a", "sha256:" + "b" * 64)] = b"z" * 777
    standin[0].head_redirects = False
    client = await gateway()
    # A token blobgate cannot verify is not ours to judge: the registry answers the HEAD.
    response = await client.head("/v2/a/blobs/sha256:" + "b" * 64,
                                 headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status == 200
    assert response.headers["Content-Length"] == "777"


async def test_encoded_bodies_pass_untouched(gateway: GatewayFactory) -> None:
    client = await gateway()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        url = f"http://{client.host}:{client.port}/gzip"
        async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
            raw = await response.read()
            assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == b"hello " * 1000


async def test_unreachable_upstream_is_a_502_with_oci_json(gateway: GatewayFactory) -> None:
    client = await gateway(upstream=UpstreamConfig(url="http://127.0.0.1:9", timeout_s=2))
    response = await client.get("/v2/")
    assert response.status == 502
    body = await response.json()
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert response.headers["Content-Type"].startswith("application/json")


async def test_slow_upstream_is_a_504_with_oci_json(gateway: GatewayFactory,
                                                   standin: Standin) -> None:
    url = str(standin[1].make_url(""))
    client = await gateway(upstream=UpstreamConfig(url=url, timeout_s=0.5))
    response = await client.get("/slow")
    assert response.status == 504
    assert json.loads(await response.text())["errors"][0]["code"] == "UNAVAILABLE"


async def test_upstream_dying_mid_body_aborts_the_response(gateway: GatewayFactory) -> None:
    client = await gateway()
    response = await client.get("/broken")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_anonymous_blob_get_gets_the_registry_challenge(gateway: GatewayFactory) -> None:
    client = await gateway()
    response = await client.get("/v2/a/blobs/sha256:" + "c" * 64, allow_redirects=False)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="http://issuer/token",service="t"'
    assert (await response.json())["errors"][0]["code"] == "UNAUTHORIZED"
