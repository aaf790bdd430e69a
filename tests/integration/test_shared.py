"""The shared-cache client against a real Redis, and against one that hangs: values cross
between clients with their expiry, a hung Redis costs one bounded call and is then left
alone for ``retry_s``, and recovery is noticed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from blobgate.config import RedisConfig
from blobgate.devstack.redis import INSTALL, MACHINE, RedisServer, answers
from blobgate.metrics import Stats
from blobgate.shared import Shared, open_shared


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if answers(*MACHINE):
        yield f"redis://{MACHINE[0]}:{MACHINE[1]}/0"
        return
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError:
        pytest.skip(f"no Redis: {INSTALL}")
    yield server.url
    server.stop()


class Hung:
    """A TCP server that accepts connections and never answers; counts bytes received."""

    def __init__(self) -> None:
        self.received = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            self.received += len(data)
        writer.close()


@pytest.fixture
async def hung() -> AsyncIterator[tuple[Hung, str]]:
    state = Hung()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    server.close()


async def test_values_cross_between_clients(redis_url: str, tmp_path: Path) -> None:
    cfg = RedisConfig(url=redis_url, key_prefix=f"{tmp_path.name}:")
    stats = Stats()
    async with open_shared(cfg, stats) as writer, open_shared(cfg, stats) as reader:
        writer.put("m", "a/b@sha256:x", "12|99", ttl_s=30)
        writer.put("m", "short", "1", ttl_s=0.5)  # under a second: not worth sharing
        await asyncio.sleep(0.1)
        assert await reader.get("m", "a/b@sha256:x") == "12|99"
        assert await reader.get("m", "short") is None
    assert stats.shared["m", "hit"] == 1
    assert stats.shared["m", "miss"] == 1


async def test_a_hung_redis_costs_one_bounded_call_then_is_left_alone(
    hung: tuple[Hung, str],
) -> None:
    state, url = hung
    stats = Stats()
    cfg = RedisConfig(url=url, timeout_ms=100, retry_s=30)
    async with open_shared(cfg, stats) as shared:
        assert await shared.get("m", "k") is None
        sent = state.received
        assert sent > 0  # it was asked once...
        for _ in range(20):
            assert await shared.get("m", "k") is None
            shared.put("m", "k", "v", ttl_s=30)
        await asyncio.sleep(0.2)
        assert state.received == sent  # ...then left alone for retry_s
        assert shared.failing
    assert stats.shared["m", "error"] == 21
    assert stats.shared_errors["get"] == 1


async def test_recovery_is_noticed(redis_url: str) -> None:
    stats = Stats()
    cfg = RedisConfig(url=redis_url, retry_s=0)
    async with open_shared(cfg, stats) as shared:
        assert isinstance(shared, Shared)
        shared._failed("get", ConnectionError("test"))  # as after an outage
        assert shared.failing
        assert await shared.get("m", "absent") is None
        assert not shared.failing
