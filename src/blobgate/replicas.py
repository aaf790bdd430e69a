"""Invalidation that reaches every replica.

A successful ``DELETE`` through any replica and ``POST /admin/cache/flush`` on any
replica drop this replica's entries at once; with a shared Redis they also delete the
shared entries and are published to the other replicas, which drop theirs when they
hear it (well within a second). Without Redis they stay local, as each replica's
caches do.
"""

from __future__ import annotations

import asyncio

from blobgate.blobs import BlobService
from blobgate.errors import BlobgateError
from blobgate.reference import BlobRef, parse_blob
from blobgate.shared import MEMBERS, Message, Shared, member_key


class Replicas:
    """Forgets and flushes here, and tells the other replicas through ``shared``."""

    def __init__(self, blobs: BlobService, shared: Shared | None) -> None:
        self._blobs = blobs
        self.shared = shared
        self._telling: set[asyncio.Task[None]] = set()

    def forget(self, refs: tuple[BlobRef, ...]) -> None:
        """Forget what a deleted blob or manifest made stale: here at once, elsewhere in the
        background (a task of its own, so a client hanging up cannot cancel it)."""
        for ref in refs:
            self._blobs.forget(ref)
        if self.shared is None or not refs:
            return
        keys = [f"{MEMBERS}:{member_key(ref)}" for ref in refs]
        keys += [f"{urls.name}:{ref.digest}" for ref in refs for urls in self._blobs.url_caches()]
        task = asyncio.create_task(self.shared.publish(
            keys, {"op": "forget", "refs": [[ref.name, ref.digest] for ref in refs]}))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def flush(self) -> dict[str, int]:
        """Drop every cached answer everywhere; how many entries each local cache held."""
        sizes = self._blobs.flush()
        if self.shared is not None:
            await self.shared.flush()
        return sizes

    def heard(self, message: Message) -> None:
        """An invalidation another replica (or this one) published."""
        if message.get("op") == "flush":
            self._blobs.flush()
            return
        for entry in message.get("refs") or []:
            try:
                self._blobs.forget(parse_blob(*entry))
            except (BlobgateError, TypeError):
                continue  # not a reference this replica could have cached
