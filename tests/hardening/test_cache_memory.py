"""Memory an attacker could fill: one token respelled thousands of times, against a real
``blobgate serve`` process.

Anyone can get a token from Harbor (anonymous pulls of public projects), and header
parsers differ in what they accept around the token: ``bEaReR``, a run of spaces and tabs
after the scheme. blobgate serves only ``Bearer <token>`` and passes every other spelling
through unverified, so thousands of respellings add no cache entry, make no upstream
check of blobgate's own, and the process's resident memory (``/proc/<pid>/status``) stays
within what its configured caches may hold.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from blobgate.devstack.s3 import S3Server
from hardening.served import ServedGateway, StandinProcess

from support.tokens import Signer

NAME = "attack/target"
TOKEN_CACHE_SIZE = 5000
REQUESTS = 6000
CLIENTS = 8
# Measured with tracemalloc (README, "What the caches can hold"): a cached RS256 token
# granting one repository takes ~1.6 KB, a verdict on it ~0.6 KB.
CANONICAL_ENTRY_BYTES = 1600 + 600
SLACK_BYTES = 8 * 1024 * 1024  # allocator arenas, buffers: what a warm process may add


def respelling(token: str, index: int) -> str:
    """The ``index``-th distinct spelling of ``Bearer <token>`` (~7.5 KB each), as the
    review's attack sent them: the scheme's case and a run of spaces and tabs vary."""
    scheme = "".join(c.upper() if index >> bit & 1 else c for bit, c in enumerate("bearer"))
    gap = " " + "\t" * (index % 64) + " " * (6400 + index // 64)
    return f"{scheme}{gap}{token}"


async def metrics(served: ServedGateway) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{served.metrics_url()}/metrics") as response:
        text = await response.text()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def upstream_checks(found: dict[str, float]) -> float:
    """blobgate's own questions to the registry (membership HEADs), whatever the answer."""
    return sum(value for key, value in found.items()
               if key.startswith("blobgate_membership_checks_total{") and "upstream" in key)


async def send_all(url: str, values: list[str]) -> list[int]:
    """GET ``url`` once with each ``Authorization`` value, ``CLIENTS`` at a time."""
    statuses: list[int] = []
    queue = list(reversed(values))

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            while queue:
                value = queue.pop()
                async with session.get(url, headers={"Authorization": value},
                                       allow_redirects=False) as response:
                    await response.read()
                    statuses.append(response.status)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return statuses


@pytest.mark.timeout(600)
async def test_one_token_respelled_thousands_of_times_fills_no_memory(
    s3_server: S3Server, put_blob: Callable[..., str], bundle: Path, signer: Signer,
    tmp_path: Path,
) -> None:
    data = os.urandom(1024)
    digest = put_blob(data)
    with StandinProcess(tmp_path / "standin", {(NAME, digest): data}) as standin, \
            ServedGateway(tmp_path / "gateway", standin.url, bundle, s3_server.endpoint_url,
                          auth={"token_cache_size": TOKEN_CACHE_SIZE}) as served:
        url = f"{served.url}/v2/{NAME}/blobs/{digest}"
        warmup = signer.token(NAME)  # the same paths warmed with another token
        assert set(await send_all(url, [f"Bearer {warmup}"] * 50)) == {307}
        await send_all(url, [respelling(warmup, i) for i in range(300)])
        before = served.rss_bytes()
        checks_before = upstream_checks(await metrics(served))

        token = signer.token(NAME)
        assert await send_all(url, [f"Bearer {token}"]) == [307]
        statuses = await send_all(url, [respelling(token, i) for i in range(REQUESTS)])
        assert await send_all(url, [f"Bearer {token}"]) == [307]
        grown = served.rss_bytes() - before
        seen = await metrics(served)

    assert len(statuses) == REQUESTS
    assert 307 not in statuses  # never served: the registry answered every respelling
    assert upstream_checks(seen) - checks_before == 1  # the canonical token's, nothing more
    assert seen['blobgate_cache_entries{cache="token"}'] == 2  # the two canonical tokens
    assert seen['blobgate_cache_entries{cache="confirmation"}'] == 2
    assert grown < TOKEN_CACHE_SIZE * CANONICAL_ENTRY_BYTES + SLACK_BYTES, grown


TOKEN_CACHE_BYTES = 2 << 20
BIG_TOKENS = 1500


def big_token(signer: Signer, index: int) -> str:
    """A valid token near the 8 KiB a request header may hold (aiohttp's limit, and
    nginx's default in front of Harbor): pull on ``NAME`` and on 80 other repositories,
    as an issuer that lists many repositories would make for anyone."""
    access = [{"type": "repository", "name": NAME, "actions": ["pull"]}] + [
        {"type": "repository", "name": f"filler/r{index}-{n:03d}", "actions": ["pull"]}
        for n in range(80)]
    return signer.token(NAME, access=access)


@pytest.mark.timeout(600)
async def test_distinct_large_tokens_stay_within_the_cache_byte_bound(
    s3_server: S3Server, put_blob: Callable[..., str], bundle: Path, signer: Signer,
    tmp_path: Path,
) -> None:
    data = os.urandom(1024)
    digest = put_blob(data)
    tokens = [big_token(signer, i) for i in range(BIG_TOKENS)]
    assert 6_000 < len(tokens[0]) < 8_000
    with StandinProcess(tmp_path / "standin", {(NAME, digest): data}) as standin, \
            ServedGateway(tmp_path / "gateway", standin.url, bundle, s3_server.endpoint_url,
                          auth={"token_cache_size": 100_000,
                                "token_cache_bytes": TOKEN_CACHE_BYTES}) as served:
        url = f"{served.url}/v2/{NAME}/blobs/{digest}"
        assert set(await send_all(url, [f"Bearer {t}" for t in tokens[:50]])) == {307}
        before = served.rss_bytes()
        statuses = await send_all(url, [f"Bearer {t}" for t in tokens[50:]])
        grown = served.rss_bytes() - before
        seen = await metrics(served)

    assert set(statuses) == {307}  # every token still served: evicted ones verify again
    held = seen['blobgate_cache_entries{cache="token"}']
    assert 0 < held < TOKEN_CACHE_BYTES / len(tokens[0])  # the bytes, not the count, bound it
    assert grown < TOKEN_CACHE_BYTES + BIG_TOKENS * CANONICAL_ENTRY_BYTES + SLACK_BYTES, grown
