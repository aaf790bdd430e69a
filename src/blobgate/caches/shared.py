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
channel; every replica drops its own entries when it hears them (``listener``).

Redis is never trusted with integrity (see ``sealing``): every value and message is
signed; one without a valid MAC for its key, or that does not parse, is a miss, counted
in ``blobgate_shared_rejected_total{cache,reason}``, never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError, ResponseError

from blobgate.caches.sealing import ENTRY, MESSAGE, Keyring, Rejected, open_keyring
from blobgate.config import RedisConfig
from blobgate.ops.metrics import Stats
from blobgate.reference import BlobRef

log = logging.getLogger(__name__)

ERRORS = (RedisError, OSError, TimeoutError)
Message = dict[str, Any]
T = TypeVar("T")


MEMBERS, VERDICTS = "m", "c"  # the shared caches' names (URL caches use their own)
CHANNEL = "channel"  # the invalidation channel, as a rejection's ``cache`` label


def token_key(token: bytes) -> str:
    """The shared key part for a token named by its SHA-256 (``Grant.key``), never the
    token: the whole hash, so a replica hearing it finds its own entry (``bytes.fromhex``)."""
    return token.hex()


def member_key(ref: BlobRef) -> str:
    """The shared key of a (repository, digest) membership."""
    return f"{ref.name}@{ref.digest}"


class Malformed(ValueError):
    """A shared value or message, correctly signed, that says nothing this version can use."""


