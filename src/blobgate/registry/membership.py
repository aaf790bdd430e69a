"""Does this blob belong to this repository? Without this check, a pull token for
repository A would read any blob of repository B just by naming its digest.

``UpstreamMembership`` asks the registry itself (a HEAD with the client's own
``Authorization``), so it works in front of any registry; its ``ask`` also tells what the
registry made of the token (see ``confirmations``). ``CachedMembership`` keeps
positive answers for a while and lets concurrent checks of the same blob share one
upstream round trip. A negative or failed answer is never cached: the request is
passed through and the client hears the registry's own reply.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import aiohttp
from yarl import URL

from blobgate.caches.shared import MEMBERS, Malformed, Shared, expiry, member_key
from blobgate.errors import RegistryError
from blobgate.expiring import ExpiringCache
from blobgate.ops.tracing import step
from blobgate.reference import BlobRef
from blobgate.registry.upstream import Upstream


@dataclass(frozen=True, slots=True)
class Member:
    """Proof that a blob is in a repository, with its size when the source knew it."""

    size: int | None


class Answer(NamedTuple):
    """The registry's answer to a blob HEAD: its status, and the blob when it has it."""

    status: int
    member: Member | None


class Membership(Protocol):
    """A source of truth about which blobs belong to which repository."""

    async def check(self, ref: BlobRef, authorization: str) -> Member | None:
        """``Member`` when ``ref`` is in its repository, ``None`` when not (or unknown)."""
        ...


class UpstreamMembership:
    """Asks the registry with a HEAD of the blob, authorized as the client."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def check(self, ref: BlobRef, authorization: str) -> Member | None:
        return (await self.ask(ref, authorization)).member

    async def ask(self, ref: BlobRef, authorization: str) -> Answer:
        """The registry's answer to a HEAD of ``ref`` sent with ``authorization``."""
        path = f"/v2/{ref.name}/blobs/{ref.digest}"
        headers = {"Authorization": authorization}
        try:
            response = await self._upstream.check("HEAD", path, headers=headers)
        except RegistryError:
            self._upstream.stats.membership["upstream", "error"] += 1
            raise
        async with response:
            member = None
            if response.status == 307 and self._to_storage(response):
                member = Member(size=None)
            elif response.status == 200:
                member = Member(size=response.content_length)
        result = "not_member" if member is None else "member"
        self._upstream.stats.membership["upstream", result] += 1
        return Answer(response.status, member)

    def _to_storage(self, response: aiohttp.ClientResponse) -> bool:
        """A registry's storage redirect: temporary, and to another origin (not an ingress's
        http→https or path redirect, which says nothing about the blob)."""
        location = URL(response.headers.get("Location", ""), encoded=True)
        return location.is_absolute() and location.origin() != self._upstream.origin


class CachedMembership:
    """Caches positive answers of another source and coalesces concurrent checks; with
    ``shared``, answers are also kept in (and first looked up from) the replicas' Redis,
    each with the expiry it had where it was learnt."""

    def __init__(
        self,
        source: Membership,
        ttl_s: float,
        maxsize: int,
        clock: Callable[[], float] = time.monotonic,
        shared: Shared | None = None,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._shared = shared
        self.cache: ExpiringCache[BlobRef, tuple[Member, float]] = ExpiringCache(
            maxsize, lambda entry: entry[1], clock
        )
        self._inflight: dict[BlobRef, asyncio.Future[Member | None]] = {}

    async def check(self, ref: BlobRef, authorization: str) -> Member | None:
        cached = self.cache.get(ref)
        if cached is not None:
            return cached[0]
        leader = self._inflight.get(ref)
        if leader is not None:
            shared = await asyncio.shield(leader)
            if shared is not None:
                return shared
            # The leader's credentials may differ from ours: a "no" for it is not one for us.
        return await self._lead(ref, authorization)

    async def _lead(self, ref: BlobRef, authorization: str) -> Member | None:
        future: asyncio.Future[Member | None] = asyncio.get_running_loop().create_future()
        self._inflight[ref] = future
        try:
            member = await self._recall(ref)
            if member is not None:
                future.set_result(member)
                return member
            with step("blobgate.registry.membership"):
                member = await self._source.check(ref, authorization)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            if self._inflight.get(ref) is future:
                del self._inflight[ref]
        future.set_result(member)
        if member is not None:
            self.remember(ref, member)
        return member

    def remember(self, ref: BlobRef, member: Member) -> None:
        """Record a membership learnt elsewhere (e.g. a size found in storage)."""
        self.cache.put(ref, (member, self._clock() + self._ttl_s))
        if self._shared is not None:
            size = "" if member.size is None else str(member.size)
            until = time.time() + self._ttl_s
            self._shared.put(MEMBERS, member_key(ref), f"{size}|{until}", self._ttl_s)

    async def _recall(self, ref: BlobRef) -> Member | None:
        """The membership another replica learnt, kept here for the rest of its life."""
        if self._shared is None:
            return None
        found = await self._shared.get(MEMBERS, member_key(ref), self._parse)
        if found is None:
            return None
        member, left = found
        self.cache.put(ref, (member, self._clock() + left))
        return member

    def _parse(self, value: str) -> tuple[Member, float] | None:
        """A shared ``<size or nothing>|<until>`` as the member and the seconds it has left
        (no more than this replica would keep it); ``None`` once over."""
        size, bar, until = value.partition("|")
        if not bar or not (size == "" or (size.isascii() and size.isdigit())):
            raise Malformed(f"not a membership: {value[:40]!r}")
        left = min(expiry(until) - time.time(), self._ttl_s)
        return (Member(size=int(size) if size else None), left) if left > 0 else None
