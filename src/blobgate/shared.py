"""The caches several replicas share, in Redis, behind each replica's own.

Two levels: the in-process caches stay in front, so a warm GET never talks to Redis; a
local miss asks Redis before the registry or storage, and what one replica learns
(memberships with sizes, what manifest warm-up found, the registry's verdicts on
tokens, presigned URLs) is written there for the others, each entry with the expiry it
had where it was learnt. Tokens are keyed by their SHA-256, never stored.

Redis is help, never a dependency: every call is bounded by ``redis.timeout_ms``; a
failure is a miss (counted, logged once per outage), and Redis is then left alone for
``redis.retry_s`` so a dead or hung Redis costs no request more than one timeout per
window. Invalidations delete the shared entries first, then are published on one
channel; every replica drops its own entries when it hears them, and drops all of
them when its subscription comes back after a break (it may have missed some).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from blobgate.config import RedisConfig
from blobgate.metrics import Stats
from blobgate.reference import BlobRef

log = logging.getLogger(__name__)

ERRORS = (RedisError, OSError, TimeoutError)
Message = dict[str, Any]


MEMBERS, VERDICTS = "m", "c"  # the shared caches' names (URL caches use their own)


def token_key(token: bytes) -> str:
    """The shared key part for a token named by its SHA-256 (``Grant.key``), never the token."""
    return token.hex()[:40]


def member_key(ref: BlobRef) -> str:
    """The shared key of a (repository, digest) membership."""
    return f"{ref.name}@{ref.digest}"


class Shared:
    """Bounded get/put/delete on a Redis, a circuit that skips it after a failure, and the
    invalidation channel."""

    def __init__(
        self, client: Redis, cfg: RedisConfig, stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = cfg.key_prefix
        self._channel = f"{cfg.key_prefix}invalidate"
        self._timeout_s = cfg.timeout_ms / 1000
        self._retry_s = cfg.retry_s
        self._stats = stats
        self._clock = clock
        self._skip_until = 0.0
        self.last_error = ""
        self._writes: set[asyncio.Task[Any]] = set()

    async def get(self, cache: str, key: str) -> str | None:
        """The shared value, or ``None`` (absent, or Redis unusable right now)."""
        value: Any = await self._call("get", self._client.get(self._prefix + f"{cache}:{key}"))
        result = "error" if value is _FAILED else ("miss" if value is None else "hit")
        self._stats.shared[cache, result] += 1
        return value if isinstance(value, str) else None

    def put(self, cache: str, key: str, value: str, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds, in the background (never awaited)."""
        if ttl_s < 1:
            return
        command = self._client.set(self._prefix + f"{cache}:{key}", value, ex=int(ttl_s))
        task: asyncio.Task[Any] = asyncio.ensure_future(self._call("set", command))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def publish(self, keys: list[str], message: Message) -> None:
        """Delete ``keys`` (``cache:key``) everywhere, then tell every replica."""
        if keys:
            await self._call("delete", self._client.unlink(*(self._prefix + k for k in keys)))
        await self._call("publish", self._client.publish(self._channel, json.dumps(message)))

    async def flush(self) -> None:
        """Delete every shared entry (all keys under the prefix), then tell every replica."""
        async def wipe() -> None:
            batch: list[str] = []
            async for key in self._client.scan_iter(match=self._prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                await self._client.unlink(*batch)

        await self._call("delete", wipe(), timeout_s=max(self._timeout_s, 5.0))
        await self.publish([], {"op": "flush"})

    async def listen(self, handle: Callable[[Message], None]) -> None:
        """Hand every invalidation to ``handle``, reconnecting after failures, forever."""
        broken = False
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    if broken:  # what was published meanwhile is lost: drop everything
                        handle({"op": "flush"})
                        self._recovered("subscribe")
                    broken = False
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._received(handle, message.get("data"))
            except ERRORS as exc:
                broken = True
                self._failed("subscribe", exc)
            await asyncio.sleep(max(self._retry_s, 0.5))

    @property
    def failing(self) -> bool:
        """True while the last call failed (readiness reports Redis as degraded)."""
        return bool(self.last_error)

    async def aclose(self) -> None:
        """Finish pending writes (briefly) and close the connections."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s * 4):
                await asyncio.gather(*self._writes, return_exceptions=True)
        await self._client.aclose()

    def _received(self, handle: Callable[[Message], None], data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return
        if isinstance(message, dict):
            self._stats.invalidations[str(message.get("op"))] += 1
            handle(message)

    async def _call(self, op: str, command: Any, timeout_s: float | None = None) -> Any:
        """``await command`` within the timeout; ``_FAILED`` when it fails or is skipped."""
        if self._clock() < self._skip_until:
            command.close()
            return _FAILED
        try:
            async with asyncio.timeout(timeout_s or self._timeout_s):
                value = await command
        except ERRORS as exc:
            self._failed(op, exc)
            return _FAILED
        self._recovered(op)
        return value

    def _failed(self, op: str, exc: BaseException) -> None:
        self._stats.shared_errors[op] += 1
        self._skip_until = self._clock() + self._retry_s
        if not self.last_error:
            log.warning("Redis unavailable (%s), going on without it: %s", op,
                        type(exc).__name__)
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def _recovered(self, op: str) -> None:
        if self.last_error:
            log.warning("Redis reachable again (%s)", op)
            self.last_error = ""


_FAILED = object()


def _password(cfg: RedisConfig) -> str | None:
    if cfg.password_file is not None:
        return Path(cfg.password_file).read_text().strip()
    return cfg.password


@asynccontextmanager
async def open_shared(cfg: RedisConfig, stats: Stats) -> AsyncIterator[Shared]:
    """A ``Shared`` on the configured Redis (or Sentinel-chosen master), closed after."""
    options: dict[str, Any] = {
        "password": _password(cfg), "decode_responses": True,
        "socket_timeout": max(cfg.timeout_ms / 1000, 0.05) * 4,
        "socket_connect_timeout": max(cfg.timeout_ms / 1000, 0.05) * 4,
        "health_check_interval": 5,
    }
    if cfg.sentinels:
        hosts = [(h, int(p)) for h, _, p in (s.rpartition(":") for s in cfg.sentinels)]
        sentinel = Sentinel(
            hosts, sentinel_kwargs={"password": options["password"]},
            socket_timeout=options["socket_timeout"])
        client: Redis = sentinel.master_for(cfg.sentinel_master, **options)
    else:
        client = Redis.from_url(cfg.url or "", **options)
    shared = Shared(client, cfg, stats)
    try:
        yield shared
    finally:
        await shared.aclose()
