"""The presigned-URL cache: one signature, and one look at storage, serve many pulls.

Before a digest's first URL is signed, ``Presence`` asks storage whether the object is
there (one ``stat``: S3 HeadObject, Azure Get Blob Properties, GCS object metadata),
so a redirect always leads to bytes: a pull-through cache
(Harbor proxy-cache projects, distribution's ``proxy.remoteurl``) holds a blob only
after a client has pulled it through the registry once, and garbage collection removes
objects behind blobgate's back. The answer is remembered with the URL (warm GETs make
no storage call); "not there" is remembered for ``missing_ttl_s`` seconds only, so the
request after the registry has stored the blob is redirected.

An entry is handed out only while more than half of its URL's life is left (and never
past the expiry of the credentials that signed it), so every client gets a URL with
ample time to finish its download. URLs are per digest: repository access is checked
before the cache is consulted. Concurrent first requests for a digest share one look
and one signature.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable

from blobgate.backends.contract import Presigner, SignedURL
from blobgate.caches.shared import Malformed, Shared, expiry
from blobgate.decision import MEMORY, REDIS, SIGNED
from blobgate.errors import NotInStorage, StorageError, StorageUnchecked
from blobgate.expiring import ExpiringCache
from blobgate.ops.tracing import step
from blobgate.reference import Digest

URL_FIELDS = frozenset(field.name for field in dataclasses.fields(SignedURL))


class Presence:
    """Whether a blob's object is in storage, and its size; absences kept briefly."""

    def __init__(
        self, stat: Callable[[Digest], Awaitable[int]], missing_ttl_s: float, maxsize: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stat = stat
        self._missing_ttl_s = missing_ttl_s
        self._clock = clock
        self.missing: ExpiringCache[Digest, float] = ExpiringCache(
            maxsize, lambda until: until, clock
        )

    async def size(self, digest: Digest) -> int:
        """The object's size; ``NotInStorage`` when it is absent, ``StorageUnchecked``
        when storage cannot say."""
        if self.missing.get(digest) is not None:
            raise NotInStorage(f"{digest} is not in storage (seen moments ago)", "missing")
        try:
            with step("blobgate.storage.check"):
                return await self._stat(digest)
        except NotInStorage:
            self.missing.put(digest, self._clock() + self._missing_ttl_s)
            raise
        except StorageError as exc:
            raise StorageUnchecked(f"could not check storage: {exc}", exc.reason) from exc

    async def look(self, digest: Digest) -> int:
        """The object's size from storage itself, remembering nothing (``explain``)."""
        return await self._stat(digest)


class URLCache:
    """Caches presigned URLs (with the size storage reported) per digest until half of
    their life is spent; with ``shared``, also in the replicas' Redis under ``name``
    (looked up there before storage is asked and a URL signed)."""

    def __init__(
        self, presigner: Presigner, presence: Presence, maxsize: int,
        clock: Callable[[], float] = time.time, shared: Shared | None = None,
        name: str = "url",
    ) -> None:
        self.presigner = presigner
        self.presence = presence
        self.name = name
        self._shared = shared
        self._clock = clock
        self.cache: ExpiringCache[Digest, SignedURL] = ExpiringCache(
            maxsize, lambda signed: signed.hand_out_until, clock
        )
        self._inflight: dict[Digest, asyncio.Task[tuple[SignedURL, str]]] = {}

    async def url_for(self, digest: Digest) -> SignedURL:
        """A cached URL with enough life left, or a newly signed one for an object that
        storage has; raises ``NotInStorage``, ``StorageUnchecked`` or ``StorageError``."""
        return (await self.answer(digest))[0]

    async def answer(self, digest: Digest) -> tuple[SignedURL, str]:
        """``url_for``, and the tier that answered: ``memory``, ``redis`` or ``signed``."""
        signed = self.cache.get(digest)
        if signed is not None:
            return signed, MEMORY
        task = self._inflight.get(digest)
        if task is None:
            task = self._inflight[digest] = asyncio.ensure_future(self._sign(digest))
            task.add_done_callback(lambda done: self._settled(digest, done))
        return await asyncio.shield(task)

    async def _sign(self, digest: Digest) -> tuple[SignedURL, str]:
        signed, tier = await self._recall(digest), REDIS
        if signed is None:
            tier = SIGNED
            size = await self.presence.size(digest)
            with step("blobgate.sign", {"blobgate.url_cache": self.name}):
                unsized = await self.presigner.presign_blob(digest)
            signed = dataclasses.replace(unsized, size=size)
            if self._shared is not None:
                self._shared.put(self.name, digest, json.dumps(dataclasses.asdict(signed)),
                                 signed.hand_out_until - self._clock())
        self.cache.put(digest, signed)
        return signed, tier

    async def _recall(self, digest: Digest) -> SignedURL | None:
        """A URL another replica signed, while it may still be handed out."""
        if self._shared is None:
            return None
        return await self._shared.get(self.name, digest, self._parse)

    def _parse(self, value: str) -> SignedURL | None:
        """A shared URL (JSON of ``SignedURL``); ``None`` once it may not be handed out."""
        fields = json.loads(value)
        if not isinstance(fields, dict) or set(fields) != URL_FIELDS:
            raise Malformed("not a signed URL")
        url, size = fields["url"], fields["size"]
        if not isinstance(url, str) or not (size is None or (type(size) is int and size >= 0)):
            raise Malformed("not a signed URL")
        signed = SignedURL(url, expiry(fields["signed_at"]), expiry(fields["expires_at"]), size)
        return signed if signed.hand_out_until > self._clock() else None

    def _settled(self, digest: Digest, task: asyncio.Task[tuple[SignedURL, str]]) -> None:
        del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away
