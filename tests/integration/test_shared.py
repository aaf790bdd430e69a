"""The shared-cache client against a real Redis, and against one that hangs: values cross
between clients with their expiry, a hung Redis costs one bounded call and is then left
alone for ``retry_s``, and recovery is noticed.

Redis is not believed: a value without a valid MAC for its own key (none, another key's
secret, a MAC made for another key, the previous key after its grace), or one that does
not parse, is a miss, counted by reason, never an error; the previous key still
verifies within its grace; new key files are picked up without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

from blobgate.caches.listener import Listener
from blobgate.caches.sealing import ENTRY, Keyring, key_watcher
from blobgate.caches.shared import Malformed, Shared, open_shared
from blobgate.config import RedisConfig
from blobgate.devstack.redis import INSTALL, RedisServer, mac_key
from blobgate.ops.metrics import Stats

from support.eventually import eventually


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


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client: whoever else can write to the Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


def anything(value: str) -> str:
    return value


def verdict(value: str) -> str:
    """A stand-in for a cache's parser: ``1|...`` only."""
    if not value.startswith("1|"):
        raise Malformed(value)
    return value


def secret_of(cfg: RedisConfig) -> bytes:
    return Path(cfg.mac_key_file or "").read_bytes().strip()


def rotate(cfg: RedisConfig, workdir: Path) -> bytes:
    """The current key becomes the previous one, a new one the current one (returned)."""
    Path(cfg.mac_previous_key_file or "").write_bytes(Path(cfg.mac_key_file or "").read_bytes())
    mac_key(workdir)  # the file shared_redis named
    return secret_of(cfg)


async def test_values_cross_between_clients(shared_redis: RedisConfig) -> None:
    stats = Stats()
    async with open_shared(shared_redis, stats) as writer, \
            open_shared(shared_redis, stats) as reader:
        writer.put("m", "a/b@sha256:x", "12|99", ttl_s=30)
        writer.put("m", "short", "1", ttl_s=0.5)  # under a second: not worth sharing
        await writer.settle()
        assert await reader.get("m", "a/b@sha256:x", anything) == "12|99"
        assert await reader.get("m", "short", anything) is None
    assert stats.shared["m", "hit"] == 1
    assert stats.shared["m", "miss"] == 1


async def test_values_are_stored_sealed(shared_redis: RedisConfig, raw: Redis) -> None:
    value = "https://bucket.example/data?X-Amz-Signature=f00d"  # as a cached URL would be
    async with open_shared(shared_redis, Stats()) as shared:
        shared.put("url", "k", value, ttl_s=30)
        await shared.settle()
    place = f"{shared_redis.key_prefix}url:k"
    stored = await raw.get(place)
    assert stored is not None
    assert b"X-Amz-Signature" not in stored  # whoever reads Redis learns nothing usable
    assert b"bucket.example" not in stored
    # Opened here by the documented scheme, without blobgate's code: AES-256-GCM under
    # HKDF-SHA256(secret, info "blobgate shared state"), nonce first, the kind and the
    # full key as associated data.
    assert stored.startswith(b"s1.")
    raw_bytes = base64.urlsafe_b64decode(stored[3:])
    key = HKDF(hashes.SHA256(), 32, salt=None, info=b"blobgate shared state").derive(
        secret_of(shared_redis))
    opened = AESGCM(key).decrypt(raw_bytes[:12], raw_bytes[12:], b"entry\0" + place.encode())
    assert opened == value.encode()


async def test_a_hung_redis_costs_one_bounded_call_then_is_left_alone(
    hung: tuple[Hung, str], tmp_path: Path,
) -> None:
    state, url = hung
    stats = Stats()
    cfg = RedisConfig(url=url, timeout_ms=100, retry_s=30, mac_key_file=str(mac_key(tmp_path)))
    async with open_shared(cfg, stats) as shared:
        assert await shared.get("m", "k", anything) is None
        sent = state.received
        assert sent > 0  # it was asked once...
        for _ in range(20):
            assert await shared.get("m", "k", anything) is None
            shared.put("m", "k", "v", ttl_s=30)
        await shared.settle()
        assert state.received == sent  # ...then left alone for retry_s
        assert shared.failing
    assert stats.shared["m", "error"] == 21
    assert stats.shared_errors["get"] == 1


