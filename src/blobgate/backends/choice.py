"""The one place a storage backend is chosen: ``storage.backend`` becomes what the blob
path uses.

Every backend meets ``contract``; only this module knows which ones exist. An object
store (S3, Azure Blob, GCS) is fed to ``cache.Presence`` and ``cache.URLCache`` (one
look and one signature per digest per URL life); CloudFront signs URLs for the S3
bucket's objects; the registry backend (``proxy``) only streams. ``presign_target``
names the host redirect URLs go to and the setting that decides it, for the check that
it is not a gateway host.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiobotocore.session import AioSession

from blobgate.backends.cloudfront import CDNPresigner, KeyStore
from blobgate.backends.contract import BlobSource, ObjectStore
from blobgate.backends.registry import open_registry
from blobgate.backends.s3 import open_s3, presign_host
from blobgate.backends.urls import Presence, URLCache
from blobgate.caches.shared import Shared
from blobgate.config import CDNConfig, Config, CopyConfig, StorageConfig
from blobgate.errors import ConfigError
from blobgate.ops.metrics import Stats
from blobgate.ops.watch import FileWatcher
from blobgate.registry.upstream import Upstream


@dataclass(frozen=True)
class PresignTarget:
    """The host redirect URLs carry, the setting that decides it, and whether a gateway
    host is allowed there anyway."""

    host: str
    key: str
    allow_gateway_host: bool = False


@dataclass(frozen=True)
class Storage:
    """What the chosen backend gives the blob path: the byte source, the URLs to redirect
    to (``None`` when the backend cannot presign), CDN URLs, and where URLs point."""

    source: BlobSource
    urls: URLCache | None
    cdn_urls: URLCache | None
    target: PresignTarget | None


def presign_target(storage: StorageConfig) -> PresignTarget | None:
    """Where the configured backend's URLs point (``None``: it hands out no URLs)."""
    if storage.backend == "s3":
        return PresignTarget(presign_host(storage.s3), "storage.s3.public_endpoint_url",
                             storage.s3.unsafe_allow_gateway_host)
    # The Azure and Google SDKs are imported only where they are used (the Azure SDK
    # alone adds ~17 MiB and 0.4 s to a process that does not need it).
    if storage.backend == "azure":
        from blobgate.backends import azure

        key = "public_endpoint_url" if storage.azure.public_endpoint_url else "endpoint_url"
        return PresignTarget(azure.presign_host(storage.azure), f"storage.azure.{key}")
    if storage.backend == "gcs":
        from blobgate.backends import gcs

        return PresignTarget(gcs.presign_host(storage.gcs), "storage.gcs.endpoint_url")
    return None


def _open_store(storage: StorageConfig, credentials_file: str | None = None
                ) -> AbstractAsyncContextManager[ObjectStore]:
    """The store ``storage`` names, signing with the standard chains or, when given, the
    credentials in ``credentials_file`` (a copy's own: see ``CopyConfig``)."""
    chunk_bytes = storage.stream_chunk_bytes
    secret = None if credentials_file is None else Path(credentials_file)
    if storage.backend == "azure":
        from blobgate.backends import azure

        environ = os.environ if secret is None else {
            azure.ACCOUNT_KEY_VARIABLE: secret.read_text().strip()}
        return azure.open_azure(storage.azure, chunk_bytes, environ)
    if storage.backend == "gcs":
        from google.oauth2 import service_account

        from blobgate.backends import gcs

        credentials = None if secret is None else (
            service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(secret), scopes=[gcs.READ_ONLY]))
        return gcs.open_gcs(storage.gcs, chunk_bytes, credentials)
    return open_s3(storage.s3, _aws_session(secret), chunk_bytes)


def check_copies(storage: StorageConfig) -> None:
    """Each copy's credentials file reads as its backend needs (for ``check-config``; the
    error names the key, never the file's content)."""
    for i, copy in enumerate(storage.copies):
        try:
            _open_store(storage.of_copy(copy), copy.credentials_file)  # reads, opens nothing
        except (OSError, ValueError, KeyError, configparser.Error) as exc:
            raise ConfigError(f"storage.copies[{i}].credentials_file",
                              f"cannot be read as {copy.backend} credentials "
                              f"({type(exc).__name__})") from None


def _aws_session(credentials_file: Path | None) -> AioSession | None:
    """A session signing with the ``[default]`` keys of an AWS shared-credentials file."""
    if credentials_file is None:
        return None
    parser = configparser.ConfigParser()
    parser.read_string(credentials_file.read_text())
    section = parser["default"]
    session = AioSession()
    session.set_credentials(section["aws_access_key_id"], section["aws_secret_access_key"],
                            section.get("aws_session_token"))
    return session


@asynccontextmanager
async def open_storage(
    cfg: Config, upstream: Upstream, stats: Stats, watchers: list[FileWatcher],
    shared: Shared | None = None, copy: CopyConfig | None = None,
) -> AsyncIterator[Storage]:
    """The configured backend (or ``copy`` of it) with its clients open for as long as
    the context lasts; a CDN key watcher, if any, is added to ``watchers``; URLs are also
    kept in ``shared`` (the replicas' Redis) when given, a copy's under names of its own."""
    storage = cfg.storage if copy is None else cfg.storage.of_copy(copy)
    if storage.backend == "proxy":
        async with open_registry(upstream, storage.proxy) as registry:
            yield Storage(registry, None, None, None)
        return
    suffix = "" if copy is None else f"@{copy.name}"
    async with _open_store(storage, None if copy is None else copy.credentials_file) as store:
        presence = Presence(store.stat, storage.missing_ttl_s, storage.url_cache_size)
        urls = URLCache(store, presence, storage.url_cache_size, shared=shared,
                        name=f"url{suffix}")
        yield Storage(store, urls, _cdn(storage, urls, watchers, stats, shared, suffix),
                      presign_target(storage))


def _cdn(storage: StorageConfig, urls: URLCache, watchers: list[FileWatcher], stats: Stats,
         shared: Shared | None, suffix: str) -> URLCache | None:
    """CloudFront URLs for the objects ``urls`` checks the presence of."""
    cdn = storage.cdn
    if not cdn.enabled:
        return None
    keys = KeyStore(Path(cdn.private_key_file), cdn.base_url or "", _key_pair_id(cdn))
    cdn_urls = URLCache(CDNPresigner(keys, storage.s3.rootdirectory, cdn.expires_s),
                        urls.presence, storage.url_cache_size, shared=shared,
                        name=f"cdn_url{suffix}")

    def reload() -> None:
        keys.reload(_key_pair_id(cdn))
        cdn_urls.cache.clear()  # URLs signed with the old key may stop working with it

    paths = [Path(cdn.private_key_file), *([Path(cdn.key_pair_id_file)]
                                           if cdn.key_pair_id_file else [])]
    if cdn.reload_interval_s > 0:
        watchers.append(FileWatcher(f"cdn_key{suffix}", paths, reload, stats,
                                    cdn.reload_interval_s))
    return cdn_urls


def _key_pair_id(cdn: CDNConfig) -> str:
    if cdn.key_pair_id_file is None:
        return cdn.key_pair_id
    return Path(cdn.key_pair_id_file).read_text().strip()
