"""Everything a running gateway holds, opened together and closed together.

``open_services`` builds the upstream session, the byte source and URL signers (S3,
CloudFront), the gate (the registry's verdicts on tokens; membership from upstream or
Harbor's database, cached), the audit sink, the
manifest warmer, the URL API and the file watchers for rotating keys, in dependency
order, and closes them in reverse on shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from blobgate.api import UrlApi
from blobgate.audit import Audit, PostgresAudit, open_audit
from blobgate.auth import TokenVerifier
from blobgate.backends.cloudfront import CDNPresigner, KeyStore
from blobgate.backends.registry import RegistryBlobs
from blobgate.backends.s3 import open_s3, presign_host
from blobgate.blobs import BlobService
from blobgate.cache import Presence, URLCache
from blobgate.callers import Callers
from blobgate.challenge import Challenge
from blobgate.config import CDNConfig, Config
from blobgate.confirmations import Confirmations
from blobgate.db import LazyPool
from blobgate.gate import Gate
from blobgate.harbordb import HarborDB, HarborDBMembership, HarborTokenRule
from blobgate.keys import TrustedKeys
from blobgate.membership import CachedMembership, Membership, UpstreamMembership
from blobgate.metrics import Stats
from blobgate.routing import RoutingPolicy, parse_networks
from blobgate.stream import BlobSource
from blobgate.upstream import Upstream
from blobgate.warmup import ManifestWarmer
from blobgate.watch import FileWatcher


@dataclass(frozen=True)
class Services:
    """The long-lived parts of a running gateway."""

    upstream: Upstream
    blobs: BlobService
    audit: Audit
    warmer: ManifestWarmer | None
    api: UrlApi | None
    databases: dict[str, LazyPool]


def _gate(
    cfg: Config, verifier: TokenVerifier, upstream: Upstream, stats: Stats,
    stack: AsyncExitStack, databases: dict[str, LazyPool],
) -> Gate:
    """The gate, with membership from the registry or from Harbor's database."""
    m = cfg.membership
    registry = UpstreamMembership(upstream)
    source: Membership = registry
    rule = None
    if m.source == "harbor_db":
        pool = databases["membership"] = LazyPool(m.dsn or "", max_size=8)
        stack.push_async_callback(pool.close)
        db = HarborDB(pool)
        source = HarborDBMembership(db, registry, stats)
        rule = HarborTokenRule(db, cfg.auth.leeway_s, m.cache_ttl_s, m.cache_size, stats)
    confirmations = Confirmations(m.cache_ttl_s, cfg.auth.refusal_ttl_s,
                                  cfg.auth.token_cache_size)
    membership = CachedMembership(source, m.cache_ttl_s, m.cache_size)
    return Gate(verifier, membership, registry, confirmations, rule)


async def _sources(
    cfg: Config, upstream: Upstream, stack: AsyncExitStack
) -> tuple[BlobSource, URLCache | None]:
    """Where bytes come from, and the URL cache when the backend presigns."""
    storage = cfg.storage
    if storage.backend == "proxy":
        return RegistryBlobs(upstream), None
    s3 = await stack.enter_async_context(
        open_s3(storage.s3, chunk_bytes=storage.stream_chunk_bytes))
    presence = Presence(s3.stat, storage.missing_ttl_s, storage.url_cache_size)
    return s3, URLCache(s3, presence, storage.url_cache_size)


def _cdn(cfg: Config, urls: URLCache | None, watchers: list[FileWatcher], stats: Stats
         ) -> URLCache | None:
    """CloudFront URLs for the objects ``urls`` checks the presence of."""
    cdn = cfg.storage.cdn
    if not cdn.enabled or urls is None:
        return None
    keys = KeyStore(Path(cdn.private_key_file), cdn.base_url or "", _key_pair_id(cdn))
    cdn_urls = URLCache(CDNPresigner(keys, cfg.storage.s3.rootdirectory, cdn.expires_s),
                        urls.presence, cfg.storage.url_cache_size)

    def reload() -> None:
        keys.reload(_key_pair_id(cdn))
        cdn_urls.cache.clear()  # URLs signed with the old key may stop working with it

    paths = [Path(cdn.private_key_file), *([Path(cdn.key_pair_id_file)]
                                           if cdn.key_pair_id_file else [])]
    if cdn.reload_interval_s > 0:
        watchers.append(FileWatcher("cdn_key", paths, reload, stats, cdn.reload_interval_s))
    return cdn_urls


def _key_pair_id(cdn: CDNConfig) -> str:
    if cdn.key_pair_id_file is None:
        return cdn.key_pair_id
    return Path(cdn.key_pair_id_file).read_text().strip()


def _certificates(cfg: Config, verifier: TokenVerifier, stats: Stats) -> list[FileWatcher]:
    if cfg.auth.reload_interval_s <= 0:
        return []
    path = Path(cfg.auth.certificates)

    def reload() -> None:
        verifier.replace_keys(TrustedKeys.from_file(path))

    return [FileWatcher("token_certificates", [path], reload, stats,
                        cfg.auth.reload_interval_s)]


@asynccontextmanager
async def open_services(cfg: Config, keys: TrustedKeys, stats: Stats) -> AsyncIterator[Services]:
    """All services for ``cfg``, closed when the context ends."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(Upstream.new_session(cfg.upstream))
        upstream = Upstream(cfg.upstream, session, stats)
        audit = await stack.enter_async_context(
            open_audit(cfg.audit, stats, cfg.server.shutdown_grace_s))
        source, urls = await _sources(cfg, upstream, stack)
        databases = {"audit": audit.pool} if isinstance(audit, PostgresAudit) else {}
        verifier = TokenVerifier(cfg.auth, keys)
        watchers = _certificates(cfg, verifier, stats)
        gate = _gate(cfg, verifier, upstream, stats, stack, databases)
        blobs = BlobService(
            gate=gate,
            source=source,
            urls=urls,
            cdn_urls=_cdn(cfg, urls, watchers, stats),
            cdn_bypass=parse_networks(cfg.storage.cdn.bypass_networks),
            policy=RoutingPolicy(cfg.routing),
            upstream=upstream,
            stats=stats,
            presign_host=presign_host(cfg.storage.s3),
            allow_gateway_host=cfg.storage.s3.unsafe_allow_gateway_host,
        )
        stats.caches.update(token=verifier.cache, membership=gate.membership.cache,
                            confirmation=gate.confirmations.cache)
        stats.caches.update({name: c.cache for name, c in (("url", urls),
                                                          ("cdn_url", blobs.cdn_urls)) if c})
        if urls is not None:
            stats.caches["not_in_storage"] = urls.presence.missing
        for watcher in watchers:
            stack.callback(asyncio.create_task(watcher.run()).cancel)
        api = None
        if cfg.api.enabled and urls is not None:
            challenge = Challenge(cfg.auth.realm, cfg.auth.service, upstream)
            callers = Callers(verifier, upstream, challenge, cfg.auth.service,
                              cfg.auth.refusal_ttl_s, cfg.auth.token_cache_size)
            stats.caches["credential_exchange"] = callers.exchanges
            api = UrlApi(blobs, audit, callers, cfg.api.max_batch, cfg.api.concurrency,
                         cfg.api.max_expires_s)
        warmer = None
        if cfg.membership.warm_from_manifests:
            warmer = ManifestWarmer(blobs, cfg.membership.warm_max_blobs)
        yield Services(upstream, blobs, audit, warmer, api, databases)
