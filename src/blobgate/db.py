"""A PostgreSQL pool that is opened on first use and never makes a request wait on a
database that is down.

After a failed connection attempt, further attempts are refused at once (raising
``DatabaseUnavailable``) for ``retry_s`` seconds, so callers fall back immediately
instead of each paying a connect timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

CONNECT_TIMEOUT_S = 3.0
ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class DatabaseUnavailable(Exception):
    """The database could not be reached recently; the message says why."""


class LazyPool:
    """An asyncpg pool created on demand, with ``init_sql`` run once when it opens."""

    def __init__(
        self, dsn: str, max_size: int, init_sql: str | None = None, retry_s: float = 5.0
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._init_sql = init_sql
        self._retry_s = retry_s
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._refuse_until = 0.0
        self.last_error = ""

    async def get(self) -> Any:
        """The open pool, opening it if needed; refused at once for a while after a failure."""
        if time.monotonic() < self._refuse_until:
            raise DatabaseUnavailable(self.last_error)
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                await self._open()
        return self._pool

    async def _open(self) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._max_size)
                if self._init_sql is not None:
                    async with pool.acquire() as conn:
                        await conn.execute(self._init_sql)
        except ERRORS as exc:
            self.failed(exc)
            raise DatabaseUnavailable(self.last_error) from exc
        self._pool = pool
        self.last_error = ""

    async def probe(self) -> str:
        """``""`` when a query succeeds now, else why not (used by readiness)."""
        try:
            pool = await self.get()
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await pool.fetchval("SELECT 1")
        except DatabaseUnavailable as exc:
            return str(exc)
        except ERRORS as exc:
            self.failed(exc)
            return self.last_error
        self.succeeded()
        return ""

    def failed(self, exc: BaseException) -> None:
        """Note a failure (of opening or of a query): refuse new attempts for a while."""
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._refuse_until = time.monotonic() + self._retry_s

    def succeeded(self) -> None:
        """Note a successful query."""
        self.last_error = ""

    async def close(self) -> None:
        """Close the pool if it was opened."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
