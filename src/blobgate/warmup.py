"""Manifest-driven warm-up: the first pull of an image needs no membership round trip.

When a client whose token grants pull on ``<name>`` receives an image manifest from
the registry (a ``GET`` answered ``200``), every config and layer blob the manifest lists
is in ``<name>``: the registry refused the manifest at push time otherwise. They are
recorded as members at once, and in the background each digest's object is looked up
in storage and its URL presigned (the URL cache's one look per digest, which the blob
GETs that follow join); a digest whose object is not in storage (a pull-through cache
that has not fetched it yet) is taken back out. Redirects never depend on that order:
every URL is signed only after the look. Recording only after the look would make the
blob GETs that arrive first ask the registry (measured: 12 upstream requests per
10-layer pull instead of 1). Only upstream answers count (never what
a client uploads); manifest lists and indexes are skipped (they name manifests, not
blobs); work per manifest is bounded; only what the registry's own reading of the
manifest checked is learnt, and a manifest that reading could differ on teaches nothing
(see ``blobgate.registry.manifests``; counted in ``blobgate_warmup_refused_total``).

What was learnt from each manifest is kept, for a ``DELETE`` of the manifest to forget
its blobs, as long as those memberships live (``membership.cache_ttl_s``) and for at
most ``membership.cache_size`` references in all (``cache_size // warm_max_blobs``
manifests): about 300 bytes per sha512 reference measured, 30 MB at the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from blobgate.auth.pulls import Pull
from blobgate.blobs import BlobService
from blobgate.errors import BlobgateError, NotInStorage
from blobgate.expiring import ExpiringCache
from blobgate.reference import BlobRef, parse_blob
from blobgate.registry.manifests import IMAGE_MANIFESTS, Refused, manifest_blobs
from blobgate.registry.membership import Member

log = logging.getLogger(__name__)

MANIFEST_PATH = re.compile(r"/v2/(.+)/manifests/([^/]+)")
# Reading a manifest as Go would costs up to ~0.14 ms per KiB (a body of empty objects;
# measured 36 ms at this bound, 0.5 s at distribution's 4 MiB limit) on the event loop;
# an image manifest of 128 layers is ~20-60 KiB, and one larger is not read.
MAX_MANIFEST_BYTES = 256 << 10
CHECKS_AT_ONCE = 8  # storage look-ups one manifest starts at a time
REFUSAL_LOG_INTERVAL_S = 60.0  # one line per repository at most this often


@dataclass
class ManifestObserver:
    """Watches one manifest response on its way to a client allowed to pull ``name``."""

    warmer: ManifestWarmer
    name: str
    limit: int = MAX_MANIFEST_BYTES

    kind: str = ""

    def wants(self, response: aiohttp.ClientResponse) -> bool:
        self.kind = response.content_type
        return response.status == 200 and self.kind in IMAGE_MANIFESTS

    def observe(self, body: bytes) -> None:
        try:
            blobs = manifest_blobs(body, self.kind, self.warmer.max_blobs)
        except Refused as refused:
            self.warmer.refused(self.name, refused.reason)
            return
        # Kept under the digest the registry names these bytes by (their SHA-256, as a
        # DELETE names them), computed rather than taken from Docker-Content-Digest.
        self.warmer.warm(self.name, blobs, "sha256:" + hashlib.sha256(body).hexdigest())


@dataclass
class ManifestWarmer:
    """Turns observed manifests into cached membership and presigned URLs."""

    blobs: BlobService
    max_blobs: int
    ttl_s: float = 300.0
    max_refs: int = 100_000
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _learnt: ExpiringCache[BlobRef, tuple[BlobRef, ...]] = field(init=False)
    _logged: ExpiringCache[str, bool] = field(init=False)

    def __post_init__(self) -> None:
        self._learnt = ExpiringCache(max(1, self.max_refs // self.max_blobs),
                                     lambda _refs: time.time() + self.ttl_s)
        self._logged = ExpiringCache(1024, lambda _: time.time() + REFUSAL_LOG_INTERVAL_S)

    def observer(self, request: web.BaseRequest, pull: Pull) -> ManifestObserver | None:
        """An observer for a manifest GET by a client allowed to pull its repository."""
        if request.method != "GET" or pull.kind != "manifests":
            return None
        return ManifestObserver(self, pull.name)

    def warm(self, name: str, blobs: dict[str, int | None], manifest: str | None = None) -> None:
        """Record ``blobs`` (digest: size) as members of ``name`` once storage has them."""
        members: dict[BlobRef, Member] = {}
        for digest, size in blobs.items():
            with contextlib.suppress(BlobgateError):
                members[parse_blob(name, digest)] = Member(size=size)
        with contextlib.suppress(BlobgateError):
            if manifest is not None:
                self._learnt.put(parse_blob(name, manifest), tuple(members))
        recorded = {ref: member for ref, member in members.items() if self._record(ref, member)}
        if self.blobs.urls is not None and members:
            task = asyncio.create_task(self._check(members, recorded))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def refused(self, name: str, reason: str) -> None:
        """Count a manifest of ``name`` nothing was learnt from; say so now and then
        (the repository and why, never a digest)."""
        self.blobs.stats.warmup_refused[reason] += 1
        if self._logged.peek(name) is None:
            self._logged.put(name, True)
            log.warning("warm-up learnt nothing from a manifest of %s (%s)", name, reason)

    def forget(self, manifest: BlobRef) -> tuple[BlobRef, ...]:
        """The blobs learnt from ``manifest`` (now deleted); they are forgotten too."""
        learnt = self._learnt.peek(manifest) or ()
        self._learnt.pop(manifest)
        return learnt

    async def wait(self) -> None:
        """Until the checks started so far have finished."""
        await asyncio.gather(*self._tasks)

    async def _check(self, members: dict[BlobRef, Member],
                     recorded: dict[BlobRef, Member]) -> None:
        """Look the objects up and presign them, a few at once (the pull's blob GETs join
        these looks); take back what storage does not have, and fill in sizes the manifest
        did not give."""
        urls = self.blobs.urls
        assert urls is not None
        membership = self.blobs.gate.membership
        limit = asyncio.Semaphore(CHECKS_AT_ONCE)

        async def check(ref: BlobRef) -> None:
            async with limit:
                try:
                    signed = await urls.url_for(ref.digest)
                except NotInStorage:
                    if ref in recorded:
                        membership.cache.pop(ref)  # the registry still fetches it
                    return
                except BlobgateError as exc:
                    log.info("warm-up check failed: %s", exc)
                    return
            if ref in recorded and recorded[ref].size is None:
                membership.remember(ref, Member(signed.size))

        await asyncio.gather(*(check(ref) for ref in members))

    def _record(self, ref: BlobRef, member: Member) -> bool:
        """Record ``ref`` unless its membership is known already; whether it was."""
        if self.blobs.gate.membership.cache.peek(ref) is not None:
            return False
        self.blobs.gate.membership.remember(ref, member)
        return True
