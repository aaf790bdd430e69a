"""The S3 backend: presigned GET URLs for blobs, their sizes, and their bytes.

This is the only module that talks to botocore; its failures leave here as
``StorageError``. URLs are signed for the host clients will use
(``public_endpoint_url`` when S3 is reached by another name inside the cluster), and
each carries the moment it stops working: the earlier of ``X-Amz-Expires`` and the
expiry of temporary signing credentials (STS, IRSA, instance roles). botocore signs the
first URL; ``sigv4.QuerySigner`` signs the rest with the same (refreshed) credentials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from blobgate.backends.contract import (
    DEFAULT_OPTIONS,
    URL_OPTIONS,
    SignedURL,
    Span,
    URLOptions,
)
from blobgate.backends.sigv4 import Credentials, QuerySigner
from blobgate.config import SIGV4_MAX_EXPIRES_S, S3Config
from blobgate.errors import NotInStorage, StorageError
from blobgate.reference import BlobRef, Digest, storage_key

log = logging.getLogger(__name__)

_ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})  # HeadObject has no body: code 404
_BOTOCORE_NAMES = {"response-content-disposition": "ResponseContentDisposition",
                   "response-cache-control": "ResponseCacheControl"}


def presign_host(cfg: S3Config) -> str:
    """The host name that presigned URLs will carry (botocore's choice, see the tests)."""
    endpoint = cfg.public_endpoint_url or cfg.endpoint_url
    dualstack = "dualstack." if cfg.use_dualstack else ""
    if cfg.accelerate:  # virtual-hosted only (the configuration insists)
        return f"{cfg.bucket}.s3-accelerate.{dualstack}amazonaws.com"
    if endpoint is None:
        host = f"s3.{dualstack}{cfg.region}.amazonaws.com"
    else:
        host = urlsplit(endpoint).hostname or ""
    return host if cfg.path_style else f"{cfg.bucket}.{host}"


def _credentials_of(client: Any) -> Any:
    """The client's signing credentials (botocore keeps and refreshes them there)."""
    return getattr(client._request_signer, "_credentials", None)


def _credential_expiry(client: Any) -> float | None:
    """When the client's signing credentials expire, for temporary ones; else ``None``."""
    expiry = getattr(_credentials_of(client), "_expiry_time", None)
    return expiry.timestamp() if isinstance(expiry, datetime) else None


def _reason(exc: BotoCoreError | ClientError) -> str:
    """A bounded label for a botocore failure (the exception class, or the S3 error code)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))[:40]
    return type(exc).__name__


class S3Storage:
    """Presigns and describes blobs in the registry's bucket (an ``ObjectStore``)."""

    name = "s3"
    options = URL_OPTIONS

    def __init__(
        self,
        cfg: S3Config,
        presigner: Any,
        api: Any,
        chunk_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._presigner = presigner
        self._api = api
        self._chunk_bytes = chunk_bytes
        self._clock = clock
        self._signer: QuerySigner | None = None

    async def presign_blob(
        self, digest: Digest, options: URLOptions = DEFAULT_OPTIONS
    ) -> SignedURL:
        """A presigned GET URL for the blob's data."""
        signed_at = self._clock()
        expires_s = options.expires_s or self._cfg.expires_s
        response = {}
        if options.filename is not None:
            response["response-content-disposition"] = f'attachment; filename="{options.filename}"'
        if options.cache_control is not None:
            response["response-cache-control"] = options.cache_control
        key = storage_key(self._cfg.rootdirectory, digest)
        try:
            url = await self._sign(key, expires_s, response, signed_at)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"presign failed: {exc}", _reason(exc)) from exc
        expires_at = signed_at + expires_s
        credential_expiry = _credential_expiry(self._presigner)
        if credential_expiry is not None:
            expires_at = min(expires_at, credential_expiry)
        return SignedURL(url, signed_at, expires_at)

    async def _sign(self, key: str, expires_s: int, response: dict[str, str], now: float) -> str:
        if self._signer is not None:
            credentials = _credentials_of(self._presigner)
            if credentials is None:
                raise NoCredentialsError()
            frozen = await credentials.get_frozen_credentials()
            return self._signer.sign(key, expires_s,
                                     Credentials(frozen.access_key, frozen.secret_key,
                                                 frozen.token), response, now)
        params = {"Bucket": self._cfg.bucket, "Key": key,
                  **{_BOTOCORE_NAMES[name]: value for name, value in response.items()}}
        url: str = await self._presigner.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_s)
        self._signer = QuerySigner.learn(url, key, self._presigner.meta.region_name)
        return url

    @property
    def default_expires_s(self) -> int:
        return self._cfg.expires_s

    def max_expires_s(self) -> int:
        """SigV4's 7 days, or the seconds until temporary signing credentials expire."""
        credential_expiry = _credential_expiry(self._presigner)
        if credential_expiry is None:
            return SIGV4_MAX_EXPIRES_S
        return max(0, min(SIGV4_MAX_EXPIRES_S, int(credential_expiry - self._clock())))

    async def size(self, ref: BlobRef, authorization: str) -> int:
        """The blob's size in bytes, from S3 (one HeadObject)."""
        return await self.stat(ref.digest)

    async def stat(self, digest: Digest) -> int:
        """The size of the blob's object (one HeadObject); ``NotInStorage`` if absent."""
        key = storage_key(self._cfg.rootdirectory, digest)
        try:
            head = await self._api.head_object(Bucket=self._cfg.bucket, Key=key)
        except ClientError as exc:
            if _reason(exc) in _ABSENT:
                raise NotInStorage(f"{key} is not in the bucket", "missing") from exc
            raise StorageError(f"head_object failed: {exc}", _reason(exc)) from exc
        except BotoCoreError as exc:
            raise StorageError(f"head_object failed: {exc}", _reason(exc)) from exc
        size: int = head["ContentLength"]
        return size

    @asynccontextmanager
    async def open(
        self, ref: BlobRef, authorization: str, span: Span
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The bytes of ``span`` straight from S3 (one ranged GetObject)."""
        key = storage_key(self._cfg.rootdirectory, ref.digest)
        try:
            obj = await self._api.get_object(
                Bucket=self._cfg.bucket, Key=key, Range=f"bytes={span.first}-{span.last}"
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"get_object failed: {exc}", _reason(exc)) from exc
        body = obj["Body"]
        try:
            yield self._chunks(body)
        finally:
            body.close()

    async def _chunks(self, body: Any) -> AsyncIterator[bytes]:
        try:
            while chunk := await body.read(self._chunk_bytes):
                yield chunk
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"reading from S3 failed: {exc}", type(exc).__name__) from exc


@asynccontextmanager
async def open_s3(
    cfg: S3Config, session: AioSession | None = None, chunk_bytes: int = 1 << 20
) -> AsyncIterator[S3Storage]:
    """An ``S3Storage`` with its clients open for as long as the context lasts.

    ``session`` defaults to one using the standard AWS credential chain.
    """
    session = session or AioSession()
    client_config = AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": "path" if cfg.path_style else "virtual",
            "use_dualstack_endpoint": cfg.use_dualstack,
            "use_accelerate_endpoint": cfg.accelerate},
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=64,
    )

    verify: str | bool = cfg.ca_file or cfg.verify
    if verify is False:
        log.warning("storage.s3.verify is false: the S3 endpoint's certificate is NOT checked")

    def client(endpoint_url: str | None) -> Any:
        return session.create_client(
            "s3", region_name=cfg.region, endpoint_url=endpoint_url, config=client_config,
            verify=verify,
        )

    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(client(cfg.endpoint_url))
        presigner = api
        if cfg.public_endpoint_url is not None:
            presigner = await stack.enter_async_context(client(cfg.public_endpoint_url))
        yield S3Storage(cfg, presigner, api, chunk_bytes)
