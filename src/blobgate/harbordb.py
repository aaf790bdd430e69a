"""Membership from Harbor's own database: no upstream round trip, and the size for free.

The rule: a blob is servable for ``<name>`` when Harbor's ``blob`` table has it with
``status = 'none'`` (not being garbage-collected) and it belongs to an artifact of
exactly that repository, in a project (the first path segment) that is not deleted.
This is the repository-level rule, stricter than project-level membership: a token for
``proj/a`` never reads a blob that only ``proj/b`` references.

A blob Harbor does not know (a proxy-cache project still fetching it, a push in
progress) is not denied: the request passes through to Harbor. When the database is
unreachable, the upstream HEAD check answers instead, and the fallback is counted.
"""

from __future__ import annotations

import asyncio
import logging

from blobgate.db import ERRORS, DatabaseUnavailable, LazyPool
from blobgate.membership import Member, Membership
from blobgate.metrics import Stats
from blobgate.reference import BlobRef

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 2.0
QUERY = """
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


class HarborDBMembership:
    """Answers membership from Harbor's PostgreSQL, falling back to another source."""

    def __init__(self, pool: LazyPool, fallback: Membership, stats: Stats) -> None:
        self._pool = pool
        self._fallback = fallback
        self._stats = stats

    async def check(self, ref: BlobRef, authorization: str) -> Member | None:
        project = ref.name.split("/", 1)[0]
        was_failing = bool(self._pool.last_error)
        try:
            pool = await self._pool.get()
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                size = await pool.fetchval(QUERY, str(ref.digest), ref.name, project)
        except (*ERRORS, DatabaseUnavailable) as exc:
            if not isinstance(exc, DatabaseUnavailable):
                self._pool.failed(exc)
            if not was_failing:
                log.warning("Harbor database unavailable, asking upstream instead: %s", exc)
            self._stats.membership["harbor_db", "error"] += 1
            self._stats.fallbacks["database_unavailable"] += 1
            return await self._fallback.check(ref, authorization)
        self._pool.succeeded()
        self._stats.membership["harbor_db", "not_member" if size is None else "member"] += 1
        return None if size is None else Member(size=int(size))
