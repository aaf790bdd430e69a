"""The S3 backend: presigned GET URLs for blobs, their sizes, and their bytes.

This is the only module that talks to botocore; its failures leave here as
``StorageError``. URLs are signed for the host clients will use
(``public_endpoint_url`` when S3 is reached by another name inside the cluster), and
each carries the moment it stops working: the earlier of ``X-Amz-Expires`` and the
expiry of temporary signing credentials (STS, IRSA, instance roles). botocore signs the
first URL of each operation; ``sigv4.QuerySigner`` signs the rest with the same
(refreshed) credentials. The existence check before a digest's first URL is such a URL
too, for HEAD, sent with aiohttp: a ``HeadObject`` through aiobotocore cost ~5 ms of CPU,
the signed HEAD ~0.2 ms.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.request
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

STAT_URL_EXPIRES_S = 60  # the existence check's own URL, used at once
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


class _Operation:
    """Presigned URLs of one S3 operation through one botocore client: botocore signs the
    first (its endpoint rules choose where URLs point), ``QuerySigner`` the rest with the
    client's current credentials."""

    def __init__(self, client: Any, bucket: str, operation: str, method: str) -> None:
        self.client = client
        self._bucket = bucket
        self._operation = operation
        self._method = method
        self._signer: QuerySigner | None = None

    async def url(self, key: str, expires_s: int, response: dict[str, str], now: float) -> str:
        """A URL for object ``key`` with the ``response-*`` parameters ``response``."""
        if self._signer is not None:
            credentials = _credentials_of(self.client)
            if credentials is None:
                raise NoCredentialsError()
            frozen = await credentials.get_frozen_credentials()
            return self._signer.sign(
                key, expires_s, Credentials(frozen.access_key, frozen.secret_key, frozen.token),
                response, now, self._method)
        params = {"Bucket": self._bucket, "Key": key,
                  **{_BOTOCORE_NAMES[name]: value for name, value in response.items()}}
        url: str = await self.client.generate_presigned_url(
            self._operation, Params=params, ExpiresIn=expires_s)
        self._signer = QuerySigner.learn(url, key, self.client.meta.region_name)
        return url


class S3Storage:
    """Presigns and describes blobs in the registry's bucket (an ``ObjectStore``)."""

    name = "s3"
    options = URL_OPTIONS

    def __init__(
        self,
        cfg: S3Config,
        presigner: Any,
        api: Any,
        http: aiohttp.ClientSession,
        chunk_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._presigner = presigner
        self._api = api
        self._http = http
        self._chunk_bytes = chunk_bytes
        self._clock = clock
        self._gets = _Operation(presigner, cfg.bucket, "get_object", "GET")
        self._heads = _Operation(api, cfg.bucket, "head_object", "HEAD")

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
            url = await self._gets.url(key, expires_s, response, signed_at)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"presign failed: {exc}", _reason(exc)) from exc
        expires_at = signed_at + expires_s
        credential_expiry = _credential_expiry(self._presigner)
        if credential_expiry is not None:
            expires_at = min(expires_at, credential_expiry)
        return SignedURL(url, signed_at, expires_at)

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
        """The size of the blob's object (a HEAD of a URL signed here); ``NotInStorage``
        if absent."""
        key = storage_key(self._cfg.rootdirectory, digest)
        try:
            url = await self._heads.url(key, STAT_URL_EXPIRES_S, {}, self._clock())
            async with self._http.head(url) as answer:
                status, size = answer.status, answer.content_length
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"signing HEAD {key} failed: {exc}", _reason(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageError(f"HEAD {key} failed: {exc!r}", type(exc).__name__) from exc
        if status == 404:
            raise NotInStorage(f"{key} is not in the bucket", "missing")
        if status != 200 or size is None:
            raise StorageError(f"HEAD {key} answered {status}", str(status))
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
        http = await stack.enter_async_context(_http_session(cfg, verify))
        yield S3Storage(cfg, presigner, api, http, chunk_bytes)


def _http_session(cfg: S3Config, verify: str | bool) -> aiohttp.ClientSession:
    """The session the existence checks go through, with botocore's timeouts, certificate
    check and proxy (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names the host),
    the proxy settled once (aiohttp's ``trust_env`` reads them, and ``.netrc``, per
    request); aiohttp retries a request on a kept-alive connection the server closed."""
    tls: ssl.SSLContext | bool = (ssl.create_default_context(cafile=verify)
                                  if isinstance(verify, str) else verify)
    endpoint = urlsplit(cfg.endpoint_url or f"https://s3.{cfg.region}.amazonaws.com")
    proxy = (None if urllib.request.proxy_bypass(endpoint.hostname or "")
             else urllib.request.getproxies().get(endpoint.scheme))
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls, limit=64),
        timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=30),
        proxy=proxy,
    )
