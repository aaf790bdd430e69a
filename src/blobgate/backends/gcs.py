"""The Google Cloud Storage backend: V4 signed URLs for blobs, their sizes, and their bytes.

This is the only module that talks to google-auth and to the GCS APIs; their failures
leave here as ``StorageError``. Objects are where distribution's gcs driver puts them:
``<rootdirectory>/docker/registry/v2/blobs/...`` in ``storage.gcs.bucket``, the root
trimmed of ``/``.

Credentials come from the standard Google chain (``google.auth.default``):
``GOOGLE_APPLICATION_CREDENTIALS`` naming a service-account key file signs URLs
locally; an identity without a key (GKE workload identity, a VM's service account)
signs through IAM's ``signBlob``, which needs ``iam.serviceAccounts.signBlob`` on itself
(*Service Account Token Creator*). The same credentials' OAuth token (read-only scope,
refreshed before it expires) reads sizes and ranged bytes from the JSON API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import google.auth
import urllib3
from google.auth import iam
from google.auth.credentials import Credentials, Signing
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.auth.transport.urllib3 import Request
from google.oauth2 import service_account

from blobgate.backends.contract import DEFAULT_OPTIONS, SignedURL, Span, URLOptions
from blobgate.backends.goog4 import BlobSigner, V4Signer
from blobgate.config import SIGV4_MAX_EXPIRES_S, GCSConfig
from blobgate.errors import ConfigError, NotInStorage, StorageError
from blobgate.reference import BlobRef, Digest, storage_key

ENDPOINT = "https://storage.googleapis.com"
READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=5, sock_read=30)


def endpoint(cfg: GCSConfig) -> str:
    """Where blobgate and clients reach GCS (signed URLs point here too)."""
    return (cfg.endpoint_url or ENDPOINT).rstrip("/")


def presign_host(cfg: GCSConfig) -> str:
    """The host name signed URLs will carry."""
    return urlsplit(endpoint(cfg)).hostname or ""


class Token:
    """The credentials' OAuth access token, refreshed (in a thread) when it is about to
    expire; concurrent callers share one refresh."""

    def __init__(self, credentials: Credentials, request: Request) -> None:
        self.credentials = credentials
        self._request = request
        self._lock = asyncio.Lock()

    async def header(self) -> dict[str, str]:
        """``Authorization`` for a GCS API request."""
        if not self.credentials.valid:  # google-auth counts a token near expiry as invalid
            async with self._lock:
                if not self.credentials.valid:
                    try:
                        await asyncio.to_thread(self.credentials.refresh, self._request)
                    except GoogleAuthError as exc:
                        raise StorageError(f"credentials: {exc}", type(exc).__name__) from exc
        return {"Authorization": f"Bearer {self.credentials.token}"}


def blob_signer(credentials: Credentials, request: Request) -> BlobSigner:
    """Who signs URLs: the key file's private key here, else IAM ``signBlob``."""
    if isinstance(credentials, service_account.Credentials):
        return BlobSigner(credentials.signer_email, credentials.sign_bytes, blocking=False)
    if isinstance(credentials, Signing):  # impersonated credentials: IAM, over HTTP
        return BlobSigner(credentials.signer_email, credentials.sign_bytes, blocking=True)
    email: str = getattr(credentials, "service_account_email", "")
    signer = iam.Signer(request, credentials, email)  # type: ignore[no-untyped-call]
    return BlobSigner(email, signer.sign, blocking=True)


