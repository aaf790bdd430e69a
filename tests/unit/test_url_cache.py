"""Presigned URLs: cached while more than half of their life is left, never past credentials."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from aiobotocore.session import AioSession

from blobgate.cache import URLCache
from blobgate.config import S3Config
from blobgate.reference import Digest
from blobgate.storage import SignedURL, open_s3, presign_host

DIGEST = Digest("sha256:" + "a" * 64)


class CountingPresigner:
    """Signs URLs that last ``life`` seconds from the fake clock's now."""

    def __init__(self, clock: list[float], life: float) -> None:
        self.clock, self.life, self.calls = clock, life, 0

    async def presign_blob(self, digest: Digest) -> SignedURL:
        self.calls += 1
        now = self.clock[0]
        return SignedURL(f"https://s3/{digest}?n={self.calls}", now, now + self.life)


async def test_url_is_reused_until_half_its_life_then_resigned() -> None:
    clock = [1000.0]
    presigner = CountingPresigner(clock, life=1200)
    cache = URLCache(presigner, maxsize=10, clock=lambda: clock[0])
    first = await cache.url_for(DIGEST)
    clock[0] += 599
    assert await cache.url_for(DIGEST) is first
    clock[0] += 2
    second = await cache.url_for(DIGEST)
    assert second is not first
    assert presigner.calls == 2


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
        (S3Config(bucket="b", region="eu-west-1", path_style=False),
         "b.s3.eu-west-1.amazonaws.com"),
    ],
)
def test_presign_host(cfg: S3Config, host: str) -> None:
    assert presign_host(cfg) == host
