"""Replicas share a Redis that blobgate does not trust with integrity: two gateways (each
its own application, caches and Redis connections) on one real Redis, in front of the
stand-in registry (which can refuse one token) and moto's S3.

- Forged entries grant nothing: the attack of writing a verdict and a membership under
  blobgate's key scheme (a ``team-b/app`` token, a ``team-a`` blob) gets no redirect
  unless the entries carry a MAC made with the replicas' key for those very keys; the
  registry is asked instead, and every rejection is counted.
- A refusal the registry gives through one replica stops the other's redirects for that
  token within a second (measured, printed); the message names the token by its hash.
- Malformed values are misses, never a 500; the listener survives messages it cannot
  believe or use, and one that is down shows in ``/readyz`` until it is back.
- A warm GET does not talk to Redis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from blobgate.app import SERVICES
from blobgate.caches.sealing import ENTRY, MESSAGE, Keyring
from blobgate.caches.shared import token_key
from blobgate.config import RedisConfig
from blobgate.devstack.redis import mac_key
from blobgate.health import create_metrics_app
from blobgate.ops.metrics import STATS, Stats
from hardening.wire import Answer, bearer, exchange

from support.eventually import eventually
from support.gateway import GatewayFactory
from support.messages import message
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
Client = TestClient[Any, Any]
TEAM_A, TEAM_B = "team-a/app", "team-b/app"
MANIFEST = ("application/vnd.oci.image.manifest.v1+json", b"{}")


def shared_key(token: str) -> str:
    """The shared key part blobgate uses for ``token``."""
    return token_key(hashlib.sha256(token.encode()).digest())


@pytest.fixture
def digest(put_blob: Callable[[bytes], str], standin: Standin) -> str:
    """A blob in S3, linked into team-a/app only; both repositories have a manifest v1."""
    data = os.urandom(4096)
    found = put_blob(data)
    standin[0].blobs[(TEAM_A, found)] = data
    for name in (TEAM_A, TEAM_B):
        standin[0].manifests[(name, "v1")] = MANIFEST
    return found


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client: whoever else can write to the Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def ask(client: Client, path: str, token: str, method: str = "GET") -> Answer:
    return await exchange(client.port, method, path, bearer(token))


def stats(client: Client) -> Stats:
    return client.server.app[STATS]


def secret(cfg: RedisConfig) -> bytes:
    return Path(cfg.mac_key_file or "").read_bytes().strip()


async def listening(raw: Redis, cfg: RedisConfig, replicas: int = 2) -> None:
    """Wait until ``replicas`` listeners are subscribed to the invalidation channel."""
    async def subscribed() -> bool:
        found = await raw.pubsub_numsub(f"{cfg.key_prefix}invalidate")
        return bool(found[0][1] >= replicas)
    await eventually(subscribed)


async def next_message(channel: PubSub) -> dict[str, Any]:
    """The next message published on ``channel`` (subscription notices skipped)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await channel.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:
            return message
    raise AssertionError("nothing published")


def forged_entries(cfg: RedisConfig, token: str, digest: str, forgery: str,
                   old_key: bytes) -> dict[str, bytes]:
    """A verdict accepting ``token`` for team-b/app and a membership of team-a's blob in
    team-b/app, under blobgate's own keys, sealed as ``forgery`` says."""
    until = str(time.time() + 600)
    hashed = shared_key(token)
    entries = {f"c:{hashed}:{TEAM_B}": f"1|{until}", f"m:{TEAM_B}@{digest}": f"|{until}"}
    sealed = {}
    for key, value in entries.items():
        place, data = cfg.key_prefix + key, value.encode()
        sealed[place] = {
            "no MAC": data,
            "another secret": Keyring(secrets.token_bytes(32)).seal(ENTRY, place, data),
            # valid entries a replica wrote for team-a, moved under team-b's keys
            "MAC of another key": Keyring(secret(cfg)).seal(
                ENTRY, place.replace(TEAM_B, TEAM_A), data),
            "previous key": Keyring(old_key).seal(ENTRY, place, data),
            "current key": Keyring(secret(cfg)).seal(ENTRY, place, data),
        }[forgery]
    return sealed


