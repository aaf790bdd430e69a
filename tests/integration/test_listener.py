"""The invalidation listener on a real Redis: it hears only what is signed for its
channel, skips (and counts) what it cannot believe or use and goes on hearing; after a
failure of its own it says so, subscribes again, drops everything, and hears again."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from blobgate.caches.listener import Listener
from blobgate.caches.sealing import ENTRY, MESSAGE, Keyring
from blobgate.caches.shared import Malformed, Message, Shared, open_shared
from blobgate.config import RedisConfig
from blobgate.ops.metrics import Stats

from support.eventually import eventually
from support.messages import message


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client: whoever else can publish on the Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def subscribed(raw: Redis, shared: Shared) -> None:
    async def listening() -> bool:
        return bool((await raw.pubsub_numsub(shared.channel))[0][1])
    await eventually(listening)


def forgets(heard: list[Message]) -> Callable[[Message], None]:
    """A handler that understands ``forget`` with a list of refs, and ``flush``."""
    def handle(message: Message) -> None:
        if message.get("op") == "forget" and not isinstance(message.get("refs"), list):
            raise Malformed("refs")
        if message.get("op") not in ("forget", "flush"):
            raise Malformed("op")
        heard.append(message)
    return handle


@asynccontextmanager
async def hearing(cfg: RedisConfig, raw: Redis, stats: Stats, heard: list[Message]
                  ) -> AsyncIterator[tuple[Shared, Listener]]:
    """A ``Shared`` on ``cfg`` whose listener, subscribed already, hands what it believes
    to ``heard`` (through ``forgets``)."""
    async with open_shared(cfg, stats) as shared:
        listener = Listener(shared, forgets(heard))
        listener.start()
        try:
            await subscribed(raw, shared)
            yield shared, listener
        finally:
            listener.stop()  # before its Redis connection closes under it
            await asyncio.sleep(0.1)


async def test_it_skips_what_it_cannot_believe_or_use_and_keeps_hearing(
    shared_redis: RedisConfig, raw: Redis,
) -> None:
    stats, heard = Stats(), []
    async with hearing(shared_redis, raw, stats, heard) as (shared, listener):
        channel, keys = shared.channel, shared.keys
        for data in (
            b'{"op": "flush"}',  # no MAC
            Keyring(secrets.token_bytes(32)).seal(MESSAGE, channel, b'{"op": "flush"}'),
            keys.seal(ENTRY, channel, b'{"op": "flush"}'),  # signed as an entry
            keys.seal(MESSAGE, channel, message({"op": "forget", "refs": 5})),
            keys.seal(MESSAGE, channel, b"not json"),
            keys.seal(MESSAGE, channel, b"[1]"),
            keys.seal(MESSAGE, channel, message({"op": "grant"})),
        ):
            await raw.publish(channel, data)
        good = {"op": "forget", "refs": [["a/b", "sha256:" + "0" * 64]]}
        await shared.publish([], good)

        async def heard_it() -> bool:
            return bool(heard)
        await eventually(heard_it)
        assert heard == [good]  # none of the others, no flush among them
        assert listener.down == ""
    assert stats.shared_rejected == {
        ("channel", "unsigned"): 1, ("channel", "bad_mac"): 2, ("channel", "malformed"): 4}
    assert stats.invalidations == {"forget": 1}


async def test_after_a_failure_of_its_own_it_is_down_then_hears_again(
    shared_redis: RedisConfig, raw: Redis,
) -> None:
    stats, heard = Stats(), []
    broken = [True]
    understands = forgets(heard)

    def handle(message: Message) -> None:
        if broken[0]:
            raise RuntimeError("a bug")
        understands(message)

    async with open_shared(shared_redis, stats) as shared:
        listener = Listener(shared, handle)
        listener.start()
        await subscribed(raw, shared)
        await shared.publish([], {"op": "forget", "refs": []})

        async def down() -> bool:
            return listener.down != ""
        await eventually(down)
        assert listener.down == "RuntimeError: a bug"
        broken[0] = False

        async def up() -> bool:
            return listener.down == ""
        await eventually(up)
        assert heard == [{"op": "flush"}]  # it may have missed some: everything dropped
        await shared.publish([], {"op": "forget", "refs": []})

        async def heard_it() -> bool:
            return len(heard) == 2
        await eventually(heard_it)
        listener.stop()
    assert stats.shared_errors["listen"] >= 1
    assert not shared.failing  # Redis itself was fine all along


async def test_a_message_heard_before_or_sent_long_ago_is_not_obeyed(
    shared_redis: RedisConfig, raw: Redis,
) -> None:
    stats, heard = Stats(), []
    async with hearing(shared_redis, raw, stats, heard) as (shared, _listener):
        channel, keys = shared.channel, shared.keys
        body = {"op": "forget", "refs": [["a/b", "sha256:" + "0" * 64]]}
        captured = keys.seal(MESSAGE, channel, message(body))
        for data in (captured, captured, captured,  # one real message, replayed twice
                     keys.seal(MESSAGE, channel, message(body, at=time.time() - 120)),
                     keys.seal(MESSAGE, channel, message(body, at=time.time() + 120)),
                     keys.seal(MESSAGE, channel, json.dumps(body).encode())):  # no when or which
            await raw.publish(channel, data)
        await shared.publish([], {"op": "flush"})

        async def all_heard() -> bool:
            return sum(stats.shared_rejected.values()) == 5 and len(heard) == 2
        await eventually(all_heard)
    assert [m["op"] for m in heard] == ["forget", "flush"]
    assert stats.shared_rejected == {("channel", "replayed"): 2, ("channel", "stale"): 2,
                                     ("channel", "malformed"): 1}
