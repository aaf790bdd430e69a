"""The GCS backend: V4 signatures checked independently and against google-cloud-storage,
credentials from the real Google chain, bytes and sizes from an emulator, and a running
gateway with ``storage.backend: gcs``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import pytest
from google.cloud.storage import _signing
from google.oauth2 import service_account

from blobgate.backends.contract import URLOptions
from blobgate.backends.gcs import READ_ONLY, GCSStorage, open_gcs
from blobgate.config import GCSConfig
from blobgate.errors import ConfigError, NotInStorage, StorageError
from blobgate.reference import BlobRef, parse_digest, storage_key

from support.gcs import BUCKET, EMAIL, Emulator, InvalidSignature, ServiceAccount, verify
from support.spans import SPANS, read_span
from support.standin import StandIn

Standin = tuple[StandIn, Any]
SIZE = 2 * (1 << 20) + 4321
FROZEN = 1_796_000_000.0  # 2026-11-30T00:53:20Z
DIGEST = parse_digest("sha256:" + "ab" * 32)


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


def config(emulator: Emulator, **changes: Any) -> GCSConfig:
    return replace(GCSConfig(bucket=BUCKET, endpoint_url=emulator.endpoint_url), **changes)


def credentials(account: ServiceAccount) -> service_account.Credentials:
    return service_account.Credentials.from_service_account_file(
        str(account.key_file), scopes=[READ_ONLY])


@pytest.fixture
async def storage(gcs_emulator: Emulator, gcs_account: ServiceAccount
                  ) -> AsyncIterator[GCSStorage]:
    async with open_gcs(config(gcs_emulator), chunk_bytes=256 * 1024,
                        credentials=credentials(gcs_account)) as opened:
        yield opened


async def fetch(url: str, **headers: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        assert "Authorization" not in response.request_info.headers
        return response.status, await response.read()


@pytest.mark.parametrize("endpoint", [None, "http://localhost:4443"],
                         ids=["storage.googleapis.com", "custom-endpoint"])
@pytest.mark.parametrize("filename", [None, "layer 1.tar"])
async def test_signature_is_googles_v4_and_matches_google_cloud_storage(
    gcs_account: ServiceAccount, endpoint: str | None, filename: str | None,
) -> None:
    cfg = GCSConfig(bucket=BUCKET, rootdirectory="/harbor/", endpoint_url=endpoint)
    creds = credentials(gcs_account)
    async with open_gcs(cfg, credentials=creds) as opened:
        opened._clock = lambda: FROZEN
        signed = await opened.presign_blob(DIGEST, URLOptions(filename=filename))
    assert (signed.signed_at, signed.expires_at) == (FROZEN, FROZEN + 1200)
    key = storage_key("harbor", DIGEST)
    assert urlsplit(signed.url).path == f"/{BUCKET}/{key}"
    fields = verify(signed.url, gcs_account.public_key, now=FROZEN)
    assert fields["X-Goog-Credential"].startswith(f"{EMAIL}/20261130/auto/")
    assert fields["X-Goog-Expires"] == "1200"
    library = _signing.generate_signed_url_v4(
        creds, resource=f"/{BUCKET}/{quote(key, safe='/~')}", expiration=1200,
        api_access_endpoint=endpoint or "https://storage.googleapis.com",
        response_disposition=None if filename is None else f'attachment; filename="{filename}"',
        _request_timestamp=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(FROZEN)))
    assert signed.url == library


@pytest.mark.parametrize("tamper", ["method", "path", "expires", "host", "signature"])
async def test_the_check_refuses_tampered_urls(
    storage: GCSStorage, gcs_account: ServiceAccount, tamper: str
) -> None:
    url = (await storage.presign_blob(DIGEST)).url
    verify(url, gcs_account.public_key)
    method = "GET"
    if tamper == "method":
        method = "HEAD"  # a signed GET is not a HEAD
    elif tamper == "path":
        url = url.replace(DIGEST.hex, "cd" * 32)
    elif tamper == "expires":
        url = url.replace("X-Goog-Expires=1200", "X-Goog-Expires=604800")
    elif tamper == "host":
        url = url.replace("localhost", "127.0.0.1")
    else:
        url = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    with pytest.raises(InvalidSignature):
        verify(url, gcs_account.public_key, method)


async def test_expired_url_is_outside_its_validity(
    storage: GCSStorage, gcs_account: ServiceAccount
) -> None:
    signed = await storage.presign_blob(DIGEST, URLOptions(expires_s=60))
    verify(signed.url, gcs_account.public_key, now=signed.signed_at + 59)
    with pytest.raises(AssertionError, match="outside"):
        verify(signed.url, gcs_account.public_key, now=signed.signed_at + 61)


async def test_cache_control_cannot_be_signed(storage: GCSStorage) -> None:
    with pytest.raises(StorageError, match="Cache-Control"):
        await storage.presign_blob(DIGEST, URLOptions(cache_control="max-age=60"))


async def test_credentials_from_the_google_chain_read_sizes_and_bytes(
    gcs_emulator: Emulator, gcs_account: ServiceAccount, data: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(gcs_account.key_file))
    digest = parse_digest(gcs_emulator.put_blob(data, rootdirectory="harbor"))
    issued = len(gcs_account.tokens.issued)
    async with open_gcs(config(gcs_emulator, rootdirectory="harbor")) as opened:
        assert await opened.stat(digest) == SIZE
        assert await opened.size(BlobRef("library/a", digest), "") == SIZE
        signed = await opened.presign_blob(digest)
    assert len(gcs_account.tokens.issued) == issued + 1  # one token, kept for both calls
    verify(signed.url, gcs_account.public_key)
    assert await fetch(signed.url) == (200, data)  # the emulator serves the signed path


async def test_missing_object(storage: GCSStorage) -> None:
    with pytest.raises(NotInStorage):
        await storage.stat(parse_digest("sha256:" + "f" * 64))


@pytest.mark.parametrize(("first", "last"), SPANS)
async def test_ranged_streaming(
    gcs_emulator: Emulator, storage: GCSStorage, data: bytes, first: int, last: int | None
) -> None:
    digest = parse_digest(gcs_emulator.put_blob(data))
    got, wanted = await read_span(storage, digest, first, last, SIZE, 256 * 1024)
    assert got == data[wanted]


async def test_no_google_credentials_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login either
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # and not on a Google VM
    with pytest.raises(ConfigError) as caught:
        async with open_gcs(GCSConfig(bucket=BUCKET)):
            pass
    assert caught.value.key == "storage.gcs"
    assert "GOOGLE_APPLICATION_CREDENTIALS" in caught.value.why