async def test_recovery_is_noticed(shared_redis: RedisConfig) -> None:
    stats = Stats()
    async with open_shared(shared_redis, stats) as shared:
        assert isinstance(shared, Shared)
        shared.failed("get", ConnectionError("test"))  # as after an outage
        assert shared.failing
        assert await shared.get("m", "absent", anything) is None
        assert not shared.failing


@pytest.mark.parametrize(("forgery", "reason"), [
    ("no MAC", "unsigned"),
    ("another secret", "bad_mac"),
    ("MAC of another key", "bad_mac"),
    ("previous key after its grace", "expired_key"),
])
async def test_a_value_without_a_valid_mac_for_its_key_is_a_counted_miss(
    shared_redis: RedisConfig, raw: Redis, tmp_path: Path, forgery: str, reason: str,
) -> None:
    old = mac_key(tmp_path, "old-key")
    cfg = dataclasses.replace(shared_redis, mac_previous_key_file=str(old),
                              mac_previous_key_grace_s=0)
    place = f"{cfg.key_prefix}c:tokenhash:team-b/app"
    value = b"1|99999999999"
    sealed = {
        "no MAC": value,
        "another secret": Keyring(secrets.token_bytes(32)).seal(ENTRY, place, value),
        "MAC of another key": Keyring(secret_of(cfg)).seal(
            ENTRY, f"{cfg.key_prefix}c:tokenhash:team-a/app", value),
        "previous key after its grace": Keyring(old.read_bytes().strip()).seal(
            ENTRY, place, value),
    }[forgery]
    await raw.set(place, sealed, ex=60)
    stats = Stats()
    async with open_shared(cfg, stats) as shared:
        assert await shared.get("c", "tokenhash:team-b/app", anything) is None
    assert stats.shared_rejected == {("c", reason): 1}
    assert stats.shared["c", "rejected"] == 1
    assert stats.shared["c", "hit"] == 0


async def test_the_previous_key_verifies_within_its_grace(
    shared_redis: RedisConfig, raw: Redis, tmp_path: Path,
) -> None:
    old = mac_key(tmp_path, "old-key")
    cfg = dataclasses.replace(shared_redis, mac_previous_key_file=str(old))
    place = f"{cfg.key_prefix}m:a/b@sha256:x"
    await raw.set(place, Keyring(old.read_bytes().strip()).seal(ENTRY, place, b"12|99"), ex=60)
    stats = Stats()
    async with open_shared(cfg, stats) as shared:
        assert await shared.get("m", "a/b@sha256:x", anything) == "12|99"
        shared.put("m", "new", "1|99", ttl_s=30)  # new entries: the current key only
        await shared.settle()
    new_place = f"{cfg.key_prefix}m:new"
    stored = await raw.get(new_place)
    assert stored is not None
    assert Keyring(secret_of(cfg)).open(ENTRY, new_place, stored) == b"1|99"
    assert stats.shared["m", "hit"] == 1


@pytest.mark.parametrize("bad", ["signed, unparsable", "signed, not UTF-8", "not a string"])
async def test_a_value_that_does_not_parse_is_a_counted_miss(
    shared_redis: RedisConfig, raw: Redis, bad: str,
) -> None:
    place = f"{shared_redis.key_prefix}c:k"
    keys = Keyring(secret_of(shared_redis))
    if bad == "not a string":
        await raw.rpush(place, "1|99")
    else:
        value = b"0|abc" if bad == "signed, unparsable" else b"1|\xff\xfe"
        await raw.set(place, keys.seal(ENTRY, place, value), ex=60)
    stats = Stats()
    async with open_shared(shared_redis, stats) as shared:
        assert await shared.get("c", "k", verdict) is None
        assert not shared.failing  # a bad value is no outage
    assert stats.shared_rejected == {("c", "malformed"): 1}
    assert stats.shared_errors == {}


