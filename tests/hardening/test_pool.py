"""The upstream connection pool under clients that never finish their uploads.

Real slow clients on raw sockets send an upload's head and a few bytes of its body, then
nothing; the registry stand-in reads bodies to their end, so each such upload holds one
of blobgate's relay connections. With every relay connection held, blob GETs still get
their membership checks (a pool of their own), further relayed requests get 503 with
``Retry-After`` after ``upstream.pool_timeout_s``, and ``server.client_body_timeout_s``
closes the stuck uploads so the pool frees. A push that keeps sending, however slowly,
is never cut. Nothing here measures time: a hang is caught by the test's timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from blobgate.config import ServerConfig, UpstreamConfig
from hardening.wire import HOST, Answer, bearer, exchange, parse, request_bytes

from support.gateway import GatewayFactory
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
SLOTS = 2


async def pool_gateway(gateway: GatewayFactory, standin: Standin, body_timeout_s: float
                       ) -> TestClient[Any, Any]:
    """A gateway with ``SLOTS`` relay connections and a 1 s wait for one."""
    return await gateway(
        upstream=UpstreamConfig(url=str(standin[1].make_url("")), max_connections=SLOTS,
                                pool_timeout_s=1, timeout_s=60, connect_timeout_s=5),
        server=ServerConfig(client_body_timeout_s=body_timeout_s))


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (in practice the test's own timeout bounds the wait)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@asynccontextmanager
async def stuck_uploads(port: int, standin: Standin, count: int = SLOTS
                        ) -> AsyncIterator[list[asyncio.StreamReader]]:
    """``count`` uploads that announce 1 MiB, send 100 bytes and then nothing, each
    relayed to (and read by) the registry; their connections' readers."""
    paths = [f"/v2/library/a/blobs/uploads/stuck-{i}" for i in range(count)]
    opened = []
    try:
        for path in paths:
            reader, writer = await asyncio.open_connection(HOST, port)
            opened.append((reader, writer))
            head = request_bytes("PATCH", path, [("Content-Length", str(1 << 20)),
                                                 ("Content-Type", "application/octet-stream")],
                                 port)
            writer.write(head + b"x" * 100)
            await writer.drain()
        await until(lambda: all(standin[0].count("PATCH", p) == 1 for p in paths))
        yield [reader for reader, _ in opened]
    finally:
        for _, writer in opened:
            writer.close()


@pytest.mark.timeout(60)
async def test_checks_are_not_queued_behind_stuck_uploads(
    gateway: GatewayFactory, standin: Standin, signer: Signer, blob: tuple[str, bytes],
) -> None:
    client = await pool_gateway(gateway, standin, body_timeout_s=60)
    path = f"/v2/library/a/blobs/{blob[0]}"
    async with stuck_uploads(client.port, standin):
        answer = await exchange(client.port, "GET", path, bearer(signer.token("library/a")))
    assert answer.status == 307
    assert blob[0].split(":")[1] in (answer.header("Location") or "")
    assert standin[0].count("HEAD", path) == 1  # the membership check reached the registry


@pytest.mark.timeout(60)
async def test_a_relayed_request_gets_503_when_no_connection_frees(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    client = await pool_gateway(gateway, standin, body_timeout_s=60)
    async with stuck_uploads(client.port, standin):
        answer = await exchange(client.port, "GET", "/v2/")
    assert answer.status == 503
    assert answer.header("Retry-After") == "1"
    assert json.loads(answer.body)["errors"][0]["code"] == "UNAVAILABLE"
    assert standin[0].count("GET", "/v2/") == 0  # never relayed


async def answer_of(reader: asyncio.StreamReader, method: str) -> Answer:
    """One response read off a connection that stays open (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return parse(head + await reader.readexactly(length), method)


@pytest.mark.timeout(60)
async def test_idle_upload_bodies_are_closed_and_the_pool_frees(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    client = await pool_gateway(gateway, standin, body_timeout_s=1)
    async with stuck_uploads(client.port, standin) as readers:
        answers = [await answer_of(reader, "PATCH") for reader in readers]
        after = await exchange(client.port, "GET", "/v2/")
        # aiohttp then closes each connection (after its lingering time, 10 s at most).
        rest = [await reader.read() for reader in readers]
    assert [a.status for a in answers] == [408] * SLOTS
    assert all(json.loads(a.body)["errors"][0]["code"] == "UNKNOWN" for a in answers)
    assert after.status == 401  # the registry's own answer: the pool had room again
    assert standin[0].count("GET", "/v2/") == 1
    assert rest == [b""] * SLOTS


@pytest.mark.timeout(60)
async def test_a_slow_upload_that_keeps_sending_is_not_cut(
    gateway: GatewayFactory, standin: Standin,
) -> None:
    """12 pieces a quarter of a second apart: three times the 1 s idle limit in all, yet
    never a second without a byte."""
    client = await pool_gateway(gateway, standin, body_timeout_s=1)
    pieces = [bytes([i]) * 4096 for i in range(12)]
    body = b"".join(pieces)
    reader, writer = await asyncio.open_connection(HOST, client.port)
    try:
        writer.write(request_bytes("PUT", "/v2/library/a/blobs/uploads/slow",
                                   [("Content-Length", str(len(body)))], client.port))
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.25)
        answer = parse(await reader.read(), "PUT")
    finally:
        writer.close()
    assert answer.status == 200
    echoed = json.loads(answer.body)
    assert (echoed["size"], echoed["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
