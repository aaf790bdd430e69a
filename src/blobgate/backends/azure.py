"""The Azure Blob backend: read-only SAS URLs for blobs, their sizes, and their bytes.

This is the only module that talks to the Azure SDK; its failures leave here as
``StorageError``. Blobs are where distribution's azure driver puts them: in
``storage.azure.container``, named ``<rootdirectory>/docker/registry/v2/blobs/...``
without a leading ``/``.

Two ways to sign, as the Azure CLI chooses: with the account key from
``AZURE_STORAGE_KEY`` (a service SAS), or else with the standard Azure credential chain
(``DefaultAzureCredential``: workload identity on AKS, managed identity, ...) as a
*user delegation* SAS. The delegation key is asked for once, for a week (Azure's
longest), renewed when less than half of that is left, and no URL outlives it. The
same credential reads sizes and bytes for streaming. URLs point at
``public_endpoint_url`` when clients reach the account by another name; the signature
covers the account, container and blob, not the host.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob import BlobSasPermissions, UserDelegationKey, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient, StorageStreamDownloader

from blobgate.backends.contract import (
    DEFAULT_OPTIONS,
    URL_OPTIONS,
    SignedURL,
    Span,
    URLOptions,
)
from blobgate.config import SIGV4_MAX_EXPIRES_S, AzureConfig
from blobgate.errors import NotInStorage, StorageError
from blobgate.reference import BlobRef, Digest, storage_key

ACCOUNT_KEY_VARIABLE = "AZURE_STORAGE_KEY"
DELEGATION_KEY_LIFE_S = SIGV4_MAX_EXPIRES_S  # Azure's longest: 7 days
_CLOCK_SKEW_S = 300  # a delegation key starts this early, for clocks that run behind
_READ = BlobSasPermissions(read=True)


def account_url(cfg: AzureConfig) -> str:
    """The blob service endpoint blobgate talks to."""
    return (cfg.endpoint_url or f"https://{cfg.account_name}.blob.core.windows.net").rstrip("/")


def public_url(cfg: AzureConfig) -> str:
    """The blob service endpoint that SAS URLs point at."""
    return (cfg.public_endpoint_url or account_url(cfg)).rstrip("/")


def presign_host(cfg: AzureConfig) -> str:
    """The host name SAS URLs will carry."""
    return urlsplit(public_url(cfg)).hostname or ""


def _reason(exc: AzureError) -> str:
    """A bounded label for an Azure failure (the service's error code, or the class)."""
    code = getattr(exc, "error_code", None)
    return str(code or type(exc).__name__)[:40]


def _stamp(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


class DelegationKeys:
    """The user delegation key that signs SAS URLs, renewed before it expires.

    Concurrent first signatures share one request; a renewal that fails leaves the
    current key in use while it still has life.
    """

    def __init__(self, service: BlobServiceClient, clock: Callable[[], float] = time.time,
                 life_s: int = DELEGATION_KEY_LIFE_S) -> None:
        self._service = service
        self._clock = clock
        self._life_s = life_s
        self._key: UserDelegationKey | None = None
        self.expires_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.expires_at is not None and self.expires_at - self._clock() > self._life_s / 2

    async def current(self) -> UserDelegationKey:
        """A key with more than half of its life left (asked for when there is none)."""
        if self._key is not None and self._fresh():
            return self._key
        async with self._lock:
            if self._key is None or not self._fresh():
                now = self._clock()
                try:
                    key = await self._service.get_user_delegation_key(
                        _stamp(now - _CLOCK_SKEW_S), _stamp(now + self._life_s))
                except AzureError as exc:
                    if self._key is not None and self.expires_at is not None \
                            and self.expires_at > self._clock():
                        return self._key
                    raise StorageError(f"user delegation key: {exc}", _reason(exc)) from exc
                self._key, self.expires_at = key, now + self._life_s
            return self._key


class AzureStorage:
    """Signs SAS URLs for, describes and streams blobs in the registry's container
    (an ``ObjectStore``)."""

    name = "azure"
    options = URL_OPTIONS

    def __init__(
        self,
        cfg: AzureConfig,
        service: BlobServiceClient,
        account_key: str | None,
        keys: DelegationKeys | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._service = service
        self._account_key = account_key
        self._keys = keys
        self._clock = clock
        self._container = service.get_container_client(cfg.container)
        self._base = f"{public_url(cfg)}/{quote(cfg.container)}/"

    @property
    def default_expires_s(self) -> int:
        return self._cfg.expires_s

    def max_expires_s(self) -> int:
        """7 days, or what is left of the user delegation key's life."""
        if self._keys is None or self._keys.expires_at is None:
            return SIGV4_MAX_EXPIRES_S
        left = int(self._keys.expires_at - self._clock())
        return max(0, min(SIGV4_MAX_EXPIRES_S, left))

    async def presign_blob(
        self, digest: Digest, options: URLOptions = DEFAULT_OPTIONS
    ) -> SignedURL:
        """A read-only SAS URL for the blob's data."""
        signed_at = self._clock()
        expires_at = float(int(signed_at + (options.expires_s or self._cfg.expires_s)))
        delegation = None
        if self._keys is not None:
            delegation = await self._keys.current()
            if self._keys.expires_at is not None:
                expires_at = min(expires_at, float(int(self._keys.expires_at)))
        blob = storage_key(self._cfg.rootdirectory, digest)
        disposition = (None if options.filename is None
                       else f'attachment; filename="{options.filename}"')
        sas = generate_blob_sas(
            self._cfg.account_name, self._cfg.container, blob,
            account_key=self._account_key, user_delegation_key=delegation, permission=_READ,
            expiry=_stamp(expires_at), content_disposition=disposition,
            cache_control=options.cache_control,
        )
        return SignedURL(f"{self._base}{quote(blob, safe='/~')}?{sas}", signed_at, expires_at)

    async def size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size in bytes, from Azure (one Get Blob Properties)."""
        return await self.stat(ref.digest)

    async def stat(self, digest: Digest) -> int:
        """The size of the blob (one Get Blob Properties); ``NotInStorage`` if absent."""
        blob = storage_key(self._cfg.rootdirectory, digest)
        try:
            properties = await self._container.get_blob_client(blob).get_blob_properties()
        except ResourceNotFoundError as exc:
            raise NotInStorage(f"{blob} is not in the container", "missing") from exc
        except AzureError as exc:
            raise StorageError(f"get_blob_properties failed: {exc}", _reason(exc)) from exc
        size: int = properties.size
        return size

    @asynccontextmanager
    async def open(
        self, ref: BlobRef, authorization: str, span: Span
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of ``span`` straight from Azure (ranged Get Blob requests)."""
        blob = self._container.get_blob_client(storage_key(self._cfg.rootdirectory, ref.digest))
        try:
            download = await blob.download_blob(offset=span.first, length=span.length)
        except (AzureError, HttpResponseError) as exc:
            raise StorageError(f"download_blob failed: {exc}", _reason(exc)) from exc
        yield self._chunks(download)

    async def _chunks(self, download: StorageStreamDownloader[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in download.chunks():
                yield chunk
        except (AzureError, TimeoutError) as exc:
            raise StorageError(f"reading from Azure failed: {exc}", type(exc).__name__) from exc


@asynccontextmanager
async def open_azure(
    cfg: AzureConfig,
    chunk_bytes: int = 1 << 20,
    environ: Mapping[str, str] = os.environ,
    credential: AsyncTokenCredential | None = None,
    **client_options: Any,
) -> AsyncIterator[AzureStorage]:
    """An ``AzureStorage`` with its clients open for as long as the context lasts.

    The account key comes from ``AZURE_STORAGE_KEY`` in ``environ``; without it
    ``credential`` (default: ``DefaultAzureCredential``) signs user delegation SAS URLs.
    ``client_options`` go to the SDK's client (e.g. ``connection_verify``).
    """
    account_key = environ.get(ACCOUNT_KEY_VARIABLE) or None
    async with AsyncExitStack() as stack:
        signer: AzureNamedKeyCredential | AsyncTokenCredential
        if account_key is not None:
            signer = AzureNamedKeyCredential(cfg.account_name, account_key)
        elif credential is not None:
            signer = credential
        else:
            signer = await stack.enter_async_context(DefaultAzureCredential())
        service = await stack.enter_async_context(BlobServiceClient(
            account_url(cfg), credential=signer, max_single_get_size=chunk_bytes,
            max_chunk_get_size=chunk_bytes, **client_options))
        keys = None if account_key is not None else DelegationKeys(service)
        yield AzureStorage(cfg, service, account_key, keys)