@pytest.mark.parametrize(("forgery", "grace_s", "reason"), [
    ("no MAC", 3600, "unsigned"),
    ("another secret", 3600, "bad_mac"),
    ("MAC of another key", 3600, "bad_mac"),
    ("previous key", 0, "expired_key"),
    # Control: entries with a valid MAC are believed (this is what the key protects).
    ("current key", 3600, None),
    ("previous key", 3600, None),
])
async def test_forged_entries_grant_nothing(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, raw: Redis,
    shared_redis: RedisConfig, tmp_path: Path, forgery: str, grace_s: int, reason: str | None,
) -> None:
    old = mac_key(tmp_path, "old-key")
    cfg = dataclasses.replace(shared_redis, mac_previous_key_file=str(old),
                              mac_previous_key_grace_s=grace_s)
    client = await gateway(redis=cfg)
    token = signer.token(TEAM_B)  # any token for team-b/app
    for place, value in forged_entries(cfg, token, digest, forgery,
                                       old.read_bytes().strip()).items():
        await raw.set(place, value, ex=600)
    blob = f"/v2/{TEAM_B}/blobs/{digest}"
    answer = await ask(client, blob, token)
    if reason is None:
        assert answer.status == 307  # believed: team-a's blob, without asking the registry
        assert standin[0].count("HEAD", blob) == 0
        return
    assert answer.status == 404  # the registry's own answer: not in team-b/app
    assert answer.header("Location") is None
    assert standin[0].count("HEAD", blob) == 1  # the registry was asked instead
    # Once the registry has accepted the token for team-b/app, the forged membership is
    # what stands between it and team-a's blob.
    assert (await ask(client, f"/v2/{TEAM_B}/manifests/v1", token)).status == 200
    answer = await ask(client, blob, token)
    assert answer.status == 404
    assert standin[0].count("HEAD", blob) == 2
    assert stats(client).shared_rejected == {("c", reason): 1, ("m", reason): 1}


async def test_a_refusal_through_a_stops_b_within_a_second(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, raw: Redis,
    shared_redis: RedisConfig,
) -> None:
    a, b = await gateway(redis=shared_redis), await gateway(redis=shared_redis)
    await listening(raw, shared_redis)
    token = signer.token(TEAM_A)
    blob = f"/v2/{TEAM_A}/blobs/{digest}"
    assert (await ask(b, blob, token)).status == 307  # B holds an acceptance of the token
    heads = standin[0].count("HEAD", blob)
    async with raw.pubsub() as channel:
        await channel.subscribe(f"{shared_redis.key_prefix}invalidate")
        standin[0].refused.add(token)  # e.g. the account was disabled
        assert (await ask(a, f"/v2/{TEAM_A}/manifests/v1", token)).status == 401

        async def b_stopped() -> bool:
            return (await ask(b, blob, token)).status != 307
        took = await eventually(b_stopped)
        print(f"\nB stopped redirecting {took * 1000:.0f} ms after A saw the refusal")
        published = await next_message(channel)
    assert (await ask(b, blob, token)).status == 401  # the registry's own answer
    assert standin[0].count("HEAD", blob) == heads  # from Redis: B did not ask the registry
    assert stats(b).invalidations["refuse"] == 1
    message = json.loads(Keyring(secret(shared_redis)).open(
        MESSAGE, f"{shared_redis.key_prefix}invalidate", published["data"]))
    assert isinstance(message.pop("at"), float)
    assert isinstance(message.pop("id"), str)
    assert message == {"op": "refuse", "token": shared_key(token), "name": TEAM_A}
    assert token.encode() not in published["data"]
    assert (await ask(a, blob, token)).status == 401  # A keeps its refusal


