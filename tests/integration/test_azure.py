"""The Azure Blob backend against Azurite, which checks SAS signatures as Azure does.

SAS URLs are fetched with no credentials and must return exactly the blob; a tampered or
expired one must get 403. Account-key SAS runs on plain HTTP; user delegation SAS needs
Azurite's HTTPS + OAuth mode (with a stand-in token credential, since Entra ID is not
reachable here). Then a running gateway with ``storage.backend: azure``.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import BlobServiceClient

from blobgate.backends.azure import AzureStorage, DelegationKeys, open_azure
from blobgate.backends.contract import URLOptions
from blobgate.config import AzureConfig
from blobgate.errors import NotInStorage
from blobgate.reference import BlobRef, parse_digest

from support.azurite import ACCOUNT, CONTAINER, KEY, Azurite, StaticTokenCredential
from support.spans import SPANS, read_span
from support.standin import StandIn

Standin = tuple[StandIn, Any]
SIZE = 2 * (1 << 20) + 777


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


def config(server: Azurite, **changes: Any) -> AzureConfig:
    return replace(AzureConfig(account_name=ACCOUNT, container=CONTAINER,
                               endpoint_url=server.endpoint_url), **changes)


async def fetch(url: str, ca_file: str | None = None, **headers: str
                ) -> tuple[int, bytes, dict[str, str]]:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    async with aiohttp.ClientSession() as session, session.get(
            url, headers=headers, ssl=context if context else True) as response:
        assert "Authorization" not in response.request_info.headers
        return response.status, await response.read(), dict(response.headers)


@pytest.fixture
async def with_key(azurite: Azurite) -> AsyncIterator[AzureStorage]:
    async with open_azure(config(azurite), chunk_bytes=256 * 1024,
                          environ={"AZURE_STORAGE_KEY": KEY}) as storage:
        yield storage


async def test_sas_url_serves_exactly_the_blob(
    azurite: Azurite, with_key: AzureStorage, data: bytes
) -> None:
    digest = parse_digest(azurite.put_blob(data))
    signed = await with_key.presign_blob(digest)
    parts = urlsplit(signed.url)
    assert parts.path == (f"/{ACCOUNT}/{CONTAINER}/docker/registry/v2/blobs/sha256/"
                          f"{digest.hex[:2]}/{digest.hex}/data")
    query = parse_qs(parts.query)
    assert query["sp"] == ["r"]  # read-only
    assert query["sr"] == ["b"]  # this blob only
    assert signed.expires_at - signed.signed_at == pytest.approx(1200, abs=1)
    status, body, _ = await fetch(signed.url)
    assert status == 200
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest


@pytest.mark.parametrize("tamper", ["signature", "permissions", "other-blob", "expiry"])
async def test_tampered_sas_is_refused(
    azurite: Azurite, with_key: AzureStorage, tamper: str
) -> None:
    digest = parse_digest(azurite.put_blob(os.urandom(1000)))
    other = parse_digest(azurite.put_blob(os.urandom(1000)))
    url = (await with_key.presign_blob(digest)).url
    assert (await fetch(url))[0] == 200
    if tamper == "signature":
        url = url.replace("sig=", "sig=A")
    elif tamper == "permissions":
        url = url.replace("sp=r", "sp=rw")
    elif tamper == "other-blob":
        url = url.replace(digest.hex, other.hex)
    else:  # a longer life than was signed
        url = re.sub(r"se=[^&]+", "se=2099-01-01T00%3A00%3A00Z", url)
    status, body, _ = await fetch(url)
    assert status == 403, body[:300]


async def test_expired_sas_is_refused(azurite: Azurite) -> None:
    digest = parse_digest(azurite.put_blob(os.urandom(1000)))
    cfg = config(azurite, expires_s=60)
    async with BlobServiceClient(azurite.endpoint_url, credential=AzureNamedKeyCredential(
            ACCOUNT, KEY)) as service:
        past = AzureStorage(cfg, service, KEY, None, clock=lambda: time.time() - 120)
        signed = await past.presign_blob(digest)
        assert signed.expires_at < time.time()
        status, body, _ = await fetch(signed.url)
        assert status == 403, body[:300]
        fresh = AzureStorage(cfg, service, KEY, None)
        assert (await fetch((await fresh.presign_blob(digest)).url))[0] == 200


async def test_response_headers_are_signed_into_the_url(
    azurite: Azurite, with_key: AzureStorage
) -> None:
    digest = parse_digest(azurite.put_blob(b"layer"))
    signed = await with_key.presign_blob(digest, URLOptions(
        expires_s=300, filename="layer.tar.gz", cache_control="max-age=60"))
    assert signed.expires_at - signed.signed_at == pytest.approx(300, abs=1)
    status, body, headers = await fetch(signed.url)
    assert (status, body) == (200, b"layer")
    assert headers["Content-Disposition"] == 'attachment; filename="layer.tar.gz"'
    assert headers["Cache-Control"] == "max-age=60"


async def test_rootdirectory_and_public_endpoint(azurite: Azurite) -> None:
    data = os.urandom(5000)
    digest = parse_digest(azurite.put_blob(data, rootdirectory="harbor"))
    port = urlsplit(azurite.endpoint_url).port
    public = f"http://blobs.localhost:{port}/{ACCOUNT}"
    cfg = config(azurite, rootdirectory="/harbor/", public_endpoint_url=public)
    async with open_azure(cfg, environ={"AZURE_STORAGE_KEY": KEY}) as storage:
        assert await storage.stat(digest) == len(data)
        url = (await storage.presign_blob(digest)).url
    assert url.startswith(f"{public}/{CONTAINER}/harbor/docker/registry/v2/blobs/sha256/")
    # The signature covers account, container and blob, not the host clients use.
    status, body, _ = await fetch(url.replace("blobs.localhost", "localhost"))
    assert (status, body) == (200, data)


async def test_stat_and_missing_blob(azurite: Azurite, with_key: AzureStorage) -> None:
    digest = parse_digest(azurite.put_blob(b"x" * 4321))
    assert await with_key.stat(digest) == 4321
    assert await with_key.size(BlobRef("library/a", digest), "") == 4321
    with pytest.raises(NotInStorage):
        await with_key.stat(parse_digest("sha256:" + "e" * 64))


@pytest.mark.parametrize(("first", "last"), SPANS)
async def test_ranged_streaming(
    azurite: Azurite, with_key: AzureStorage, data: bytes, first: int, last: int | None
) -> None:
    digest = parse_digest(azurite.put_blob(data))
    got, wanted = await read_span(with_key, digest, first, last, SIZE, 256 * 1024)
    assert got == data[wanted]


async def test_user_delegation_sas(azurite_oauth: Azurite, data: bytes) -> None:
    digest = parse_digest(azurite_oauth.put_blob(data))
    credential = StaticTokenCredential()
    async with open_azure(config(azurite_oauth), environ={}, credential=credential,
                          connection_verify=azurite_oauth.ca_file) as storage:
        assert await storage.stat(digest) == SIZE  # read with the token, not a key
        first = await storage.presign_blob(digest)
        second = await storage.presign_blob(digest, URLOptions(expires_s=90))
        assert storage.max_expires_s() <= 7 * 24 * 3600
    query = parse_qs(urlsplit(first.url).query)
    assert query["skoid"] == ["23657296-5cd5-45b0-a809-d972a7f4dfe1"]  # delegated, no key
    assert parse_qs(urlsplit(second.url).query)["ske"] == query["ske"]  # one key, reused
    status, body, _ = await fetch(first.url, azurite_oauth.ca_file)
    assert (status, body) == (200, data)
    assert (await fetch(second.url, azurite_oauth.ca_file))[0] == 200
    status, _, _ = await fetch(first.url.replace("sig=", "sig=A"), azurite_oauth.ca_file)
    assert status == 403


async def test_delegation_key_renewed_before_it_expires_and_bounds_the_url(
    azurite_oauth: Azurite,
) -> None:
    digest = parse_digest(azurite_oauth.put_blob(b"renew"))
    now = [time.time() - 350]  # ends at the real time, so Azurite takes the last key
    async with BlobServiceClient(azurite_oauth.endpoint_url, credential=StaticTokenCredential(),
                                 connection_verify=azurite_oauth.ca_file) as service:
        keys = DelegationKeys(service, clock=lambda: now[0], life_s=600)
        storage = AzureStorage(config(azurite_oauth, expires_s=3600), service, None, keys,
                               clock=lambda: now[0])
        first = await storage.presign_blob(digest)
        assert first.expires_at == pytest.approx(now[0] + 600, abs=1)  # capped by the key
        assert storage.max_expires_s() == pytest.approx(600, abs=1)
        assert (await fetch(first.url, azurite_oauth.ca_file))[0] == 200
        now[0] += 200  # two thirds left: the same key
        assert parse_qs(urlsplit((await storage.presign_blob(digest)).url).query)["ske"] == \
            parse_qs(urlsplit(first.url).query)["ske"]
        now[0] += 150  # less than half left: a new key
        renewed = await storage.presign_blob(digest)
    assert parse_qs(urlsplit(renewed.url).query)["ske"] != parse_qs(urlsplit(first.url).query)[
        "ske"]
    assert (await fetch(renewed.url, azurite_oauth.ca_file))[:2] == (200, b"renew")
