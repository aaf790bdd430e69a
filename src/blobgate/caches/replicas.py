"""Invalidation that reaches every replica.

A successful ``DELETE`` through any replica and ``POST /admin/cache/flush`` on any
replica drop this replica's entries at once; with a shared Redis they also delete the
shared entries and are published to the other replicas, which drop theirs when they
hear it (well within a second). So is a refusal: when the registry refuses a token for
a repository, the replica that saw it publishes the token's hash, and every replica
drops its acceptance of that token there. Without Redis they stay local, as each
replica's caches do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Protocol

from blobgate.caches.listener import Listener
from blobgate.caches.shared import MEMBERS, Malformed, Message, Shared, member_key
from blobgate.errors import BlobgateError
from blobgate.reference import BlobRef, parse_blob

TOKEN_KEY = re.compile(r"[0-9a-f]{64}")  # shared.token_key's form: a SHA-256 in hex


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Acceptances(Protocol):
    def heard_refusal(self, token: bytes, name: str) -> None: ...


class _Verdicts(Protocol):
    @property
    def confirmations(self) -> _Acceptances: ...


class LocalCaches(Protocol):
    """This replica's caches as the blob service (``blobs.BlobService``) holds them: what
    an invalidation drops here. Handed in when the services are wired, so this wing never
    imports a front door."""

    @property
    def gate(self) -> _Verdicts: ...

    def url_caches(self) -> Sequence[_Named]: ...

    def forget(self, ref: BlobRef) -> None: ...

    def flush(self) -> dict[str, int]: ...


class Replicas:
    """Forgets and flushes here, and tells the other replicas through ``shared``; hears
    them through ``listener``."""

    def __init__(self, blobs: LocalCaches, shared: Shared | None) -> None:
        self._blobs = blobs
        self.shared = shared
        self.listener = None if shared is None else Listener(shared, self.heard)
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
        """An invalidation another replica (or this one) published; ``Malformed`` when it
        says nothing this replica can act on."""
        op = message.get("op")
        if op == "flush":
            self._blobs.flush()
        elif op == "forget":
            for ref in _refs(message.get("refs")):
                self._blobs.forget(ref)
        elif op == "refuse":
            token, name = message.get("token"), message.get("name")
            if not isinstance(token, str) or not TOKEN_KEY.fullmatch(token) \
                    or not isinstance(name, str):
                raise Malformed("a refusal names a token hash and a repository")
            self._blobs.gate.confirmations.heard_refusal(bytes.fromhex(token), name)
        else:
            raise Malformed(f"unknown invalidation {str(op)[:40]!r}")


def _refs(refs: Any) -> list[BlobRef]:
    """The references of a ``forget``; pairs that are no valid reference are left out (no
    cache here can hold them)."""
    if not isinstance(refs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            for pair in refs):
        raise Malformed("refs must be a list of [name, digest] pairs")
    parsed = []
    for name, digest in refs:
        try:
            parsed.append(parse_blob(name, digest))
        except BlobgateError:
            continue
    return parsed
