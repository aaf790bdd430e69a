"""Harbor's own database: blob membership without an upstream round trip, and Harbor's
token rule, which a gateway deciding from the token alone would miss.

Membership: a blob is servable for ``<name>`` when Harbor's ``blob`` table has it with
``status = 'none'`` (not being garbage-collected) and it belongs to an artifact of
exactly that repository, in a project (the first path segment) that is not deleted.
This is the repository-level rule, stricter than project-level membership: a token for
``proj/a`` never reads a blob that only ``proj/b`` references. A blob Harbor does not
know (a proxy-cache project still fetching it, a push in progress) is not denied: the
request passes through to Harbor. When the database is unreachable, the upstream HEAD
check answers instead, and the fallback is counted.

Token rule (harbor-core since 2026): a token without ``iat``, or issued (plus the
leeway) before its project's ``creation_time``, is refused, so a project deleted and
created again under the same name is not readable with a token of the old one.
``project.creation_time`` is a ``timestamp`` without time zone, written in UTC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from blobgate.expiring import ExpiringCache
from blobgate.ops.db import ERRORS, DatabaseUnavailable, LazyPool
from blobgate.ops.metrics import Stats
from blobgate.reference import BlobRef
from blobgate.registry.membership import Member, Membership

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 2.0
MEMBER_QUERY = """
SELECT b.size
FROM blob AS b
JOIN artifact_blob AS ab ON ab.digest_blob = b.digest
JOIN artifact AS a ON a.digest = ab.digest_af
JOIN project AS p ON p.project_id = a.project_id
WHERE b.digest = $1
  AND b.status = 'none'
  AND a.repository_name = $2
  AND p.name = $3
  AND NOT p.deleted
LIMIT 1
"""
PROJECT_CREATED_QUERY = """
SELECT EXTRACT(EPOCH FROM creation_time)::float8
FROM project
WHERE name = $1 AND NOT deleted
"""


class HarborDB:
    """One query at a time on Harbor's database, bounded in time; a failure marks the
    pool as failing (later calls are refused at once for a while) and is logged once."""

    def __init__(self, pool: LazyPool) -> None:
        self._pool = pool

    async def value(self, query: str, *args: Any) -> Any:
        """The first column of the first row (``None`` for no row); else
        ``DatabaseUnavailable``."""
        was_failing = bool(self._pool.last_error)
        try:
            pool = await self._pool.get()
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                value = await pool.fetchval(query, *args)
        except (*ERRORS, DatabaseUnavailable) as exc:
            if not isinstance(exc, DatabaseUnavailable):
                self._pool.failed(exc)
            if not was_failing:
                log.warning("Harbor database unavailable: %s", exc)
            raise DatabaseUnavailable(str(exc)) from exc
        self._pool.succeeded()
        return value


class HarborDBMembership:
    """Answers membership from Harbor's PostgreSQL, falling back to another source."""

    def __init__(self, db: HarborDB, fallback: Membership, stats: Stats) -> None:
        self._db = db
        self._fallback = fallback
        self._stats = stats

    async def check(self, ref: BlobRef, authorization: str) -> Member | None:
        project = ref.name.split("/", 1)[0]
        try:
            size = await self._db.value(MEMBER_QUERY, str(ref.digest), ref.name, project)
        except DatabaseUnavailable:
            self._stats.membership["harbor_db", "error"] += 1
            self._stats.fallbacks["database_unavailable"] += 1
            return await self._fallback.check(ref, authorization)
        self._stats.membership["harbor_db", "not_member" if size is None else "member"] += 1
        return None if size is None else Member(size=int(size))


class IssuedToken(Protocol):
    """What Harbor's token rule reads of a verified token (an ``auth.tokens.Grant``), so
    this wing need not import the one that verifies tokens."""

    @property
    def issued_at(self) -> float | None: ...


class HarborTokenRule:
    """Harbor core's rule on ``iat``, applied with the project's creation time from
    Harbor's database (kept per project for ``ttl_s``): Harbor's own verdict on a token
    for a repository, without asking Harbor. An unknown project allows nothing."""

    def __init__(
        self, db: HarborDB, leeway_s: float, ttl_s: float, maxsize: int, stats: Stats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._leeway_s = leeway_s
        self._ttl_s = ttl_s
        self._stats = stats
        self._clock = clock
        self.cache: ExpiringCache[str, tuple[float, float]] = ExpiringCache(
            maxsize, lambda entry: entry[1], clock
        )

    async def verdict(self, grant: IssuedToken, name: str) -> bool | None:
        """Whether Harbor accepts ``grant``'s token for repository ``name``; ``None``
        while the database cannot say (the registry is asked instead)."""
        if grant.issued_at is None:
            return False
        try:
            created = await self._created(name.split("/", 1)[0])
        except DatabaseUnavailable:
            self._stats.fallbacks["database_unavailable"] += 1
            return None
        return created is not None and grant.issued_at + self._leeway_s >= created

    async def _created(self, project: str) -> float | None:
        """The project's creation time; ``None`` for no such project (not kept)."""
        cached = self.cache.get(project)
        if cached is not None:
            return cached[0]
        created = await self._db.value(PROJECT_CREATED_QUERY, project)
        if created is None:
            return None
        self.cache.put(project, (float(created), self._clock() + self._ttl_s))
        return float(created)