async def test_new_key_files_are_used_without_a_restart(
    shared_redis: RedisConfig, raw: Redis, tmp_path: Path,
) -> None:
    """Rotation: the new key in mac_key_file, the old one in mac_previous_key_file; the
    old one verifies until its grace ends (read on a clock of the test's own)."""
    previous = tmp_path / "previous"
    cfg = dataclasses.replace(shared_redis, mac_previous_key_file=str(previous),
                              mac_previous_key_grace_s=60)
    now = [1000.0]
    first = secret_of(cfg)
    keys = Keyring(first, None, cfg.mac_previous_key_grace_s, clock=lambda: now[0])
    stats = Stats()
    watcher = key_watcher(cfg, keys, stats)
    assert watcher is not None
    place = f"{cfg.key_prefix}m:k"
    await raw.set(place, keys.seal(ENTRY, place, b"12|99"), ex=60)  # by a replica, old key

    new = rotate(cfg, tmp_path)
    watcher.check()
    assert stats.reloads["redis_mac_key", "ok"] == 1
    assert Keyring(new).open(ENTRY, place, keys.seal(ENTRY, place, b"x")) == b"x"
    async with open_shared(cfg, stats) as shared:
        shared.keys = keys
        assert await shared.get("m", "k", anything) == "12|99"  # within the grace
        now[0] += 61
        assert await shared.get("m", "k", anything) is None  # after it
    assert stats.shared_rejected == {("m", "expired_key"): 1}

    mac_key(tmp_path).write_text("short\n")  # a bad new key keeps the old ones
    watcher.check()
    assert stats.reload_healthy["redis_mac_key"] == 0
    assert Keyring(new).open(ENTRY, place, keys.seal(ENTRY, place, b"x")) == b"x"


ACL_USER = ("on", ">acl-password", "resetkeys", "~blobgate:*", "resetchannels", "&blobgate:*",
            "-@all", "+get", "+set", "+unlink", "+scan", "+publish", "+subscribe", "+ping",
            "+select")


@pytest.fixture
async def acl_redis(tmp_path: Path) -> AsyncIterator[int]:
    """A private redis-server with the ACL user SECURITY.md recommends; its port."""
    try:
        server = RedisServer(tmp_path / "redis")
    except FileNotFoundError:
        pytest.skip(f"no redis-server: {INSTALL}")
    admin = Redis(port=server.port)
    try:
        await admin.execute_command("ACL", "SETUSER", "blobgate", *ACL_USER)
        yield server.port
    finally:
        await admin.aclose()
        server.stop()


def acl_config(port: int, tmp_path: Path, **extra: Any) -> RedisConfig:
    return RedisConfig(url=f"redis://blobgate@127.0.0.1:{port}/1", password="acl-password",
                       mac_key_file=str(mac_key(tmp_path)), **extra)


async def test_an_acl_user_limited_to_the_prefix_is_enough(
    acl_redis: int, tmp_path: Path
) -> None:
    """The ACL user SECURITY.md recommends: every call blobgate makes is allowed."""
    admin = Redis(port=acl_redis)
    try:
        stats, heard = Stats(), []
        async with open_shared(acl_config(acl_redis, tmp_path), stats) as shared:
            listener = Listener(shared, heard.append)
            listener.start()
            shared.put("m", "k", "12|99", ttl_s=30)
            await shared.settle()
            assert await shared.get("m", "k", anything) == "12|99"
            async def subscribed() -> bool:
                return bool((await admin.pubsub_numsub(shared.channel))[0][1])

            async def heard_both() -> bool:
                return len(heard) == 2

            await eventually(subscribed)
            await shared.publish(["m:k"], {"op": "forget", "refs": []})
            await shared.flush()
            await eventually(heard_both)
            listener.stop()
        assert heard == [{"op": "forget", "refs": []}, {"op": "flush"}]
        assert stats.shared_errors == {}
    finally:
        await admin.aclose()


async def test_a_subscription_redis_refuses_shows_in_readiness(
    acl_redis: int, tmp_path: Path
) -> None:
    """An ACL user whose channels do not cover blobgate's (a key_prefix other than the one
    the ACL names): Redis answers NOPERM, which is no outage to wait out."""
    cfg = acl_config(acl_redis, tmp_path, key_prefix="other:", retry_s=0)
    async with open_shared(cfg, Stats()) as shared:
        listener = Listener(shared, lambda _message: None)
        listener.start()

        async def refused() -> bool:
            return bool(listener.down)
        await eventually(refused)
        assert "refused the subscription" in listener.down
        assert "NoPermission" in listener.down
        listener.stop()