class GCSStorage:
    """Signs V4 URLs for, describes and streams blobs in the registry's bucket (an
    ``ObjectStore``)."""

    name = "gcs"
    options = frozenset({"filename"})  # the XML API overrides Content-Disposition, not caching

    def __init__(self, cfg: GCSConfig, signer: V4Signer, token: Token,
                 session: aiohttp.ClientSession, chunk_bytes: int = 1 << 20,
                 clock: Callable[[], float] = time.time) -> None:
        self._cfg = cfg
        self._signer = signer
        self._token = token
        self._session = session
        self._chunk_bytes = chunk_bytes
        self._clock = clock
        self._objects = f"{endpoint(cfg)}/storage/v1/b/{quote(cfg.bucket, safe='')}/o/"

    @property
    def default_expires_s(self) -> int:
        return self._cfg.expires_s

    def max_expires_s(self) -> int:
        return SIGV4_MAX_EXPIRES_S

    async def presign_blob(
        self, digest: Digest, options: URLOptions = DEFAULT_OPTIONS
    ) -> SignedURL:
        """A V4 signed GET URL for the blob's object."""
        if options.cache_control is not None:
            raise StorageError("GCS signed URLs cannot set Cache-Control", "unsupported_option")
        signed_at = self._clock()
        expires_s = options.expires_s or self._cfg.expires_s
        response = ({} if options.filename is None else {
            "response-content-disposition": f'attachment; filename="{options.filename}"'})
        key = storage_key(self._cfg.rootdirectory, digest)
        try:
            url = await self._signer.sign(self._cfg.bucket, key, expires_s, signed_at, response)
        except (GoogleAuthError, OSError) as exc:  # signBlob failed (urllib3 errors are OSErrors)
            raise StorageError(f"signing failed: {exc}", type(exc).__name__) from exc
        return SignedURL(url, signed_at, signed_at + expires_s)

    async def size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size in bytes, from GCS (one object metadata GET)."""
        return await self.stat(ref.digest)

    async def stat(self, digest: Digest) -> int:
        """The size of the blob's object; ``NotInStorage`` if it is absent."""
        key = storage_key(self._cfg.rootdirectory, digest)
        headers = await self._token.header()
        try:
            async with self._session.get(self._object(key), headers=headers,
                                         params={"fields": "size"}) as response:
                if response.status == 404:
                    raise NotInStorage(f"{key} is not in the bucket", "missing")
                if response.status != 200:
                    raise StorageError(f"object metadata: {response.status}",
                                       f"status_{response.status}")
                found: dict[str, Any] = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise StorageError(f"object metadata failed: {exc}", type(exc).__name__) from exc
        return int(found["size"])

    def _object(self, key: str) -> str:
        return self._objects + quote(key, safe="")

    @asynccontextmanager
    async def open(
        self, ref: BlobRef, authorization: str, span: Span
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of ``span`` straight from GCS (one ranged media GET)."""
        key = storage_key(self._cfg.rootdirectory, ref.digest)
        headers = {**await self._token.header(), "Range": f"bytes={span.first}-{span.last}"}
        try:
            response = await self._session.get(self._object(key), headers=headers,
                                               params={"alt": "media"})
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"object media failed: {exc}", type(exc).__name__) from exc
        async with response:
            if response.status not in (200, 206):
                raise StorageError(f"object media: {response.status}",
                                   f"status_{response.status}")
            yield self._chunks(response)

    async def _chunks(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            async for chunk in response.content.iter_chunked(self._chunk_bytes):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"reading from GCS failed: {exc}", type(exc).__name__) from exc


@asynccontextmanager
async def open_gcs(
    cfg: GCSConfig, chunk_bytes: int = 1 << 20, credentials: Credentials | None = None
) -> AsyncIterator[GCSStorage]:
    """A ``GCSStorage`` with its HTTP clients open for as long as the context lasts.

    ``credentials`` defaults to the standard Google chain, with read-only scope; none
    found is a ``ConfigError``.
    """
    try:
        if credentials is None:
            credentials, _ = google.auth.default(scopes=[READ_ONLY])
    except DefaultCredentialsError as exc:
        raise ConfigError("storage.gcs", "no Google credentials: set "
                          f"GOOGLE_APPLICATION_CREDENTIALS or give the pod an identity ({exc})"
                          ) from None
    try:
        request = Request(urllib3.PoolManager())  # type: ignore[no-untyped-call]
        if not isinstance(credentials, service_account.Credentials) and not credentials.valid:
            await asyncio.to_thread(credentials.refresh, request)  # learns the account's email
    except GoogleAuthError as exc:
        raise StorageError(f"Google credentials: {exc}", type(exc).__name__) from exc
    signer = V4Signer(endpoint(cfg), blob_signer(credentials, request))
    async with aiohttp.ClientSession(timeout=_TIMEOUT, auto_decompress=False) as session:
        yield GCSStorage(cfg, signer, Token(credentials, request), session, chunk_bytes)
