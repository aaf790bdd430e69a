"""A running gateway with each object store other than S3 as its backend (Azure Blob on
Azurite, GCS on its emulator): blob GETs get a 307 to a signed URL that serves exactly the
blob, HEAD is answered locally, streaming serves ranges from the store, the URL API
hands out signed URLs, and a blob the store does not have is left to the registry."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from blobgate.config import AzureConfig, GCSConfig, RoutingConfig, StorageConfig

from support import azurite as az
from support import gcs
from support.gateway import GatewayFactory, Scrape
from support.standin import StandIn
from support.tokens import Signer

Standin = tuple[StandIn, Any]
SIZE = 2 * (1 << 20) + 999


@dataclass(frozen=True)
class Store:
    """One backend under test: its configuration, how to fill it, and how to check the
    URLs it signs (Azurite checks SAS itself; GCS URLs are checked here)."""

    name: str
    storage: StorageConfig
    put: Callable[[bytes], str]
    check: Callable[[str], None]
    options: frozenset[str]


@pytest.fixture(params=["azure", "gcs"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "azure":
        azurite: az.Azurite = request.getfixturevalue("azurite")
        monkeypatch.setenv("AZURE_STORAGE_KEY", az.KEY)

        def read_only(url: str) -> None:  # Azurite checks the signature when it is used
            assert parse_qs(urlsplit(url).query)["sp"] == ["r"]

        return Store("azure", StorageConfig(backend="azure", azure=AzureConfig(
            account_name=az.ACCOUNT, container=az.CONTAINER, endpoint_url=azurite.endpoint_url)),
            azurite.put_blob, read_only, frozenset({"filename", "cache_control"}))
    emulator: gcs.Emulator = request.getfixturevalue("gcs_emulator")
    account: gcs.ServiceAccount = request.getfixturevalue("gcs_account")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(account.key_file))

    def signed(url: str) -> None:  # the emulator checks no signature: check it here
        gcs.verify(url, account.public_key)

    return Store("gcs", StorageConfig(backend="gcs", gcs=GCSConfig(
        bucket=gcs.BUCKET, endpoint_url=emulator.endpoint_url)), emulator.put_blob, signed,
        frozenset({"filename"}))


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def blob(store: Store, standin: Standin, data: bytes) -> str:
    digest = store.put(data)
    standin[0].blobs[("library/a", digest)] = data
    return digest


def auth(signer: Signer, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signer.token('library/a')}", **extra}


async def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert "Authorization" not in response.request_info.headers
        return response.status, await response.read(), dict(response.headers)


async def test_get_redirects_to_a_signed_url_serving_the_blob_and_head_is_local(
    gateway: GatewayFactory, store: Store, signer: Signer, blob: str, data: bytes,
    standin: Standin, scrape: Scrape,
) -> None:
    client = await gateway(storage=store.storage)
    before = await scrape(client)
    path = f"/v2/library/a/blobs/{blob}"
    response = await client.get(path, headers=auth(signer), allow_redirects=False)
    assert response.status == 307
    assert response.headers["Docker-Content-Digest"] == blob
    location = response.headers["Location"]
    store.check(location)
    status, body, _ = await fetch(location)
    assert status == 200
    assert "sha256:" + hashlib.sha256(body).hexdigest() == blob
    after = await scrape(client)
    key = f'blobgate_offloaded_bytes_total{{backend="{store.name}"}}'
    assert after[key] - before.get(key, 0) == SIZE
    head = await client.head(path, headers=auth(signer), allow_redirects=False)
    assert (head.status, head.headers["Content-Length"]) == (200, str(SIZE))
    assert head.headers["Docker-Content-Digest"] == blob
    assert "Location" not in head.headers
    assert standin[0].count("GET", path) == 0


@pytest.mark.parametrize(("header", "first"), [("bytes=1000000-", 1000000),
                                               ("bytes=-5000", SIZE - 5000)])
async def test_streaming_serves_ranges_from_the_store(
    gateway: GatewayFactory, store: Store, signer: Signer, blob: str, data: bytes,
    standin: Standin, header: str, first: int,
) -> None:
    client = await gateway(storage=store.storage, routing=RoutingConfig(default="stream"))
    path = f"/v2/library/a/blobs/{blob}"
    whole = await client.get(path, headers=auth(signer))
    assert (whole.status, await whole.read()) == (200, data)
    ranged = await client.get(path, headers=auth(signer, Range=header))
    assert ranged.status == 206
    assert ranged.headers["Content-Range"] == f"bytes {first}-{SIZE - 1}/{SIZE}"
    assert await ranged.read() == data[first:]
    assert standin[0].count("GET", path) == 0  # the bytes came from the store


async def test_url_api_hands_out_signed_urls(
    gateway: GatewayFactory, store: Store, signer: Signer, blob: str, data: bytes,
) -> None:
    client = await gateway(storage=store.storage)
    path = f"/api/v1/blobs/{blob}/url"
    response = await client.get(path, headers=auth(signer), params={
        "repository": "library/a", "expires_in": "600", "filename": "layer.tar"})
    assert response.status == 200, await response.text()
    found = await response.json()
    store.check(found["url"])
    status, body, headers = await fetch(found["url"])
    assert (found["size"], status, body) == (SIZE, 200, data)
    assert headers["Content-Disposition"] == 'attachment; filename="layer.tar"'
    cache_control = await client.get(path, headers=auth(signer), params={
        "repository": "library/a", "cache_control": "max-age=60"})
    if "cache_control" in store.options:
        assert cache_control.status == 200
        _, _, headers = await fetch((await cache_control.json())["url"])
        assert headers["Cache-Control"] == "max-age=60"
    else:
        assert cache_control.status == 400
        assert f"cache_control cannot be signed into {store.name} URLs" in (
            await cache_control.text())


async def test_a_blob_missing_from_the_store_is_not_redirected(
    gateway: GatewayFactory, store: Store, signer: Signer, standin: Standin,
) -> None:
    data = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    standin[0].blobs[("library/a", digest)] = data  # in the registry only
    client = await gateway(storage=store.storage)
    response = await client.get(f"/v2/library/a/blobs/{digest}", headers=auth(signer),
                                allow_redirects=False)
    assert (response.status, await response.read()) == (200, data)
    assert standin[0].count("GET", f"/v2/library/a/blobs/{digest}") == 1
