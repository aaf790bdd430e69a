"""The aiohttp application: one catch-all route, services opened and closed with the app.

Every request takes exactly one of two paths, chosen by a regular expression on the
raw path: a blob GET/HEAD goes to ``BlobService``, anything else to the pass-through
proxy. Clients (upstream HTTP session, S3 clients) live in a ``cleanup_ctx`` so they
are opened once and closed on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from blobgate.accesslog import info_of
from blobgate.audit import AUDIT, open_audit
from blobgate.auth import TokenVerifier
from blobgate.blobs import BlobService
from blobgate.cache import URLCache
from blobgate.config import Config
from blobgate.db import LazyPool
from blobgate.errors import ConfigError, RegistryError
from blobgate.harbordb import HarborDBMembership
from blobgate.keys import KeyBundleError, TrustedKeys
from blobgate.membership import CachedMembership, Membership, UpstreamMembership
from blobgate.metrics import STATS, Stats
from blobgate.origin import RegistryBlobs
from blobgate.proxy import forward
from blobgate.reference import match_blob_path
from blobgate.routing import RoutingPolicy
from blobgate.storage import open_s3, presign_host
from blobgate.stream import BlobSource
from blobgate.upstream import Upstream
from blobgate.warmup import ManifestWarmer
from blobgate.watch import FileWatcher

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
KEYS = web.AppKey("keys", TrustedKeys)
UPSTREAM = web.AppKey("upstream", Upstream)
BLOBS = web.AppKey("blobs", BlobService)
WARMER = web.AppKey("warmer", ManifestWarmer)


def load_keys(cfg: Config) -> TrustedKeys:
    """The token-signing certificates, or a ``ConfigError`` naming ``auth.certificates``."""
    try:
        return TrustedKeys.from_file(Path(cfg.auth.certificates))
    except KeyBundleError as exc:
        raise ConfigError("auth.certificates", str(exc)) from None


def check_presign_host(cfg: Config) -> None:
    """Refuse presigned URLs whose host is a gateway host or under one (unless opted in)."""
    host = presign_host(cfg.storage.s3)
    for public in cfg.server.public_hosts:
        if host == public or host.endswith("." + public):
            why = (
                f"presigned URLs would go to {host}, which is {public} or under it: Go clients "
                "would send their Bearer token to S3, which rejects such requests"
            )
            if not cfg.storage.s3.unsafe_allow_gateway_host:
                raise ConfigError("storage.s3.public_endpoint_url", why)
            log.warning("%s (allowed by storage.s3.unsafe_allow_gateway_host)", why)


def _membership(
    cfg: Config, upstream: Upstream, stats: Stats, stack: AsyncExitStack
) -> Membership:
    """The configured membership source (before caching)."""
    asking_upstream = UpstreamMembership(upstream)
    if cfg.membership.source == "upstream":
        return asking_upstream
    pool = LazyPool(cfg.membership.dsn or "", max_size=8)
    stack.push_async_callback(pool.close)
    return HarborDBMembership(pool, asking_upstream, stats)


def _certificate_watcher(cfg: Config, verifier: TokenVerifier, stats: Stats) -> FileWatcher:
    path = Path(cfg.auth.certificates)

    def reload() -> None:
        verifier.replace_keys(TrustedKeys.from_file(path))

    return FileWatcher("token_certificates", [path], reload, stats, cfg.auth.reload_interval_s)


async def _sources(
    cfg: Config, upstream: Upstream, stack: AsyncExitStack
) -> tuple[BlobSource, URLCache | None]:
    """Where bytes come from, and the URL cache when the backend can presign."""
    chunk = cfg.storage.stream_chunk_bytes
    if cfg.storage.backend == "proxy":
        return RegistryBlobs(upstream, chunk), None
    s3 = await stack.enter_async_context(open_s3(cfg.storage.s3, chunk_bytes=chunk))
    return s3, URLCache(s3, cfg.storage.url_cache_size)


async def _services(app: web.Application) -> AsyncIterator[None]:
    cfg, stats = app[CONFIG], app[STATS]
    async with (
        Upstream.new_session(cfg.upstream) as session,
        open_audit(cfg.audit, stats, cfg.server.shutdown_grace_s) as audit,
        AsyncExitStack() as stack,
    ):
        upstream = Upstream(cfg.upstream, session, stats)
        source, urls = await _sources(cfg, upstream, stack)
        blobs = BlobService(
            verifier=TokenVerifier(cfg.auth, app[KEYS]),
            membership=CachedMembership(
                _membership(cfg, upstream, stats, stack),
                cfg.membership.cache_ttl_s,
                cfg.membership.cache_size,
            ),
            source=source,
            urls=urls,
            policy=RoutingPolicy(cfg.routing),
            upstream=upstream,
            stats=stats,
            presign_host=presign_host(cfg.storage.s3),
            allow_gateway_host=cfg.storage.s3.unsafe_allow_gateway_host,
        )
        stats.caches.update(token=blobs.verifier.cache, membership=blobs.membership.cache)
        if urls is not None:
            stats.caches["url"] = urls.cache
        app[UPSTREAM], app[BLOBS], app[AUDIT] = upstream, blobs, audit
        if cfg.membership.warm_from_manifests:
            app[WARMER] = ManifestWarmer(blobs, cfg.membership.warm_max_blobs)
        if cfg.auth.reload_interval_s > 0:
            watcher = _certificate_watcher(cfg, blobs.verifier, stats)
            task = asyncio.create_task(watcher.run())
            stack.callback(task.cancel)
        yield


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route a request to the blob path or the pass-through, and render our errors."""
    stats = request.app[STATS]
    stats.in_flight += 1
    try:
        if request.method in ("GET", "HEAD"):
            blob = match_blob_path(request.raw_path)
            if blob is not None:
                return await request.app[BLOBS].handle(request, *blob)
        warmer = request.app.get(WARMER)
        observer = warmer.observer(request) if warmer is not None else None
        return await forward(request, request.app[UPSTREAM], observer)
    except RegistryError as exc:
        info_of(request).outcome = "invalid" if exc.status == 400 else "error"
        return exc.response()
    finally:
        stats.in_flight -= 1


def create_app(cfg: Config, keys: TrustedKeys) -> web.Application:
    """The gateway application for ``cfg``, trusting token certificates ``keys``."""
    check_presign_host(cfg)
    app = web.Application()
    app[CONFIG] = cfg
    app[KEYS] = keys
    app[STATS] = Stats()
    app.cleanup_ctx.append(_services)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app
