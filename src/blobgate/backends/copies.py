"""Copies of the registry's store that a client may be redirected to instead of the
primary (the store the registry writes to), tried in the order a route gives.

Copies are kept by replication outside blobgate (S3 replication, Azure object
replication, GCS transfer jobs, rclone to an on-prem MinIO), and replication lags: a
copy may not hold a blob yet. So, as at registry.k8s.io, a copy gets a client only after
a look at that copy found the blob: each copy has its own existence check and URL cache
(``cache``: one look and one signature per digest per URL life, "not there" remembered
for ``storage.missing_ttl_s``), so warm GETs make no storage call. A copy that lacks the
blob is skipped for the next location; one that cannot be asked is skipped too, and left
alone for ``missing_ttl_s`` so that clients do not each wait for its timeouts. The
primary comes last, with the blob path's own rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from blobgate.backends.contract import SignedURL
from blobgate.backends.urls import URLCache
from blobgate.errors import NotInStorage, StorageError
from blobgate.ops.metrics import Stats
from blobgate.reference import Digest
from blobgate.routing.policy import Address, Network, in_networks

log = logging.getLogger(__name__)


def urls_for(urls: URLCache, cdn_urls: URLCache | None, bypass: Sequence[Network],
             address: Address | None) -> URLCache:
    """A store's CDN URLs, unless there is no CDN or the client is in a bypass network."""
    if cdn_urls is None or in_networks(address, bypass):
        return urls
    return cdn_urls


def missing_name(urls: URLCache) -> str:
    """The name of the "not there" cache behind ``urls`` (``not_in_storage@eu``)."""
    return "not_in_storage" + urls.name.removeprefix("cdn_url").removeprefix("url")


@dataclass
class Copy:
    """One copy: its URLs (and CDN URLs), the host they carry, and until when it is left
    alone after it could not be asked."""

    name: str
    urls: URLCache
    cdn_urls: URLCache | None
    bypass: tuple[Network, ...]
    host: str
    allow_gateway_host: bool
    down_until: float = 0.0

    def url_caches(self) -> tuple[URLCache, ...]:
        return tuple(urls for urls in (self.urls, self.cdn_urls) if urls is not None)


Usable = Callable[[Copy, URLCache], bool]
"""Whether a copy may serve this caller with these URLs (asked before the copy is)."""


class Copies:
    """The copies by name, each asked only for a blob it has been seen to hold."""

    def __init__(self, copies: Sequence[Copy], retry_s: float, stats: Stats,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.by_name = {copy.name: copy for copy in copies}
        self._retry_s = retry_s
        self._stats = stats
        self._clock = clock

    async def first_holding(self, names: Sequence[str], digest: Digest,
                            address: Address | None, usable: Usable
                            ) -> tuple[str, URLCache, SignedURL, str] | None:
        """The first of the copies ``names`` that is ``usable`` and holds ``digest``: its
        name, the URLs it serves the client at ``address`` with, the URL, and the cache
        tier that answered (``decision.MEMORY``, ``REDIS``, ``SIGNED``). A copy
        that lacks it is passed over; one that cannot be asked is left alone for a while."""
        for name in names:
            copy = self.by_name[name]
            urls = urls_for(copy.urls, copy.cdn_urls, copy.bypass, address)
            if not usable(copy, urls):
                continue
            if copy.down_until:
                if copy.down_until > self._clock():
                    self._stats.fallbacks["copy_down"] += 1
                    continue
                copy.down_until = 0.0
            try:
                return name, urls, *await urls.answer(digest)
            except NotInStorage:
                self._stats.fallbacks["copy_missing"] += 1
            except StorageError as exc:
                self._stats.fallbacks["copy_unavailable"] += 1
                log.warning("copy %s cannot be asked (%s): skipped for %ss", name, exc,
                            self._retry_s)
                copy.down_until = self._clock() + self._retry_s
        return None

    def url_caches(self) -> tuple[URLCache, ...]:
        return tuple(urls for copy in self.by_name.values() for urls in copy.url_caches())