def expiry(value: object) -> float:
    """A moment written in a shared value (seconds since the epoch, as text or a JSON
    number); ``Malformed`` when it is not a finite number."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError
        moment = float(value)
    except (ValueError, OverflowError):
        raise Malformed(f"not a moment: {str(value)[:40]!r}") from None
    if not math.isfinite(moment):
        raise Malformed(f"not a moment: {value!r}")
    return moment


class Shared:
    """Bounded, signed get/put/delete on a Redis, a circuit that skips it after a failure,
    and publishing on the invalidation channel."""

    def __init__(
        self, client: Redis, cfg: RedisConfig, keys: Keyring, stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.keys = keys
        self._prefix = cfg.key_prefix
        self.channel = f"{cfg.key_prefix}invalidate"
        self._timeout_s = cfg.timeout_ms / 1000
        self.retry_s = cfg.retry_s
        self.stats = stats
        self._clock = clock
        self._skip_until = 0.0
        self.last_error = ""
        self._writes: set[asyncio.Task[Any]] = set()

    async def get(self, cache: str, key: str, parse: Callable[[str], T | None]) -> T | None:
        """The shared value as ``parse`` reads it, or ``None``: absent, stale (``parse`` says
        ``None``), not believed (no valid MAC for this key, or ``parse`` cannot read it:
        counted as rejected), or Redis unusable right now."""
        place = self._prefix + f"{cache}:{key}"
        raw: Any = await self._call("get", self._client.get(place))
        if raw is _FAILED or raw is None:
            self.stats.shared[cache, "error" if raw is _FAILED else "miss"] += 1
            return None
        try:
            if raw is _WRONG_TYPE:
                raise Malformed("not a string value")
            found = parse(self.keys.open(ENTRY, place, raw).decode())
        except Rejected as exc:
            self.reject(cache, exc.reason)
            return None
        except (ValueError, TypeError, LookupError, ArithmeticError):
            self.reject(cache, "malformed")  # whatever ``parse`` (or UTF-8) cannot read
            return None
        self.stats.shared[cache, "miss" if found is None else "hit"] += 1
        return found

    def put(self, cache: str, key: str, value: str, ttl_s: float,
            then: Message | None = None) -> None:
        """Store ``value`` (signed) for ``ttl_s`` seconds (not under one), then publish
        ``then`` if given; in the background, never awaited."""
        if ttl_s < 1 and then is None:
            return
        place = self._prefix + f"{cache}:{key}"
        sealed = self.keys.seal(ENTRY, place, value.encode())
        task: asyncio.Task[Any] = asyncio.ensure_future(self._store(place, sealed, ttl_s, then))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _store(self, place: str, sealed: bytes, ttl_s: float,
                     then: Message | None) -> None:
        if ttl_s >= 1:
            await self._call("set", self._client.set(place, sealed, ex=int(ttl_s)))
        if then is not None:  # after the value: a replica that hears it reads the new one
            await self.publish([], then)

    async def publish(self, keys: list[str], message: Message) -> None:
        """Delete ``keys`` (``cache:key``) everywhere, then tell every replica (signed)."""
        if keys:
            await self._call("delete", self._client.unlink(*(self._prefix + k for k in keys)))
        # When and which: a captured message is stale after a while, and a repeat of one
        # heard already is dropped (listener.Listener), so neither can be replayed.
        stamped = {**message, "at": time.time(), "id": secrets.token_hex(8)}
        sealed = self.keys.seal(MESSAGE, self.channel, json.dumps(stamped).encode())
        await self._call("publish", self._client.publish(self.channel, sealed))

    async def flush(self) -> None:
        """Delete every shared entry (all keys under the prefix), then tell every replica."""
        async def wipe() -> None:
            batch: list[bytes] = []
            async for key in self._client.scan_iter(match=self._prefix + "*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                await self._client.unlink(*batch)

        await self._call("delete", wipe(), timeout_s=max(self._timeout_s, 5.0))
        await self.publish([], {"op": "flush"})

    def pubsub(self) -> PubSub:
        """A subscription connection (see ``listener``)."""
        return self._client.pubsub()

    def reject(self, cache: str, reason: str) -> None:
        """Count (and log the first of each kind) a value or message not believed."""
        if cache != CHANNEL:
            self.stats.shared[cache, "rejected"] += 1
        self.stats.shared_rejected[cache, reason] += 1
        if self.stats.shared_rejected[cache, reason] == 1:
            log.warning("ignoring shared %s values that are not to be believed (%s): "
                        "another writer in Redis, or a different key", cache, reason)

    @property
    def failing(self) -> bool:
        """True while the last call failed (readiness reports Redis as degraded)."""
        return bool(self.last_error)

    async def settle(self) -> None:
        """Wait for the background writes under way."""
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def aclose(self) -> None:
        """Finish pending writes (briefly) and close the connections."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s * 4):
                await self.settle()
        await self._client.aclose()

    async def _call(self, op: str, command: Any, timeout_s: float | None = None) -> Any:
        """``await command`` within the timeout; ``_FAILED`` when it fails or is skipped,
        ``_WRONG_TYPE`` when the key holds something else than a string."""
        if self._clock() < self._skip_until:
            command.close()
            return _FAILED
        try:
            async with asyncio.timeout(timeout_s or self._timeout_s):
                value = await command
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):  # someone else's value, not an outage
                return _WRONG_TYPE
            self.failed(op, exc)
            return _FAILED
        except ERRORS as exc:
            self.failed(op, exc)
            return _FAILED
        self.recovered(op)
        return value

    def failed(self, op: str, exc: BaseException) -> None:
        """Note that Redis failed ``op``: counted, logged once, left alone for a while."""
        self.stats.shared_errors[op] += 1
        self._skip_until = self._clock() + self.retry_s
        if not self.last_error:
            log.warning("Redis unavailable (%s), going on without it: %s", op,
                        type(exc).__name__)
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def recovered(self, op: str) -> None:
        """Note that Redis answered ``op`` again."""
        if self.last_error:
            log.warning("Redis reachable again (%s)", op)
            self.last_error = ""


_FAILED, _WRONG_TYPE = object(), object()


def _password(cfg: RedisConfig) -> str | None:
    if cfg.password_file is not None:
        return Path(cfg.password_file).read_text().strip()
    return cfg.password


@asynccontextmanager
async def open_shared(cfg: RedisConfig, stats: Stats) -> AsyncIterator[Shared]:
    """A ``Shared`` on the configured Redis (or Sentinel-chosen master), closed after;
    ``ConfigError`` when the MAC key files cannot be used."""
    keys = open_keyring(cfg)
    options: dict[str, Any] = {
        "password": _password(cfg), "decode_responses": False,
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
    shared = Shared(client, cfg, keys, stats)
    try:
        yield shared
    finally:
        await shared.aclose()
