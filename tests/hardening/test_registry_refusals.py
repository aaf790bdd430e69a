"""Never more permissive than the registry: a validly signed token that the registry
refuses gets nothing from blobgate that the registry would not give it.

The stand-in registry answers ``401`` to every request carrying one of its ``refused``
tokens, as Harbor does for a token issued before its project was re-created, or an
auth proxy for a revoked session. Every cache is warmed by a good token first (grant,
membership, presigned URL), then the refused token asks in every way blobgate answers
itself: blob GET (redirect), blob GET under the streaming policy, HEAD, and the URL API.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from blobgate.config import AuthConfig, RoutingConfig
from hardening.wire import Answer, bearer, exchange

from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import ISSUER, SERVICE, Signer

Standin = tuple[StandIn, Any]
NAME = "proj/app"


@pytest.fixture
def digest(put_blob: Any, standin: Standin) -> str:
    data = b"layer of proj/app " * 500
    found: str = put_blob(data)
    standin[0].blobs[(NAME, found)] = data
    return found


def auth_config(bundle: Any, **overrides: Any) -> AuthConfig:
    return AuthConfig(issuer=ISSUER, service=SERVICE, certificates=str(bundle), **overrides)


async def ask(client: Any, method: str, path: str, token: str) -> Answer:
    return await exchange(client.port, method, path, bearer(token))


def blob_requests(standin: Standin, digest: str) -> int:
    """Requests the registry received for the blob (blobgate's own HEADs included)."""
    return sum(1 for _, path in standin[0].requests if path.endswith(digest))


async def warm(client: Any, signer: Signer, digest: str, served: int = 307) -> None:
    """A good token fills every cache: grant, membership, URL, API."""
    good = signer.token(NAME)
    assert (await ask(client, "GET", f"/v2/{NAME}/manifests/v1", good)).status != 401
    assert (await ask(client, "GET", f"/v2/{NAME}/blobs/{digest}", good)).status == served
    assert (await ask(client, "HEAD", f"/v2/{NAME}/blobs/{digest}", good)).status == 200
    api = await ask(client, "GET", f"/api/v1/blobs/{digest}/url?repository={NAME}", good)
    assert api.status == 200
    assert b'"url"' in api.body


@pytest.mark.parametrize("policy", ["redirect", "stream"])
async def test_a_refused_token_gets_nothing_blobgate_answers_itself(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, scrape: Scrape,
    policy: str,
) -> None:
    client = await gateway(routing=RoutingConfig(default=policy))
    await warm(client, signer, digest, 307 if policy == "redirect" else 200)
    refused = signer.token(NAME)
    standin[0].refused.add(refused)
    before = blob_requests(standin, digest)
    blob = f"/v2/{NAME}/blobs/{digest}"
    for _ in range(3):  # the first request and every later one
        got = await ask(client, "GET", blob, refused)
        assert got.status == 401  # the registry's own answer, passed through
        assert got.header("Location") is None
        assert b"layer of proj/app" not in got.body  # no streamed bytes either
        head = await ask(client, "HEAD", blob, refused)
        assert head.status == 401
        assert head.header("Content-Length") != str(len(b"layer of proj/app " * 500))
        api = await ask(client, "GET", f"/api/v1/blobs/{digest}/url?repository={NAME}", refused)
        assert api.status == 401
        assert b"X-Amz-Signature" not in api.body
        assert 'error="invalid_token"' in (api.header("WWW-Authenticate") or "")
    # blobgate asked the registry about this token once; the refusal is remembered, so the
    # rest are the client's own requests passed through (3 GETs and 3 HEADs).
    assert blob_requests(standin, digest) - before == 1 + 6
    metrics = await scrape(client)
    refusals = sum(v for k, v in metrics.items()
                   if k.startswith("blobgate_requests_total") and 'outcome="refused"' in k)
    assert refusals == 6  # the blob GETs and HEADs (the API's are its own 401s)


async def test_a_new_good_token_costs_at_most_one_upstream_request(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str,
) -> None:
    client = await gateway()
    await warm(client, signer, digest)
    standin[0].refused.add(signer.token(NAME))  # refusing someone else changes nothing
    for _ in range(3):
        fresh = signer.token(NAME)
        before = len(standin[0].requests)
        for _ in range(4):
            assert (await ask(client, "GET", f"/v2/{NAME}/blobs/{digest}", fresh)).status == 307
        assert (await ask(client, "HEAD", f"/v2/{NAME}/blobs/{digest}", fresh)).status == 200
        assert len(standin[0].requests) - before == 1


async def test_a_pull_confirms_its_token_through_its_manifest_request(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str,
) -> None:
    """The manifest request every pull begins with is the registry's verdict on the token:
    its blob GETs then cost no upstream request (membership already cached)."""
    standin[0].manifests[(NAME, "v1")] = ("application/json", b"{}")
    client = await gateway()
    await warm(client, signer, digest)
    token = signer.token(NAME)
    assert (await ask(client, "HEAD", f"/v2/{NAME}/manifests/v1", token)).status == 200
    before = len(standin[0].requests)
    assert (await ask(client, "GET", f"/v2/{NAME}/blobs/{digest}", token)).status == 307
    assert len(standin[0].requests) == before


async def test_a_token_revoked_mid_life_stops_at_its_next_refusal(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str,
) -> None:
    client = await gateway()
    token = signer.token(NAME)
    assert (await ask(client, "GET", f"/v2/{NAME}/blobs/{digest}", token)).status == 307
    standin[0].refused.add(token)  # e.g. the account was disabled
    assert (await ask(client, "GET", f"/v2/{NAME}/manifests/v1", token)).status == 401
    answer = await ask(client, "GET", f"/v2/{NAME}/blobs/{digest}", token)
    assert answer.status == 401
    assert answer.header("Location") is None


async def test_a_refusal_is_remembered_briefly(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, bundle: Any,
) -> None:
    client = await gateway(auth=auth_config(bundle, refusal_ttl_s=1))
    token = signer.token(NAME)
    standin[0].refused.add(token)
    blob = f"/v2/{NAME}/blobs/{digest}"
    assert (await ask(client, "GET", blob, token)).status == 401
    standin[0].refused.discard(token)  # the registry changed its mind
    heads = standin[0].count("HEAD", blob)
    passed = await ask(client, "HEAD", blob, token)  # the registry's own answer: its 307
    assert passed.status == 307
    assert "/storage/" in (passed.header("Location") or "")
    assert standin[0].count("HEAD", blob) == heads + 1  # the client's HEAD, not blobgate's
    await asyncio.sleep(1.2)
    token2 = signer.token(NAME)  # and the first token, once the refusal has expired
    assert (await ask(client, "GET", blob, token2)).status == 307
    assert (await ask(client, "GET", blob, token)).status == 307


async def test_the_confirmation_expires_with_the_token(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, bundle: Any,
) -> None:
    """With the default leeway the token still verifies after ``exp``; the registry's
    acceptance of it is not carried past ``exp``: blobgate asks again."""
    client = await gateway(auth=auth_config(bundle, leeway_s=60))
    token = signer.token(NAME, exp=int(time.time()) + 2)
    blob = f"/v2/{NAME}/blobs/{digest}"
    assert (await ask(client, "GET", blob, token)).status == 307
    assert (await ask(client, "GET", blob, token)).status == 307
    assert standin[0].count("HEAD", blob) == 1
    await asyncio.sleep(2.5)
    standin[0].refused.add(token)  # the registry's own leeway has run out for it
    assert (await ask(client, "GET", blob, token)).status == 401
    assert standin[0].count("HEAD", blob) == 2


def respelled(token: str) -> list[str]:
    """``Authorization`` values that some parser reads as ``Bearer <token>``."""
    return [f"bearer {token}", f"BEARER {token}", f"Bearer  {token}", f"Bearer\t{token}",
            f"Bearer \t{' ' * 300}{token}"]


async def test_a_respelled_token_is_passed_through_unchecked(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, scrape: Scrape,
) -> None:
    """Only ``Bearer <token>`` is served: every other spelling gets the registry's own
    answer, without a verification, a cache entry or a question from blobgate."""
    client = await gateway()
    token = signer.token(NAME)
    blob = f"/v2/{NAME}/blobs/{digest}"
    assert (await ask(client, "GET", blob, token)).status == 307
    heads = standin[0].count("HEAD", blob)
    for value in respelled(token):
        gets = standin[0].count("GET", blob)
        got = await exchange(client.port, "GET", blob, [("Authorization", value)])
        assert standin[0].count("GET", blob) == gets + 1  # the client's own, passed through
        assert got.status == (200 if value.startswith("bearer ") or value.startswith("BEARER ")
                              else 401)  # as distribution reads each spelling
        assert "X-Amz-Signature" not in (got.header("Location") or "")
    assert standin[0].count("HEAD", blob) == heads  # blobgate asked nothing more
    metrics = await scrape(client)
    assert metrics['blobgate_cache_entries{cache="token"}'] == 1
    assert metrics['blobgate_cache_entries{cache="confirmation"}'] == 1


async def test_a_refused_token_respelled_is_not_asked_about_again(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str,
) -> None:
    client = await gateway()
    await warm(client, signer, digest)
    refused = signer.token(NAME)
    standin[0].refused.add(refused)
    blob = f"/v2/{NAME}/blobs/{digest}"
    assert (await ask(client, "GET", blob, refused)).status == 401
    heads = standin[0].count("HEAD", blob)
    for value in respelled(refused):
        for method in ("GET", "HEAD"):
            got = await exchange(client.port, method, blob, [("Authorization", value)])
            assert got.status == 401
            assert got.header("Location") is None
    assert standin[0].count("HEAD", blob) == heads + len(respelled(refused))  # the clients'
