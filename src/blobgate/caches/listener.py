"""Hearing the invalidations every replica publishes, whatever happens.

Each replica subscribes to the channel of its shared Redis and hands every message it
believes (signed with the replicas' key, see ``sealing``) to ``Replicas.heard``. A
message without a valid MAC, or one that does not parse, is counted in
``blobgate_shared_rejected_total{cache="channel"}`` and skipped; the listener goes on.
Any other failure (Redis gone, or a bug) ends the subscription: after a pause of
``redis.retry_s`` (at least half a second) it subscribes again and drops every local
entry, since what was published meanwhile is lost. While it is down for a reason other
than Redis being unreachable (which readiness shows as ``degraded``), ``/readyz`` says
not ready, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from blobgate.caches.sealing import MESSAGE, Rejected
from blobgate.caches.shared import CHANNEL, ERRORS, Malformed, Message, Shared

log = logging.getLogger(__name__)

MIN_PAUSE_S = 0.5


class Listener:
    """The task that hears ``shared``'s channel and calls ``handle`` (which raises
    ``Malformed`` for a message it cannot use)."""

    def __init__(self, shared: Shared, handle: Callable[[Message], None]) -> None:
        self._shared = shared
        self._handle = handle
        self._task: asyncio.Task[None] | None = None
        self._error = ""

    def start(self) -> None:
        """Start listening (until ``stop``)."""
        self._task = asyncio.create_task(self._listen())

    def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()

    @property
    def down(self) -> str:
        """Why invalidations are not being heard after a failure other than Redis's own,
        ``""`` while they are (or while Redis is merely unreachable)."""
        if self._task is not None and self._task.done():
            return "stopped"
        return self._error

    async def _listen(self) -> None:
        shared = self._shared
        broken = False
        while True:
            try:
                async with shared.pubsub() as pubsub:
                    await pubsub.subscribe(shared.channel)
                    if broken:
                        self._handle({"op": "flush"})
                        shared.recovered("subscribe")
                    broken, self._error = False, ""
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._received(message.get("data"))
            except ERRORS as exc:
                shared.failed("subscribe", exc)
            except Exception as exc:  # a bug must not silence invalidations for good
                log.exception("invalidation listener failed; subscribing again")
                shared.stats.shared_errors["listen"] += 1
                self._error = f"{type(exc).__name__}: {exc}"[:200]
            broken = True
            await asyncio.sleep(max(shared.retry_s, MIN_PAUSE_S))

    def _received(self, data: Any) -> None:
        """One published message: believed, understood and handled, or counted as not."""
        shared = self._shared
        try:
            message = json.loads(shared.keys.open(MESSAGE, shared.channel, data))
        except Rejected as exc:
            shared.reject(CHANNEL, exc.reason)
            return
        except ValueError:  # not JSON
            shared.reject(CHANNEL, "malformed")
            return
        try:
            if not isinstance(message, dict):
                raise Malformed("not an object")
            self._handle(message)
        except Malformed:
            shared.reject(CHANNEL, "malformed")
            return
        shared.stats.invalidations[str(message["op"])] += 1
