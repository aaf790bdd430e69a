"""Hearing the invalidations every replica publishes, whatever happens.

Each replica subscribes to the channel of its shared Redis and hands every message it
believes (signed with the replicas' key, see ``sealing``) to ``Replicas.heard``. A
message that does not open, one sent more than ``MAX_AGE_S`` ago (or that far ahead,
clocks being skewed) or heard already (a replay), and one that does not parse are
counted in ``blobgate_shared_rejected_total{cache="channel"}`` and skipped; the listener
goes on.
Any other failure (Redis gone, Redis refusing the subscription, or a bug) ends the
subscription: after a pause of
``redis.retry_s`` (at least half a second) it subscribes again and drops every local
entry, since what was published meanwhile is lost. While it is down for a reason other
than Redis being unreachable (which readiness shows as ``degraded``), ``/readyz`` says
not ready, with the reason (a subscription Redis refuses, say an ACL user without the
channel, is such a reason).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import AuthenticationError, ResponseError

from blobgate.caches.sealing import MESSAGE, Rejected
from blobgate.caches.shared import CHANNEL, ERRORS, Malformed, Message, Shared
from blobgate.expiring import ExpiringCache

log = logging.getLogger(__name__)

REFUSED = (ResponseError, AuthenticationError)  # e.g. an ACL without the channel: NOPERM
MIN_PAUSE_S = 0.5
MAX_AGE_S = 30.0  # a message older (or newer) than this is a replay, or a clock far off


class Listener:
    """The task that hears ``shared``'s channel and calls ``handle`` (which raises
    ``Malformed`` for a message it cannot use)."""

    def __init__(self, shared: Shared, handle: Callable[[Message], None]) -> None:
        self._shared = shared
        self._handle = handle
        self._task: asyncio.Task[None] | None = None
        self._error = ""
        self._heard: ExpiringCache[str, float] = ExpiringCache(
            100_000, lambda at: at + 2 * MAX_AGE_S)

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
            except REFUSED as exc:  # Redis answers, but no: not an outage to wait out
                shared.failed("subscribe", exc)
                self._error = f"Redis refused the subscription: {type(exc).__name__}"
            except ERRORS as exc:
                shared.failed("subscribe", exc)
            except Exception as exc:  # a bug must not silence invalidations for good
                log.exception("invalidation listener failed; subscribing again")
                shared.stats.shared_errors["listen"] += 1
                self._error = f"{type(exc).__name__}: {exc}"[:200]
            broken = True
            await asyncio.sleep(max(shared.retry_s, MIN_PAUSE_S))

    def _fresh(self, message: Message) -> None:
        """Accept ``message`` once, and only while it is recent (taking its ``at`` and
        ``id`` out); ``Rejected`` (``stale``, ``replayed``) otherwise."""
        at, name = message.pop("at", None), message.pop("id", None)
        if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(name, str):
            raise Malformed("a message carries when and which")
        if not abs(time.time() - at) <= MAX_AGE_S:
            raise Rejected("stale")
        if self._heard.peek(name) is not None:
            raise Rejected("replayed")
        self._heard.put(name, float(at))

    def _received(self, data: Any) -> None:
        """One published message: believed, understood and handled, or counted as not."""
        shared = self._shared
        try:
            message = json.loads(shared.keys.open(MESSAGE, shared.channel, data))
            if not isinstance(message, dict):
                raise Malformed("not an object")
            self._fresh(message)
        except Rejected as exc:
            shared.reject(CHANNEL, exc.reason)
            return
        except (ValueError, Malformed):  # not JSON, or not a message
            shared.reject(CHANNEL, "malformed")
            return
        try:
            self._handle(message)
        except Malformed:
            shared.reject(CHANNEL, "malformed")
            return
        shared.stats.invalidations[str(message["op"])] += 1