@pytest.mark.parametrize(("cache", "value"), [
    ("c", "1|abc"), ("c", ["not", "a", "string"]), ("m", "x|99"), ("m", "|inf"),
    ("url", '{"url": 5}'), ("url", "[]"),
])
async def test_a_malformed_value_is_a_counted_miss_never_a_500(
    gateway: GatewayFactory, signer: Signer, standin: Standin, digest: str, raw: Redis,
    shared_redis: RedisConfig, cache: str, value: str | list[str],
) -> None:
    client = await gateway(redis=shared_redis)
    token = signer.token(TEAM_A)
    if cache != "c":  # the token confirmed, so membership and URL are looked up
        assert (await ask(client, f"/v2/{TEAM_A}/manifests/v1", token)).status == 200
    key = {"c": f"{shared_key(token)}:{TEAM_A}", "m": f"{TEAM_A}@{digest}",
           "url": digest}[cache]
    place = f"{shared_redis.key_prefix}{cache}:{key}"
    if isinstance(value, list):
        await raw.rpush(place, *value)
    else:
        await raw.set(place, Keyring(secret(shared_redis)).seal(ENTRY, place, value.encode()))
    answer = await ask(client, f"/v2/{TEAM_A}/blobs/{digest}", token)
    assert answer.status == 307  # learnt from the registry and storage instead
    assert stats(client).shared_rejected == {(cache, "malformed"): 1}
    await raw.delete(place)


async def readyz(metrics: Client) -> tuple[int, dict[str, Any]]:
    response = await metrics.get("/readyz")
    return response.status, await response.json()


async def test_the_listener_survives_bad_messages_and_shows_in_readiness_while_down(
    gateway: GatewayFactory, signer: Signer, digest: str, raw: Redis,
    shared_redis: RedisConfig, monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = await gateway(redis=shared_redis), await gateway(redis=shared_redis)
    await listening(raw, shared_redis)
    metrics = TestClient(TestServer(create_metrics_app(b.server.app)))
    await metrics.start_server()
    token = signer.token(TEAM_A)
    blob = f"/v2/{TEAM_A}/blobs/{digest}"
    members = b.server.app[SERVICES].blobs.gate.membership.cache

    async def b_forgot() -> bool:
        return len(members) == 0

    async def b_listener(ready: bool) -> bool:
        status, body = await readyz(metrics)
        return (status == 200) == ready and (ready or any(
            "invalidation listener down: RuntimeError" in r for r in body["reasons"]))

    try:
        assert (await ask(b, blob, token)).status == 307
        channel, keys = f"{shared_redis.key_prefix}invalidate", Keyring(secret(shared_redis))
        await raw.publish(channel, b'{"op": "flush"}')  # not signed: not obeyed
        bad = message({"op": "forget", "refs": 5})
        await raw.publish(channel, keys.seal(MESSAGE, channel, bad))
        assert (await ask(a, blob, token, "DELETE")).status == 200
        await eventually(b_forgot)
        assert stats(b).shared_rejected == {("channel", "unsigned"): 1,
                                            ("channel", "malformed"): 1}
        assert stats(b).invalidations == {"forget": 1}
        assert (await readyz(metrics))[0] == 200

        def bug(*args: Any) -> None:
            raise RuntimeError("a bug")

        services = b.server.app[SERVICES]
        assert (await ask(b, blob, token)).status == 307
        monkeypatch.setattr(services.blobs, "forget", bug)
        monkeypatch.setattr(services.blobs, "flush", bug)  # and again after each restart
        assert (await ask(a, blob, token, "DELETE")).status == 200
        await eventually(lambda: b_listener(ready=False))
        monkeypatch.undo()
        await eventually(lambda: b_listener(ready=True))
        assert len(members) == 0  # back: it dropped everything (it may have missed some)
        assert (await ask(b, blob, token)).status == 307
        assert (await ask(a, blob, token, "DELETE")).status == 200
        await eventually(b_forgot)  # and it hears again
    finally:
        await metrics.close()


async def test_a_warm_get_does_not_talk_to_redis(
    gateway: GatewayFactory, signer: Signer, digest: str, shared_redis: RedisConfig,
) -> None:
    client = await gateway(redis=shared_redis)
    token = signer.token(TEAM_A)
    blob = f"/v2/{TEAM_A}/blobs/{digest}"
    assert (await ask(client, blob, token)).status == 307  # cold: Redis asked
    asked = sum(stats(client).shared.values())
    assert asked > 0
    for _ in range(20):
        assert (await ask(client, blob, token)).status == 307
    assert sum(stats(client).shared.values()) == asked
