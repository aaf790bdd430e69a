"""Cross-repository reads: a blob of repository A is never handed to a token for B.

Caches are warmed with A's token first (tokens, membership and presigned URLs all
populated), then B asks for the same digest under its own name: the registry's 404 must
come back, sequentially and under concurrency mixed with A's successful pulls.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from blobgate.config import MembershipConfig, UpstreamConfig
from hardening.wire import Answer, bearer, exchange

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
A, B = "team-a/app", "team-b/app"


@pytest.fixture
def a_blob(put_blob: Any, standin: Standin) -> tuple[str, bytes]:
    data = b"private layer of team A " * 100
    digest = put_blob(data)
    standin[0].blobs[(A, digest)] = data
    return digest, data


async def get(client: TestClient[Any, Any], name: str, digest: str, token: str,
              method: str = "GET") -> Answer:
    return await exchange(client.port, method, f"/v2/{name}/blobs/{digest}", bearer(token))


def assert_registry_404(answer: Answer) -> None:
    assert answer.status == 404
    assert answer.header("Location") is None
    assert b"BLOB_UNKNOWN" in answer.body or answer.body == b""


async def test_warm_caches_do_not_open_a_blob_to_another_repository(
    gateway: GatewayFactory, signer: Signer, a_blob: tuple[str, bytes], standin: Standin,
    scrape: Scrape,
) -> None:
    digest, _ = a_blob
    client = await gateway()
    a_token = signer.token(A)
    for _ in range(3):
        assert (await get(client, A, digest, a_token)).status == 307
    assert (await get(client, A, digest, a_token, "HEAD")).status == 200
    metrics = await scrape(client)
    assert metrics['blobgate_cache_entries{cache="url"}'] == 1
    assert metrics['blobgate_cache_entries{cache="membership"}'] == 1

    b_token = signer.token(B)
    both = signer.token(access=[{"type": "repository", "name": n, "actions": ["pull"]}
                                for n in (A, B)])
    for token in (b_token, both, b_token):
        assert_registry_404(await get(client, B, digest, token))
        assert_registry_404(await get(client, B, digest, token, "HEAD"))
    # Each round: blobgate's membership HEAD for the GET and for the HEAD (negative answers
    # are never cached), plus the client's HEAD passed through; the registry answered the
    # GET itself every time.
    assert standin[0].count("HEAD", f"/v2/{B}/blobs/{digest}") == 3 * 3
    assert standin[0].count("GET", f"/v2/{B}/blobs/{digest}") == 3
    # B's token on A's path is not a grant either.
    answer = await get(client, A, digest, b_token)
    assert answer.status != 307
    assert answer.header("Location") is None
    # Nor does blobgate's URL API hand out A's blob under B, singly or in a batch.
    for token in (b_token, both):
        one = await exchange(client.port, "GET",
                             f"/api/v1/blobs/{digest}/url?repository={B}", bearer(token))
        assert one.status == 404
        assert b"X-Amz-Signature" not in one.body
        batch = json.dumps({"repository": B, "digests": [digest, digest]}).encode()
        many = await exchange(client.port, "POST", "/api/v1/blobs/urls",
                              [*bearer(token), ("Content-Type", "application/json"),
                               ("Content-Length", str(len(batch)))], body=batch)
        assert many.status == 200
        assert [e.get("error", {}).get("code") for e in json.loads(many.body)["urls"]] == [
            "BLOB_UNKNOWN"]  # a repeated digest is answered once
        assert b"X-Amz-Signature" not in many.body
    answer = await exchange(client.port, "GET", f"/api/v1/blobs/{digest}/url?repository={A}",
                            bearer(b_token))
    assert answer.status == 401


async def test_concurrent_mixed_pulls_never_cross(
    gateway: GatewayFactory, signer: Signer, a_blob: tuple[str, bytes], standin: Standin,
) -> None:
    digest, _ = a_blob
    client = await gateway()
    a_tokens = [signer.token(A) for _ in range(20)]
    b_tokens = [signer.token(B) for _ in range(20)]

    async def pull(i: int) -> tuple[str, Answer]:
        if i % 2 == 0:
            return A, await get(client, A, digest, a_tokens[i % 20])
        method = "HEAD" if i % 3 == 0 else "GET"
        return B, await get(client, B, digest, b_tokens[i % 20], method)

    # Cold start (both membership checks in flight together), then warm, twice over.
    for _ in range(2):
        results = await asyncio.gather(*(pull(i) for i in range(200)))
        for name, answer in results:
            if name == A:
                assert answer.status == 307, answer.body
            else:
                assert_registry_404(answer)


async def test_a_blob_added_later_to_b_is_served_to_b_only_then(
    gateway: GatewayFactory, signer: Signer, a_blob: tuple[str, bytes], standin: Standin,
) -> None:
    digest, data = a_blob
    client = await gateway()
    assert (await get(client, A, digest, signer.token(A))).status == 307
    assert_registry_404(await get(client, B, digest, signer.token(B)))
    standin[0].blobs[(B, digest)] = data  # e.g. a cross-repository mount into B
    assert (await get(client, B, digest, signer.token(B))).status == 307


async def test_membership_revocation_lags_by_at_most_the_cache_ttl(
    gateway: GatewayFactory, signer: Signer, a_blob: tuple[str, bytes], standin: Standin,
) -> None:
    """Documented limit (SECURITY.md): a positive membership answer is trusted for
    ``membership.cache_ttl_s``; after that the registry is asked again."""
    digest, _ = a_blob
    client = await gateway(membership=MembershipConfig(cache_ttl_s=1))
    token = signer.token(A)
    assert (await get(client, A, digest, token)).status == 307
    del standin[0].blobs[(A, digest)]  # deleted upstream
    assert (await get(client, A, digest, token)).status == 307  # cached "yes"
    await asyncio.sleep(1.2)
    assert_registry_404(await get(client, A, digest, token))


def redirecting_registry(status: int) -> web.Application:
    """A registry behind an ingress that redirects every request (e.g. http -> https)."""

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status,
                            headers={"Location": f"https://registry.example{request.raw_path}"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


@pytest.mark.parametrize("status", [301, 308])
async def test_a_permanent_redirect_is_not_proof_of_membership(
    gateway: GatewayFactory, signer: Signer, a_blob: tuple[str, bytes], status: int,
) -> None:
    digest, _ = a_blob  # exists in S3, belongs to A only
    upstream = TestServer(redirecting_registry(status))
    await upstream.start_server()
    try:
        client = await gateway(upstream=UpstreamConfig(url=str(upstream.make_url("")),
                                                       timeout_s=2))
        answer = await get(client, B, digest, signer.token(B))
        assert answer.status != 307 or "registry.example" in (answer.header("Location") or "")
    finally:
        await upstream.close()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def registry_with_manifest(state: StandIn, name: str, digest: str, size: int) -> web.Application:
    """The stand-in, plus an image manifest in ``name`` that lists ``digest``, as a Harbor
    proxy-cache project shows a remote manifest before (or without) holding its blobs, or
    as any registry that does not validate references at push time would."""
    app = state.app()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest, "size": size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest, "size": size}],
    })

    @web.middleware
    async def manifests(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == f"/v2/{name}/manifests/latest":
            return web.Response(text=manifest, content_type=OCI_MANIFEST)
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(manifests)
    return app


async def test_without_warm_up_a_manifest_naming_a_foreign_digest_does_not_open_it(
    gateway: GatewayFactory, signer: Signer, put_blob: Any,
) -> None:
    """Warm-up trusts the registry to have checked a manifest's references at push time
    (distribution and Harbor do; a pull-through cache does not: see SECURITY.md). With
    ``membership.warm_from_manifests: false`` only the registry's own answer counts."""
    data = b"private layer of team A, digest leaked " * 50
    digest = put_blob(data)
    state = StandIn()
    state.blobs[(A, digest)] = data
    upstream = TestServer(registry_with_manifest(state, B, digest, len(data)))
    await upstream.start_server()
    try:
        client = await gateway(upstream=UpstreamConfig(url=str(upstream.make_url("")),
                                                       timeout_s=2),
                               membership=MembershipConfig(warm_from_manifests=False))
        token = signer.token(B)
        manifest = await exchange(client.port, "GET", f"/v2/{B}/manifests/latest",
                                  [*bearer(token), ("Accept", OCI_MANIFEST)])
        assert manifest.status == 200
        # The registry's own word on the blob in B: unknown.
        assert state.blobs.get((B, digest)) is None
        answer = await get(client, B, digest, token)
        api = await exchange(client.port, "GET", f"/api/v1/blobs/{digest}/url?repository={B}",
                             bearer(token))
        assert (answer.status, answer.header("Location")) == (404, None)
        assert b"X-Amz-Signature" not in api.body
    finally:
        await upstream.close()
