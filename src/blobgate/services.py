"""Everything a running gateway holds, opened together and closed together.

``open_services`` builds the upstream sessions, the storage backend (its byte source
and URL signers, chosen by ``backends.choice``), the gate (the registry's verdicts on
tokens; membership from upstream or Harbor's database, cached), the audit sink, the
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
from blobgate.auth.callers import Callers
from blobgate.auth.challenge import Challenge
from blobgate.auth.confirmations import Confirmations
from blobgate.auth.keys import TrustedKeys
from blobgate.auth.tokens import TokenVerifier
from blobgate.backends.choice import open_storage
from blobgate.backends.copies import Copies, Copy, missing_name
from blobgate.blobs import BlobService
from blobgate.caches.replicas import Replicas
from blobgate.caches.sealing import key_watcher
from blobgate.caches.shared import Shared, open_shared
from blobgate.config import Config
from blobgate.gate import Gate
from blobgate.ops.audit import Audit, PostgresAudit, open_audit
from blobgate.ops.db import LazyPool
from blobgate.ops.logs import LineWriter
from blobgate.ops.metrics import Stats
from blobgate.ops.watch import FileWatcher
from blobgate.registry.harbordb import HarborDB, HarborDBMembership, HarborTokenRule
from blobgate.registry.membership import CachedMembership, Membership, UpstreamMembership
from blobgate.registry.upstream import Upstream, open_upstream
from blobgate.routing.feeds import Feed
from blobgate.routing.policy import RoutingPolicy, parse_networks
from blobgate.warmup import ManifestWarmer


@dataclass(frozen=True)
class Services:
    """The long-lived parts of a running gateway."""

    upstream: Upstream
    blobs: BlobService
    audit: Audit
    warmer: ManifestWarmer | None
    api: UrlApi | None
    databases: dict[str, LazyPool]
    replicas: Replicas


def _gate(
    cfg: Config, verifier: TokenVerifier, upstream: Upstream, stats: Stats,
    stack: AsyncExitStack, databases: dict[str, LazyPool], shared: Shared | None,
) -> Gate:
    """The gate, with membership from the registry or from Harbor's database."""
    m = cfg.membership
    registry = UpstreamMembership(upstream)
    source: Membership = registry
    rule = None
    if m.source == "harbor_db":
        pool = databases["membership"] = LazyPool(m.dsn or "", max_size=8,
                                                  password_file=m.dsn_password_file)
        stack.push_async_callback(pool.close)
        db = HarborDB(pool)
        source = HarborDBMembership(db, registry, stats)
        rule = HarborTokenRule(db, cfg.auth.leeway_s, m.cache_ttl_s, m.cache_size, stats)
    confirmations = Confirmations(m.cache_ttl_s, cfg.auth.refusal_ttl_s,
                                  cfg.auth.token_cache_size, shared=shared)
    membership = CachedMembership(source, m.cache_ttl_s, m.cache_size, shared=shared)
    return Gate(verifier, membership, registry, confirmations, rule)


def _certificates(cfg: Config, verifier: TokenVerifier, stats: Stats) -> list[FileWatcher]:
    if cfg.auth.reload_interval_s <= 0:
        return []
    path = Path(cfg.auth.certificates)

    def reload() -> None:
        verifier.replace_keys(TrustedKeys.from_file(path))

    return [FileWatcher("token_certificates", [path], reload, stats,
                        cfg.auth.reload_interval_s)]


async def _copies(cfg: Config, upstream: Upstream, stats: Stats, watchers: list[FileWatcher],
                  shared: Shared | None, stack: AsyncExitStack) -> Copies:
    """Each of ``storage.copies`` opened as the primary is, with caches of its own."""
    found = []
    for copy in cfg.storage.copies:
        storage = await stack.enter_async_context(
            open_storage(cfg, upstream, stats, watchers, shared, copy))
        urls, target = storage.urls, storage.target
        assert urls is not None, "a copy is an object store"
        assert target is not None, "a copy is an object store"
        found.append(Copy(copy.name, urls, storage.cdn_urls,
                          parse_networks(copy.cdn.bypass_networks), target.host,
                          target.allow_gateway_host))
    return Copies(found, cfg.storage.missing_ttl_s, stats)


