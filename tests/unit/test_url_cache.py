"""Presigned URLs: cached while more than half of their life is left, never past credentials."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession

from blobgate.backends.contract import SignedURL
from blobgate.backends.s3 import open_s3, presign_host
from blobgate.backends.urls import Presence, URLCache
from blobgate.config import S3Config
from blobgate.errors import NotInStorage, StorageError, StorageUnchecked
from blobgate.reference import Digest

DIGEST = Digest("sha256:" + "a" * 64)


class CountingPresigner:
    """Signs URLs that last ``life`` seconds from the fake clock's now."""

    def __init__(self, clock: list[float], life: float) -> None:
        self.clock, self.life, self.calls = clock, life, 0

    async def presign_blob(self, digest: Digest) -> SignedURL:
        self.calls += 1
        now = self.clock[0]
        return SignedURL(f"https://s3/{digest}?n={self.calls}", now, now + self.life)


class Storage:
    """Answers stat calls from ``objects`` (digest: size); ``down`` makes them fail."""

    def __init__(self, objects: dict[Digest, int]) -> None:
        self.objects, self.calls, self.down = objects, 0, False

    async def stat(self, digest: Digest) -> int:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise StorageError("endpoint unreachable", "EndpointConnectionError")
        if digest not in self.objects:
            raise NotInStorage("absent", "missing")
        return self.objects[digest]


def url_cache(clock: list[float], storage: Storage, life: float = 1200
              ) -> tuple[URLCache, CountingPresigner]:
    presigner = CountingPresigner(clock, life)
    presence = Presence(storage.stat, missing_ttl_s=5, maxsize=10, clock=lambda: clock[0])
    return URLCache(presigner, presence, maxsize=10, clock=lambda: clock[0]), presigner


async def test_url_is_reused_until_half_its_life_then_resigned() -> None:
    clock, storage = [1000.0], Storage({DIGEST: 42})
    cache, presigner = url_cache(clock, storage)
    first = await cache.url_for(DIGEST)
    assert first.size == 42
    clock[0] += 599
    assert await cache.url_for(DIGEST) is first
    clock[0] += 2
    second = await cache.url_for(DIGEST)
    assert second is not first
    assert presigner.calls == 2
    assert storage.calls == 2  # one look at storage per URL life


async def test_concurrent_first_requests_share_one_look_and_one_signature() -> None:
    clock, storage = [1000.0], Storage({DIGEST: 42})
    cache, presigner = url_cache(clock, storage)
    urls = await asyncio.gather(*(cache.url_for(DIGEST) for _ in range(20)))
    assert len({u.url for u in urls}) == 1
    assert (storage.calls, presigner.calls) == (1, 1)


async def test_an_absent_object_gets_no_url_and_is_looked_at_again_after_a_while() -> None:
    clock, storage = [1000.0], Storage({})
    cache, presigner = url_cache(clock, storage)
    for _ in range(3):
        with pytest.raises(NotInStorage):
            await cache.url_for(DIGEST)
    assert storage.calls == 1  # the absence is remembered...
    storage.objects[DIGEST] = 7  # ...while the pull-through cache stores the blob
    clock[0] += 4.9
    with pytest.raises(NotInStorage):
        await cache.url_for(DIGEST)
    clock[0] += 0.2
    assert (await cache.url_for(DIGEST)).size == 7  # ...for a few seconds only
    assert (storage.calls, presigner.calls) == (2, 1)


async def test_storage_that_cannot_answer_gives_no_url_and_is_asked_again() -> None:
    clock, storage = [1000.0], Storage({DIGEST: 42})
    storage.down = True
    cache, presigner = url_cache(clock, storage)
    for _ in range(2):
        with pytest.raises(StorageUnchecked):
            await cache.url_for(DIGEST)
    assert (storage.calls, presigner.calls) == (2, 0)
    storage.down = False
    assert (await cache.url_for(DIGEST)).size == 42


def _sts_session(expiry: datetime.datetime) -> AioSession:
    session = AioSession()

    async def refresh() -> dict[str, Any]:
        raise AssertionError("no refresh expected")

    session._credentials = AioRefreshableCredentials.create_from_metadata(
        metadata={"access_key": "AKIA", "secret_key": "s", "token": "t",
                  "expiry_time": expiry.isoformat()},
        refresh_using=refresh, method="sts-assume-role",
    )
    return session


@pytest.mark.parametrize("minutes_left", [45, 240])
async def test_temporary_credentials_bound_the_url_life(minutes_left: int) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expiry = now + datetime.timedelta(minutes=minutes_left)
    cfg = S3Config(endpoint_url="http://localhost:9000", expires_s=7200)
    async with open_s3(cfg, _sts_session(expiry)) as storage:
        signed = await storage.presign_blob(DIGEST)
    assert "X-Amz-Security-Token=t" in signed.url
    assert signed.expires_at == pytest.approx(
        min(signed.signed_at + 7200, expiry.timestamp()), abs=1)
    assert signed.hand_out_until < expiry.timestamp()


@pytest.mark.parametrize(
    ("cfg", "host"),
    [
        (S3Config(endpoint_url="http://minio:9000"), "minio"),
        (S3Config(endpoint_url="http://minio:9000", public_endpoint_url="https://s3.ex.com"),
         "s3.ex.com"),
        (S3Config(region="eu-west-1"), "s3.eu-west-1.amazonaws.com"),
        (S3Config(bucket="reg", region="eu-west-1", path_style=False),
         "reg.s3.eu-west-1.amazonaws.com"),
        (S3Config(region="eu-west-1", use_dualstack=True), "s3.dualstack.eu-west-1.amazonaws.com"),
        (S3Config(bucket="reg", region="eu-west-1", path_style=False, use_dualstack=True),
         "reg.s3.dualstack.eu-west-1.amazonaws.com"),
        (S3Config(bucket="reg", path_style=False, accelerate=True),
         "reg.s3-accelerate.amazonaws.com"),
        (S3Config(bucket="reg", path_style=False, accelerate=True, use_dualstack=True),
         "reg.s3-accelerate.dualstack.amazonaws.com"),
    ],
)
async def test_presign_host(cfg: S3Config, host: str) -> None:
    assert presign_host(cfg) == host
    session = AioSession()
    session.set_credentials("AKIA", "secret")
    async with open_s3(cfg, session) as storage:  # botocore signs the first URL itself
        signed = await storage.presign_blob(DIGEST)
    assert urlsplit(signed.url).hostname == host