async def _feeds(cfg: Config, stats: Stats, stack: AsyncExitStack) -> list[Feed]:
    """The IP-range feeds, read once (a failure leaves a feed empty, retried soon), then
    refreshed in the background until shutdown."""
    feeds = [Feed(feed, stats) for feed in cfg.routing.ip_ranges]
    loaded = await asyncio.gather(*(feed.refresh() for feed in feeds))
    for feed, healthy in zip(feeds, loaded, strict=True):
        stack.callback(asyncio.create_task(feed.run(healthy)).cancel)
    return feeds


@asynccontextmanager
async def open_services(cfg: Config, keys: TrustedKeys, stats: Stats, lines: LineWriter
                        ) -> AsyncIterator[Services]:
    """All services for ``cfg`` (audit lines to ``lines``), closed when the context ends."""
    async with AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(
            open_upstream(cfg.upstream, stats, cfg.server.client_body_timeout_s))
        audit = await stack.enter_async_context(
            open_audit(cfg.audit, stats, cfg.server.shutdown_grace_s, lines))
        shared = (await stack.enter_async_context(open_shared(cfg.redis, stats))
                  if cfg.redis.enabled else None)
        watchers: list[FileWatcher] = []
        mac_keys = None if shared is None else key_watcher(cfg.redis, shared.keys, stats)
        if mac_keys is not None:
            watchers.append(mac_keys)
        storage = await stack.enter_async_context(
            open_storage(cfg, upstream, stats, watchers, shared))
        copies = await _copies(cfg, upstream, stats, watchers, shared, stack)
        feeds = await _feeds(cfg, stats, stack)
        urls = storage.urls
        databases = {"audit": audit.pool} if isinstance(audit, PostgresAudit) else {}
        verifier = TokenVerifier(cfg.auth, keys)
        watchers += _certificates(cfg, verifier, stats)
        gate = _gate(cfg, verifier, upstream, stats, stack, databases, shared)
        target = storage.target
        blobs = BlobService(
            gate=gate,
            source=storage.source,
            urls=urls,
            cdn_urls=storage.cdn_urls,
            cdn_bypass=parse_networks(cfg.storage.cdn.bypass_networks),
            policy=RoutingPolicy(cfg.routing, feeds),
            upstream=upstream,
            stats=stats,
            presign_host="" if target is None else target.host,
            allow_gateway_host=target is None or target.allow_gateway_host,
            copies=copies,
        )
        stats.caches.update(token=verifier.cache, membership=gate.membership.cache,
                            confirmation=gate.confirmations.cache)
        for cache in blobs.url_caches():
            stats.caches.update({cache.name: cache.cache,
                                 missing_name(cache): cache.presence.missing})
        replicas = Replicas(blobs, shared)
        if replicas.listener is not None:
            replicas.listener.start()
            stack.callback(replicas.listener.stop)
        for watcher in watchers:
            stack.callback(asyncio.create_task(watcher.run()).cancel)
        api = None
        if cfg.api.enabled and urls is not None:
            challenge = Challenge(cfg.auth.realm, cfg.auth.service, upstream)
            callers = Callers(verifier, upstream, challenge, cfg.auth.service,
                              cfg.api.credentials_ttl_s, cfg.auth.refusal_ttl_s,
                              cfg.auth.token_cache_size, cfg.auth.token_cache_bytes)
            stats.caches["credential_exchange"] = callers.exchanges
            api = UrlApi(blobs, audit, callers, cfg.api.max_batch, cfg.api.concurrency,
                         cfg.api.max_expires_s, cfg.server.client_body_timeout_s)
        warmer = None
        if cfg.membership.warm_from_manifests:
            m = cfg.membership
            warmer = ManifestWarmer(blobs, m.warm_max_blobs, m.cache_ttl_s, m.cache_size)
        yield Services(upstream, blobs, audit, warmer, api, databases, replicas)
